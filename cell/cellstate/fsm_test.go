package cellstate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// memSink is a raft.SnapshotSink backed by a bytes.Buffer.
type memSink struct {
	bytes.Buffer
	writeErr          error
	closed, cancelled bool
}

func (s *memSink) ID() string { return "mem" }

func (s *memSink) Write(p []byte) (int, error) {
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	return s.Buffer.Write(p)
}

func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

// readCloser records Close and can fail reads.
type readCloser struct {
	r      io.Reader
	closed bool
}

func (r *readCloser) Read(p []byte) (int, error) { return r.r.Read(p) }
func (r *readCloser) Close() error               { r.closed = true; return nil }

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// persist takes an FSM snapshot of f and persists it into a memSink.
func persist(t testing.TB, snap raft.FSMSnapshot) []byte {
	t.Helper()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	snap.Release()
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v after a good Persist", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

// restoreInto restores data into f.
func restoreInto(t testing.TB, f *FSM, data []byte) error {
	t.Helper()
	rc := &readCloser{r: bytes.NewReader(data)}
	err := f.Restore(rc)
	if !rc.closed {
		t.Fatal("Restore did not close its reader")
	}
	return err
}

// richState builds a state with grants in every state: free, ACTIVE,
// REVOKED without successor, REVOKED with an ALLOCATED successor; a unit
// domain; a deleting domain with a revoked grant left; a draining consumer
// and one without grants.
func richState(t testing.TB) *harness {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 8), opCreate("leader", unit, 0), opCreate("gone", regional, 2))
	h.ok(opJoin("a", "a1", "orders", "gone"), opJoin("b", "b1", "orders"), opJoin("c", "c1", "leader", "orders"), opJoin("d", "d1", "leader"))
	f := func(i int) topology.Bound { return h.from("orders", i) }
	h.ok(opAssign("orders", f(1), "a"), opAssign("orders", f(2), "a"), opAssign("orders", f(3), "a"), opAssign("orders", f(4), "b"),
		opAssign("leader", topology.Start, "c"), opAssign("gone", h.from("gone", 1), "a"))
	h.ok(opMove("orders", f(2), "a", h.token("orders", 2), "", rebalance), opMove("orders", f(3), "a", h.token("orders", 3), "b", rebalance))
	h.ok(opAssign("orders", f(5), "c"), opDrain("c", "c1"), opDelete("gone", false))
	h.wantHolder("orders", 0, "", stateNone)
	h.wantHolder("orders", 2, "a", stateRevoked)
	h.wantNext("orders", 3, "b")
	h.wantHolder("gone", 1, "a", stateRevoked)
	return h
}

// grantIndex renders every consumer's grant index by domain name, so
// indexes of different State values compare.
func grantIndex(s *State) map[string][]string {
	out := map[string][]string{}
	for id, c := range s.consumers {
		refs := []string{}
		for r := range c.grants {
			refs = append(refs, fmt.Sprintf("%s/%s[%d]", r.ks.name(), r.ks.region, r.idx))
		}
		slices.Sort(refs)
		out[id] = refs
	}
	return out
}

func TestFSMDecodeFailurePanics(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 2))
	before := h.state().snapshot()
	for _, data := range [][]byte{
		{0x0a, 0x05, 0x01},       // ops: length 5, one byte present
		{0xff, 0xff, 0xff, 0xff}, // malformed tag
		{0x0a, 0x02, 0x0a, 0x05}, // an Op whose create_domain overruns it
	} {
		func() {
			defer func() {
				r := recover()
				if r == nil {
					t.Fatalf("Apply(%x) did not panic", data)
				}
				if msg := fmt.Sprint(r); !strings.Contains(msg, "undecodable") || !strings.Contains(msg, "index 7") {
					t.Fatalf("panic %q does not say the entry is undecodable at index 7", msg)
				}
			}()
			h.f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: data})
		}()
	}
	if !proto.Equal(before, h.state().snapshot()) {
		t.Fatal("a panicking Apply changed the state")
	}
}

