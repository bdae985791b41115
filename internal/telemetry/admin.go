package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync"
	"time"
)

// Timeouts of the admin server's http.Server.
const (
	// AdminReadHeaderTimeout bounds reading a request's headers.
	AdminReadHeaderTimeout = 5 * time.Second
	// AdminReadTimeout bounds reading a whole request.
	AdminReadTimeout = 10 * time.Second
	// AdminWriteTimeout bounds writing a response. It is longer than
	// /debug/pprof/profile's default 30 s so a default CPU profile fits.
	AdminWriteTimeout = 60 * time.Second
	// AdminIdleTimeout bounds an idle keep-alive connection.
	AdminIdleTimeout = 120 * time.Second
)

// ErrAdminStarted is returned by a second AdminServer.Start.
var ErrAdminStarted = errors.New("telemetry: admin server already started")

// AdminConfig is what a node's admin server serves.
type AdminConfig struct {
	// Metrics serves GET /metrics, usually Metrics.Handler. Nil: no /metrics.
	Metrics http.Handler
	// Health is the liveness check behind GET /healthz: nil error means 200
	// "ok", an error 503 with its text. Nil: always healthy.
	Health func() error
	// Ready is the readiness check behind GET /readyz (e.g. the node knows a
	// leader and has applied the log), answered like Health. Nil: always ready.
	Ready func() error
	// Extra maps more http.ServeMux patterns ("/ui/", "GET /status") to
	// handlers. A pattern that is invalid or conflicts with a built-in route is
	// an error from NewAdminServer.
	Extra map[string]http.Handler
	// Logger receives the server's start, stop and error messages. Nil:
	// discarded.
	Logger *slog.Logger
}

// AdminServer is a node's HTTP admin port: /metrics, /healthz, /readyz,
// /debug/pprof/ and AdminConfig.Extra, on a mux of its own. (Importing
// net/http/pprof also registers its handlers on http.DefaultServeMux, an init
// side effect of the standard library; WDS never serves that mux, so they
// stay unreachable.) An AdminServer starts once: after Close, build a new one.
type AdminServer struct {
	addr   string
	logger *slog.Logger
	srv    *http.Server

	mu      sync.Mutex
	ln      net.Listener  // set by Start
	serving chan struct{} // closed when Serve returns
}

// NewAdminServer builds an admin server for addr (host:port; port 0 picks a
// free one at Start). It does not listen yet.
func NewAdminServer(addr string, cfg AdminConfig) (*AdminServer, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	mux.Handle("GET /healthz", checkHandler(cfg.Health))
	mux.Handle("GET /readyz", checkHandler(cfg.Ready))
	mux.HandleFunc("/debug/pprof/", pprof.Index) // and the named profiles under it
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)

	patterns := make([]string, 0, len(cfg.Extra))
	for p := range cfg.Extra {
		patterns = append(patterns, p)
	}
	sort.Strings(patterns)
	for _, p := range patterns {
		if cfg.Extra[p] == nil {
			return nil, fmt.Errorf("telemetry: AdminConfig.Extra[%q] is nil", p)
		}
		if err := handle(mux, p, cfg.Extra[p]); err != nil {
			return nil, fmt.Errorf("telemetry: AdminConfig.Extra[%q]: %v", p, err)
		}
	}

	return &AdminServer{
		addr:   addr,
		logger: logger,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: AdminReadHeaderTimeout,
			ReadTimeout:       AdminReadTimeout,
			WriteTimeout:      AdminWriteTimeout,
			IdleTimeout:       AdminIdleTimeout,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
	}, nil
}

// handle is mux.Handle with its panic (bad or conflicting pattern) returned.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// checkHandler answers 200 "ok" when check passes and 503 with its error
// otherwise.
func checkHandler(check func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		var err error
		if check != nil {
			err = check()
		}
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, err.Error()+"\n")
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
}

// Start listens on the configured address and serves in the background.
func (s *AdminServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return ErrAdminStarted
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("telemetry: admin listen on %q: %w", s.addr, err)
	}
	s.ln = ln
	s.serving = make(chan struct{})
	s.logger.Info("admin server listening", "addr", ln.Addr().String())
	go func() {
		defer close(s.serving)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("admin server stopped", "err", err)
		}
	}()
	return nil
}

// Addr returns the bound address after Start ("127.0.0.1:41234"), and the
// configured one before.
func (s *AdminServer) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// Close stops accepting connections and waits for in-flight requests until
// ctx ends, after which it closes the remaining connections and returns ctx's
// error. Closing a server that was never started is a no-op.
func (s *AdminServer) Close(ctx context.Context) error {
	s.mu.Lock()
	serving := s.serving
	s.mu.Unlock()
	if serving == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-serving
	s.logger.Info("admin server stopped", "addr", s.Addr())
	return err
}
