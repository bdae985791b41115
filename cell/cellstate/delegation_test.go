package cellstate

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Delegations in the FSM (contract (5)): nothing activates outside a live
// delegation, promotion included; generations come from the delegation and
// only rise; REGIONAL key spaces are kept apart.

func opCreateFederated(name string, kind wdsv1.DomainKind, shards uint32) *cellv1.Op {
	op := opCreate(name, kind, shards)
	op.GetCreateDomain().Federated = true
	return op
}

func TestDelegationStateNothingBeforeDelegate(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreateFederated("orders", global, 4), opJoin("a", "a1", "orders"))
	if d := h.state().domains["orders"]; len(d.spaces) != 0 {
		t.Fatalf("a federated domain has %d key spaces before any delegation", len(d.spaces))
	}
	if err := h.entry(opAssign("orders", topology.Start, "a"))[0]; !errors.Is(err, ErrNotFound) {
		t.Fatalf("assign before a delegation: %v, want not found", err)
	}
	// Delegate the first half only.
	half := topology.Range{From: topology.Start, To: h.evenBound(4, 2)}
	h.ok(opDelegate("orders", "", 40, half))
	ks := h.domain("orders")
	for i := range ks.shards {
		err := h.entry(opAssign("orders", ks.ranges[i].From, "a"))[0]
		switch {
		case i < 2 && err != nil:
			t.Fatalf("shard %d inside the delegation: %v", i, err)
		case i >= 2 && !errors.Is(err, ErrFailedPrecondition):
			t.Fatalf("shard %d outside the delegation: %v, want failed precondition", i, err)
		}
	}
	if tok := h.token("orders", 0); tok.Generation != 40 {
		t.Fatalf("token %s, want generation 40 (the delegation's)", tok)
	}
}

// evenBound is boundary i of an even split in n.
func (h *harness) evenBound(n, i int) topology.Bound {
	rs, err := topology.SplitEven(n)
	if err != nil {
		h.t.Fatal(err)
	}
	if i == n {
		return topology.End
	}
	return rs[i].From
}

func TestDelegationStateRangesOnShardBoundaries(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreateFederated("orders", global, 4))
	off := topology.Range{From: topology.Start, To: h.evenBound(8, 1)} // half a shard
	if err := h.entry(opDelegate("orders", "", 5, off))[0]; !errors.Is(err, topology.ErrInvalid) {
		t.Fatalf("delegation off shard boundaries: %v, want invalid", err)
	}
	if d := h.state().domains["orders"]; len(d.spaces) != 0 {
		t.Fatal("a refused delegation left a key space behind")
	}
	if err := h.entry(opDelegate("orders", "eu-west", 5))[0]; !errors.Is(err, topology.ErrInvalid) {
		t.Fatalf("a region on a GLOBAL domain's delegation: %v, want invalid", err)
	}
	if err := h.entry(opDelegate("orders", "", 0))[0]; !errors.Is(err, topology.ErrInvalid) {
		t.Fatalf("generation 0: %v, want invalid", err)
	}
}

func TestDelegationStateStaleGenerationRejected(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreateFederated("orders", global, 4))
	h.ok(opDelegate("orders", "", 10, topology.Range{From: h.evenBound(4, 2), To: topology.End}))
	before := snapshotAt(h.state(), 0)
	// Generation 9 over the whole space collides with 10 on the second half:
	// nothing of it applies.
	if err := h.entry(opDelegate("orders", "", 9))[0]; !errors.Is(err, ErrConflict) {
		t.Fatalf("stale delegation: %v, want conflict", err)
	}
	if after := snapshotAt(h.state(), 0); !proto.Equal(after, before) {
		t.Fatal("a rejected delegation changed the state")
	}
	h.ok(opDelegate("orders", "", 11)) // a newer one covers everything
	for i := range 4 {
		if g := h.shard("orders", i).generation; g != 11 {
			t.Fatalf("shard %d generation %d, want 11", i, g)
		}
	}
}