func TestFSMNonCommandLogsIgnored(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 2))
	before := h.state().snapshot()
	for _, typ := range []raft.LogType{raft.LogNoop, raft.LogBarrier, raft.LogConfiguration} {
		if out := h.f.Apply(&raft.Log{Index: 9, Type: typ, Data: []byte("not an entry")}); out != nil {
			t.Fatalf("Apply(%v) = %v, want nil", typ, out)
		}
	}
	if !proto.Equal(before, h.state().snapshot()) {
		t.Fatal("non-command logs changed the state")
	}
}

func TestFSMEmptyEntry(t *testing.T) {
	h := newHarness(t)
	h.ok()
	if h.state().Index() != 1 {
		t.Fatalf("index %d after an empty entry", h.state().Index())
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	h := richState(t)
	want := h.state().snapshot()
	fsnap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Apply goes on while the snapshot waits to be persisted: the snapshot
	// must not see it (hashicorp/raft runs Persist concurrently with Apply).
	next := []*cellv1.Op{
		opRelease("orders", h.from("orders", 3), "a", h.token("orders", 3), false),
		opLeave("b", "b1"),
		opAssign("orders", h.from("orders", 0), "a"),
		opRelease("gone", h.from("gone", 1), "a", h.token("gone", 1), true),
		opDelete("gone", true),
	}
	h.ok(next...)
	wantEffects := slices.Clone(h.last.Effects)
	data := persist(t, fsnap)

	restored := false
	g := &FSM{State: NewState(testRegion), OnRestore: func() { restored = true }}
	if err := restoreInto(t, g, data); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !restored {
		t.Fatal("onRestore was not called")
	}
	if got := g.State.snapshot(); !proto.Equal(got, want) {
		t.Fatalf("restored snapshot differs:\ngot  %v\nwant %v", got, want)
	}
	if g.State.Index() != want.GetIndex() {
		t.Fatalf("restored index %d, want %d", g.State.Index(), want.GetIndex())
	}
	checkInvariants(t, g.State)
	if g.State.consumers["a"].draining || !g.State.consumers["c"].draining {
		t.Fatal("draining flags not restored")
	}

	// The restored FSM behaves exactly like the original: the entry the
	// original applied after the snapshot has the same effects and result.
	gh := &harness{t: t, f: g, index: g.State.Index()}
	g.OnApply = func(_ uint64, res *ApplyResult) {
		gh.last = ApplyResult{Effects: slices.Clone(res.Effects), Routes: slices.Clone(res.Routes)}
	}
	for i, err := range gh.entry(next...) {
		if err != nil {
			t.Fatalf("op %d on the restored FSM: %v", i, err)
		}
	}
	if !slices.Equal(gh.last.Effects, wantEffects) {
		t.Fatalf("restored FSM effects\n%v\nwant\n%v", fmtEffects(gh.last.Effects), fmtEffects(wantEffects))
	}
	if !proto.Equal(g.State.snapshot(), h.state().snapshot()) {
		t.Fatal("restored FSM diverged after one more entry")
	}
	if gi, hi := grantIndex(g.State), grantIndex(h.state()); fmt.Sprint(gi) != fmt.Sprint(hi) {
		t.Fatalf("grant index %v, want %v", gi, hi)
	}
}

// TestSnapshotPersistConcurrentWithApply runs Persist on another goroutine
// while entries apply, as hashicorp/raft does (run with -race).
func TestSnapshotPersistConcurrentWithApply(t *testing.T) {
	h := richState(t)
	want := h.state().snapshot()
	fsnap, _ := h.f.Snapshot()
	var wg sync.WaitGroup
	var data []byte
	var perr error
	wg.Go(func() {
		var sink memSink
		perr = fsnap.Persist(&sink)
		data = sink.Bytes()
	})
	for i := 0; i < 20; i++ {
		h.ok(opJoin(fmt.Sprintf("x%d", i), "i1", "orders"), opDrain(fmt.Sprintf("x%d", i), "i1"))
	}
	wg.Wait()
	if perr != nil {
		t.Fatal(perr)
	}
	var got cellv1.Snapshot
	if err := proto.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, want) {
		t.Fatal("persisted snapshot saw entries applied after Snapshot()")
	}
}

