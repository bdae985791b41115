package telemetry

import (
	"net"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestGRPCInstrumentation runs a server node and a client node, each with
// its own Metrics and TracerProvider, and checks that RPC metrics land in the
// right registries and that the trace context crosses the wire.
func TestGRPCInstrumentation(t *testing.T) {
	newNode := func() (*Metrics, *sdktrace.TracerProvider, *tracetest.SpanRecorder) {
		m, err := NewMetrics()
		if err != nil {
			t.Fatal(err)
		}
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		t.Cleanup(func() { _ = tp.Shutdown(t.Context()); _ = m.Shutdown(t.Context()) })
		return m, tp, rec
	}
	sm, stp, srec := newNode()
	cm, ctp, crec := newNode()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions(sm, stp)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient(ln.Addr().String(),
		append(DialOptions(cm, ctp), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	ctx, parent := ctp.Tracer("test").Start(t.Context(), "caller")
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	parent.End()

	// The server records a call after it sent the answer the client
	// already has: wait for it (bounded) rather than race it.
	sadmin := startAdmin(t, AdminConfig{Metrics: sm.Handler})
	_, sbody := get(t, sadmin, "/metrics")
	for deadline := time.Now().Add(5 * time.Second); sample(sbody, "rpc_server_call_duration_seconds_count") != "1" && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		_, sbody = get(t, sadmin, "/metrics")
	}
	_, cbody := get(t, startAdmin(t, AdminConfig{Metrics: cm.Handler}), "/metrics")
	if sample(sbody, "rpc_server_call_duration_seconds_count") != "1" {
		t.Errorf("server /metrics lacks one rpc_server_call_duration_seconds_count\n%s", sbody)
	}
	if sample(cbody, "rpc_client_call_duration_seconds_count") != "1" {
		t.Errorf("client /metrics lacks one rpc_client_call_duration_seconds_count\n%s", cbody)
	}
	if sample(cbody, "rpc_server_call_duration_seconds_count") != "" {
		t.Errorf("client registry has server metrics")
	}

	findSpan := func(rec *tracetest.SpanRecorder, kind trace.SpanKind) sdktrace.ReadOnlySpan {
		for _, s := range rec.Ended() {
			if s.SpanKind() == kind {
				return s
			}
		}
		t.Fatalf("no %v span among %d", kind, len(rec.Ended()))
		return nil
	}
	cspan := findSpan(crec, trace.SpanKindClient)
	sspan := findSpan(srec, trace.SpanKindServer)
	if cspan.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("client span's parent is not the caller's span")
	}
	if sspan.SpanContext().TraceID() != parent.SpanContext().TraceID() || sspan.Parent().SpanID() != cspan.SpanContext().SpanID() {
		t.Errorf("server span not a child of the client span: trace %v parent %v; want trace %v parent %v",
			sspan.SpanContext().TraceID(), sspan.Parent().SpanID(), parent.SpanContext().TraceID(), cspan.SpanContext().SpanID())
	}
	if sspan.Name() != "grpc.health.v1.Health/Check" {
		t.Errorf("server span name %q", sspan.Name())
	}
}

func TestGRPCOptionsNil(t *testing.T) {
	// Nil metrics and provider mean no-ops, never the globals.
	if len(ServerOptions(nil, nil)) != 1 || len(DialOptions(nil, nil)) != 1 {
		t.Fatal("want one option each")
	}
}
