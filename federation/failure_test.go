package federation_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/wdsio/wds/global"
	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/internal/faults"
	"github.com/wdsio/wds/internal/lease"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// cutFromGlobal cuts region's node off the global group while its cell
// keeps serving its consumers: its global voter's Raft traffic, and its
// cell's coordinator streams to the other regions' nodes.
func (f *fed) cutFromGlobal(region string) {
	f.Net.Isolate(globalID(region), faults.Raft)
	for _, o := range f.regions {
		if o != region {
			f.Net.Cut(cellID(region), cellID(o), faults.GRPC)
		}
	}
}

func (f *fed) healGlobal(region string) {
	f.Net.Heal(globalID(region))
	f.Net.Heal(cellID(region))
}

// churn sums what consumers saw since a baseline: grants, revocations and
// leases lost.
type churn struct{ grants, revokes, losts int }

func churnOf(cs ...*celltest.Consumer) map[string]churn {
	out := map[string]churn{}
	for _, c := range cs {
		g, r, l := c.Counts()
		out[c.ID] = churn{g, r, l}
	}
	return out
}

// TestFederationRegionCutOff: the whole cycle of a region cut off from the
// global group while its consumers stay connected to its cell. The cell
// stops extending its consumers' leases before its delegations' deadline
// (fenced), so they stop believing they own the region's GLOBAL ranges and
// its REGIONAL key space before the global group gives those to the other
// regions: the GLOBAL ranges to the live consumers, the key space to the
// first region of eu-west's failover list with consumers of it, us-east
// (the checker over all regions finds no overlap). Once healed, the region
// is given its GLOBAL share again, and, once it has renewed for
// failback_after, its key space back, each shard's gap a graceful
// handover's.
func TestFederationRegionCutOff(t *testing.T) {
	f := newFed(t, threeRegions)
	f.applyTopology(dom("prices", kGlobal, 12), domRegional("orders", 4, wdsv1.Failover_FAILOVER_AUTO))
	a1 := f.consumer("us-east", "a1", "prices", "orders")
	b1 := f.consumer("eu-west", "b1", "prices", "orders")
	c1 := f.consumer("ap-south", "c1", "prices")
	all := []*celltest.Consumer{a1, b1, c1}
	waitHeld(t, "before the cut", allOf(
		balanced("prices/", map[string]int{"a1": 4, "b1": 4, "c1": 4}),
		balanced("orders/eu-west", map[string]int{"b1": 4}),
	), all...)

	cut := time.Now()
	f.cutFromGlobal("eu-west")
	// b1 stays connected to eu-west's cell, which can no longer renew.
	waitHeld(t, "eu-west's share re-delegated, its key space failed over", allOf(
		balanced("prices/", map[string]int{"a1": 6, "c1": 6}),
		balanced("orders/us-east", map[string]int{"a1": 4}),
		balanced("orders/eu-west", map[string]int{"a1": 4}),
	), all...)
	took := time.Since(cut)
	d := f.cfgs[0].Global.Duration(ttl)
	bound := lease.Params{TTL: d, Drift: f.cfgs[0].Global.Drift}.LeaderHold() + 3*time.Second
	// A figure, not an assertion (a loaded machine stretches it): the
	// safety property is the checker's, below.
	t.Logf("eu-west's GLOBAL ranges held elsewhere %v after the cut (D = %v, D·(1+ε) + 3 s = %v)", took.Round(time.Millisecond), d, bound)
	if h := held(b1); len(h["orders/eu-west"]) != 0 || len(h["prices/"]) != 0 {
		t.Fatalf("b1, behind a cut-off cell, still believes it owns %v", h)
	}
	checkHistory(t, f.History)

	f.healGlobal("eu-west")
	healed := time.Now()
	waitHeld(t, "healed, failed back", allOf(
		balanced("prices/", map[string]int{"a1": 4, "b1": 4, "c1": 4}),
		balanced("orders/eu-west", map[string]int{"b1": 4}),
	), all...)
	gaps := handoverGaps(f.History, "orders", "eu-west", "a1", "b1")
	if len(gaps) != 4 {
		t.Fatalf("fail-back gaps of %d shards, want 4: %v", len(gaps), gaps)
	}
	t.Logf("key space home %v after the heal (failback_after %v); per-shard gap p50 %v, max %v", time.Since(healed).Round(time.Millisecond), failbackAfter,
		celltest.Percentile(gaps, 50).Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
	if max := gaps[len(gaps)-1]; max >= d {
		t.Errorf("a shard was unserved for %v during fail-back: not graceful (D = %v)", max, d)
	}
	checkHistory(t, f.History)
}

// TestFederationGlobalLeaderKillNoChurn: the global leader's voter stops
// (its region's cell keeps serving); a new global leader takes over with
// its accession grace, cells renew with it, and no consumer anywhere loses
// or moves a shard.
func TestFederationGlobalLeaderKillNoChurn(t *testing.T) {
	f := newFed(t, threeRegions, withOutage(8*time.Second))
	// Zero-churn tests use T = 5 s: a 2-core machine running other test
	// binaries beside this one may pause a consumer longer than 2 s.
	f.applyTopology(domT("prices", kGlobal, 12, churnTTL), domT("orders", kRegional, 4, churnTTL), domT("leader", kUnit, 1, churnTTL))
	a1 := f.consumer("us-east", "a1", "prices", "orders", "leader")
	b1 := f.consumer("eu-west", "b1", "prices", "orders", "leader")
	c1 := f.consumer("ap-south", "c1", "prices", "orders")
	all := []*celltest.Consumer{a1, b1, c1}
	waitHeld(t, "settled", allOf(
		balanced("prices/", map[string]int{"a1": 4, "b1": 4, "c1": 4}),
		unitOnce("leader"),
	), all...)
	time.Sleep(time.Second) // let placement settle its last round
	before := churnOf(all...)

	g := f.globalLeader()
	killed := time.Now()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	var rest []*global.Node
	for _, n := range f.nodes {
		if n != nil && n.Global != nil && n.Global != g {
			rest = append(rest, n.Global)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ng, err := global.WaitLeader(ctx, rest...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("global leader %s stopped; %s leads %v later", g.ID(), ng.ID(), time.Since(killed).Round(time.Millisecond))
	// Renewals resume with the new leader: every region renewed.
	celltest.Eventually(t, 10*time.Second, func() error { return renewedAll(ng, f.regions) })
	t.Logf("every region renewing again %v after the kill", time.Since(killed).Round(time.Millisecond))
	// A whole delegation period later, nothing moved.
	time.Sleep(f.cfgs[0].Global.Duration(churnTTL) + time.Second)
	if after := churnOf(all...); !equalChurn(before, after) {
		t.Fatalf("consumers churned across the global leader change: before %v, after %v", before, after)
	}
	checkHistory(t, f.History)
}

// TestFederationGlobalOutageNoChurn: the global group is unavailable (no
// voter reaches another) for less than S; cells ride it out: no consumer
// loses or moves a shard.
func TestFederationGlobalOutageNoChurn(t *testing.T) {
	f := newFed(t, threeRegions, withOutage(8*time.Second))
	f.applyTopology(domT("prices", kGlobal, 12, churnTTL), domT("orders", kRegional, 4, churnTTL))
	a1 := f.consumer("us-east", "a1", "prices", "orders")
	b1 := f.consumer("eu-west", "b1", "prices", "orders")
	c1 := f.consumer("ap-south", "c1", "prices", "orders")
	all := []*celltest.Consumer{a1, b1, c1}
	waitHeld(t, "settled", balanced("prices/", map[string]int{"a1": 4, "b1": 4, "c1": 4}), all...)
	time.Sleep(time.Second)
	before := churnOf(all...)

	for _, r := range f.regions {
		f.Net.Isolate(globalID(r), faults.Raft)
	}
	time.Sleep(2500 * time.Millisecond) // S is 8 s
	for _, r := range f.regions {
		f.Net.Heal(globalID(r))
	}
	g := f.globalLeader()
	celltest.Eventually(t, 10*time.Second, func() error { return renewedAll(g, f.regions) })
	time.Sleep(f.cfgs[0].Global.Duration(churnTTL))
	if after := churnOf(all...); !equalChurn(before, after) {
		t.Fatalf("consumers churned across a %v global outage (S = 8 s): before %v, after %v", 2500*time.Millisecond, before, after)
	}
	checkHistory(t, f.History)
}

func equalChurn(a, b map[string]churn) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// renewedAll reports whether the global leader g answered a renewal of
// every region within the last second.
func renewedAll(g *global.Node, regions []string) error {
	at := g.Renewals()
	for _, r := range regions {
		if t, ok := at[r]; !ok || time.Since(t) > time.Second {
			return fmt.Errorf("region %s last renewed at %v (renewals %v)", r, t, at)
		}
	}
	return nil
}

// TestFederationCellLeaderKillNoChurn: a 3-node cell under delegation
// loses its leader (the whole federation node, its global voter with it
// when it had one): the cell's new leader is unknown to the delegations
// until its first renewal (it withholds, revokes nothing), and no consumer
// anywhere loses or moves a shard.
func TestFederationCellLeaderKillNoChurn(t *testing.T) {
	f := newFed(t, threeRegions, withOutage(5*time.Second), withCellNodes("us-east", 3))
	// T must cover a cell election plus the new leader's first renewal
	// across regions (its view of the delegations is unknown until then,
	// so it withholds acks): 5 s, not the 2 s of the other tests.
	f.applyTopology(domT("prices", kGlobal, 12, churnTTL), domT("orders", kRegional, 4, churnTTL))
	a1 := f.consumer("us-east", "a1", "prices", "orders")
	a2 := f.consumer("us-east", "a2", "prices", "orders")
	b1 := f.consumer("eu-west", "b1", "prices", "orders")
	all := []*celltest.Consumer{a1, a2, b1}
	waitHeld(t, "settled", allOf(
		balanced("prices/", map[string]int{"a1": 4, "a2": 4, "b1": 4}),
		balanced("orders/us-east", map[string]int{"a1": 2, "a2": 2}),
	), all...)
	time.Sleep(time.Second)
	before := churnOf(all...)

	leader := -1
	for i := f.index("us-east"); i < f.index("us-east")+3; i++ {
		if f.nodes[i].Cell.IsLeader() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no us-east cell leader")
	}
	killed := time.Now()
	f.kill(leader)
	t.Logf("killed us-east's cell leader %s (global voter: %v)", f.cfgs[leader].Cell.NodeID, f.cfgs[leader].Global != nil)
	celltest.Eventually(t, 10*time.Second, func() error {
		for i := f.index("us-east"); i < f.index("us-east")+3; i++ {
			if f.nodes[i] != nil && f.nodes[i].Cell.IsLeader() {
				return nil
			}
		}
		return fmt.Errorf("no new us-east cell leader")
	})
	g := f.globalLeader()
	celltest.Eventually(t, 10*time.Second, func() error { return renewedAll(g, f.regions) })
	t.Logf("new cell leader renewing %v after the kill", time.Since(killed).Round(time.Millisecond))
	time.Sleep(f.cfgs[0].Global.Duration(churnTTL) + time.Second)
	if after := churnOf(all...); !equalChurn(before, after) {
		t.Fatalf("consumers churned across the cell leader kill: before %v, after %v", before, after)
	}
	checkHistory(t, f.History)
}

// TestFederationCellLogLost is contract (6): us-east's cell loses its log
// (its node is stopped, its cell data dir deleted, and it restarts empty,
// within D, while the global group still holds its delegation). The
// fresh cell must not continue the old generation with its fresh log's
// low indexes, which would hand out tokens below those already used for
// the same keys. The delegation was confirmed (the cell's renewals listed
// it as held); the first renewal that no longer does gets it withdrawn,
// and once it expires the key space is delegated again under a new
// generation: every token after the loss is above every token before it.
func TestFederationCellLogLost(t *testing.T) {
	f := newFed(t, threeRegions)
	f.applyTopology(dom("orders", kRegional, 4))
	a1 := f.consumer("us-east", "a1", "orders")
	waitHeld(t, "us-east holds its key space", balanced("orders/us-east", map[string]int{"a1": 4}), a1)
	var before uint64
	for _, s := range a1.Owned() {
		before = max(before, s.Token.Generation)
	}
	celltest.Eventually(t, 10*time.Second, func() error {
		for _, dl := range f.globalLeader().State().Delegations("us-east") {
			if dl.Region == "us-east" && !dl.Confirmed {
				return fmt.Errorf("delegation %+v not confirmed yet", dl)
			}
		}
		return nil
	})

	i := f.index("us-east")
	f.kill(i)
	if err := os.RemoveAll(f.cfgs[i].Cell.DataDir); err != nil {
		t.Fatal(err)
	}
	lost := time.Now()
	f.start(i)
	celltest.Eventually(t, 30*time.Second, func() error {
		h := held(a1)["orders/us-east"]
		if h["a1"] != 4 {
			return fmt.Errorf("a1 holds %v of orders/us-east", h)
		}
		for _, s := range a1.Owned() {
			if s.Token.Generation <= before {
				return fmt.Errorf("a1 holds %s under token %s: generation %d is not above %d, the one before the loss", s.Range, s.Token, s.Token.Generation, before)
			}
		}
		return nil
	})
	t.Logf("us-east's key space held again under a new generation %v after its cell lost its log (D = %v)", time.Since(lost).Round(time.Millisecond), f.cfgs[0].Global.Duration(ttl))
	checkHistory(t, f.History)
	checkTokensAcrossCells(t, f.History)
}