func TestSnapshotPersistWriteErrorCancels(t *testing.T) {
	h := richState(t)
	fsnap, _ := h.f.Snapshot()
	sink := &memSink{writeErr: errors.New("no space")}
	if err := fsnap.Persist(sink); err == nil || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("Persist err = %v", err)
	}
	if !sink.cancelled || sink.closed {
		t.Fatalf("failed Persist: cancelled=%v closed=%v, want cancel only", sink.cancelled, sink.closed)
	}
}

func TestSnapshotEmptyRoundTrip(t *testing.T) {
	h := newHarness(t)
	fsnap, _ := h.f.Snapshot()
	g := &FSM{State: NewState(testRegion)}
	if err := restoreInto(t, g, persist(t, fsnap)); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(g.State.snapshot(), h.state().snapshot()) {
		t.Fatal("empty state did not round-trip")
	}
	// Restore replaces, it does not merge: restoring the empty snapshot
	// into a populated FSM empties it.
	full := richState(t)
	if err := restoreInto(t, full.f, persist(t, fsnap)); err != nil {
		t.Fatal(err)
	}
	if n := len(full.state().domains) + len(full.state().consumers); n != 0 {
		t.Fatalf("%d domains+consumers left after restoring an empty snapshot", n)
	}
	checkInvariants(t, full.state())
}

// TestSnapshotRestoreLegacyFormat: a snapshot written before key spaces
// (one shard list per domain and a domain-wide generation) restores as one
// self-delegated key space per domain — the REGIONAL domain's is the
// cell's region — and the same grants.
func TestSnapshotRestoreLegacyFormat(t *testing.T) {
	h := richState(t)
	cur := h.state().snapshot()
	legacy := proto.Clone(cur).(*cellv1.Snapshot)
	for _, d := range legacy.Domains {
		ks := d.KeySpaces[0]
		d.KeySpaces = nil
		d.Generation = 1
		for _, sh := range ks.Shards {
			sh.Generation, sh.Relinquished = 0, false
		}
		d.Shards = ks.Shards
	}
	rep := newHarness(t)
	if err := restoreInto(t, rep.f, marshalDet(t, legacy)); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, rep.state())
	got := rep.state().snapshot()
	if !proto.Equal(got, cur) {
		t.Fatalf("legacy snapshot restored as\n%v\nwant\n%v", got, cur)
	}
}

func TestSnapshotRestoreBadDataKeepsState(t *testing.T) {
	h := richState(t)
	good := h.state().snapshot()
	mutate := func(fn func(s *cellv1.Snapshot)) []byte {
		s := proto.Clone(good).(*cellv1.Snapshot)
		fn(s)
		return marshalDet(t, s)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"truncated", marshalDet(t, good)[:len(marshalDet(t, good))/2]},
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"unknown consumer", mutate(func(s *cellv1.Snapshot) { s.Consumers = s.Consumers[1:] })},
		{"gap in ranges", mutate(func(s *cellv1.Snapshot) {
			d := s.Domains[slices.IndexFunc(s.Domains, func(d *cellv1.DomainState) bool { return d.Domain.Name == "orders" })]
			d.KeySpaces[0].Shards = slices.Delete(d.KeySpaces[0].Shards, 0, 1)
		})},
		{"no shards", mutate(func(s *cellv1.Snapshot) { s.Domains[0].KeySpaces[0].Shards = nil })},
		{"bad range", mutate(func(s *cellv1.Snapshot) { s.Domains[0].KeySpaces[0].Shards[0].Range.From = []byte{1} })},
		{"key space of a GLOBAL domain with a region", mutate(func(s *cellv1.Snapshot) {
			d := s.Domains[slices.IndexFunc(s.Domains, func(d *cellv1.DomainState) bool { return d.Domain.Name == "orders" })]
			d.KeySpaces[0].Region = "eu-west"
		})},
		{"invalid domain", mutate(func(s *cellv1.Snapshot) { s.Domains[0].Domain.Kind = wdsv1.DomainKind_DOMAIN_KIND_UNSPECIFIED })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restored := false
			h.f.OnRestore = func() { restored = true }
			if err := restoreInto(t, h.f, tc.data); err == nil {
				t.Fatal("Restore accepted bad data")
			}
			if restored {
				t.Fatal("onRestore called for a failed restore")
			}
			if got := h.state().snapshot(); !proto.Equal(got, good) {
				t.Fatal("a failed Restore changed the state")
			}
			checkInvariants(t, h.state())
		})
	}
	t.Run("read error", func(t *testing.T) {
		if err := h.f.Restore(io.NopCloser(errReader{})); err == nil {
			t.Fatal("Restore ignored a read error")
		}
		if !proto.Equal(h.state().snapshot(), good) {
			t.Fatal("a failed Restore changed the state")
		}
	})
	// The state still works after the failed restores.
	h.ok(opAssign("orders", h.from("orders", 0), "b"))
}