// TestDelegationStateRelinquishStopsPromotion is the FSM side of the probe:
// a handover a→b is in flight when the delegation is relinquished. b must
// not be promoted when a releases, nor when a's grant expires; a new
// delegation is needed before anything activates again.
func TestDelegationStateRelinquishStopsPromotion(t *testing.T) {
	for _, expired := range []bool{false, true} {
		t.Run(fmt.Sprintf("expired=%v", expired), func(t *testing.T) {
			h := newHarness(t)
			h.ok(opCreateFederated("orders", global, 2), opJoin("a", "a1", "orders"), opJoin("b", "b1", "orders"))
			h.ok(opDelegate("orders", "", 3))
			h.ok(opAssign("orders", h.from("orders", 0), "a"), opAssign("orders", h.from("orders", 1), "a"))
			tok := h.token("orders", 0)
			h.ok(opMove("orders", h.from("orders", 0), "a", tok, "b", rebalance))
			h.wantNext("orders", 0, "b")
			h.ok(opRelinquish("orders", "", 3))
			// The successor is dropped, the other ACTIVE grant revoked.
			if sh := h.shard("orders", 0); sh.next.consumer != nil || !sh.relinquished {
				t.Fatalf("after relinquish: next %q, relinquished %v", grantID(sh.next), sh.relinquished)
			}
			h.wantHolder("orders", 1, "a", stateRevoked)
			var dropped, revoked bool
			for _, e := range h.last.Effects {
				dropped = dropped || (e.Kind == EffectRevoked && e.Consumer == "b" && e.Reason == wdsv1.RevokeReason_REVOKE_REASON_DELEGATION)
				revoked = revoked || (e.Kind == EffectRevoked && e.Consumer == "a" && e.Reason == wdsv1.RevokeReason_REVOKE_REASON_DELEGATION)
			}
			if !dropped || !revoked {
				t.Fatalf("effects %v: want b's allocation dropped and a's grant revoked, reason delegation", fmtEffects(h.last.Effects))
			}
			// Neither a late successor nor a free assignment gets in.
			if err := h.entry(opAssign("orders", h.from("orders", 0), "b"))[0]; !errors.Is(err, ErrFailedPrecondition) {
				t.Fatalf("allocation after relinquish: %v", err)
			}
			h.ok(opRelease("orders", h.from("orders", 0), "a", tok, expired))
			if sh := h.shard("orders", 0); sh.holder.consumer != nil {
				t.Fatalf("after a's release the shard is held by %q", grantID(sh.holder))
			}
			if err := h.entry(opAssign("orders", h.from("orders", 0), "b"))[0]; !errors.Is(err, ErrFailedPrecondition) {
				t.Fatalf("assign after relinquish: %v", err)
			}
			// Re-delegating the same generation is refused; a newer one works.
			if err := h.entry(opDelegate("orders", "", 3))[0]; !errors.Is(err, ErrConflict) {
				t.Fatalf("re-delegating a relinquished generation: %v", err)
			}
			h.ok(opDelegate("orders", "", 8))
			h.ok(opAssign("orders", h.from("orders", 0), "b"))
			if got := h.token("orders", 0); got.Generation != 8 || !tok.Less(got) {
				t.Fatalf("token after re-delegation %s, want generation 8 above %s", got, tok)
			}
		})
	}
}

func TestDelegationStateRegionalKeySpaces(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreateFederated("carts", regional, 2), opJoin("a", "a1", "carts"), opJoin("b", "b1", "carts"))
	h.ok(opDelegate("carts", testRegion, 4), opDelegate("carts", "eu-west", 6))
	d := h.state().domains["carts"]
	if len(d.spaces) != 2 || d.spaces[0].region != "eu-west" || d.spaces[1].region != testRegion {
		t.Fatalf("key spaces %v", d.spaces)
	}
	from := d.spaces[0].ranges[0].From
	// The same range start in two key spaces is two shards.
	h.ok(inSpace(opAssign("carts", from, "a"), testRegion), inSpace(opAssign("carts", from, "b"), "eu-west"))
	if h := d.space(testRegion).shards[0].holder; h.consumer.id != "a" || h.token.Generation != 4 {
		t.Fatalf("us-east holder %s %s", grantID(h), h.token)
	}
	if h := d.space("eu-west").shards[0].holder; h.consumer.id != "b" || h.token.Generation != 6 {
		t.Fatalf("eu-west holder %s %s", grantID(h), h.token)
	}
	// An op without a region names the cell's own key space (entries and
	// clients from before key spaces).
	tok := d.space(testRegion).shards[0].holder.token
	h.ok(opRelease("carts", from, "a", tok, false))
	if d.space(testRegion).shards[0].holder.consumer != nil || d.space("eu-west").shards[0].holder.consumer == nil {
		t.Fatal("a region-less release ended the wrong key space's grant")
	}
	// Relinquishing one key space leaves the other.
	h.ok(opRelinquish("carts", "eu-west", 6))
	if sh := d.space(testRegion).shards[1]; !sh.delegated() {
		t.Fatal("relinquishing eu-west touched us-east")
	}
	if err := h.entry(inSpace(opAssign("carts", from, "a"), "ap-south"))[0]; !errors.Is(err, ErrNotFound) {
		t.Fatalf("assign in a key space the cell does not hold: %v", err)
	}
	live, _ := h.state().LiveDelegations()
	if want := []DelegationID{{Domain: "carts", Region: testRegion, Generation: 4}}; !slices.Equal(live["carts"], want) {
		t.Fatalf("live delegations %v, want %v", live["carts"], want)
	}
	eu := d.space("eu-west")
	if rel := h.state().ReleasedRanges(); len(rel) != 1 || rel[0].DelegationID != (DelegationID{Domain: "carts", Region: "eu-west", Generation: 6}) ||
		!slices.Equal(rel[0].Ranges, eu.ranges[1:]) {
		t.Fatalf("released %+v while b still holds its revoked grant of shard 0: want only shard 1 of carts/eu-west", rel)
	}
	btok := eu.shards[0].holder.token
	h.ok(inSpace(opRelease("carts", from, "b", btok, false), "eu-west"))
	whole := []topology.Range{{From: eu.ranges[0].From, To: eu.ranges[1].To}}
	if rel := h.state().ReleasedRanges(); len(rel) != 1 || !slices.Equal(rel[0].Ranges, whole) {
		t.Fatalf("released %+v, want all of carts/eu-west generation 6", rel)
	}
}

