package cell_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/internal/lease"
	"github.com/wdsio/wds/topology"
)

// These tests drive a cell of real nodes over TCP with a deadline-driven
// test delegator (celltest.Delegator). The lapse edge cases — a handover
// in flight, resumes through the lapse, a leader kill during it, a leader
// change under a renewing delegator — run on fake time in
// faketime_test.go. The bound checked there is the strictest one the cell
// can know: the last answered renewal's receive time + D·(1−ε), which is
// no earlier than the cell leader's own deadline (its send time + D·(1−ε))
// and well before the delegator's (r + D·(1+ε)), after which it would
// re-delegate.

const (
	delegTTL   = 3 * time.Second
	delegD     = 6 * time.Second // > T·(1+ε), with S = 3 s
	delegRenew = 200 * time.Millisecond
)

func delegatedCell(t *testing.T, nodes int, domains ...string) (*celltest.Cluster, *celltest.Delegator) {
	t.Helper()
	dg := celltest.NewDelegator(delegD, lease.DefaultDrift)
	c := celltest.New(t, nodes, celltest.WithDelegator(dg, delegRenew))
	for _, d := range domains {
		dg.Delegate(d, "", 1)
		c.CreateDomain(d, topology.KindGlobal, 4, delegTTL)
	}
	return c, dg
}

func held(tc *celltest.Consumer, domain string) int {
	n := 0
	for _, s := range tc.Held() {
		if s.Domain == domain {
			n++
		}
	}
	return n
}

// TestDelegationWithdrawAndReturn: contract (5). When the delegator stops
// listing a domain's delegation, its grants are revoked (reason delegation)
// and nothing new is granted there; other domains are untouched; the cell
// reports the delegation released once its grants ended. A new delegation
// (a higher generation) is granted again, with tokens of that generation.
func TestDelegationWithdrawAndReturn(t *testing.T) {
	c, dg := delegatedCell(t, 3, "jobs", "other")
	a := c.NewConsumer("a", []string{"jobs", "other"})
	b := c.NewConsumer("b", []string{"jobs", "other"})
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
	celltest.Eventually(t, 10*time.Second, want(2, 2))
	// Only what happens after the withdrawal counts (the initial
	// balancing revoked some shards for rebalance).
	seen := map[string]int{"a": len(a.Events()), "b": len(b.Events())}
	dg.Withdraw("jobs", "")
	celltest.Eventually(t, 5*time.Second, want(0, 2))
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
	celltest.Eventually(t, 5*time.Second, func() error {
		for _, id := range dg.Released() {
			if id == (cell.DelegationID{Domain: "jobs", Generation: 1}) {
				return nil
			}
		}
		return fmt.Errorf("released reports %v, want jobs generation 1", dg.Released())
	})
	// Nothing new is granted while the delegation is gone.
	time.Sleep(500 * time.Millisecond)
	if err := want(0, 2)(); err != nil {
		t.Fatal(err)
	}
	if counts, err := c.OwnerCounts("jobs"); err != nil || len(counts) != 0 {
		t.Fatalf("jobs shards owned without a delegation: %v, %v", counts, err)
	}
	dg.Delegate("jobs", "", 7)
	celltest.Eventually(t, 10*time.Second, want(2, 2))
	for _, tc := range []*celltest.Consumer{a, b} {
		for _, s := range tc.Held() {
			if s.Domain == "jobs" && s.Token.Generation != 7 {
				t.Errorf("%s holds %s under generation %d, want 7", tc.ID, s, s.Token.Generation)
			}
		}
	}
	c.CheckHistory(t)
}

// TestTwoKeySpacesOneCell: after a regional failover one cell holds two key
// spaces of a REGIONAL domain, here (carts, local) and (carts, eu-west).
// Their shards have the same ranges but are different keys: grants, the
// shard map, routing and the history checker keep them apart.
func TestTwoKeySpacesOneCell(t *testing.T) {
	dg := celltest.NewDelegator(delegD, lease.DefaultDrift)
	c := celltest.New(t, 1, celltest.WithDelegator(dg, delegRenew))
	dg.Delegate("carts", celltest.Region, 3)
	dg.Delegate("carts", "eu-west", 5)
	c.CreateDomain("carts", topology.KindRegional, 4, delegTTL)
	a := c.NewConsumer("a", []string{"carts"})
	b := c.NewConsumer("b", []string{"carts"})
	perSpace := func(tc *celltest.Consumer) map[string]int {
		out := map[string]int{}
		for _, s := range tc.Held() {
			out[s.Region]++
		}
		return out
	}
	celltest.Eventually(t, 10*time.Second, func() error {
		for _, tc := range []*celltest.Consumer{a, b} {
			if got := perSpace(tc); got[celltest.Region] != 2 || got["eu-west"] != 2 || len(got) != 2 {
				return fmt.Errorf("%s holds %v, want 2 in each key space", tc.ID, got)
			}
		}
		return nil
	})
	for _, tc := range []*celltest.Consumer{a, b} {
		for _, s := range tc.Held() {
			want := uint64(3)
			if s.Region == "eu-west" {
				want = 5
			}
			if s.Token.Generation != want {
				t.Errorf("%s holds %s/%s %s under generation %d, want %d", tc.ID, s.Domain, s.Region, s.Range, s.Token.Generation, want)
			}
		}
	}
	sm, err := c.ShardMap("carts")
	if err != nil {
		t.Fatal(err)
	}
	regions := map[string]int{}
	for _, sh := range sm.GetShards() {
		regions[sh.GetRegion()]++
		if sh.GetOwner() == "" {
			t.Errorf("shard %s/%v has no owner", sh.GetRegion(), sh.GetRange())
		}
	}
	if len(sm.GetShards()) != 8 || regions[celltest.Region] != 4 || regions["eu-west"] != 4 {
		t.Fatalf("shard map has %d shards by region %v, want 4 + 4", len(sm.GetShards()), regions)
	}
	// Routing: both key spaces, each with its own owners, and a plain
	// Lookup of a REGIONAL domain answers from the consumer's own region.
	key := uuid.MustParse("00000000-0000-0000-0000-000000000001")
	celltest.Eventually(t, 5*time.Second, func() error {
		local, ok1 := a.Routing().LookupIn("carts", celltest.Region, key)
		foreign, ok2 := a.Routing().LookupIn("carts", "eu-west", key)
		plain, ok3 := a.Routing().Lookup("carts", key)
		if !ok1 || !ok2 || !ok3 || local.Owner == "" || foreign.Owner == "" {
			return fmt.Errorf("routing: local %+v %v, eu-west %+v %v", local, ok1, foreign, ok2)
		}
		if local.Region != celltest.Region || foreign.Region != "eu-west" || plain != local {
			return fmt.Errorf("routing regions: local %q, eu-west %q, plain %+v", local.Region, foreign.Region, plain)
		}
		if local.Token.Generation != 3 || foreign.Token.Generation != 5 {
			return fmt.Errorf("routing tokens: %s and %s", local.Token, foreign.Token)
		}
		return nil
	})
	// Withdraw eu-west (a fail-back): only its grants go.
	dg.Withdraw("carts", "eu-west")
	celltest.Eventually(t, 5*time.Second, func() error {
		for _, tc := range []*celltest.Consumer{a, b} {
			if got := perSpace(tc); got[celltest.Region] != 2 || got["eu-west"] != 0 {
				return fmt.Errorf("%s holds %v, want 2 local and none of eu-west", tc.ID, got)
			}
		}
		return nil
	})
	// Same ranges, two key spaces: no overlap for the checker.
	c.CheckHistory(t)
}