// --- tokens ---

// TestTokenSameEntryActivationRefused: two activations of one shard in one
// entry would share the token (generation, index): the second is refused.
func TestTokenSameEntryActivationRefused(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 4))
	h.ok(opJoin("a", "a1", "orders"), opJoin("b", "b1", "orders"), opJoin("c", "c1", "orders"))
	f0, f1 := h.from("orders", 0), h.from("orders", 1)

	h.run(t, "assign leave assign", func(t *testing.T) {
		errs := h.entry(opAssign("orders", f0, "a"), opLeave("a", "a1"), opAssign("orders", f0, "b"))
		if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], ErrConflict) {
			t.Fatalf("results %v, want [nil nil ErrConflict]", errs)
		}
		h.wantHolder("orders", 0, "", stateNone)
		tok := topology.Token{Generation: 1, Index: h.index}
		h.wantEffects(
			Effect{Kind: EffectGranted, Consumer: "a", Domain: "orders", Range: h.domain("orders").ranges[0], Token: tok},
			Effect{Kind: EffectDropped, Consumer: "a", Domain: "orders", Range: h.domain("orders").ranges[0], Token: tok},
			Effect{Kind: EffectLeft, Consumer: "a"},
		)
		// The next entry may grant it: a new index, a new token.
		h.ok(opAssign("orders", f0, "b"))
		if got := h.token("orders", 0); !tok.Less(got) {
			t.Fatalf("token %s not above %s", got, tok)
		}
	})

	h.run(t, "promote release assign", func(t *testing.T) {
		// c holds f1 REVOKED with successor b; one entry releases c
		// (promoting b), releases b, and assigns to c again.
		h.ok(opAssign("orders", f1, "c"))
		h.ok(opMove("orders", f1, "c", h.token("orders", 1), "b", rebalance))
		next := topology.Token{Generation: 1, Index: h.index + 1}
		errs := h.entry(
			opRelease("orders", f1, "c", h.token("orders", 1), false),
			opRelease("orders", f1, "b", next, false),
			opAssign("orders", f1, "c"),
		)
		if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], ErrConflict) {
			t.Fatalf("results %v, want [nil nil ErrConflict]", errs)
		}
		h.wantHolder("orders", 1, "", stateNone)
		granted := 0
		for _, e := range h.last.Effects {
			if e.Kind == EffectGranted {
				granted++
			}
		}
		if granted != 1 {
			t.Fatalf("%d grants of one shard in one entry: %v", granted, fmtEffects(h.last.Effects))
		}
	})

	h.run(t, "different shards share an entry", func(t *testing.T) {
		h.ok(opJoin("a", "a2", "orders"))
		h.ok(opAssign("orders", h.from("orders", 2), "a"), opAssign("orders", h.from("orders", 3), "c"))
		if h.token("orders", 2) != h.token("orders", 3) {
			t.Fatal("shards activated in one entry should carry that entry's index")
		}
	})
}