// TestDelegationTokensAcrossCells: a range moves back and forth between two
// cells whose log indexes differ widely (cell A far ahead). The delegator
// issues each move a higher generation and relinquishes before it
// delegates, as the global group does. Per key, tokens strictly increase
// across both cells, and no key is ever ACTIVE in both at once.
func TestDelegationTokensAcrossCells(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			cells := []*harness{newHarness(t), newHarness(t)}
			cells[0].index = 100000 // A's log is far ahead of B's
			const n = 8
			for _, h := range cells {
				h.ok(opCreateFederated("orders", global, n))
				for _, id := range randConsumers {
					h.ok(opJoin(id, id+"-1", "orders"))
				}
			}
			ranges, _ := topology.SplitEven(n)
			gen := uint64(1)
			holder := make([]int, n) // which cell holds shard i's delegation
			for i := range holder {
				holder[i] = r.IntN(2)
				gen++
				cells[holder[i]].ok(opDelegate("orders", "", gen, ranges[i]))
			}
			last := map[topology.Bound]topology.Token{}
			for step := 0; step < 400; step++ {
				i := r.IntN(n)
				switch w := r.IntN(10); {
				case w < 2: // move shard i's delegation to the other cell
					from := cells[holder[i]]
					g := from.shard("orders", i).generation
					from.ok(opRelinquish("orders", "", g, ranges[i]))
					if ho := from.shard("orders", i).holder; ho.consumer != nil {
						from.ok(opRelease("orders", ranges[i].From, ho.consumer.id, ho.token, r.IntN(2) == 0))
					}
					holder[i] = 1 - holder[i]
					gen += uint64(1 + r.IntN(3))
					cells[holder[i]].ok(opDelegate("orders", "", gen, ranges[i]))
				default: // churn inside the holding cell
					h := cells[holder[i]]
					sh := h.shard("orders", i)
					if ho := sh.holder; ho.consumer != nil {
						h.ok(opRelease("orders", ranges[i].From, ho.consumer.id, ho.token, false))
					}
					h.ok(opAssign("orders", ranges[i].From, randConsumers[r.IntN(len(randConsumers))]))
					tok := h.token("orders", i)
					if prev, ok := last[ranges[i].From]; ok && !prev.Less(tok) {
						t.Fatalf("step %d: shard %d token %s after %s", step, i, tok, prev)
					}
					last[ranges[i].From] = tok
				}
				for j := range n {
					a := cells[0].shard("orders", j).holder.state == stateActive
					b := cells[1].shard("orders", j).holder.state == stateActive
					if a && b {
						t.Fatalf("step %d: shard %d ACTIVE in both cells", step, j)
					}
				}
			}
			if len(last) < n/2 {
				t.Fatalf("weak run: %d shards granted", len(last))
			}
		})
	}
}

