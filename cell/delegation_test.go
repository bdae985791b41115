package cell_test

import (
	"context"
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

// These tests drive a cell with a deadline-driven test delegator
// (celltest.Delegator) and check contract (5): no grant outlives its
// delegation. The bound checked is the strictest one the cell can know:
// the last answered renewal's receive time + D·(1−ε), which is no earlier
// than the cell leader's own deadline (its send time + D·(1−ε)) and well
// before the delegator's (r + D·(1+ε)), after which it would re-delegate.

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

// twoBalanced starts consumers a and b of jobs and waits until each holds
// two of its four shards.
func twoBalanced(t *testing.T, c *celltest.Cluster) (a, b *celltest.Consumer) {
	t.Helper()
	a = c.NewConsumer("a", []string{"jobs"})
	b = c.NewConsumer("b", []string{"jobs"})
	celltest.Eventually(t, 10*time.Second, func() error {
		if na, nb := held(a, "jobs"), held(b, "jobs"); na != 2 || nb != 2 {
			return fmt.Errorf("a holds %d, b %d, want 2 each", na, nb)
		}
		return nil
	})
	return a, b
}

// wantWithin fails the test for every ownership interval that does not end
// by bound: still open, or ended after it.
func wantWithin(t *testing.T, c *celltest.Cluster, bound time.Time) {
	t.Helper()
	n := 0
	for _, iv := range c.History.Intervals() {
		n++
		switch {
		case iv.End.IsZero():
			t.Errorf("%s still believes it owns %s %s (token %s) after the delegation's end", iv.Consumer, iv.Domain, iv.Range, iv.Token)
		case iv.End.After(bound):
			t.Errorf("%s owned %s %s (token %s) until %v past the delegation's end", iv.Consumer, iv.Domain, iv.Range, iv.Token, iv.End.Sub(bound).Round(time.Millisecond))
		}
	}
	if n == 0 {
		t.Fatal("no ownership recorded")
	}
	c.CheckHistory(t)
}

// waitPast waits until the delegation bound plus slack has passed.
func waitPast(bound time.Time, slack time.Duration) {
	time.Sleep(time.Until(bound.Add(slack)))
}

// TestDelegationLapseHandover is the probe that found the holes in the
// first delegation seam: a handover a→b is in flight (a's handler is slow
// to return) when the delegator stops renewing. Whether b is promoted on
// a's Release or on a's expiry, nobody may believe it owns a shard past
// the delegation's end.
func TestDelegationLapseHandover(t *testing.T) {
	for _, tc := range []struct {
		name string
		// linger is how long a's handler runs on after its context ends.
		linger time.Duration
	}{
		{"release", 2 * time.Second},         // Release lands before the lapse
		{"expiry", 2*delegTTL + time.Second}, // a never releases: its grant expires
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, dg := delegatedCell(t, 1, "jobs")
			a := c.NewConsumer("a", []string{"jobs"}, func(cfg *client.Config) {
				cfg.Handler = func(ctx context.Context, _ client.Shard) {
					<-ctx.Done()
					time.Sleep(tc.linger)
				}
			})
			celltest.Eventually(t, 10*time.Second, func() error {
				if n := held(a, "jobs"); n != 4 {
					return fmt.Errorf("a holds %d, want 4", n)
				}
				return nil
			})
			b := c.NewConsumer("b", []string{"jobs"})
			celltest.Eventually(t, 10*time.Second, func() error {
				if _, revokes, _ := a.Counts(); revokes < 2 {
					return fmt.Errorf("a saw %d revocations, want the handover started", revokes)
				}
				return nil
			})
			bound := dg.Stop()
			waitPast(bound, 1500*time.Millisecond)
			wantWithin(t, c, bound)
			if held(a, "jobs")+held(b, "jobs") != 0 {
				t.Errorf("after the lapse a holds %d and b %d shards", held(a, "jobs"), held(b, "jobs"))
			}
			if counts, err := c.OwnerCounts("jobs"); err != nil || len(counts) != 0 {
				t.Errorf("shard map after the lapse: %v, %v", counts, err)
			}
		})
	}
}

// TestDelegationLapseWelcome: a consumer that resumes its session (a new
// stream, the Welcome) while the delegation lapses is not told its grants
// run on.
func TestDelegationLapseWelcome(t *testing.T) {
	c, dg := delegatedCell(t, 1, "jobs")
	a := c.NewConsumer("a", []string{"jobs"})
	celltest.Eventually(t, 10*time.Second, func() error {
		if n := held(a, "jobs"); n != 4 {
			return fmt.Errorf("a holds %d, want 4", n)
		}
		return nil
	})
	bound := dg.Stop()
	// Blip the stream now and then through the lapse: each reconnect
	// resumes the session with a Welcome.
	for time.Now().Before(bound.Add(-500 * time.Millisecond)) {
		a.Net.Cut()
		time.Sleep(50 * time.Millisecond)
		a.Net.Heal()
		time.Sleep(400 * time.Millisecond)
	}
	waitPast(bound, 1500*time.Millisecond)
	wantWithin(t, c, bound)
}

// TestDelegationLapseLeaderKill: the cell leader dies as the delegation
// lapses. The new leader has no deadline for it (monotonic deadlines do
// not move between nodes) and cannot renew: it must withhold acks for the
// domain rather than extend leases it cannot vouch for.
func TestDelegationLapseLeaderKill(t *testing.T) {
	c, dg := delegatedCell(t, 3, "jobs")
	twoBalanced(t, c)
	bound := dg.Stop()
	c.Kill(c.Leader())
	waitPast(bound, 2*time.Second)
	wantWithin(t, c, bound)
}

// TestDelegationLeaderChangeNoChurn: while the delegator keeps renewing, a
// cell leader change costs nothing: the new leader withholds acks until its
// first renewal is answered (milliseconds), and revokes nothing.
func TestDelegationLeaderChangeNoChurn(t *testing.T) {
	c, dg := delegatedCell(t, 3, "jobs")
	a, b := twoBalanced(t, c)
	for kill := 0; kill < 2; kill++ {
		ga, ra, la := a.Counts()
		gb, rb, lb := b.Counts()
		old := c.Leader()
		c.Kill(old)
		celltest.Eventually(t, 10*time.Second, func() error {
			if l := c.Leader(); l < 0 || l == old {
				return fmt.Errorf("no new leader")
			}
			return nil
		})
		// Long enough for any lapse to show: a whole TTL after the new
		// leader took over.
		time.Sleep(delegTTL + 500*time.Millisecond)
		if g, r, l := a.Counts(); g != ga || r != ra || l != la {
			t.Errorf("kill %d: a saw grants/revokes/losses %d/%d/%d → %d/%d/%d", kill, ga, ra, la, g, r, l)
		}
		if g, r, l := b.Counts(); g != gb || r != rb || l != lb {
			t.Errorf("kill %d: b saw grants/revokes/losses %d/%d/%d → %d/%d/%d", kill, gb, rb, lb, g, r, l)
		}
		c.Start(old)
	}
	if dg.Answered() == 0 {
		t.Fatal("the delegator answered no renewal")
	}
	c.CheckHistory(t)
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
