package telemetry

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
)

// Propagator is the W3C trace-context and baggage propagator that WDS's gRPC
// servers and clients use, given explicitly so that the global one (a no-op
// unless someone sets it) never matters.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{}, propagation.Baggage{})

// ServerOptions returns the options that instrument a gRPC server with
// otelgrpc: RPC duration histograms through m and spans through tp. A nil m or
// tp turns that half off (it never falls back to the global providers).
func ServerOptions(m *Metrics, tp trace.TracerProvider) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(otelOptions(m, tp)...))}
}

// DialOptions is ServerOptions for gRPC clients.
func DialOptions(m *Metrics, tp trace.TracerProvider) []grpc.DialOption {
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelOptions(m, tp)...))}
}

func otelOptions(m *Metrics, tp trace.TracerProvider) []otelgrpc.Option {
	var mp metric.MeterProvider = metricnoop.NewMeterProvider()
	if m != nil {
		mp = m.Provider
	}
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	return []otelgrpc.Option{
		otelgrpc.WithMeterProvider(mp),
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(Propagator),
	}
}
