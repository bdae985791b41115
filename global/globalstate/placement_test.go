package globalstate

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// settle runs placement rounds the way the global leader does, with every
// live region's cell releasing what is withdrawn from it at once, until
// nothing changes. It checks the cap on moves in flight every round and
// returns the rounds taken.
func (h *harness) settle(in PlaceInput) int {
	h.t.Helper()
	for round := 1; round <= 100; round++ {
		ops := h.state().Place(in)
		if len(ops) > 0 {
			h.ok(ops...)
		}
		for _, name := range []string{"prices", "leader", "orders"} {
			if _, deleting, _ := h.state().Domain(name); deleting {
				continue // a domain being deleted is withdrawn whole
			}
			if sh, err := h.state().ShardHolders(name); err == nil {
				n := map[string]int{}
				for _, s := range sh {
					if s.Withdrawing {
						n[s.Region]++
					}
				}
				for ks, c := range n {
					if c > in.MaxMoves {
						h.t.Fatalf("round %d: %d shards of %s/%q withdrawing at once, cap %d", round, c, name, ks, in.MaxMoves)
					}
				}
			}
		}
		var released []*globalv1.Op
		for _, dl := range h.state().Delegations("") {
			if dl.Withdrawing && in.Live[dl.Holder] {
				released = append(released, opReleased(dl.Domain, dl.Region, dl.Holder, dl.Generation, dl.Ranges...))
			}
		}
		if len(released) > 0 {
			h.ok(released...) // the cells relinquished exactly what was withdrawn
		}
		if len(ops) == 0 && len(released) == 0 {
			return round
		}
	}
	h.t.Fatal("placement did not settle in 100 rounds")
	return 0
}

// count returns how many shards of a key space each region holds.
func (h *harness) count(domain, region string) map[string]int {
	out := map[string]int{}
	for _, x := range h.holders(domain, region) {
		out[x]++
	}
	return out
}

// wantApportioned checks the ⌊n/c⌋/⌈n/c⌉ promise: every live consumer
// federation-wide can hold ⌊n/c⌋ or ⌈n/c⌉ of the unpinned shards once its
// cell balances its region's share, and a region without consumers holds
// none of them.
func wantApportioned(t *testing.T, got map[string]int, consumers map[string]int, n int) {
	t.Helper()
	c, sum := 0, 0
	for _, k := range consumers {
		c += k
	}
	for r, k := range got {
		if r != "" {
			sum += k
		}
	}
	if sum != n {
		t.Fatalf("holdings %v sum to %d, want %d", got, sum, n)
	}
	for r, k := range got {
		cr := consumers[r]
		if cr == 0 {
			if k != 0 {
				t.Fatalf("region %s without consumers holds %d (holdings %v)", r, k, got)
			}
			continue
		}
		if k < cr*(n/c) || k > cr*((n+c-1)/c) {
			t.Fatalf("region %s with %d of %d consumers holds %d of %d: its consumers cannot each get ⌊n/c⌋ or ⌈n/c⌉ (holdings %v)", r, cr, c, k, n, got)
		}
	}
}

var allLive = map[string]bool{"us-east": true, "eu-west": true, "ap-south": true}

func load(domain string, counts map[string]int) map[string]map[string]int {
	out := map[string]map[string]int{}
	for r, c := range counts {
		out[r] = map[string]int{domain: c}
	}
	return out
}

func TestPlaceGlobalByConsumers(t *testing.T) {
	h := newHarness(t)
	h.ok(opTopology(threeRegions, dom("prices", global, 64)))

	// Nobody consumes it yet: spread evenly over the live regions.
	h.settle(PlaceInput{Live: allLive, MaxMoves: 4})
	wantApportioned(t, h.count("prices", ""), map[string]int{"us-east": 1, "eu-west": 1, "ap-south": 1}, 64)

	for _, cons := range []map[string]int{
		{"us-east": 3, "eu-west": 2},
		{"us-east": 3, "eu-west": 2, "ap-south": 5},
		{"us-east": 1, "eu-west": 1, "ap-south": 1},
		{"eu-west": 7},
		{"us-east": 2, "eu-west": 63},
	} {
		before := h.holders("prices", "")
		rounds := h.settle(PlaceInput{Live: allLive, Consumers: load("prices", cons), MaxMoves: 8})
		after := h.count("prices", "")
		wantApportioned(t, after, cons, 64)
		moved := 0
		for i, x := range h.holders("prices", "") {
			if x != before[i] {
				moved++
			}
		}
		t.Logf("consumers %v: holdings %v, %d shards moved, %d rounds", cons, after, moved, rounds)
	}
}

