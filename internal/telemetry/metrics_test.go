package telemetry

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// sample returns the value of the first sample of family name in a
// Prometheus text exposition, or "" if there is none.
func sample(body, name string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestMetricsServedOverHTTP(t *testing.T) {
	m, err := NewMetrics(attribute.String("wds.node", "n1"), attribute.String("wds.region", "eu"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown(t.Context()) })
	ops, err := m.Meter("github.com/wdsio/wds/test").Int64Counter("wds.test.ops")
	if err != nil {
		t.Fatal(err)
	}
	ops.Add(t.Context(), 3)
	ops.Add(t.Context(), 4)

	s := startAdmin(t, AdminConfig{Metrics: m.Handler})
	code, body := get(t, s, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	if got := sample(body, "wds_test_ops_total"); got != "7" {
		t.Fatalf("wds_test_ops_total = %q; want 7\n%s", got, body)
	}
	for _, want := range []string{`service_name="wds"`, `wds_node="n1"`, `wds_region="eu"`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s (target_info)\n%s", want, body)
		}
	}
	if strings.Contains(body, "go_goroutines") || strings.Contains(body, "process_cpu_seconds_total") {
		t.Errorf("runtime metrics present without RegisterRuntime")
	}
}

func TestMetricsRuntimeOnlyWhenAsked(t *testing.T) {
	with, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	without, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second call is a no-op, not an AlreadyRegistered error
		if err := with.RegisterRuntime(); err != nil {
			t.Fatal(err)
		}
	}
	_, body := get(t, startAdmin(t, AdminConfig{Metrics: with.Handler}), "/metrics")
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if sample(body, want) == "" {
			t.Errorf("/metrics lacks %s after RegisterRuntime", want)
		}
	}
	_, body = get(t, startAdmin(t, AdminConfig{Metrics: without.Handler}), "/metrics")
	if strings.Contains(body, "go_goroutines") {
		t.Errorf("the other node's /metrics has runtime metrics")
	}
}

func TestMetricsInstancesIndependent(t *testing.T) {
	var servers []*AdminServer
	for i, n := range []int64{1, 5} {
		m, err := NewMetrics(attribute.Int("wds.index", i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Shutdown(t.Context()) })
		// Same scope and instrument name in both.
		c, err := m.Meter("github.com/wdsio/wds/cell").Int64Counter("wds.commands")
		if err != nil {
			t.Fatal(err)
		}
		c.Add(t.Context(), n, metricAttr("op", "put"))
		servers = append(servers, startAdmin(t, AdminConfig{Metrics: m.Handler}))
	}
	for i, want := range []string{"1", "5"} {
		_, body := get(t, servers[i], "/metrics")
		if got := sample(body, "wds_commands_total"); got != want {
			t.Errorf("node %d: wds_commands_total = %q; want %s\n%s", i, got, want, body)
		}
	}
}

func TestMetricsShutdown(t *testing.T) {
	m, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Instruments from a stopped provider are inert, not panicking.
	c, err := m.Meter("x").Int64Counter("after")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(t.Context(), 1)
}

func metricAttr(k, v string) metric.AddOption {
	return metric.WithAttributes(attribute.String(k, v))
}
