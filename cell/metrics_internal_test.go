package cell

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/wdsio/wds/cell/cellstate"
	"github.com/wdsio/wds/internal/telemetry"
	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
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
	n := &Node{tm: tm, state: cellstate.NewState("us-east")}
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

// TestDomainGauges checks that the per-domain gauges export what the
// state counts (cellstate's tests follow the counts through a handover),
// and that a deleted domain's series disappear.
func TestDomainGauges(t *testing.T) {
	n, _ := newMetricsNode(t)
	f := &cellstate.FSM{State: n.state}
	index := uint64(0)
	apply := func(ops ...*cellv1.Op) {
		t.Helper()
		data, err := cellstate.EncodeEntry(ops)
		if err != nil {
			t.Fatal(err)
		}
		index++
		for i, r := range f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}).([]cellstate.Result) {
			if r.Err != nil {
				t.Fatalf("op %d: %v", i, r.Err)
			}
		}
	}
	want := func(wants map[string][3]int64) {
		t.Helper()
		body := scrape(t, n.tm)
		for name, w := range wants {
			for i, fam := range []string{"wds_cell_domain_shards_unowned", "wds_cell_domain_shards_moving", "wds_cell_domain_consumers"} {
				if s := sampleValue(body, fam, `domain="`+name+`"`); s != strconv.FormatInt(w[i], 10) {
					t.Fatalf("%s{domain=%q} = %q; want %d\n%s", fam, name, s, w[i], body)
				}
			}
		}
		if c := strings.Count(body, "\nwds_cell_domain_shards_unowned{"); c != len(wants) {
			t.Fatalf("%d wds_cell_domain_shards_unowned series; want %d\n%s", c, len(wants), body)
		}
	}
	create := func(name string, shards uint32) *cellv1.Op {
		return &cellv1.Op{Op: &cellv1.Op_CreateDomain{CreateDomain: &cellv1.CreateDomain{Domain: &wdsv1.Domain{
			Name: name, Kind: wdsv1.DomainKind_DOMAIN_KIND_GLOBAL, Shards: shards, TtlMillis: 3000}}}}
	}
	join := func(id string, domains ...string) *cellv1.Op {
		return &cellv1.Op{Op: &cellv1.Op_Join{Join: &cellv1.Join{
			ConsumerId: id, Region: n.state.Region(), Endpoint: id + ":7000", Domains: domains, Incarnation: []byte(id + "1")}}}
	}

	want(map[string][3]int64{})
	apply(create("orders", 4), create("jobs", 2))
	apply(join("a", "orders"), join("b", "orders", "jobs"))
	apply(&cellv1.Op{Op: &cellv1.Op_Assign{Assign: &cellv1.Assign{Domain: "jobs", From: topology.Start.Bytes(), ConsumerId: "b"}}})
	want(map[string][3]int64{"orders": {4, 0, 2}, "jobs": {1, 0, 1}})

	apply(&cellv1.Op{Op: &cellv1.Op_DeleteDomain{DeleteDomain: &cellv1.DeleteDomain{Name: "orders"}}})
	want(map[string][3]int64{"jobs": {1, 0, 1}})
}