func TestPlaceMinimalMoves(t *testing.T) {
	// From an even spread, a region gaining consumers takes only what the
	// quotas move.
	h := newHarness(t)
	h.ok(opTopology(threeRegions, dom("prices", global, 60)))
	cons := map[string]int{"us-east": 1, "eu-west": 1, "ap-south": 1}
	h.settle(PlaceInput{Live: allLive, Consumers: load("prices", cons), MaxMoves: 60})
	before := h.holders("prices", "")
	cons["ap-south"] = 4 // 6 consumers: 10 each; ap-south 40, the others 10
	h.settle(PlaceInput{Live: allLive, Consumers: load("prices", cons), MaxMoves: 60})
	moved := 0
	for i, x := range h.holders("prices", "") {
		if x != before[i] {
			moved++
		}
	}
	if moved != 20 {
		t.Fatalf("%d shards moved; going from 20/20/20 to 10/10/40 moves 20", moved)
	}
}

func TestPlacePinsAndDeadRegions(t *testing.T) {
	h := newHarness(t)
	prices := dom("prices", global, 16)
	prices.Pins = []*wdsv1.Pin{{Region: "ap-south", Range: topology.RangeToProto(shardRange(t, 16, 0, 4))}}
	h.ok(opTopology(threeRegions, prices))
	cons := map[string]int{"us-east": 2, "eu-west": 2}
	h.settle(PlaceInput{Live: allLive, Consumers: load("prices", cons), MaxMoves: 4})
	got := h.holders("prices", "")
	for i := range 4 {
		if got[i] != "ap-south" {
			t.Fatalf("pinned shard %d held by %q: %v", i, got[i], got)
		}
	}
	rest := map[string]int{}
	for _, x := range got[4:] {
		rest[x]++
	}
	wantApportioned(t, rest, cons, 12)

	// eu-west stops renewing: nothing of it moves until the leader expires
	// it, however many rounds run.
	dead := map[string]bool{"us-east": true, "ap-south": true}
	before := h.holders("prices", "")
	h.settle(PlaceInput{Live: dead, Consumers: load("prices", cons), MaxMoves: 4})
	for i, x := range h.holders("prices", "") {
		if before[i] == "eu-west" && x != "eu-west" {
			t.Fatalf("shard %d of a region that stopped renewing moved before its expiry", i)
		}
	}
	h.ok(opExpire("eu-west"))
	h.settle(PlaceInput{Live: dead, Consumers: load("prices", map[string]int{"us-east": 2}), MaxMoves: 4})
	got = h.holders("prices", "")
	for i, x := range got {
		want := "us-east"
		if i < 4 {
			want = "ap-south"
		}
		if x != want {
			t.Fatalf("after eu-west expired, shard %d held by %q: %v", i, x, got)
		}
	}

	// The pin's region down: its shards join the others meanwhile.
	h.ok(opExpire("ap-south"))
	h.settle(PlaceInput{Live: map[string]bool{"us-east": true}, Consumers: load("prices", map[string]int{"us-east": 2}), MaxMoves: 4})
	if c := h.count("prices", ""); c["us-east"] != 16 {
		t.Fatalf("with only us-east live it holds %v", c)
	}
}

func TestPlaceUnit(t *testing.T) {
	h := newHarness(t)
	h.ok(opTopology(threeRegions, dom("leader", unit, 1)))
	cons := func(m map[string]int) map[string]map[string]int { return load("leader", m) }
	h.settle(PlaceInput{Live: allLive, Consumers: cons(map[string]int{"eu-west": 1}), MaxMoves: 1})
	if got := h.holders("leader", ""); got[0] != "eu-west" {
		t.Fatalf("UNIT held by %v, want the region with its consumer", got)
	}
	// Stays while its holder has consumers, even if another has more.
	h.settle(PlaceInput{Live: allLive, Consumers: cons(map[string]int{"eu-west": 1, "us-east": 5}), MaxMoves: 1})
	if got := h.holders("leader", ""); got[0] != "eu-west" {
		t.Fatalf("UNIT moved to %v while its holder still had consumers", got)
	}
	// Moves when its holder has none left.
	h.settle(PlaceInput{Live: allLive, Consumers: cons(map[string]int{"us-east": 5}), MaxMoves: 1})
	if got := h.holders("leader", ""); got[0] != "us-east" {
		t.Fatalf("UNIT held by %v, want us-east", got)
	}
	// A pin wins.
	pinned := dom("leader", unit, 1)
	pinned.Pins = []*wdsv1.Pin{{Region: "ap-south"}}
	h.ok(opTopology(threeRegions, pinned))
	h.settle(PlaceInput{Live: allLive, Consumers: cons(map[string]int{"us-east": 5}), MaxMoves: 1})
	if got := h.holders("leader", ""); got[0] != "ap-south" {
		t.Fatalf("pinned UNIT held by %v", got)
	}
}