// TestRegressionSameEntryReactivationStrandsSuccessor: when a shard's
// successor cannot be activated because the shard was already activated in
// the same entry, endHolder once left it ALLOCATED behind no holder, a state
// no op repaired. Now the allocation is cancelled and the shard is granted
// in a later entry.
func TestRegressionSameEntryReactivationStrandsSuccessor(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 1))
	h.ok(opJoin("a", "a1", "orders"), opJoin("b", "b1", "orders"))
	f0 := h.from("orders", 0)
	// One entry: a is granted the shard, moved to b (with the token a was
	// just given: 1.<this index>) and releases it.
	tok := topology.Token{Generation: 1, Index: h.index + 1}
	raw := func(ops ...*cellv1.Op) []error {
		h.index++
		var errs []error
		for _, r := range h.f.Apply(logEntry(t, h.index, ops...)).([]Result) {
			errs = append(errs, r.Err)
		}
		return errs
	}
	errs := raw(opAssign("orders", f0, "a"), opMove("orders", f0, "a", tok, "b", rebalance), opRelease("orders", f0, "a", tok, false))
	t.Logf("entry %d results %v; holder %q/%v next %q/%v", h.index, errs,
		grantID(h.shard("orders", 0).holder), h.shard("orders", 0).holder.state, grantID(h.shard("orders", 0).next), h.shard("orders", 0).next.state)
	if sh := h.shard("orders", 0); sh.holder.consumer == nil && sh.next.consumer != nil {
		t.Errorf("entry %d left successor %q ALLOCATED behind no holder (it was told Prepare, never Grant or Revoke)", h.index, grantID(sh.next))
	}
	// Whatever the entry did, the shard must become grantable again: let
	// the balancer plan and apply a few rounds.
	views := map[string]Lease{"a": {Connected: true}, "b": {Connected: true}}
	for round := 0; round < 5 && h.shard("orders", 0).holder.state != stateActive; round++ {
		ops := planDomain(h.domain("orders"), []*consumer{h.consumer("a"), h.consumer("b")}, views, 4)
		t.Logf("round %d: plan %v", round, ops)
		if len(ops) > 0 {
			raw(ops...)
		}
	}
	if err := raw(opAssign("orders", f0, "b"))[0]; err != nil {
		t.Logf("a later Assign of the shard to b: %v", err)
	}
	if st := h.shard("orders", 0).holder.state; st != stateActive {
		t.Fatalf("shard never granted again: holder %v, next %q", st, grantID(h.shard("orders", 0).next))
	}
}

// TestTokenRandomOps applies long random sequences of ops (mostly valid,
// some stale or wrong) and checks after every entry: the invariants; every
// activation's token is (generation, entry index) and strictly above every
// earlier token of that shard; every holder's token is its shard's last
// activation; a rejected single op changed nothing; and a replica that is
// periodically rebuilt from a persisted snapshot stays identical (results,
// effects, state).
func TestTokenRandomOps(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			steps := 1500
			if testing.Short() {
				steps = 300
			}
			runRandomOps(t, seed, steps)
		})
	}
}

type shardKey struct {
	domain string
	region string
	from   topology.Bound
}

type randOps struct {
	r    *rand.Rand
	h    *harness
	incN int
	// gen plays the delegator's log index: each new delegation's generation.
	gen uint64
}

var (
	randConsumers = []string{"c0", "c1", "c2", "c3", "c4", "c5"}
	randDomains   = []string{"alpha", "beta", "gamma"}
	// randRegions are key-space regions of REGIONAL domains: the cell's own
	// and another region's (served after a failover).
	randRegions = []string{testRegion, "eu-west"}
)

// inSpace sets the key-space region of a shard op.
func inSpace(op *cellv1.Op, region string) *cellv1.Op {
	switch o := op.GetOp().(type) {
	case *cellv1.Op_Assign:
		o.Assign.Region = region
	case *cellv1.Op_Move:
		o.Move.Region = region
	case *cellv1.Op_Release:
		o.Release.Region = region
	}
	return op
}

