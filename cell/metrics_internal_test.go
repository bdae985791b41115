package cell

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/wdsio/wds/internal/telemetry"
)

// scrape serves tm's /metrics once and returns the Prometheus text.
func scrape(t *testing.T, tm *telemetry.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	tm.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d\n%s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// sampleValue returns the value of the sample of family name whose labels
// contain every one of labels (`le="0.0005"`), or "" if there is none.
func sampleValue(body, name string, labels ...string) string {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
next:
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		for _, l := range labels {
			if !strings.Contains(m[1], l) {
				continue next
			}
		}
		return m[2]
	}
	return ""
}

// newMetricsNode is a Node with just what newCellMetrics reads.
func newMetricsNode(t *testing.T) (*Node, *cellMetrics) {
	t.Helper()
	tm, err := telemetry.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tm.Shutdown(t.Context()) })
	n := &Node{tm: tm, state: NewState(testRegion)}
	cm, err := newCellMetrics(n)
	if err != nil {
		t.Fatal(err)
	}
	return n, cm
}

func TestCommitLatencyBuckets(t *testing.T) {
	n, cm := newMetricsNode(t)
	cm.commitLatency.Record(t.Context(), 0.0003) // 300 µs
	cm.commitLatency.Record(t.Context(), 0.004)  // 4 ms
	cm.commitLatency.Record(t.Context(), 30)     // beyond the last bound
	body := scrape(t, n.tm)
	const name = "wds_cell_commit_latency_seconds_bucket"
	for _, tc := range []struct{ le, want string }{
		{"0.0001", "0"},
		{"0.00025", "0"},
		{"0.0005", "1"},
		{"0.001", "1"},
		{"0.0025", "1"},
		{"0.005", "2"},
		{"1", "2"},
		{"10", "2"},
		{"+Inf", "3"},
	} {
		if got := sampleValue(body, name, `le="`+tc.le+`"`); got != tc.want {
			t.Errorf(`%s{le="%s"} = %q; want %s`, name, tc.le, got, tc.want)
		}
	}
	if n := strings.Count(body, "\n"+name+"{"); n != len(commitLatencyBuckets)+1 {
		t.Errorf("%d buckets; want %d and +Inf", n, len(commitLatencyBuckets))
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestDomainGauges(t *testing.T) {
	n, _ := newMetricsNode(t)
	h := newHarness(t)
	h.f.state = n.state // the metrics read the harness's state
	type counts struct{ unowned, moving, consumers int64 }
	want := func(wants map[string]counts) {
		t.Helper()
		got := map[string]counts{}
		for _, dc := range countDomains(n.state) {
			got[dc.name] = counts{dc.unowned, dc.moving, dc.consumers}
		}
		if len(got) != len(wants) {
			t.Fatalf("countDomains = %v; want %v", got, wants)
		}
		for name, w := range wants {
			if got[name] != w {
				t.Fatalf("countDomains = %v; want %v", got, wants)
			}
		}
		// And as exported.
		body := scrape(t, n.tm)
		for name, w := range wants {
			for fam, v := range map[string]int64{
				"wds_cell_domain_shards_unowned": w.unowned,
				"wds_cell_domain_shards_moving":  w.moving,
				"wds_cell_domain_consumers":      w.consumers,
			} {
				if s := sampleValue(body, fam, `domain="`+name+`"`); s != strconv.FormatInt(v, 10) {
					t.Fatalf("%s{domain=%q} = %q; want %d\n%s", fam, name, s, v, body)
				}
			}
		}
		if c := strings.Count(body, "\nwds_cell_domain_shards_unowned{"); c != len(wants) {
			t.Fatalf("%d wds_cell_domain_shards_unowned series; want %d\n%s", c, len(wants), body)
		}
	}

	want(map[string]counts{})
	h.ok(opCreate("orders", global, 4), opCreate("jobs", global, 2))
	h.ok(opJoin("a", "a1", "orders"), opJoin("b", "b1", "orders", "jobs"), opJoin("x", "x1", "other"))
	want(map[string]counts{"orders": {4, 0, 2}, "jobs": {2, 0, 1}})

	for i := range 4 {
		h.ok(opAssign("orders", h.from("orders", i), "a"))
	}
	h.ok(opAssign("jobs", h.from("jobs", 0), "b"))
	want(map[string]counts{"orders": {0, 0, 2}, "jobs": {1, 0, 1}})

	// A move: shard 0 REVOKED with b ALLOCATED behind it, shard 1 REVOKED
	// with no successor yet. Neither has an ACTIVE holder.
	f0, tok0 := h.from("orders", 0), h.token("orders", 0)
	h.ok(opMove("orders", f0, "a", tok0, "b", rebalance))
	h.ok(opMove("orders", h.from("orders", 1), "a", h.token("orders", 1), "", rebalance))
	h.wantHolder("orders", 0, "a", stateRevoked)
	want(map[string]counts{"orders": {2, 2, 2}, "jobs": {1, 0, 1}})

	// a releases shard 0: b is ACTIVE.
	h.ok(opRelease("orders", f0, "a", tok0, false))
	h.wantHolder("orders", 0, "b", stateActive)
	want(map[string]counts{"orders": {1, 1, 2}, "jobs": {1, 0, 1}})

	// b leaves: jobs loses its holder and its consumer.
	h.ok(opLeave("b", "b1"))
	want(map[string]counts{"orders": {2, 1, 1}, "jobs": {2, 0, 0}})

	// A deleting domain (a still holds shards) and a deleted one are gone
	// from the gauges.
	h.ok(opDelete("orders", false), opDelete("jobs", false))
	want(map[string]counts{})
}
