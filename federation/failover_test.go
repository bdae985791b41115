package federation_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wdsio/wds/chaos"
	"github.com/wdsio/wds/global/globalstate"
	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/internal/lease"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// failbackAfter is the failover tests' stable period.
const failbackAfter = 3 * time.Second

// domRegional is a REGIONAL domain of the failover tests.
func domRegional(name string, shards uint32, failover wdsv1.Failover) *wdsv1.Domain {
	d := dom(name, kRegional, shards)
	d.Failover = failover
	if failover != wdsv1.Failover_FAILOVER_MANUAL {
		d.FailbackAfterMillis = failbackAfter.Milliseconds()
	}
	return d
}

// handoverGaps returns, per shard of a key space, the gap between the end
// of from's last ownership and the start of to's first ownership after
// it, sorted.
func handoverGaps(h *chaos.History, domain, keySpace, from, to string) []time.Duration {
	return chaos.HandoverGaps(h.Intervals(), domain, keySpace,
		func(c string) bool { return c == from }, func(c string) bool { return c == to })
}

// TestFederationRegionalFailover: every node of us-east and its consumer
// die (T = 5 s, failback_after 1 s). Once us-east's delegations are past D·(1+ε), its REGIONAL key space
// of carts (failover: auto) is served by the first region of its failover
// list with consumers of carts, eu-west, balanced over eu-west's
// consumers beside eu-west's own key space; ap-south keeps its own. Then
// us-east restarts on its data dir with a new consumer: once it has
// renewed for failback_after, the key space moves home gracefully, each
// shard's gap a handover's: the restarted cell's log still lists the dead
// consumer and its grants, but the global group says their delegation
// ended, so they end at once, and a consumer that holds nothing and has
// not come back keeps no share of the balance. The checker finds no overlap across
// regions and tokens increase across cells.
func TestFederationRegionalFailover(t *testing.T) {
	f := newFed(t, threeRegions)
	// T = 5 s and failback_after 1 s: the restarted cell's log still has
	// its dead consumer's grants, whose leases its new leader would hold
	// for T·(1+ε) after its accession; the global group tells it their
	// delegation ended (expired), so they end at once and do not stall
	// the fail-back.
	carts := domT("carts", kRegional, 8, churnTTL)
	carts.FailbackAfterMillis = time.Second.Milliseconds()
	f.applyTopology(carts)
	a1 := f.consumer("us-east", "a1", "carts")
	b1 := f.consumer("eu-west", "b1", "carts")
	b2 := f.consumer("eu-west", "b2", "carts")
	c1 := f.consumer("ap-south", "c1", "carts")
	waitHeld(t, "each region holds its own", allOf(
		balanced("carts/us-east", map[string]int{"a1": 8}),
		balanced("carts/eu-west", map[string]int{"b1": 4, "b2": 4}),
		balanced("carts/ap-south", map[string]int{"c1": 8}),
	), a1, b1, b2, c1)

	killed := time.Now()
	a1.Kill()
	f.kill(f.index("us-east"))
	waitHeld(t, "us-east's key space served by eu-west", allOf(
		balanced("carts/us-east", map[string]int{"b1": 4, "b2": 4}),
		balanced("carts/eu-west", map[string]int{"b1": 4, "b2": 4}),
		balanced("carts/ap-south", map[string]int{"c1": 8}),
	), b1, b2, c1)
	took := time.Since(killed)
	gc := f.cfgs[0].Global
	d := gc.Duration(churnTTL)
	hold := lease.Params{TTL: d, Drift: gc.Drift}.LeaderHold()
	// A figure, not an assertion: the safety property is the checker's.
	t.Logf("FIGURE failover: us-east's key space served by eu-west %v after the kill (D = %v, D·(1+ε) + 2 s = %v)", took.Round(time.Millisecond), d, hold+2*time.Second)
	checkHistory(t, f.History)

	// Status, as the global leader sees it.
	g := f.globalLeader()
	var served []string
	for _, k := range g.State().RegionalKeySpaces() {
		if k.Region == "us-east" {
			served = k.Serving
		}
	}
	if fmt.Sprint(served) != "[eu-west]" {
		t.Fatalf("us-east's key space served by %v, want [eu-west]", served)
	}
	// The shard map from ap-south's endpoint (a third region): every shard
	// of us-east's key space, delegated to eu-west, owned there.
	cc, err := grpc.NewClient(f.cfgs[f.index("ap-south")].Cell.Peers[0].GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	celltest.Eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		sm, err := wdsv1.NewAdminClient(cc).ShardMap(ctx, &wdsv1.ShardMapRequest{Domain: "carts"})
		if err != nil {
			return err
		}
		by := map[string]int{}
		for _, sh := range sm.GetShards() {
			owner := sh.GetOwner()
			if owner != "" {
				owner = owner[:1] // b1, b2 → b
			}
			by[sh.GetRegion()+"@"+sh.GetDelegatedTo()+"/"+owner]++
		}
		if by["us-east@eu-west/b"] != 8 || by["eu-west@eu-west/b"] != 8 || by["ap-south@ap-south/c"] != 8 {
			return fmt.Errorf("ap-south's shard map of carts (key space@delegated_to/owner): %v", by)
		}
		return nil
	})
	// The metrics, on a surviving voter (it shares its process's registry
	// with its cell member).
	ap := f.nodes[f.index("ap-south")].Cell
	celltest.Eventually(t, 5*time.Second, func() error {
		fo := celltest.MetricWith(ap, "wds_global_keyspace_failovers_total", "domain", "carts", "key_space", "us-east")
		sv := celltest.MetricWith(ap, "wds_global_keyspace_serving", "domain", "carts", "key_space", "us-east", "serving", "eu-west")
		home := celltest.MetricWith(ap, "wds_global_keyspace_serving", "domain", "carts", "key_space", "us-east", "serving", "us-east")
		if fo != 1 || sv != 1 || home != 0 {
			return fmt.Errorf("failovers_total %v, serving{eu-west} %v, serving{us-east} %v; want 1, 1, 0", fo, sv, home)
		}
		return nil
	})

	// us-east comes back: fail-back once it has renewed for failbackAfter.
	f.start(f.index("us-east"))
	back := time.Now()
	a3 := f.consumer("us-east", "a3", "carts")
	waitHeld(t, "us-east's key space home", allOf(
		balanced("carts/us-east", map[string]int{"a3": 8}),
		balanced("carts/eu-west", map[string]int{"b1": 4, "b2": 4}),
	), a3, b1, b2, c1)
	t.Logf("FIGURE fail-back: home %v after the restart (failback_after 1s)", time.Since(back).Round(time.Millisecond))
	var gaps []time.Duration
	for _, from := range []string{"b1", "b2"} {
		gaps = append(gaps, handoverGaps(f.History, "carts", "us-east", from, "a3")...)
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	if len(gaps) != 8 {
		t.Fatalf("fail-back gaps of %d shards, want 8: %v", len(gaps), gaps)
	}
	t.Logf("FIGURE fail-back per-shard gap p50 %v, max %v", celltest.Percentile(gaps, 50).Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
	// A graceful handover takes a few hundred ms; waiting out the old
	// grants' leases would take most of T.
	if max := gaps[len(gaps)-1]; max >= churnTTL/2 {
		t.Errorf("a shard was unserved for %v during fail-back: not graceful (T = %v)", max, churnTTL)
	}
	checkHistory(t, f.History)
	checkTokensAcrossCells(t, f.History)
}

// TestFederationManualFailover: a key space with failover: manual stays
// unserved while its region is down; wds failover (GlobalAdmin.Failover)
// is refused while the region renews and while it still holds the key
// space, moves it once the region's delegation has expired, and moves it
// back once the region is live again. Nothing fails back on its own.
func TestFederationManualFailover(t *testing.T) {
	f := newFed(t, threeRegions)
	f.applyTopology(domRegional("ledger", 4, wdsv1.Failover_FAILOVER_MANUAL))
	a1 := f.consumer("us-east", "a1", "ledger")
	b1 := f.consumer("eu-west", "b1", "ledger")
	waitHeld(t, "each region holds its own", allOf(
		balanced("ledger/us-east", map[string]int{"a1": 4}),
		balanced("ledger/eu-west", map[string]int{"b1": 4}),
	), a1, b1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	failover := func(to string) error {
		_, err := f.globalLeader().Failover(ctx, "ledger", "us-east", to)
		return err
	}
	wantRefused := func(to, says string) {
		t.Helper()
		err := failover(to)
		if !errors.Is(err, globalstate.ErrFailedPrecondition) || !strings.Contains(err.Error(), says) {
			t.Fatalf("failover to %s: %v, want FAILED_PRECONDITION saying %q", to, err, says)
		}
		t.Logf("refused: %v", err)
	}
	wantRefused("eu-west", "is renewing")

	a1.Kill()
	f.kill(f.index("us-east"))
	// Until the global leader expires us-east's delegation: refused.
	celltest.Eventually(t, 10*time.Second, func() error {
		if err := failover("eu-west"); err == nil || !strings.Contains(err.Error(), "still holds") {
			return fmt.Errorf("failover: %v", err)
		}
		return nil
	})
	// Past D·(1+ε) and a few placement rounds: nobody serves it.
	gc := f.cfgs[0].Global
	time.Sleep(lease.Params{TTL: gc.Duration(ttl), Drift: gc.Drift}.LeaderHold() + time.Second)
	if h := held(b1); len(h["ledger/us-east"]) != 0 {
		t.Fatalf("a manual key space was served without an operator: %v", h)
	}
	celltest.Eventually(t, 10*time.Second, func() error { return failover("eu-west") })
	waitHeld(t, "served by eu-west after wds failover", allOf(
		balanced("ledger/us-east", map[string]int{"b1": 4}),
		balanced("ledger/eu-west", map[string]int{"b1": 4}),
	), b1)

	// us-east is back: the key space stays with eu-west past any stable
	// period, until it is moved home.
	f.start(f.index("us-east"))
	a2 := f.consumer("us-east", "a2", "ledger")
	celltest.Eventually(t, 20*time.Second, func() error { return renewedAll(f.globalLeader(), f.regions) })
	time.Sleep(failbackAfter + time.Second)
	if h := held(a2, b1); h["ledger/us-east"]["b1"] != 4 {
		t.Fatalf("a manual key space moved on its own: %v", h)
	}
	if err := failover("us-east"); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, "home after wds failover back", allOf(
		balanced("ledger/us-east", map[string]int{"a2": 4}),
		balanced("ledger/eu-west", map[string]int{"b1": 4}),
	), a2, b1)
	checkHistory(t, f.History)
}