func opDelegate(name, region string, gen uint64, ranges ...topology.Range) *cellv1.Op {
	op := &cellv1.Delegate{Domain: name, Region: region, Generation: gen, DurationMillis: 13000}
	for _, r := range ranges {
		op.Ranges = append(op.Ranges, topology.RangeToProto(r))
	}
	return &cellv1.Op{Op: &cellv1.Op_Delegate{Delegate: op}}
}

func opRelinquish(name, region string, gen uint64, ranges ...topology.Range) *cellv1.Op {
	op := &cellv1.Relinquish{Domain: name, Region: region, Generation: gen}
	for _, r := range ranges {
		op.Ranges = append(op.Ranges, topology.RangeToProto(r))
	}
	return &cellv1.Op{Op: &cellv1.Op_Relinquish{Relinquish: op}}
}

func (g *randOps) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }

// randShard picks a shard of an existing domain, preferring (a few tries)
// one for which want holds.
func (g *randOps) randShard(want func(sh *shard) bool) (*keySpace, int, bool) {
	s := g.h.state()
	var ks *keySpace
	var i int
	for try := 0; try < 6; try++ {
		d, ok := s.domains[g.pick(randDomains)]
		if !ok || len(d.spaces) == 0 {
			continue
		}
		ks = d.spaces[g.r.IntN(len(d.spaces))]
		if i = g.r.IntN(len(ks.shards)); want(&ks.shards[i]) {
			break
		}
	}
	return ks, i, ks != nil
}

// randRanges picks a run of whole shards of the domain's even layout, or
// (nil) the whole key space.
func (g *randOps) randRanges(d *domain) []topology.Range {
	if g.r.IntN(3) == 0 {
		return nil
	}
	ranges, err := topology.SplitEven(d.spec.Shards)
	if err != nil {
		return nil
	}
	a := g.r.IntN(len(ranges))
	b := a + g.r.IntN(len(ranges)-a)
	return []topology.Range{{From: ranges[a].From, To: ranges[b].To}}
}

// delegationOp is a random Delegate (mostly of a fresh generation, now and
// then a stale or repeated one) or Relinquish (mostly of a generation in use).
func (g *randOps) delegationOp() *cellv1.Op {
	r := g.r
	name := g.pick(randDomains)
	d, ok := g.h.state().domains[name]
	if !ok {
		return opDelegate(name, "", 1)
	}
	region := ""
	if d.spec.Kind == topology.KindRegional {
		region = g.pick(randRegions)
	}
	if r.IntN(3) == 0 {
		gen := g.gen
		if ks := d.space(region); ks != nil && r.IntN(4) > 0 {
			gen = ks.shards[r.IntN(len(ks.shards))].generation
		}
		return opRelinquish(name, region, gen, g.randRanges(d)...)
	}
	gen := g.gen + 1
	switch r.IntN(8) {
	case 0:
		gen = uint64(r.IntN(int(g.gen) + 1)) // stale, repeated or 0
	default:
		g.gen = gen
	}
	return opDelegate(name, region, gen, g.randRanges(d)...)
}

func (g *randOps) incOf(id string) string {
	if c, ok := g.h.state().consumers[id]; ok && g.r.IntN(20) > 0 {
		return c.incarnation
	}
	return "stale"
}

