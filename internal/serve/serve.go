// Package serve is a WDS process's network front, set up in one place for
// `wds server`, `wds dev` and the test harness (internal/celltest): one gRPC
// listener and server carrying every service of the process (a cell node
// now; a global group member beside it later), RPC metrics and tracing
// (otelgrpc), and the HTTP admin port (/metrics, /healthz, /readyz,
// /debug/pprof). It imports neither cell nor global: both register on it.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/wdsio/wds/internal/logging"
	"github.com/wdsio/wds/internal/telemetry"
)

// Config is what a process serves on, and with what.
type Config struct {
	// GRPC is the gRPC listen address, host:port (port 0 picks a free one).
	GRPC string
	// HTTP is the admin HTTP listen address; empty disables the admin port.
	HTTP string
	// Logger receives the process's serving messages; nil discards them.
	Logger *slog.Logger
	// Metrics is the process's metrics registry, which its services'
	// instruments should use too: /metrics serves it, and the gRPC server's
	// RPC metrics go to it. Nil: neither. Stop shuts it down.
	Metrics *telemetry.Metrics
	// TracerProvider traces the gRPC server; nil means no tracing.
	TracerProvider trace.TracerProvider
	// ServerOptions are the services' gRPC server options
	// (cell.ServerOptions), after otelgrpc's.
	ServerOptions []grpc.ServerOption
}

// Service is one service of the process: a cell node, later a global group
// member. Start asks it, by type assertion, for more:
//
//   - Health() error: /healthz fails while any service's check fails;
//   - Ready() error: likewise /readyz;
//   - Serving(grpcAddr, httpAddr string): told the bound addresses before
//     the server serves (cell.Node's Endpoint and HTTPAddr report them);
//   - Done() <-chan struct{}: once every service that has one is done (it
//     was closed), the process stops, as Stop does.
type Service interface {
	// Register registers the service's gRPC services; called once, before
	// the server serves.
	Register(grpc.ServiceRegistrar)
}

// The optional methods of a Service.
type (
	healthService  interface{ Health() error }
	readyService   interface{ Ready() error }
	servingService interface {
		Serving(grpcAddr, httpAddr string)
	}
	doneService interface{ Done() <-chan struct{} }
)

// Process is a running network front: Stop it.
type Process struct {
	log      *slog.Logger
	lis      net.Listener
	grpc     *grpc.Server
	admin    *telemetry.AdminServer
	metrics  *telemetry.Metrics
	services atomic.Pointer[[]Service]
	serving  chan struct{} // closed when grpc.Serve returns
	stopOnce sync.Once
	stopped  chan struct{}
}

// errStarting is /healthz and /readyz before the services are built.
var errStarting = errors.New("starting")

// Start binds cfg.GRPC and cfg.HTTP first — so that a port in use fails,
// naming its address, before any service opens its data dir — then builds
// the services (build; its error is returned as is), registers them on one
// gRPC server, serves it and returns. On an error everything it started
// is stopped again, and cfg.Metrics shut down.
func Start(cfg Config, build func() ([]Service, error)) (*Process, error) {
	log := cfg.Logger
	if log == nil {
		log = logging.Discard()
	}
	log = logging.Component(log, "serve")
	p := &Process{log: log, metrics: cfg.Metrics, serving: make(chan struct{}), stopped: make(chan struct{})}
	fail := func(err error) (*Process, error) {
		if p.lis != nil {
			p.lis.Close()
		}
		p.closeAdmin()
		p.shutdownMetrics()
		return nil, err
	}
	if cfg.GRPC == "" {
		return fail(errors.New("listen grpc: no address"))
	}
	lis, err := net.Listen("tcp", cfg.GRPC)
	if err != nil {
		return fail(fmt.Errorf("listen grpc %s: %w", cfg.GRPC, err))
	}
	p.lis = lis
	if cfg.HTTP != "" {
		ac := telemetry.AdminConfig{Health: p.health, Ready: p.ready, Logger: log}
		if cfg.Metrics != nil {
			ac.Metrics = cfg.Metrics.Handler
		}
		adm, err := telemetry.NewAdminServer(cfg.HTTP, ac)
		if err == nil {
			err = adm.Start()
		}
		if err != nil {
			return fail(fmt.Errorf("http admin %s: %w", cfg.HTTP, err))
		}
		p.admin = adm
	}
	services, err := build()
	if err != nil {
		return fail(err)
	}

	opts := append(telemetry.ServerOptions(cfg.Metrics, cfg.TracerProvider), cfg.ServerOptions...)
	p.grpc = grpc.NewServer(opts...)
	var dones []<-chan struct{}
	for _, s := range services {
		s.Register(p.grpc)
		if s, ok := s.(servingService); ok {
			s.Serving(p.GRPCAddr(), p.HTTPAddr())
		}
		if s, ok := s.(doneService); ok {
			dones = append(dones, s.Done())
		}
	}
	p.services.Store(&services)
	go func() {
		defer close(p.serving)
		if err := p.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			p.log.Error("grpc server stopped", "addr", p.GRPCAddr(), "err", err)
		}
	}()
	if len(dones) > 0 {
		go func() {
			for _, d := range dones {
				select {
				case <-d:
				case <-p.stopped:
					return
				}
			}
			p.Stop()
		}()
	}
	p.log.Info("serving", "grpc", p.GRPCAddr(), "http", p.HTTPAddr())
	return p, nil
}

// GRPCAddr is the bound gRPC address ("127.0.0.1:41234").
func (p *Process) GRPCAddr() string { return p.lis.Addr().String() }

// HTTPAddr is the bound admin HTTP address, "" without one.
func (p *Process) HTTPAddr() string {
	if p.admin == nil {
		return ""
	}
	return p.admin.Addr()
}

// Stop stops serving at once: the gRPC server stops (Stop, not
// GracefulStop: the services end their streams themselves as they close,
// and a stuck stream must not hold the stop), then the HTTP admin port, and
// Metrics is shut down. It does not close the services. It is idempotent,
// and returns once everything has stopped.
func (p *Process) Stop() {
	p.stopOnce.Do(func() {
		p.grpc.Stop()
		<-p.serving
		p.closeAdmin()
		p.shutdownMetrics()
		close(p.stopped)
		p.log.Info("stopped serving", "grpc", p.GRPCAddr())
	})
}

// Done is closed once the process has stopped (Stop, or every service
// done).
func (p *Process) Done() <-chan struct{} { return p.stopped }

func (p *Process) closeAdmin() {
	if p.admin == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p.admin.Close(ctx)
}

func (p *Process) shutdownMetrics() {
	if p.metrics != nil {
		p.metrics.Shutdown(context.Background())
	}
}

func (p *Process) health() error {
	return p.check(func(s Service) error {
		if c, ok := s.(healthService); ok {
			return c.Health()
		}
		return nil
	})
}

func (p *Process) ready() error {
	return p.check(func(s Service) error {
		if c, ok := s.(readyService); ok {
			return c.Ready()
		}
		return nil
	})
}

// check is the first error of check over the services; errStarting before
// they are built.
func (p *Process) check(check func(Service) error) error {
	ss := p.services.Load()
	if ss == nil {
		return errStarting
	}
	for _, s := range *ss {
		if err := check(s); err != nil {
			return err
		}
	}
	return nil
}
