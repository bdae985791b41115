package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAdminHealthAndReady(t *testing.T) {
	var healthErr, readyErr atomic.Pointer[error]
	check := func(p *atomic.Pointer[error]) func() error {
		return func() error {
			if e := p.Load(); e != nil {
				return *e
			}
			return nil
		}
	}
	s := startAdmin(t, AdminConfig{Health: check(&healthErr), Ready: check(&readyErr)})
	set := func(p *atomic.Pointer[error], err error) {
		if err == nil {
			p.Store(nil)
		} else {
			p.Store(&err)
		}
	}
	for _, tc := range []struct {
		name               string
		health, ready      error
		wantHealth, wantRd int
		wantRdBody         string
	}{
		{"both ok", nil, nil, 200, 200, "ok"},
		{"not ready", nil, errors.New("cell: no leader known"), 200, 503, "cell: no leader known"},
		{"unhealthy", errors.New("wal: disk full"), nil, 503, 200, "ok"},
		{"ok again", nil, nil, 200, 200, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set(&healthErr, tc.health)
			set(&readyErr, tc.ready)
			code, body := get(t, s, "/healthz")
			wantBody := "ok"
			if tc.health != nil {
				wantBody = tc.health.Error()
			}
			if code != tc.wantHealth || strings.TrimSpace(body) != wantBody {
				t.Errorf("/healthz = %d %q; want %d %q", code, body, tc.wantHealth, wantBody)
			}
			code, body = get(t, s, "/readyz")
			if code != tc.wantRd || strings.TrimSpace(body) != tc.wantRdBody {
				t.Errorf("/readyz = %d %q; want %d %q", code, body, tc.wantRd, tc.wantRdBody)
			}
		})
	}
}

func TestAdminDefaultsAndRoutes(t *testing.T) {
	s := startAdmin(t, AdminConfig{
		Extra: map[string]http.Handler{
			"/ui/": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "ui at "+r.URL.Path)
			}),
		},
	})
	for _, tc := range []struct {
		path     string
		wantCode int
		wantBody string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ok"},
		{"/metrics", 404, ""}, // no Metrics handler configured
		{"/ui/shards", 200, "ui at /ui/shards"},
		{"/debug/pprof/", 200, "goroutine"},
		{"/debug/pprof/goroutine?debug=1", 200, "goroutine profile"},
		{"/debug/pprof/cmdline", 200, ""},
		{"/nothing", 404, ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, body := get(t, s, tc.path)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("GET %s = %d %.200q; want %d containing %q", tc.path, code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
	t.Run("POST /healthz", func(t *testing.T) {
		resp, err := http.Post("http://"+s.Addr()+"/healthz", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("POST /healthz = %d; want 405", resp.StatusCode)
		}
	})
}

func TestAdminBadExtra(t *testing.T) {
	ok := http.NotFoundHandler()
	for _, tc := range []struct {
		name  string
		extra map[string]http.Handler
	}{
		{"conflicts with healthz", map[string]http.Handler{"GET /healthz": ok}},
		{"invalid pattern", map[string]http.Handler{"no-slash": ok}},
		{"nil handler", map[string]http.Handler{"/ui/": nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewAdminServer("127.0.0.1:0", AdminConfig{Extra: tc.extra})
			if err == nil {
				t.Fatal("NewAdminServer succeeded")
			}
			for p := range tc.extra {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not name the pattern %q", err, p)
				}
			}
		})
	}
}

func TestAdminLifecycle(t *testing.T) {
	s, err := NewAdminServer("127.0.0.1:0", AdminConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("Close before Start: %v", err)
	}
	if s.Addr() != "127.0.0.1:0" {
		t.Fatalf("Addr before Start = %q", s.Addr())
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addr after Start = %q; want the bound port", addr)
	}
	if err := s.Start(); !errors.Is(err, ErrAdminStarted) {
		t.Fatalf("second Start = %v; want ErrAdminStarted", err)
	}
	if code, _ := get(t, s, "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}

	// A slow in-flight request holds Close until ctx ends.
	release := make(chan struct{})
	started := make(chan struct{})
	s2 := startAdmin(t, AdminConfig{Extra: map[string]http.Handler{
		"/slow": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-release
		}),
	}})
	go func() {
		resp, err := http.Get("http://" + s2.Addr() + "/slow")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := s2.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close with a stuck request = %v; want DeadlineExceeded", err)
	}
	close(release)

	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("server still answers after Close")
	}
}

func TestAdminTimeouts(t *testing.T) {
	s, err := NewAdminServer("127.0.0.1:0", AdminConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if s.srv.ReadHeaderTimeout == 0 || s.srv.ReadTimeout == 0 || s.srv.WriteTimeout == 0 || s.srv.IdleTimeout == 0 {
		t.Fatalf("a timeout is unset: %+v", s.srv)
	}
}