// BenchmarkRelinquishSweep is the cost of one relinquish sweep of a
// delegation of 10,000 shards, 5,000 of them held ACTIVE and 1,000 with an
// ALLOCATED successor: the op applied on the FSM goroutine.
func BenchmarkRelinquishSweep(b *testing.B) {
	const shards = 10000
	for b.Loop() {
		b.StopTimer()
		s := NewState(testRegion)
		idx := uint64(1)
		apply := func(ops ...*cellv1.Op) {
			var res ApplyResult
			for j, r := range s.applyEntry(idx, ops, &res) {
				err := r.Err
				if err != nil {
					b.Fatalf("op %d: %v", j, err)
				}
			}
			idx++
		}
		apply(opCreateFederated("orders", global, shards))
		var joins []*cellv1.Op
		for c := range 100 {
			joins = append(joins, opJoin(fmt.Sprint("c", c), fmt.Sprint("c", c, "-1"), "orders"))
		}
		apply(joins...)
		apply(opDelegate("orders", "", 2))
		ks := s.domains["orders"].spaces[0]
		var assigns []*cellv1.Op
		for i := 0; i < shards/2; i++ {
			assigns = append(assigns, opAssign("orders", ks.ranges[i].From, fmt.Sprint("c", i%100)))
		}
		apply(assigns...)
		var moves []*cellv1.Op
		for i := 0; i < shards/10; i++ {
			h := ks.shards[i].holder
			moves = append(moves, opMove("orders", ks.ranges[i].From, h.consumer.id, h.token, fmt.Sprint("c", (i+1)%100), rebalance))
		}
		apply(moves...)
		b.StartTimer()
		var res ApplyResult
		start := time.Now()
		if err := s.applyEntry(idx, []*cellv1.Op{opRelinquish("orders", "", 2)}, &res)[0].Err; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds()), "µs/sweep")
		b.ReportMetric(float64(len(res.Effects)), "effects")
	}
}

// TestDelegationStateEndedEndsStaleGrants: grants held under a delegation
// that is no longer live in the cell (relinquished, or a later generation
// delegated since) are stale; once the delegator says it no longer has
// that delegation at all (Ended), the planner ends them at once, though
// their holder's lease has not run out. A grant under a live delegation
// never ends that way, whatever Ended says.
func TestDelegationStateEndedEndsStaleGrants(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreateFederated("orders", global, 2), opCreateFederated("prices", global, 1), opJoin("a", "a1", "orders", "prices"))
	h.ok(opDelegate("orders", "", 3), opDelegate("prices", "", 4))
	h.ok(opAssign("orders", h.from("orders", 0), "a"), opAssign("orders", h.from("orders", 1), "a"), opAssign("prices", h.from("prices", 0), "a"))
	if got := h.state().StaleDelegations(); len(got) != 0 {
		t.Fatalf("stale delegations %v before any relinquish", got)
	}
	// Relinquished; then shard 0 delegated again under a later generation.
	h.ok(opRelinquish("orders", "", 3))
	h.ok(opDelegate("orders", "", 7, topology.Range{From: h.from("orders", 0), To: h.from("orders", 1)}))
	want := []DelegationID{{Domain: "orders", Generation: 3}}
	if got := h.state().StaleDelegations(); !slices.Equal(got, want) {
		t.Fatalf("stale delegations %v, want %v", got, want)
	}
	now := time.Unix(1000, 0)
	plan := func(ended func(DelegationID) bool) []*cellv1.Op {
		var p Planner
		return p.Plan(h.state(), PlanInput{
			Now:        now,
			Leases:     map[string]Lease{"a": {Incarnation: "a1", Anchor: now, Connected: true}},
			Deadline:   func(anchor time.Time, ttl time.Duration) time.Time { return anchor.Add(ttl) },
			Unanchored: now,
			Grantable:  func(string, time.Duration) bool { return true },
			MaxMoves:   4,
			Ended:      ended,
		}).Ops
	}
	releases := func(ops []*cellv1.Op) map[string]int {
		n := map[string]int{}
		for _, op := range ops {
			if r := op.GetRelease(); r != nil && r.GetExpired() {
				n[r.GetDomain()]++
			}
		}
		return n
	}
	if got := releases(plan(nil)); len(got) != 0 {
		t.Fatalf("without Ended the live lease's grants expired: %v", got)
	}
	if got := releases(plan(func(DelegationID) bool { return false })); len(got) != 0 {
		t.Fatalf("with nothing ended the live lease's grants expired: %v", got)
	}
	everything := func(DelegationID) bool { return true }
	ops := plan(everything)
	if got := releases(ops); got["orders"] != 2 || got["prices"] != 0 {
		t.Fatalf("with generation 3 ended: expiries %v, want both orders shards and nothing of prices (live)", got)
	}
	h.ok(ops...)
	if got := h.state().StaleDelegations(); len(got) != 0 {
		t.Fatalf("stale delegations %v after their grants ended", got)
	}
	h.wantHolder("prices", 0, "a", stateActive)
}
