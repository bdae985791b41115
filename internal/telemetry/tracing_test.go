package telemetry

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// clearTracingEnv unsets every variable TracingEnabled reads, for this test.
func clearTracingEnv(t *testing.T) {
	for _, k := range []string{EnvOTLPEndpoint, EnvOTLPTracesEndpoint, "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"} {
		t.Setenv(k, "")
	}
}

func TestNewTracingWithoutEndpoint(t *testing.T) {
	clearTracingEnv(t)
	tp, shutdown, err := NewTracing(t.Context(), "wds", attribute.String("wds.node", "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tp.(noop.TracerProvider); !ok {
		t.Fatalf("provider is %T; want the no-op provider", tp)
	}
	ctx, span := tp.Tracer("test").Start(t.Context(), "op")
	span.SetAttributes(attribute.Int("n", 1))
	span.End()
	if !trace.SpanFromContext(ctx).SpanContext().Equal(span.SpanContext()) {
		t.Fatal("span not in its context")
	}
	// An incoming span context is carried through.
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	_, child := tp.Tracer("test").Start(trace.ContextWithRemoteSpanContext(t.Context(), parent), "child")
	if got := child.SpanContext().TraceID(); got != parent.TraceID() {
		t.Fatalf("child trace id %v; want %v", got, parent.TraceID())
	}
	child.End()
	if err := shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestNewTracingDisabled(t *testing.T) {
	for _, kv := range [][2]string{{"OTEL_SDK_DISABLED", "true"}, {"OTEL_TRACES_EXPORTER", "none"}} {
		t.Run(kv[0], func(t *testing.T) {
			clearTracingEnv(t)
			t.Setenv(EnvOTLPEndpoint, "http://127.0.0.1:1")
			t.Setenv(kv[0], kv[1])
			tp, _, err := NewTracing(t.Context(), "wds")
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := tp.(noop.TracerProvider); !ok {
				t.Fatalf("provider is %T; want the no-op provider", tp)
			}
		})
	}
}

// fakeCollector is an OTLP/gRPC trace collector on loopback.
type fakeCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.ResourceSpans
}

func (c *fakeCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spans = append(c.spans, req.GetResourceSpans()...)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func TestNewTracingExportsToEndpoint(t *testing.T) {
	for _, env := range []string{EnvOTLPEndpoint, EnvOTLPTracesEndpoint} {
		t.Run(env, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			col := &fakeCollector{}
			srv := grpc.NewServer()
			collectortrace.RegisterTraceServiceServer(srv, col)
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(srv.Stop)

			clearTracingEnv(t)
			t.Setenv(env, "http://"+ln.Addr().String()) // http: no TLS
			tp, shutdown, err := NewTracing(t.Context(), "wds-test", attribute.String("wds.node", "n7"))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := tp.(*sdktrace.TracerProvider); !ok {
				t.Fatalf("provider is %T; want the SDK provider", tp)
			}
			_, span := tp.Tracer("test").Start(t.Context(), "exported-op")
			if !span.IsRecording() {
				t.Fatal("span is not recording")
			}
			span.End()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := shutdown(ctx); err != nil { // flushes the batcher
				t.Fatal(err)
			}

			col.mu.Lock()
			defer col.mu.Unlock()
			var names []string
			res := map[string]string{}
			for _, rs := range col.spans {
				for _, a := range rs.GetResource().GetAttributes() {
					res[a.GetKey()] = a.GetValue().GetStringValue()
				}
				for _, ss := range rs.GetScopeSpans() {
					for _, s := range ss.GetSpans() {
						names = append(names, s.GetName())
					}
				}
			}
			if len(names) != 1 || names[0] != "exported-op" {
				t.Fatalf("collector got spans %v; want [exported-op]", names)
			}
			if res["service.name"] != "wds-test" || res["wds.node"] != "n7" {
				t.Fatalf("resource %v; want service.name=wds-test wds.node=n7", res)
			}
		})
	}
}
