package globalstate

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// harness drives one FSM with hand-built entries at increasing indexes,
// checks the invariants after every entry, and keeps a replica rebuilt
// from a snapshot now and then that must stay identical.
type harness struct {
	t     testing.TB
	f     *FSM
	index uint64
	// lastGen is every shard's last generation: generations of a shard
	// strictly increase across delegations.
	lastGen map[string]uint64
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, f: &FSM{State: NewState()}, lastGen: map[string]uint64{}}
}

func (h *harness) state() *State { return h.f.State }

// entry applies ops as one entry and returns the per-op errors.
func (h *harness) entry(ops ...*globalv1.Op) []error {
	h.t.Helper()
	data, err := EncodeEntry(ops)
	if err != nil {
		h.t.Fatal(err)
	}
	h.index++
	var errs []error
	for _, r := range h.f.Apply(&raft.Log{Index: h.index, Term: 1, Type: raft.LogCommand, Data: data}).([]Result) {
		errs = append(errs, r.Err)
	}
	h.check()
	return errs
}

// ok applies ops as one entry; every op must succeed.
func (h *harness) ok(ops ...*globalv1.Op) {
	h.t.Helper()
	for i, err := range h.entry(ops...) {
		if err != nil {
			h.t.Fatalf("entry %d op %d (%v): %v", h.index, i, ops[i], err)
		}
	}
}

// fails applies one op that must be rejected with want and change nothing.
func (h *harness) fails(op *globalv1.Op, want error) error {
	h.t.Helper()
	before := h.state().snapshot()
	err := h.entry(op)[0]
	if err == nil || (want != nil && !errors.Is(err, want)) {
		h.t.Fatalf("op %v: err %v, want %v", op, err, want)
	}
	after := h.state().snapshot()
	before.Index, after.Index = 0, 0
	if !proto.Equal(before, after) {
		h.t.Fatalf("rejected op %v changed the state", op)
	}
	return err
}

// check verifies the invariants and that the state survives a snapshot.
func (h *harness) check() {
	h.t.Helper()
	s := h.state()
	s.mu.RLock()
	for name, d := range s.domains {
		for _, ks := range d.spaces {
			if len(ks.shards) != d.spec.Shards || len(ks.ranges) != d.spec.Shards {
				h.t.Fatalf("domain %q key space %q: %d shards, %d ranges, want %d", name, ks.region, len(ks.shards), len(ks.ranges), d.spec.Shards)
			}
			for i, sh := range ks.shards {
				key := fmt.Sprintf("%s/%s/%d", name, ks.region, i)
				switch {
				case sh.free() && (sh.generation != 0 || sh.withdrawing):
					h.t.Fatalf("free shard %s has generation %d withdrawing %v", key, sh.generation, sh.withdrawing)
				case !sh.free() && (sh.generation == 0 || sh.generation > s.index):
					h.t.Fatalf("shard %s held by %s at generation %d (index %d)", key, sh.holder, sh.generation, s.index)
				}
				if !sh.free() && sh.generation != h.lastGen[key] {
					if sh.generation < h.lastGen[key] {
						h.t.Fatalf("shard %s generation went back: %d after %d", key, sh.generation, h.lastGen[key])
					}
					h.lastGen[key] = sh.generation
				}
			}
		}
	}
	s.mu.RUnlock()
	snap := s.snapshot()
	data, err := proto.Marshal(snap)
	if err != nil {
		h.t.Fatal(err)
	}
	rep := NewState()
	if err := rep.restore(mustSnapshot(h.t, data)); err != nil {
		h.t.Fatalf("restore: %v", err)
	}
	if got := rep.snapshot(); !proto.Equal(got, snap) {
		h.t.Fatalf("snapshot does not round-trip:\n got %v\nwant %v", got, snap)
	}
}

func mustSnapshot(t testing.TB, data []byte) *globalv1.Snapshot {
	var snap globalv1.Snapshot
	if err := proto.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	return &snap
}

// --- op builders ---

var threeRegions = []*globalv1.Region{
	{Name: "us-east", Failover: []string{"eu-west", "ap-south"}},
	{Name: "eu-west", Failover: []string{"us-east", "ap-south"}},
	{Name: "ap-south", Failover: []string{"us-east", "eu-west"}},
}