func TestPlaceRegionalAndDelete(t *testing.T) {
	h := newHarness(t)
	orders := dom("orders", regional, 4)
	orders.Regions = []string{"us-east", "eu-west"}
	orders.Failover = wdsv1.Failover_FAILOVER_MANUAL
	h.ok(opTopology(threeRegions, orders))
	h.settle(PlaceInput{Live: map[string]bool{"us-east": true}, MaxMoves: 2})
	if got := fmt.Sprint(h.holders("orders", "us-east"), h.holders("orders", "eu-west")); got != "[us-east us-east us-east us-east] [   ]" {
		t.Fatalf("REGIONAL key spaces held %s: each only by its own live region (failover manual)", got)
	}
	h.settle(PlaceInput{Live: allLive, MaxMoves: 2})
	if got := fmt.Sprint(h.holders("orders", "eu-west")); got != "[eu-west eu-west eu-west eu-west]" {
		t.Fatalf("eu-west's key space held %s", got)
	}
	// Deleting: withdrawn everywhere, released, purged.
	h.ok(opDelete("orders", false))
	h.settle(PlaceInput{Live: allLive, MaxMoves: 2})
	if _, _, ok := h.state().Domain("orders"); ok {
		t.Fatal("deleted domain not purged once every delegation was released")
	}
}

// TestPlaceRegionalFailover: a down region's auto key space goes to the
// first live region of its failover list that has consumers of the
// domain, only once what the down region held has expired; it stays
// there while the region is back but not yet stable, and moves home
// gracefully (withdraw → release → delegate, at most MaxMoves at once)
// once the region has been live for FailbackAfter.
func TestPlaceRegionalFailover(t *testing.T) {
	h := newHarness(t)
	carts := dom("carts", regional, 4)
	carts.FailbackAfterMillis = 5000
	h.ok(opTopology(threeRegions, carts))
	cons := load("carts", map[string]int{"us-east": 1, "eu-west": 1, "ap-south": 1})
	h.settle(PlaceInput{Live: allLive, Consumers: cons, MaxMoves: 2})
	if got := fmt.Sprint(h.holders("carts", "us-east")); got != "[us-east us-east us-east us-east]" {
		t.Fatalf("us-east's key space held %s", got)
	}
	// us-east stops renewing: nothing moves before the leader expires it.
	down := map[string]bool{"eu-west": true, "ap-south": true}
	noEU := load("carts", map[string]int{"ap-south": 1}) // eu-west (first in the list) has no consumers of carts
	h.settle(PlaceInput{Live: down, Consumers: noEU, MaxMoves: 2})
	if got := fmt.Sprint(h.holders("carts", "us-east")); got != "[us-east us-east us-east us-east]" {
		t.Fatalf("a down region's key space moved before its expiry: %s", got)
	}
	h.ok(opExpire("us-east"))
	// Free, but us-east has not lapsed yet (a new leader that has not
	// heard from it, say): no failover.
	notYet := func(region, domain string) bool { return false }
	h.settle(PlaceInput{Live: down, Consumers: noEU, MaxMoves: 2, Lapsed: notYet})
	if got := fmt.Sprint(h.holders("carts", "us-east")); got != "[   ]" {
		t.Fatalf("failed over to %s before us-east lapsed", got)
	}
	h.settle(PlaceInput{Live: down, Consumers: noEU, MaxMoves: 2})
	if got := fmt.Sprint(h.holders("carts", "us-east")); got != "[ap-south ap-south ap-south ap-south]" {
		t.Fatalf("failed over to %s, want ap-south (the first of the list with consumers)", got)
	}
	// eu-west gains consumers: the key space stays where it is served.
	h.settle(PlaceInput{Live: down, Consumers: cons, MaxMoves: 2})
	if got := fmt.Sprint(h.holders("carts", "us-east")); got != "[ap-south ap-south ap-south ap-south]" {
		t.Fatalf("a failed-over key space moved between live regions: %s", got)
	}
	// us-east is back, not yet stable: no fail-back.
	h.settle(PlaceInput{Live: allLive, Consumers: cons, MaxMoves: 2, LiveFor: map[string]time.Duration{"us-east": 4999 * time.Millisecond}})
	if got := fmt.Sprint(h.holders("carts", "us-east")); got != "[ap-south ap-south ap-south ap-south]" {
		t.Fatalf("failed back before the stable period: %s", got)
	}
	// Stable: one placement round withdraws at most MaxMoves from
	// ap-south; settling brings every shard home.
	in := PlaceInput{Live: allLive, Consumers: cons, MaxMoves: 2, LiveFor: map[string]time.Duration{"us-east": 5 * time.Second}}
	ops := h.state().Place(in)
	withdrawn := 0
	for _, op := range ops {
		if w := op.GetWithdraw(); w != nil {
			if w.GetHolder() != "ap-south" || w.GetRegion() != "us-east" {
				t.Fatalf("fail-back withdrew %v", w)
			}
			withdrawn += len(w.GetRanges())
		} else if op.GetDelegate() != nil {
			t.Fatalf("fail-back delegated before the failover region released: %v", op)
		}
	}
	if withdrawn == 0 {
		t.Fatal("no fail-back once us-east was stable")
	}
	h.settle(in)
	if got := fmt.Sprint(h.holders("carts", "us-east")); got != "[us-east us-east us-east us-east]" {
		t.Fatalf("after fail-back us-east's key space held %s", got)
	}
	for _, r := range []string{"eu-west", "ap-south"} {
		if got := h.holders("carts", r); got[0] != r {
			t.Fatalf("%s's own key space held %v", r, got)
		}
	}
}

