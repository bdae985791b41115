package telemetry

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// ServiceName is the service.name resource attribute of every WDS node.
const ServiceName = "wds"

// Metrics is one node's metrics pipeline: instruments created through Meter
// (or handed to otelgrpc through Provider) are exported by an OpenTelemetry
// Prometheus exporter into a registry of this node's own, which Handler
// serves, together with the Go runtime (go_*) and process (process_*)
// collectors. Nothing is registered with a global registry or provider, so
// several nodes in one process keep separate values (the runtime and
// process series, which describe the whole process, then repeat on each).
type Metrics struct {
	// Provider is the node's MeterProvider.
	Provider *sdkmetric.MeterProvider
	// Handler serves Registry in the Prometheus exposition format.
	Handler http.Handler
	// Registry is the node's Prometheus registry. Collectors that are not
	// OpenTelemetry instruments may be registered on it directly.
	Registry *prometheus.Registry
}

// NewMetrics builds a node's metrics pipeline. Its resource (exported as the
// target_info metric) carries service.name=wds, the SDK's defaults and
// OTEL_RESOURCE_ATTRIBUTES, and attrs (node id, region, ...), which win over
// the others. Series carry no otel_scope_* labels (and there is no
// otel_scope_info): metric names must therefore not repeat across meters.
func NewMetrics(attrs ...attribute.KeyValue) (*Metrics, error) {
	res, err := resource.Merge(resource.Default(),
		resource.NewSchemaless(append([]attribute.KeyValue{semconv.ServiceName(ServiceName)}, attrs...)...))
	if err != nil {
		return nil, fmt.Errorf("telemetry: metrics resource: %w", err)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("telemetry: go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("telemetry: process collector: %w", err)
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	return &Metrics{
		Provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res)),
		Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorHandling: promhttp.ContinueOnError,
			Registry:      reg, // counts this handler's own errors
		}),
		Registry: reg,
	}, nil
}

// Meter returns the named meter (by convention the instrumenting package's
// import path) of this node's provider.
func (m *Metrics) Meter(name string) metric.Meter {
	return m.Provider.Meter(name)
}

// Shutdown stops the provider; instruments then record nothing. It does not
// stop Handler, which goes on serving the registry's other collectors.
func (m *Metrics) Shutdown(ctx context.Context) error {
	return m.Provider.Shutdown(ctx)
}