func dom(name string, kind wdsv1.DomainKind, shards uint32) *wdsv1.Domain {
	return &wdsv1.Domain{Name: name, Kind: kind, Shards: shards, TtlMillis: 3000}
}

const (
	global   = wdsv1.DomainKind_DOMAIN_KIND_GLOBAL
	unit     = wdsv1.DomainKind_DOMAIN_KIND_UNIT
	regional = wdsv1.DomainKind_DOMAIN_KIND_REGIONAL
)

func opTopology(regions []*globalv1.Region, domains ...*wdsv1.Domain) *globalv1.Op {
	return &globalv1.Op{Op: &globalv1.Op_ApplyTopology{ApplyTopology: &globalv1.ApplyTopology{Regions: regions, Domains: domains}}}
}

func opCreate(d *wdsv1.Domain) *globalv1.Op {
	return &globalv1.Op{Op: &globalv1.Op_CreateDomain{CreateDomain: &globalv1.CreateDomain{Domain: d}}}
}

func opDelete(name string, purge bool) *globalv1.Op {
	return &globalv1.Op{Op: &globalv1.Op_DeleteDomain{DeleteDomain: &globalv1.DeleteDomain{Name: name, Purge: purge}}}
}

func opDelegate(domain, region, holder string, ranges ...topology.Range) *globalv1.Op {
	return &globalv1.Op{Op: &globalv1.Op_Delegate{Delegate: &globalv1.Delegate{Domain: domain, Region: region, Holder: holder, Ranges: rangesProto(ranges)}}}
}

func opWithdraw(domain, region, holder string, gen uint64, ranges ...topology.Range) *globalv1.Op {
	return &globalv1.Op{Op: &globalv1.Op_Withdraw{Withdraw: &globalv1.Withdraw{Domain: domain, Region: region, Holder: holder, Generation: gen, Ranges: rangesProto(ranges)}}}
}

func opReleased(domain, region, holder string, gen uint64, ranges ...topology.Range) *globalv1.Op {
	return &globalv1.Op{Op: &globalv1.Op_Released{Released: &globalv1.Released{Domain: domain, Region: region, Holder: holder, Generation: gen, Ranges: rangesProto(ranges)}}}
}

func opExpire(holder string) *globalv1.Op {
	return &globalv1.Op{Op: &globalv1.Op_Expire{Expire: &globalv1.Expire{Holder: holder}}}
}

func shardRange(t testing.TB, shards, from, to int) topology.Range {
	rs, err := topology.SplitEven(shards)
	if err != nil {
		t.Fatal(err)
	}
	return topology.Range{From: rs[from].From, To: rs[to-1].To}
}

// holders returns each shard's holder of a key space.
func (h *harness) holders(domain, region string) []string {
	h.t.Helper()
	sh, err := h.state().ShardHolders(domain)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, s := range sh {
		if s.Region == region {
			out = append(out, s.Holder)
		}
	}
	return out
}

// --- tests ---

func TestTopologyCreatesUpdatesAndDeletes(t *testing.T) {
	h := newHarness(t)
	h.ok(opTopology(threeRegions, dom("orders", regional, 4), dom("prices", global, 8), dom("leader", unit, 1)))
	if got := len(h.state().Regions()); got != 3 {
		t.Fatalf("%d regions", got)
	}
	live, deleting, version := h.state().Catalog()
	if len(live) != 3 || len(deleting) != 0 || version != 1 {
		t.Fatalf("catalog %v, deleting %v, version %d", live, deleting, version)
	}
	for _, d := range live {
		if d.GetCreatedIndex() != 1 {
			t.Fatalf("domain %q incarnation %d, want 1", d.GetName(), d.GetCreatedIndex())
		}
	}
	// A REGIONAL domain without regions has a key space in every region.
	sh, _ := h.state().ShardHolders("orders")
	if len(sh) != 12 {
		t.Fatalf("orders has %d shards over its key spaces, want 3 × 4", len(sh))
	}

	// Update: pins and a narrower REGIONAL domain; "leader" left out of the
	// file starts deleting.
	orders := dom("orders", regional, 4)
	orders.Regions = []string{"us-east", "eu-west"}
	orders.Failover = wdsv1.Failover_FAILOVER_MANUAL
	prices := dom("prices", global, 8)
	prices.Pins = []*wdsv1.Pin{{Region: "eu-west", Range: topology.RangeToProto(shardRange(t, 8, 0, 2))}}
	h.ok(opTopology(threeRegions, orders, prices))
	got, _, _ := h.state().Domain("orders")
	if got.GetFailover() != wdsv1.Failover_FAILOVER_MANUAL || len(got.GetRegions()) != 2 || got.GetCreatedIndex() != 1 {
		t.Fatalf("orders after update: %v", got)
	}
	if sh, _ := h.state().ShardHolders("orders"); len(sh) != 8 {
		t.Fatalf("orders has %d shards after dropping ap-south (no delegation there), want 8", len(sh))
	}
	if p, _, _ := h.state().Domain("prices"); len(p.GetPins()) != 1 || p.GetPins()[0].GetRegion() != "eu-west" {
		t.Fatalf("prices pins %v", p.GetPins())
	}
	if _, deleting, _ := h.state().Domain("leader"); !deleting {
		t.Fatal("leader, absent from the file, is not deleting")
	}
	h.ok(opDelete("leader", true))
	if _, _, ok := h.state().Domain("leader"); ok {
		t.Fatal("leader not purged")
	}
}

