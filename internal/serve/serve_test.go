package serve

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wdsio/wds/internal/telemetry"
)

// fakeService serves the standard gRPC health service and reports what
// the process told it.
type fakeService struct {
	mu         sync.Mutex
	grpcAddr   string
	httpAddr   string
	ready      error
	done       chan struct{}
	registered int
}

func (f *fakeService) Register(s grpc.ServiceRegistrar) {
	f.mu.Lock()
	f.registered++
	f.mu.Unlock()
	healthpb.RegisterHealthServer(s, health.NewServer())
}

func (f *fakeService) Serving(g, h string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.grpcAddr, f.httpAddr = g, h
}

func (f *fakeService) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

func (f *fakeService) Done() <-chan struct{} { return f.done }

func one(s Service) func() ([]Service, error) {
	return func() ([]Service, error) { return []Service{s}, nil }
}

func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	res, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestServesServicesAndAdminPort(t *testing.T) {
	m, err := telemetry.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeService{done: make(chan struct{})}
	p, err := Start(Config{GRPC: "127.0.0.1:0", HTTP: "127.0.0.1:0", Metrics: m}, one(f))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if f.registered != 1 || f.grpcAddr != p.GRPCAddr() || f.httpAddr != p.HTTPAddr() || strings.HasSuffix(p.GRPCAddr(), ":0") {
		t.Fatalf("service told %q %q (registered %d); process serves %q %q", f.grpcAddr, f.httpAddr, f.registered, p.GRPCAddr(), p.HTTPAddr())
	}
	cc, err := grpc.NewClient(p.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("registered service: %v", err)
	}
	if code, body := get(t, p.HTTPAddr(), "/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := get(t, p.HTTPAddr(), "/readyz"); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
	f.mu.Lock()
	f.ready = errors.New("catching up")
	f.mu.Unlock()
	if code, body := get(t, p.HTTPAddr(), "/readyz"); code != 503 || !strings.Contains(body, "catching up") {
		t.Errorf("/readyz of an unready service: %d %s", code, body)
	}
	if code, body := get(t, p.HTTPAddr(), "/metrics"); code != 200 || !strings.Contains(body, "rpc_server_call_duration") {
		t.Errorf("/metrics lacks the gRPC server's metrics: %d %.300s", code, body)
	}
	if code, _ := get(t, p.HTTPAddr(), "/debug/pprof/"); code != 200 {
		t.Errorf("/debug/pprof/: %d", code)
	}
}

// TestStopsWhenServicesAreDone: a service's Done stops the process, as
// Stop does: the ports are free again.
func TestStopsWhenServicesAreDone(t *testing.T) {
	f := &fakeService{done: make(chan struct{})}
	p, err := Start(Config{GRPC: "127.0.0.1:0", HTTP: "127.0.0.1:0"}, one(f))
	if err != nil {
		t.Fatal(err)
	}
	close(f.done)
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("process still serving after its only service is done")
	}
	p.Stop() // idempotent
	for _, a := range []string{p.GRPCAddr(), p.HTTPAddr()} {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("port of a stopped process: %v", err)
		}
		l.Close()
	}
}

// TestPortInUse: the error names the address, and the services are not
// built.
func TestPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	built := false
	build := func() ([]Service, error) { built = true; return nil, nil }
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{GRPC: busy.Addr().String()}, "listen grpc " + busy.Addr().String() + ": "},
		{Config{GRPC: "127.0.0.1:0", HTTP: busy.Addr().String()}, "http admin " + busy.Addr().String() + ": "},
	} {
		_, err := Start(c.cfg, build)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("Start(%+v) = %v; want %q... address already in use", c.cfg, err, c.want)
		}
	}
	if built {
		t.Error("services built although a port is in use")
	}
	if _, err := Start(Config{}, build); err == nil {
		t.Error("Start without a gRPC address succeeded")
	}
}

// TestBuildError: build's error is returned as is, and the ports bound for
// it are free again.
func TestBuildError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	boom := errors.New("boom")
	if _, err := Start(Config{GRPC: addr, HTTP: "127.0.0.1:0"}, func() ([]Service, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("Start = %v, want build's error", err)
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("gRPC port after a failed build: %v", err)
	}
	l.Close()
}