func (g *randOps) op() *cellv1.Op {
	r := g.r
	switch w := r.IntN(100); {
	case w < 4:
		kinds := []wdsv1.DomainKind{global, regional, unit}
		k := kinds[r.IntN(3)]
		n := uint32(1 + r.IntN(6))
		if k == unit {
			n = 0
		}
		op := opCreate(g.pick(randDomains), k, n)
		// Half the domains wait for delegations, as in a federated cell.
		op.GetCreateDomain().Federated = r.IntN(2) == 0
		return op
	case w < 6:
		name := g.pick(randDomains)
		d, ok := g.h.state().domains[name]
		if ok && !d.deleting && r.IntN(3) > 0 {
			return opDrain(g.pick(randConsumers), "stale") // deletes are rarer
		}
		return opDelete(name, ok && d.deleting && r.IntN(4) > 0 || r.IntN(8) == 0)
	case w < 12:
		id := g.pick(randConsumers)
		inc := g.incOf(id)
		if inc == "stale" || r.IntN(3) == 0 {
			g.incN++
			inc = fmt.Sprintf("i%d", g.incN)
		}
		var doms []string
		for _, d := range randDomains {
			if r.IntN(4) > 0 {
				doms = append(doms, d)
			}
		}
		return opJoin(id, inc, doms...)
	case w < 16:
		id := g.pick(randConsumers)
		return opLeave(id, g.incOf(id))
	case w < 18:
		id := g.pick(randConsumers)
		return opDrain(id, g.incOf(id))
	case w < 24:
		return g.delegationOp()
	case w < 45:
		d, i, ok := g.randShard(func(sh *shard) bool { return sh.holder.state != stateActive && sh.next.consumer == nil })
		if !ok {
			return opAssign(g.pick(randDomains), topology.Start, g.pick(randConsumers))
		}
		id := g.pick(randConsumers)
		if r.IntN(5) > 0 {
			// Mostly to a consumer that serves the domain.
			var serving []string
			for _, c := range sortedConsumers(g.h.state()) {
				if c.serves(d.name()) {
					serving = append(serving, c.id)
				}
			}
			if len(serving) > 0 {
				id = g.pick(serving)
			}
		}
		return inSpace(opAssign(d.name(), d.ranges[i].From, id), d.region)
	case w < 65:
		d, i, ok := g.randShard(func(sh *shard) bool { return sh.holder.state == stateActive })
		if !ok || d.shards[i].holder.consumer == nil {
			return opMove(g.pick(randDomains), topology.Start, g.pick(randConsumers), topology.Token{Generation: 1, Index: uint64(r.IntN(50))}, "", rebalance)
		}
		ho := d.shards[i].holder
		tok := ho.token
		if r.IntN(10) == 0 {
			tok.Index--
		}
		next := ""
		if r.IntN(4) > 0 {
			next = g.pick(randConsumers)
		}
		return inSpace(opMove(d.name(), d.ranges[i].From, ho.consumer.id, tok, next, rebalance), d.region)
	case w < 97:
		d, i, ok := g.randShard(func(sh *shard) bool { return sh.holder.consumer != nil })
		if !ok {
			return opRelease(g.pick(randDomains), topology.Start, g.pick(randConsumers), topology.Token{}, false)
		}
		sh := d.shards[i]
		switch {
		case sh.next.consumer != nil && r.IntN(3) == 0:
			return inSpace(opRelease(d.name(), d.ranges[i].From, sh.next.consumer.id, topology.Token{}, false), d.region)
		case sh.holder.consumer != nil && r.IntN(8) > 0:
			return inSpace(opRelease(d.name(), d.ranges[i].From, sh.holder.consumer.id, sh.holder.token, r.IntN(2) == 0), d.region)
		}
		return inSpace(opRelease(d.name(), d.ranges[i].From, g.pick(randConsumers), topology.Token{Generation: 1, Index: uint64(r.IntN(100))}, false), d.region)
	default:
		return &cellv1.Op{Ignorable: true} // an informational op of a newer version
	}
}

