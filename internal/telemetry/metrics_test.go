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
}

// Every node's registry has the Go runtime and process collectors.
func TestMetricsRuntimeAndProcess(t *testing.T) {
	m, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown(t.Context()) })
	_, body := get(t, startAdmin(t, AdminConfig{Metrics: m.Handler}), "/metrics")
	for _, want := range []string{
		"go_goroutines", "go_threads", "go_memstats_heap_alloc_bytes", "go_memstats_alloc_bytes_total",
		"go_gc_duration_seconds_count", "process_cpu_seconds_total", "process_resident_memory_bytes",
		"process_open_fds", "process_start_time_seconds",
	} {
		if sample(body, want) == "" {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
	// A second node in the process has its own (not AlreadyRegistered).
	m2, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m2.Shutdown(t.Context()) })
	if _, err := m2.Registry.Gather(); err != nil {
		t.Fatal(err)
	}
}

// No series carries the instrumentation scope (otel_scope_name, ...), and
// there is no otel_scope_info family.
func TestMetricsWithoutScopeLabels(t *testing.T) {
	m, err := NewMetrics(attribute.String("node", "n1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown(t.Context()) })
	meter := m.Meter("github.com/wdsio/wds/test")
	c, err := meter.Int64Counter("wds.test.ops")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(t.Context(), 1, metricAttr("op", "put"))
	h, err := meter.Float64Histogram("wds.test.latency", metric.WithUnit("s"))
	if err != nil {
		t.Fatal(err)
	}
	h.Record(t.Context(), 0.01)
	_, body := get(t, startAdmin(t, AdminConfig{Metrics: m.Handler}), "/metrics")
	if got := sample(body, "wds_test_ops_total"); got != "1" {
		t.Fatalf("wds_test_ops_total = %q; want 1\n%s", got, body)
	}
	if !strings.Contains(body, `wds_test_ops_total{op="put"} 1`) {
		t.Errorf("wds_test_ops_total has labels other than op\n%s", body)
	}
	if strings.Contains(body, "otel_scope") {
		t.Errorf("/metrics has otel_scope labels or otel_scope_info\n%s", body)
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