func TestTopologyAllOrNothing(t *testing.T) {
	h := newHarness(t)
	h.ok(opTopology(threeRegions, dom("prices", global, 8)))
	bad := func(field string, regions []*globalv1.Region, domains ...*wdsv1.Domain) {
		t.Helper()
		err := h.fails(opTopology(regions, domains...), nil)
		var fe *topology.FieldError
		if field != "" && (!errors.As(err, &fe) || fe.Field != field) {
			t.Fatalf("error %v does not name field %q", err, field)
		}
	}
	pinned := func(region string, from, to int) *wdsv1.Domain {
		d := dom("prices", global, 8)
		d.Pins = []*wdsv1.Pin{{Region: region, Range: topology.RangeToProto(shardRange(t, 8, from, to))}}
		return d
	}
	bad("domains[1].pins[0].region", threeRegions, dom("new", global, 2), pinned("mars", 0, 2))
	overlapping := pinned("us-east", 0, 4)
	overlapping.Pins = append(overlapping.Pins, &wdsv1.Pin{Region: "eu-west", Range: topology.RangeToProto(shardRange(t, 8, 3, 5))})
	bad("domains[0].pins[1]", threeRegions, overlapping)
	off := dom("prices", global, 8)
	rs, _ := topology.SplitEven(8)
	mid := rs[0].Midpoint()
	off.Pins = []*wdsv1.Pin{{Region: "us-east", Range: topology.RangeToProto(topology.Range{From: rs[0].From, To: mid})}}
	bad("domains[0].pins[0].to", threeRegions, off)
	bad("regions[0].failover[0]", []*globalv1.Region{{Name: "us-east", Failover: []string{"us-east"}}}, dom("prices", global, 8))
	bad("regions[1].failover[0]", []*globalv1.Region{{Name: "us-east"}, {Name: "eu-west", Failover: []string{"mars"}}}, dom("prices", global, 8))
	reg := dom("orders", regional, 2)
	reg.Regions = []string{"us-east", "mars"}
	bad("domains[1].regions[1]", threeRegions, dom("prices", global, 8), reg)
	unitTwo := dom("leader", unit, 1)
	unitTwo.Pins = []*wdsv1.Pin{{Region: "us-east"}, {Region: "eu-west"}}
	bad("domains[1].pins[1]", threeRegions, dom("prices", global, 8), unitTwo)
	// Changing shards of an existing domain.
	err := h.fails(opTopology(threeRegions, dom("prices", global, 16)), ErrFailedPrecondition)
	t.Logf("changed shards: %v", err)
	// A domain listed twice.
	bad("domains[1].name", threeRegions, dom("prices", global, 8), dom("prices", global, 8))
}