func runRandomOps(t *testing.T, seed uint64, steps int) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	h := newHarness(t)
	rep := newHarness(t) // a replica, rebuilt from snapshots now and then
	g := &randOps{r: r, h: h}
	last := map[shardKey]topology.Token{}
	activations, rejected, restores := 0, 0, 0
	generations := map[uint64]bool{}
	for step := 0; step < steps; step++ {
		n := 1 + r.IntN(4)
		if r.IntN(2) == 0 {
			n = 1
		}
		ops := make([]*cellv1.Op, n)
		for i := range ops {
			ops[i] = g.op()
		}
		before := snapshotAt(h.state(), 0)
		h.index++
		rep.index++
		l := logEntry(t, h.index, ops...)
		errs := h.applyLog(l, n)
		repErrs := rep.applyLog(l, n)

		// Replicas agree on results, effects and state.
		for i := range errs {
			if fmt.Sprint(errs[i]) != fmt.Sprint(repErrs[i]) {
				t.Fatalf("step %d op %d: result %v, replica %v", step, i, errs[i], repErrs[i])
			}
		}
		if !slices.Equal(h.last.Effects, rep.last.Effects) {
			t.Fatalf("step %d: effects differ from the replica's:\n%v\n%v", step, fmtEffects(h.last.Effects), fmtEffects(rep.last.Effects))
		}
		if !proto.Equal(h.state().snapshot(), rep.state().snapshot()) {
			t.Fatalf("step %d: replica diverged", step)
		}

		// A rejected op changes nothing.
		if n == 1 && errs[0] != nil {
			rejected++
			if !proto.Equal(before, snapshotAt(h.state(), 0)) {
				t.Fatalf("step %d: rejected op %v (%v) changed the state", step, ops[0], errs[0])
			}
			if len(h.last.Effects) != 0 || len(h.last.Routes) != 0 {
				t.Fatalf("step %d: rejected op %v had effects", step, ops[0])
			}
		}

		// Tokens strictly increase per shard.
		delegates := slices.ContainsFunc(ops, func(op *cellv1.Op) bool { return op.GetDelegate() != nil || op.GetRelinquish() != nil })
		for _, e := range h.last.Effects {
			if e.Kind != EffectGranted {
				continue
			}
			activations++
			ks := h.state().domains[e.Domain].space(e.Region)
			sh := &ks.shards[ks.shardAt(e.Range.From)]
			if !sh.delegated() && !delegates {
				t.Fatalf("step %d: granted %s %s/%s outside a live delegation", step, e.Token, e.Domain, e.Region)
			}
			// A Delegate later in the entry may have raised the shard's
			// generation since the activation.
			if e.Token.Index != h.index || e.Token.Generation == 0 || e.Token.Generation > sh.generation ||
				(!delegates && e.Token.Generation != sh.generation) {
				t.Fatalf("step %d: granted token %s, want (%d, %d)", step, e.Token, sh.generation, h.index)
			}
			generations[sh.generation] = true
			k := shardKey{e.Domain, e.Region, e.Range.From}
			if prev, ok := last[k]; ok && !prev.Less(e.Token) {
				t.Fatalf("step %d: %s %s granted token %s after %s", step, e.Domain, e.Range, e.Token, prev)
			}
			last[k] = e.Token
		}
		for name, d := range h.state().domains {
			for _, ks := range d.spaces {
				for i := range ks.shards {
					ho := ks.shards[i].holder
					if ho.consumer == nil {
						continue
					}
					if k := (shardKey{name, ks.region, ks.ranges[i].From}); last[k] != ho.token {
						t.Fatalf("step %d: %s/%s[%d] holder token %s, last activation %s", step, name, ks.region, i, ho.token, last[k])
					}
				}
			}
		}
		// Tokens are per key of one domain incarnation: a purged domain's
		// name starts afresh (a lone cell's generation is always 1).
		for k := range last {
			if _, ok := h.state().domains[k.domain]; !ok {
				delete(last, k)
			}
		}

		if step%97 == 96 {
			fsnap, err := h.f.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if err := restoreInto(t, rep.f, persist(t, fsnap)); err != nil {
				t.Fatalf("step %d: restore: %v", step, err)
			}
			checkInvariants(t, rep.state())
			restores++
		}
	}
	if activations < steps/10 || rejected == 0 || restores == 0 || len(generations) < 3 {
		t.Fatalf("weak run: %d activations (under %d generations), %d rejected single ops, %d restores in %d steps", activations, len(generations), rejected, restores, steps)
	}
	t.Logf("%d steps: %d activations, %d rejected single ops, %d restores", steps, activations, rejected, restores)
}