// TestSetFailover: a manual key space stays unserved while its region is
// down; SetFailover moves it, refused while the region still holds any of
// it, and back home.
func TestSetFailover(t *testing.T) {
	h := newHarness(t)
	carts := dom("carts", regional, 4)
	carts.Failover = wdsv1.Failover_FAILOVER_MANUAL
	prices := dom("prices", global, 4)
	auto := dom("orders", regional, 2)
	h.ok(opTopology(threeRegions, carts, prices, auto))
	cons := load("carts", map[string]int{"us-east": 1, "eu-west": 1})
	h.settle(PlaceInput{Live: allLive, Consumers: cons, MaxMoves: 4})
	setFailover := func(domain, region, to string) *globalv1.Op {
		return &globalv1.Op{Op: &globalv1.Op_SetFailover{SetFailover: &globalv1.SetFailover{Domain: domain, Region: region, To: to}}}
	}
	if err := h.fails(setFailover("carts", "us-east", "eu-west"), ErrFailedPrecondition); !strings.Contains(err.Error(), "still holds") {
		t.Fatalf("failover of a held key space: %v", err)
	}
	h.fails(setFailover("orders", "us-east", "eu-west"), ErrFailedPrecondition) // auto
	h.fails(setFailover("prices", "", "eu-west"), topology.ErrInvalid)
	h.fails(setFailover("carts", "us-east", "mars"), topology.ErrInvalid)
	h.fails(setFailover("nope", "us-east", "eu-west"), ErrNotFound)

	down := map[string]bool{"eu-west": true, "ap-south": true}
	h.ok(opExpire("us-east"))
	h.settle(PlaceInput{Live: down, Consumers: cons, MaxMoves: 4})
	if got := fmt.Sprint(h.holders("carts", "us-east")); got != "[   ]" {
		t.Fatalf("a manual key space of a down region was served: %s", got)
	}
	h.ok(setFailover("carts", "us-east", "eu-west"))
	h.check()
	h.settle(PlaceInput{Live: down, Consumers: cons, MaxMoves: 4})
	if got := fmt.Sprint(h.holders("carts", "us-east")); got != "[eu-west eu-west eu-west eu-west]" {
		t.Fatalf("after wds failover us-east's key space held %s", got)
	}
	// us-east is back: the key space stays with eu-west (manual) however
	// long us-east is live, until an operator moves it home.
	h.settle(PlaceInput{Live: allLive, Consumers: cons, MaxMoves: 4, LiveFor: map[string]time.Duration{"us-east": time.Hour}})
	if got := fmt.Sprint(h.holders("carts", "us-east")); got != "[eu-west eu-west eu-west eu-west]" {
		t.Fatalf("a manual key space failed back on its own: %s", got)
	}
	h.ok(setFailover("carts", "us-east", "us-east"))
	h.settle(PlaceInput{Live: allLive, Consumers: cons, MaxMoves: 4})
	if got := fmt.Sprint(h.holders("carts", "us-east")); got != "[us-east us-east us-east us-east]" {
		t.Fatalf("after wds failover back, us-east's key space held %s", got)
	}
	h.check()
}

func TestPlaceRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	h := newHarness(t)
	h.ok(opTopology(threeRegions, dom("prices", global, 50), dom("leader", unit, 1)))
	regions := []string{"us-east", "eu-west", "ap-south"}
	for step := range 60 {
		live := map[string]bool{}
		cons := map[string]int{}
		for _, x := range regions {
			if r.IntN(5) > 0 {
				live[x] = true
				cons[x] = r.IntN(6)
			}
		}
		for _, x := range h.state().Holders() {
			if !live[x] {
				h.ok(opExpire(x)) // the leader expires what stopped renewing
			}
		}
		in := PlaceInput{Live: live, Consumers: map[string]map[string]int{}, MaxMoves: 1 + r.IntN(8)}
		for x, c := range cons {
			in.Consumers[x] = map[string]int{"prices": c, "leader": c}
		}
		h.settle(in)
		if len(live) == 0 {
			continue
		}
		total := 0
		for _, c := range cons {
			total += c
		}
		if total == 0 {
			cons = map[string]int{}
			for x := range live {
				cons[x] = 1
			}
		}
		got := h.count("prices", "")
		delete(got, "")
		t.Logf("step %d: live %v consumers %v: %v", step, live, cons, got)
		wantApportioned(t, got, cons, 50)
		if u := h.holders("leader", "")[0]; !live[u] {
			t.Fatalf("UNIT held by %q, not live", u)
		}
	}
}

func TestPlanTopology(t *testing.T) {
	h := newHarness(t)
	topo := &globalv1.ApplyTopology{Regions: threeRegions, Domains: []*wdsv1.Domain{dom("prices", global, 12), dom("orders", regional, 4)}}
	h.ok(&globalv1.Op{Op: &globalv1.Op_ApplyTopology{ApplyTopology: topo}})
	in := PlaceInput{Live: allLive, Consumers: load("prices", map[string]int{"us-east": 1, "eu-west": 1, "ap-south": 1}), MaxMoves: 12}
	h.settle(in)
	before := h.state().snapshot()

	plan, err := PlanTopology(h.state(), topo, in)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(plan, &globalv1.PlanTopologyResponse{}) {
		t.Fatalf("plan of the unchanged topology: %v", plan)
	}

	// Pin half of prices to ap-south, add a domain, drop orders.
	pinned := dom("prices", global, 12)
	pinned.Pins = []*wdsv1.Pin{{Region: "ap-south", Range: topology.RangeToProto(shardRange(t, 12, 0, 6))}}
	changed := &globalv1.ApplyTopology{Regions: threeRegions, Domains: []*wdsv1.Domain{pinned, dom("leader", unit, 1)}}
	plan, err = PlanTopology(h.state(), changed, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.GetDomainsCreated()) != 1 || plan.GetDomainsCreated()[0].GetName() != "leader" ||
		len(plan.GetDomainsChanged()) != 1 || fmt.Sprint(plan.GetDomainsDeleted()) != "[orders]" {
		t.Fatalf("plan domains: %v", plan)
	}
	moved := uint32(0)
	for _, m := range plan.GetMoves() {
		if m.GetDomain() == "prices" {
			moved += m.GetShards()
			if m.GetToRegion() == "" || m.GetFromRegion() == m.GetToRegion() || m.GetConsumersAffected() != 1 {
				t.Fatalf("move %v", m)
			}
		}
	}
	// 6 pinned to ap-south (it held 4 of them at most), the rest 3 and 3.
	if moved == 0 {
		t.Fatalf("pinning half of prices moves nothing: %v", plan.GetMoves())
	}
	t.Logf("plan: %v", plan)
	// Nothing was applied.
	if after := h.state().snapshot(); !proto.Equal(before, after) {
		t.Fatal("PlanTopology changed the state")
	}
	// A bad topology is refused as apply would refuse it.
	bad := &globalv1.ApplyTopology{Regions: threeRegions, Domains: []*wdsv1.Domain{dom("prices", global, 99)}}
	if _, err := PlanTopology(h.state(), bad, in); err == nil {
		t.Fatal("plan of a topology changing shards: no error")
	}
}