func TestDelegateWithdrawRelease(t *testing.T) {
	h := newHarness(t)
	h.ok(opTopology(threeRegions, dom("prices", global, 4)))
	h.ok(opDelegate("prices", "", "us-east", shardRange(t, 4, 0, 2)), opDelegate("prices", "", "eu-west", shardRange(t, 4, 2, 4)))
	gen := h.index
	if got := h.holders("prices", ""); fmt.Sprint(got) != "[us-east us-east eu-west eu-west]" {
		t.Fatalf("holders %v", got)
	}
	dl := h.state().Renewable("us-east")
	if len(dl) != 1 || dl[0].Generation != gen || len(dl[0].Ranges) != 1 || dl[0].Ranges[0] != shardRange(t, 4, 0, 2) {
		t.Fatalf("us-east renews %+v", dl)
	}
	// Not free, not on a boundary, unknown holder.
	h.fails(opDelegate("prices", "", "ap-south", shardRange(t, 4, 1, 3)), ErrConflict)
	h.fails(opDelegate("prices", "", "mars", shardRange(t, 4, 0, 1)), nil)
	// Withdraw one of us-east's shards: no longer renewed, still held.
	h.fails(opWithdraw("prices", "", "us-east", gen+7), ErrConflict)
	h.ok(opWithdraw("prices", "", "us-east", gen, shardRange(t, 4, 1, 2)))
	dl = h.state().Renewable("us-east")
	if len(dl) != 1 || dl[0].Ranges[0] != shardRange(t, 4, 0, 1) {
		t.Fatalf("us-east renews %+v after withdrawing shard 1", dl)
	}
	if got := h.holders("prices", ""); got[1] != "us-east" {
		t.Fatalf("a withdrawing shard left its holder: %v", got)
	}
	// Released frees every shard of that generation us-east holds.
	h.ok(opReleased("prices", "", "us-east", gen))
	if got := h.holders("prices", ""); fmt.Sprint(got) != "[  eu-west eu-west]" {
		t.Fatalf("after released %v", got)
	}
	h.fails(opReleased("prices", "", "us-east", gen), ErrConflict)
	// Re-delegated: a higher generation (check() asserts it per shard).
	h.ok(opDelegate("prices", "", "ap-south", shardRange(t, 4, 0, 2)))
	// Expire frees everything of a region.
	h.ok(opExpire("eu-west"))
	if got := h.holders("prices", ""); fmt.Sprint(got) != "[ap-south ap-south  ]" {
		t.Fatalf("after expiry %v", got)
	}
	if got := h.state().Holders(); fmt.Sprint(got) != "[ap-south]" {
		t.Fatalf("holders %v", got)
	}
	// Delete: no purge while delegated; Place withdraws, release, purge.
	h.ok(opDelete("prices", false))
	if dl := h.state().Renewable("ap-south"); len(dl) != 0 {
		t.Fatalf("a deleting domain's delegations are renewed: %+v", dl)
	}
	h.fails(opDelete("prices", true), ErrConflict)
	h.fails(opDelegate("prices", "", "us-east", shardRange(t, 4, 2, 4)), ErrDomainDeleting)
	h.fails(opCreate(dom("prices", global, 4)), ErrDomainDeleting)
}

