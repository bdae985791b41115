package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Environment variables that switch OTLP trace export on. The exporter reads
// the rest of the standard OTEL_EXPORTER_OTLP_* variables (insecure, headers,
// timeout, TLS files) itself.
const (
	EnvOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
)

// TracingEnabled reports whether the environment asks for OTLP trace export:
// one of the endpoint variables is set and not empty, OTEL_SDK_DISABLED is not
// "true" and OTEL_TRACES_EXPORTER is not "none".
func TracingEnabled() bool {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") ||
		strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")), "none") {
		return false
	}
	return os.Getenv(EnvOTLPEndpoint) != "" || os.Getenv(EnvOTLPTracesEndpoint) != ""
}

// NewTracing returns a node's TracerProvider and the function that flushes and
// stops it. When TracingEnabled, that is an SDK provider batching spans to the
// OTLP/gRPC exporter, with a resource carrying service.name=serviceName, the
// SDK's defaults, OTEL_RESOURCE_ATTRIBUTES and attrs, and sampling as
// OTEL_TRACES_SAMPLER says (parent-based always-on by default). Otherwise it
// is a no-op provider, whose spans only carry an incoming span context along,
// and a no-op shutdown: nothing touches the network. The provider is never
// installed globally.
func NewTracing(ctx context.Context, serviceName string, attrs ...attribute.KeyValue) (trace.TracerProvider, func(context.Context) error, error) {
	if !TracingEnabled() {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	res, err := resource.Merge(resource.Default(),
		resource.NewSchemaless(append([]attribute.KeyValue{semconv.ServiceName(serviceName)}, attrs...)...))
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: tracing resource: %w", err)
	}
	// The gRPC client connects lazily: New does not wait for the collector.
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: otlp trace exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}
