package cell_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/topology"
)

// switchAuthority is a test Authority whose delegations can be withdrawn.
type switchAuthority struct {
	mu   sync.Mutex
	deny map[string]bool
}

func (a *switchAuthority) Covers(domain string, _ time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.deny[domain]
}

func (a *switchAuthority) set(domain string, deny bool) {
	a.mu.Lock()
	a.deny[domain] = deny
	a.mu.Unlock()
}

// TestDelegationSeam: contract (5). When the cell's authority stops
// covering a domain, the grants under it are revoked before the next ack
// and nothing new is granted there; other domains are untouched. When the
// authority covers it again, the shards are granted again.
func TestDelegationSeam(t *testing.T) {
	auth := &switchAuthority{deny: map[string]bool{}}
	c := celltest.New(t, 3, func(cfg *cell.Config) { cfg.Authority = auth })
	c.CreateDomain("jobs", topology.KindGlobal, 8, 3*time.Second)
	c.CreateDomain("other", topology.KindGlobal, 8, 3*time.Second)
	a := c.NewConsumer("a", []string{"jobs", "other"})
	b := c.NewConsumer("b", []string{"jobs", "other"})
	held := func(tc *celltest.Consumer, domain string) int {
		n := 0
		for _, s := range tc.Held() {
			if s.Domain == domain {
				n++
			}
		}
		return n
	}
	want := func(jobs, other int) func() error {
		return func() error {
			for _, tc := range []*celltest.Consumer{a, b} {
				if j, o := held(tc, "jobs"), held(tc, "other"); j != jobs || o != other {
					return fmt.Errorf("%s runs %d jobs, %d other; want %d, %d", tc.ID, j, o, jobs, other)
				}
			}
			return nil
		}
	}
	celltest.Eventually(t, 10*time.Second, want(4, 4))
	// Only what happens after the delegation goes counts (the initial
	// balancing revoked some shards for rebalance).
	seen := map[string]int{"a": len(a.Events()), "b": len(b.Events())}
	auth.set("jobs", true)
	celltest.Eventually(t, 5*time.Second, want(0, 4))
	for _, tc := range []*celltest.Consumer{a, b} {
		for _, e := range tc.Events()[seen[tc.ID]:] {
			if e.Kind == client.EventRevoke && e.Shard.Domain == "other" {
				t.Errorf("%s: domain other revoked: %+v", tc.ID, e)
			}
			if e.Kind == client.EventRevoke && e.Shard.Domain == "jobs" && e.Reason != "delegation" {
				t.Errorf("%s: jobs revoked for %q, want delegation", tc.ID, e.Reason)
			}
		}
	}
	// Nothing new is granted while the delegation is gone.
	time.Sleep(500 * time.Millisecond)
	if err := want(0, 4)(); err != nil {
		t.Fatal(err)
	}
	counts, err := c.OwnerCounts("jobs")
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 0 {
		t.Fatalf("jobs shards owned without a delegation: %v", counts)
	}
	auth.set("jobs", false)
	celltest.Eventually(t, 10*time.Second, want(4, 4))
	c.CheckHistory(t)
}