// TestRandomOps applies random ops (valid and not) and checks after every
// entry the invariants, that a shard's generations only grow, and the
// snapshot round trip (harness.check).
func TestRandomOps(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			h := newHarness(t)
			ledger := dom("ledger", regional, 2)
			ledger.Failover = wdsv1.Failover_FAILOVER_MANUAL
			h.ok(opTopology(threeRegions, dom("prices", global, 16), dom("orders", regional, 4), dom("leader", unit, 1), ledger))
			regions := []string{"us-east", "eu-west", "ap-south"}
			gens := func() []Delegation { return h.state().Delegations("") }
			steps := 2000
			if testing.Short() {
				steps = 300
			}
			for range steps {
				reg := regions[r.IntN(3)]
				var op *globalv1.Op
				switch r.IntN(8) {
				case 6:
					if dl := gens(); len(dl) > 0 {
						d := dl[r.IntN(len(dl))]
						op = &globalv1.Op{Op: &globalv1.Op_Confirm{Confirm: &globalv1.Confirm{Holder: d.Holder, Domain: d.Domain, Region: d.Region, Generation: d.Generation}}}
					}
				case 7:
					op = &globalv1.Op{Op: &globalv1.Op_SetFailover{SetFailover: &globalv1.SetFailover{Domain: "ledger", Region: regions[r.IntN(3)], To: regions[r.IntN(3)]}}}
				case 0, 1:
					name, ks, n := "prices", "", 16
					switch r.IntN(3) {
					case 1:
						name, ks, n = "orders", regions[r.IntN(3)], 4
					case 2:
						name, ks, n = "leader", "", 1
					}
					a := r.IntN(n)
					b := a + 1 + r.IntN(n-a)
					op = opDelegate(name, ks, reg, shardRange(t, n, a, b))
				case 2:
					if dl := gens(); len(dl) > 0 {
						d := dl[r.IntN(len(dl))]
						op = opWithdraw(d.Domain, d.Region, d.Holder, d.Generation)
					}
				case 3:
					if dl := gens(); len(dl) > 0 {
						d := dl[r.IntN(len(dl))]
						op = opReleased(d.Domain, d.Region, d.Holder, d.Generation)
					}
				case 4:
					op = opExpire(reg)
				case 5:
					live := map[string]bool{}
					for _, x := range regions {
						live[x] = r.IntN(4) > 0
					}
					cons := map[string]map[string]int{}
					for _, x := range regions {
						cons[x] = map[string]int{"prices": r.IntN(4), "leader": r.IntN(2)}
					}
					liveFor := map[string]time.Duration{}
					for _, x := range regions {
						liveFor[x] = time.Duration(r.IntN(60)) * time.Second
					}
					in := PlaceInput{Live: live, Consumers: cons, MaxMoves: 1 + r.IntN(4), LiveFor: liveFor}
					if r.IntN(2) == 0 {
						in.Lapsed = func(string, string) bool { return r.IntN(2) == 0 }
					}
					if ops := h.state().Place(in); len(ops) > 0 {
						// A plan applies whole or op by op, against the state it was made from.
						for i, err := range h.entry(ops...) {
							if err != nil {
								t.Fatalf("placement op %v from the current state failed: %v", ops[i], err)
							}
						}
					}
					continue
				}
				if op != nil {
					h.entry(op)
				}
			}
		})
	}
}

func TestTopologyKeepUnlisted(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate(dom("early", global, 2)))
	op := opTopology(threeRegions, dom("prices", global, 4))
	op.GetApplyTopology().KeepUnlisted = true
	h.ok(op)
	if _, deleting, ok := h.state().Domain("early"); !ok || deleting {
		t.Fatalf("a bootstrap that keeps unlisted domains deleted %q (ok %v, deleting %v)", "early", ok, deleting)
	}
	h.ok(opTopology(threeRegions, dom("prices", global, 4)))
	if _, deleting, _ := h.state().Domain("early"); !deleting {
		t.Fatal("an apply without keep_unlisted kept an unlisted domain")
	}
}

// TestConfirm: a delegation is confirmed whole (every shard of that
// holder and generation), survives a withdrawal and a snapshot, and a new
// delegation of the same shards starts unconfirmed.
func TestConfirm(t *testing.T) {
	h := newHarness(t)
	h.ok(opTopology(threeRegions, dom("prices", global, 4)))
	h.ok(opDelegate("prices", "", "us-east", shardRange(t, 4, 0, 3)))
	gen := h.index
	confirm := func(holder string, g uint64) *globalv1.Op {
		return &globalv1.Op{Op: &globalv1.Op_Confirm{Confirm: &globalv1.Confirm{Holder: holder, Domain: "prices", Generation: g}}}
	}
	confirmed := func() []bool {
		var out []bool
		for _, dl := range h.state().Delegations("us-east") {
			out = append(out, dl.Confirmed)
		}
		return out
	}
	if got := fmt.Sprint(confirmed()); got != "[false]" {
		t.Fatalf("confirmed %s before any Confirm", got)
	}
	h.fails(confirm("eu-west", gen), ErrConflict)
	h.fails(confirm("us-east", gen+1), ErrConflict)
	h.ok(confirm("us-east", gen))
	h.check()
	if got := fmt.Sprint(confirmed()); got != "[true]" {
		t.Fatalf("confirmed %s after Confirm", got)
	}
	h.ok(opWithdraw("prices", "", "us-east", gen, shardRange(t, 4, 2, 3)))
	if got := fmt.Sprint(confirmed()); got != "[true true]" {
		t.Fatalf("confirmed %s after a partial withdrawal (held part, withdrawing part)", got)
	}
	h.ok(opReleased("prices", "", "us-east", gen, shardRange(t, 4, 2, 3)))
	h.ok(opDelegate("prices", "", "us-east", shardRange(t, 4, 2, 4)))
	var fresh []bool
	for _, dl := range h.state().Delegations("us-east") {
		if dl.Generation != gen {
			fresh = append(fresh, dl.Confirmed)
		}
	}
	if fmt.Sprint(fresh) != "[false]" {
		t.Fatalf("a new delegation of released shards starts confirmed: %v", fresh)
	}
	h.check()
}

// TestTopologyVoters: a topology's regions carry the global voters; the
// state keeps them (and its snapshots do), and refuses a voter without an
// address, a duplicate id or Raft address, a voter that moves address,
// and a topology that would remove every voter. A plan names the voters
// added and removed.
func TestTopologyVoters(t *testing.T) {
	h := newHarness(t)
	voter := func(id, raft string) *globalv1.Voter {
		return &globalv1.Voter{Id: id, Raft: raft, Grpc: "grpc-" + raft}
	}
	regions := func(a, b []*globalv1.Voter) []*globalv1.Region {
		return []*globalv1.Region{{Name: "a", Voters: a}, {Name: "b", Voters: b}}
	}
	// A state whose topology lists no voter (before voters were recorded)
	// may go on without.
	h.ok(opTopology(regions(nil, nil)))
	h.ok(opTopology(regions([]*globalv1.Voter{voter("a-1", "r1")}, []*globalv1.Voter{voter("b-1", "r2")})))
	if got := h.state().Voters(); len(got) != 2 || got[0] != (Voter{ID: "a-1", Raft: "r1", GRPC: "grpc-r1", Region: "a"}) || got[1].Region != "b" {
		t.Fatalf("voters: %+v", got)
	}
	for _, c := range []struct {
		name    string
		regions []*globalv1.Region
		want    string
	}{
		{"no raft address", regions([]*globalv1.Voter{{Id: "a-1", Grpc: "g"}}, nil), "regions[0].voters[0].raft"},
		{"no grpc endpoint", regions([]*globalv1.Voter{{Id: "a-1", Raft: "r1"}}, nil), "regions[0].voters[0].grpc"},
		{"duplicate id", regions([]*globalv1.Voter{voter("a-1", "r1")}, []*globalv1.Voter{voter("a-1", "r3")}), "duplicate voter (also in region a)"},
		{"shared raft address", regions([]*globalv1.Voter{voter("a-1", "r1")}, []*globalv1.Voter{voter("b-1", "r1")}), "share a global Raft address"},
		{"moved voter", regions([]*globalv1.Voter{voter("a-1", "r9")}, []*globalv1.Voter{voter("b-1", "r2")}), "cannot change"},
		{"no voter left", regions(nil, nil), "would remove every voter"},
		{"every voter replaced", regions([]*globalv1.Voter{voter("a-9", "r9")}, []*globalv1.Voter{voter("b-9", "r8")}), "keeps none of the global group's voters (a-1, b-1)"},
	} {
		err := h.fails(opTopology(c.regions), nil)
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want it to say %q", c.name, err, c.want)
		}
	}
	next := &globalv1.ApplyTopology{Regions: regions([]*globalv1.Voter{voter("a-1", "r1"), voter("a-2", "r3")}, nil)}
	plan, err := PlanTopology(h.state(), next, PlaceInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.GetVotersAdded()) != 1 || plan.GetVotersAdded()[0].GetId() != "a-2" || len(plan.GetVotersRemoved()) != 1 || plan.GetVotersRemoved()[0].GetId() != "b-1" {
		t.Fatalf("plan voters: added %v removed %v", plan.GetVotersAdded(), plan.GetVotersRemoved())
	}
	if len(plan.GetRegionsChanged()) != 0 {
		t.Fatalf("a voter change is not a region change: %v", plan.GetRegionsChanged())
	}
	h.ok(&globalv1.Op{Op: &globalv1.Op_ApplyTopology{ApplyTopology: next}})
	if got := h.state().Voters(); len(got) != 2 || got[1].ID != "a-2" {
		t.Fatalf("voters after the change: %+v", got)
	}
}
