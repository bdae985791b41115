package cellstate

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
)

// planSim runs planDomain against a State driven through fsm.Apply, the way
// the leader's balanceLoop does: plan, commit the plan as one entry, let
// revoked holders release, plan again.
type planSim struct {
	*harness
	name     string
	maxMoves int
	// leases are the consumers with a lease at the leader; the value says
	// whether the session is connected.
	leases map[string]bool
	incs   map[string]string
}

func newPlanSim(t testing.TB, shards uint32, maxMoves int) *planSim {
	p := &planSim{harness: newHarness(t), name: "orders", maxMoves: maxMoves, leases: map[string]bool{}, incs: map[string]string{}}
	p.ok(opCreate(p.name, global, shards))
	return p
}

func (p *planSim) join(ids ...string) {
	p.t.Helper()
	var ops []*cellv1.Op
	for _, id := range ids {
		p.incs[id] = id + "-1"
		p.leases[id] = true
		ops = append(ops, opJoin(id, p.incs[id], p.name))
	}
	p.ok(ops...)
}

func (p *planSim) leave(id string) {
	p.t.Helper()
	p.ok(opLeave(id, p.incs[id]))
	delete(p.leases, id)
}

func (p *planSim) drain(id string) {
	p.t.Helper()
	p.ok(opDrain(id, p.incs[id]))
}

// eligible mirrors leader.plan: a lease of this incarnation, not draining,
// serving the domain, of the cell's region; sorted by id.
func (p *planSim) eligible() []*consumer {
	var out []*consumer
	for _, c := range sortedConsumers(p.state()) {
		if _, ok := p.leases[c.id]; ok && !c.draining && c.serves(p.name) && c.region == p.state().region {
			out = append(out, c)
		}
	}
	return out
}

func (p *planSim) views() map[string]Lease {
	v := map[string]Lease{}
	for id, conn := range p.leases {
		v[id] = Lease{Connected: conn}
	}
	return v
}

func (p *planSim) plan() []*cellv1.Op {
	return planDomain(p.domain(p.name), p.eligible(), p.views(), p.maxMoves)
}

// apply commits ops as one entry; a plan made from the current state must
// apply completely.
func (p *planSim) apply(ops []*cellv1.Op) {
	p.t.Helper()
	if len(ops) > 0 {
		p.ok(ops...)
	}
}

// release lets each REVOKED holder release (with probability prob, using
// rnd), as its handler returning would; it returns how many did.
func (p *planSim) release(rnd *rand.Rand, prob float64) int {
	p.t.Helper()
	d := p.domain(p.name)
	var ops []*cellv1.Op
	for i := range d.shards {
		ho := d.shards[i].holder
		if ho.state == stateRevoked && (rnd == nil || rnd.Float64() < prob) {
			ops = append(ops, opRelease(p.name, d.ranges[i].From, ho.consumer.id, ho.token, false))
		}
	}
	p.apply(ops)
	return len(ops)
}

func (p *planSim) inflight() int {
	n := 0
	for _, sh := range p.domain(p.name).shards {
		if sh.holder.state == stateRevoked && sh.next.consumer != nil {
			n++
		}
	}
	return n
}

func (p *planSim) revoked() int {
	n := 0
	for _, sh := range p.domain(p.name).shards {
		if sh.holder.state == stateRevoked {
			n++
		}
	}
	return n
}

// converge plans, applies and releases until a plan is empty and no grant
// is revoked, checking the move cap every round; it returns the rounds
// taken and the Move ops made.
func (p *planSim) converge(maxRounds int, rnd *rand.Rand) (rounds, moves int) {
	p.t.Helper()
	for {
		before := p.inflight()
		ops := p.plan()
		if len(ops) == 0 && p.revoked() == 0 {
			return rounds, moves
		}
		rounds++
		if rounds > maxRounds {
			p.t.Fatalf("no convergence in %d rounds: counts %v, last plan %v", maxRounds, p.counts(), ops)
		}
		m := len(movesOf(ops))
		if allowed := max(0, p.maxMoves-before); m > allowed {
			p.t.Fatalf("round %d: %d moves with %d in flight, cap %d", rounds, m, before, p.maxMoves)
		}
		moves += m
		p.apply(ops)
		if rnd == nil {
			p.release(nil, 1)
		} else {
			p.release(rnd, 0.5)
		}
	}
}

// counts are the ACTIVE shards per consumer.
func (p *planSim) counts() map[string]int {
	out := map[string]int{}
	for _, sh := range p.domain(p.name).shards {
		if sh.holder.state == stateActive {
			out[sh.holder.consumer.id]++
		}
	}
	return out
}

// wantBalanced checks that every id holds floor(n/k) or ceil(n/k) ACTIVE
// shards, that these are all of the domain's shards and nothing is in
// flight.
func (p *planSim) wantBalanced(ids ...string) {
	p.t.Helper()
	n, k := len(p.domain(p.name).shards), len(ids)
	counts := p.counts()
	total := 0
	for _, id := range ids {
		c := counts[id]
		total += c
		if c < n/k || c > (n+k-1)/k {
			p.t.Fatalf("%s holds %d shards, want %d..%d: %v", id, c, n/k, (n+k-1)/k, counts)
		}
	}
	if total != n || p.revoked() != 0 {
		p.t.Fatalf("%d of %d shards held by %v, %d revoked: %v", total, n, ids, p.revoked(), counts)
	}
}

// assignRun gives shards [from, from+n) to id, in one entry.
func (p *planSim) assignRun(id string, from, n int) {
	p.t.Helper()
	var ops []*cellv1.Op
	for i := from; i < from+n; i++ {
		ops = append(ops, opAssign(p.name, p.from(p.name, i), id))
	}
	p.ok(ops...)
}

func movesOf(ops []*cellv1.Op) []*cellv1.Move {
	var out []*cellv1.Move
	for _, op := range ops {
		if m := op.GetMove(); m != nil {
			out = append(out, m)
		}
	}
	return out
}

func assignsOf(ops []*cellv1.Op) []*cellv1.Assign {
	var out []*cellv1.Assign
	for _, op := range ops {
		if a := op.GetAssign(); a != nil {
			out = append(out, a)
		}
	}
	return out
}

// minMoves is the least number of shards that must change hands among
// eligible consumers with the given loads: giving the ⌈n/k⌉ targets to the
// most loaded, the sum of loads above target.
func minMoves(n int, loads []int) int {
	k := len(loads)
	l := slices.Clone(loads)
	sort.Sort(sort.Reverse(sort.IntSlice(l)))
	total := 0
	for i, x := range l {
		t := n / k
		if i < n%k {
			t++
		}
		total += max(0, x-t)
	}
	return total
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("c%d", i)
	}
	return out
}

func TestPlanFromEmpty(t *testing.T) {
	p := newPlanSim(t, 64, 4)
	p.join(ids(5)...)
	ops := p.plan()
	if len(ops) != 64 || len(assignsOf(ops)) != 64 {
		t.Fatalf("plan from empty: %d ops, %d assigns, want 64 assigns (the move cap does not apply to free shards)", len(ops), len(assignsOf(ops)))
	}
	p.apply(ops)
	p.wantBalanced(ids(5)...)
	thirteen := 0
	for _, c := range p.counts() {
		if c == 13 {
			thirteen++
		}
	}
	if thirteen != 4 {
		t.Fatalf("%d consumers hold 13, want 4: %v", thirteen, p.counts())
	}
	if ops := p.plan(); len(ops) != 0 {
		t.Fatalf("balanced domain re-planned: %v", ops)
	}
}

func TestPlanSixthConsumerMovesMinimum(t *testing.T) {
	p := newPlanSim(t, 64, 64)
	p.join(ids(5)...)
	p.converge(2, nil)
	var loads []int
	for _, id := range ids(5) {
		loads = append(loads, p.counts()[id])
	}
	p.join("c5")
	ops := p.plan()
	mv := movesOf(ops)
	if want := minMoves(64, append(loads, 0)); len(mv) != want || want != 10 || len(ops) != len(mv) {
		t.Fatalf("adding a 6th consumer: %d ops, %d moves, want exactly %d moves (loads %v)", len(ops), len(mv), want, loads)
	}
	for _, m := range mv {
		if m.GetNext() != "c5" || m.GetReason() != rebalance {
			t.Fatalf("move %v, want to c5 for REBALANCE", m)
		}
	}
	p.apply(ops)
	p.release(nil, 1)
	p.wantBalanced(ids(6)...)
	if c := p.counts()["c5"]; c != 10 {
		t.Fatalf("c5 holds %d, want 10", c)
	}
	if ops := p.plan(); len(ops) != 0 {
		t.Fatalf("re-planned after balancing: %v", ops)
	}
}

func TestPlanNoMovesFromConsumersAtTarget(t *testing.T) {
	// c0 holds 20, c1..c4 hold 11 each; c5 arrives. Targets (64/6): the
	// four most loaded (c0..c3) 11, c4 and c5 10. Only c0 (9 over) and c4
	// (1 over) give shards.
	p := newPlanSim(t, 64, 64)
	p.join(ids(5)...)
	p.assignRun("c0", 0, 20)
	for i := 1; i <= 4; i++ {
		p.assignRun(fmt.Sprintf("c%d", i), 20+11*(i-1), 11)
	}
	p.join("c5")
	ops := p.plan()
	from := map[string]int{}
	for _, m := range movesOf(ops) {
		from[m.GetHolder()]++
		if m.GetNext() != "c5" {
			t.Fatalf("move %v not to c5", m)
		}
	}
	if len(ops) != 10 || from["c0"] != 9 || from["c4"] != 1 || len(from) != 2 {
		t.Fatalf("%d ops, moves from %v; want 9 from c0 and 1 from c4 only", len(ops), from)
	}
	p.apply(ops)
	p.release(nil, 1)
	p.wantBalanced(ids(6)...)
}

func TestPlanMaxMovesCap(t *testing.T) {
	p := newPlanSim(t, 64, 3)
	p.join(ids(5)...)
	p.converge(2, nil)
	p.join("c5")
	ops := p.plan()
	if len(movesOf(ops)) != 3 || len(ops) != 3 {
		t.Fatalf("plan %d ops, %d moves, want the cap of 3", len(ops), len(movesOf(ops)))
	}
	p.apply(ops)
	// Three in flight: nothing more until one lands.
	if ops := p.plan(); len(ops) != 0 {
		t.Fatalf("planned %d ops with the cap in flight", len(ops))
	}
	// One handover completes: one more move.
	d := p.domain(p.name)
	for i := range d.shards {
		if ho := d.shards[i].holder; ho.state == stateRevoked {
			p.ok(opRelease(p.name, d.ranges[i].From, ho.consumer.id, ho.token, false))
			break
		}
	}
	if ops := p.plan(); len(movesOf(ops)) != 1 || len(ops) != 1 {
		t.Fatalf("after one release: %d ops, want 1 move", len(ops))
	}
	rounds, moves := p.converge(10, nil)
	p.wantBalanced(ids(6)...)
	if total := moves + 3; total != 10 {
		t.Fatalf("%d moves in all, want 10", total)
	}
	if rounds > 4 {
		t.Fatalf("%d rounds for 7 moves at 3 per round", rounds)
	}
}

func TestPlanDrainingHolderMoves(t *testing.T) {
	p := newPlanSim(t, 12, 64)
	p.join(ids(3)...)
	p.converge(2, nil)
	p.wantBalanced(ids(3)...)
	p.drain("c0")
	ops := p.plan()
	mv := movesOf(ops)
	to := map[string]int{}
	for _, m := range mv {
		if m.GetHolder() != "c0" || m.GetReason() != drain {
			t.Fatalf("move %v, want from c0 for DRAIN", m)
		}
		to[m.GetNext()]++
	}
	if len(ops) != 4 || len(mv) != 4 || to["c1"] != 2 || to["c2"] != 2 {
		t.Fatalf("%d ops, moves to %v; want c0's 4 shards, 2 each to c1 and c2", len(ops), to)
	}
	p.apply(ops)
	p.release(nil, 1)
	p.wantBalanced("c1", "c2")
	if c := p.counts()["c0"]; c != 0 || len(p.consumer("c0").grants) != 0 {
		t.Fatalf("draining c0 still holds %d", c)
	}
	if ops := p.plan(); len(ops) != 0 {
		t.Fatalf("re-planned: %v", ops)
	}

	t.Run("capped", func(t *testing.T) {
		q := newPlanSim(t, 12, 2)
		q.join(ids(3)...)
		q.converge(2, nil)
		q.drain("c1")
		if mv := movesOf(q.plan()); len(mv) != 2 {
			t.Fatalf("%d drain moves, want the cap of 2", len(mv))
		}
		q.converge(4, nil)
		q.wantBalanced("c0", "c2")
	})
}

func TestPlanDrainingWithNoEligibleConsumer(t *testing.T) {
	p := newPlanSim(t, 6, 64)
	p.join("c0", "c1")
	p.converge(2, nil)
	p.drain("c0")
	p.drain("c1")
	if len(p.eligible()) != 0 {
		t.Fatal("draining consumers are eligible")
	}
	ops := p.plan()
	if len(ops) != 6 || len(movesOf(ops)) != 6 {
		t.Fatalf("plan %v, want 6 moves", ops)
	}
	for _, m := range movesOf(ops) {
		if m.GetNext() != "" || m.GetReason() != drain {
			t.Fatalf("move %v, want a DRAIN revocation with no successor", m)
		}
	}
	p.apply(ops)
	for i := range p.domain(p.name).shards {
		p.wantNext(p.name, i, "")
		if st := p.shard(p.name, i).holder.state; st != stateRevoked {
			t.Fatalf("shard %d holder %v, want REVOKED", i, st)
		}
	}
	if ops := p.plan(); len(ops) != 0 {
		t.Fatalf("re-planned revoked shards: %v", ops)
	}
	p.release(nil, 1)
	if c := p.counts(); len(c) != 0 {
		t.Fatalf("shards still held: %v", c)
	}
	if ops := p.plan(); len(ops) != 0 {
		t.Fatalf("planned for a domain nobody may serve: %v", ops)
	}

	t.Run("capped", func(t *testing.T) {
		q := newPlanSim(t, 6, 2)
		q.join("c0")
		q.converge(2, nil)
		q.drain("c0")
		if mv := movesOf(q.plan()); len(mv) != 2 {
			t.Fatalf("%d revocations, want the cap of 2", len(mv))
		}
	})
	t.Run("non-draining ineligible holder kept", func(t *testing.T) {
		// A holder without a lease (e.g. before the new leader heard from
		// it) is not draining: with nobody eligible, it is left alone.
		q := newPlanSim(t, 4, 64)
		q.join("c0")
		q.converge(2, nil)
		delete(q.leases, "c0")
		if ops := q.plan(); len(ops) != 0 {
			t.Fatalf("plan %v, want none", ops)
		}
	})
}

// TestPlanDisconnectedNotReceiver: a disconnected consumer is given
// nothing, and one that holds nothing does not count in the balance: its
// share is served by the connected ones until it connects, then moves to
// it gracefully.
func TestPlanDisconnectedNotReceiver(t *testing.T) {
	p := newPlanSim(t, 8, 64)
	p.join("c0", "c1")
	p.leases["c1"] = false
	ops := p.plan()
	for _, a := range assignsOf(ops) {
		if a.GetConsumerId() != "c0" {
			t.Fatalf("assigned to disconnected %s", a.GetConsumerId())
		}
	}
	if len(ops) != 8 || len(assignsOf(ops)) != 8 {
		t.Fatalf("plan %d ops, want 8 assigns to c0 (c1 is away and holds nothing)", len(ops))
	}
	p.apply(ops)
	if ops := p.plan(); len(ops) != 0 {
		t.Fatalf("re-planned while c1 is away: %v", ops)
	}
	p.leases["c1"] = true
	if mv := movesOf(p.plan()); len(mv) != 4 {
		t.Fatalf("after c1 connects: %d moves, want 4", len(mv))
	}

	t.Run("a disconnected holder keeps its share", func(t *testing.T) {
		q := newPlanSim(t, 8, 64)
		q.join("c0", "c1")
		q.converge(2, nil)
		q.leases["c1"] = false // it may resume: nothing moves
		if ops := q.plan(); len(ops) != 0 {
			t.Fatalf("plan %v while a holder is away, want none", ops)
		}
	})

	t.Run("no moves to a disconnected consumer", func(t *testing.T) {
		q := newPlanSim(t, 8, 64)
		q.join("c0")
		q.converge(2, nil)
		q.join("c1")
		q.leases["c1"] = false
		if ops := q.plan(); len(ops) != 0 {
			t.Fatalf("plan %v, want none", ops)
		}
		q.leases["c1"] = true
		if mv := movesOf(q.plan()); len(mv) != 4 {
			t.Fatalf("%d moves after connecting, want 4", len(mv))
		}
	})
}

func TestPlanRevokedHolderGetsSuccessor(t *testing.T) {
	p := newPlanSim(t, 4, 64)
	p.join("c0", "c1")
	p.assignRun("c0", 0, 2)
	p.assignRun("c1", 2, 2)
	p.join("c2")
	// c0's shard 0 was revoked without a successor (e.g. a drain with
	// nobody to take it at the time).
	p.ok(opMove(p.name, p.from(p.name, 0), "c0", p.token(p.name, 0), "", drain))
	ops := p.plan()
	as := assignsOf(ops)
	if len(ops) != 1 || len(as) != 1 || !proto.Equal(as[0], &cellv1.Assign{Domain: p.name, From: p.from(p.name, 0).Bytes(), ConsumerId: "c2"}) {
		t.Fatalf("plan %v, want one Assign of shard 0 to c2", ops)
	}
	p.apply(ops)
	p.wantHolder(p.name, 0, "c0", stateRevoked)
	p.wantNext(p.name, 0, "c2")
	p.wantEffects(p.eff(EffectPrepared, "c2", p.name, 0))
	p.release(nil, 1)
	p.wantHolder(p.name, 0, "c2", stateActive)
	p.converge(3, nil)
	p.wantBalanced("c0", "c1", "c2")
}

// messyState builds a domain with free, ACTIVE, REVOKED (with and without
// successor) shards and a draining consumer.
func messyState(t testing.TB) *planSim {
	p := newPlanSim(t, 32, 5)
	p.join(ids(4)...)
	p.assignRun("c0", 0, 12)
	p.assignRun("c1", 12, 6)
	p.assignRun("c3", 18, 4)
	p.ok(opMove(p.name, p.from(p.name, 0), "c0", p.token(p.name, 0), "c2", rebalance),
		opMove(p.name, p.from(p.name, 1), "c0", p.token(p.name, 1), "", rebalance))
	p.drain("c3")
	p.join("c4", "c5")
	p.leases["c5"] = false
	return p
}

func TestPlanDeterministic(t *testing.T) {
	p := messyState(t)
	want := p.plan()
	if len(want) == 0 {
		t.Fatal("messy state planned nothing")
	}
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 20; i++ {
		el := p.eligible()
		if i%2 == 1 {
			r.Shuffle(len(el), func(a, b int) { el[a], el[b] = el[b], el[a] })
		}
		got := planDomain(p.domain(p.name), el, p.views(), p.maxMoves)
		if len(got) != len(want) {
			t.Fatalf("run %d: %d ops, want %d", i, len(got), len(want))
		}
		for j := range got {
			if !proto.Equal(got[j], want[j]) {
				t.Fatalf("run %d op %d: %v, want %v", i, j, got[j], want[j])
			}
		}
	}
	// planDomain only reads the state.
	before := p.state().snapshot()
	p.plan()
	if !proto.Equal(before, p.state().snapshot()) {
		t.Fatal("planDomain changed the state")
	}
	p.apply(want)
}

// TestPlanConverges walks a domain through joins, a drain, a leave and a
// disconnect, converging (plan, commit, release) after each step within a
// bounded number of rounds; the harness checks the invariants after every
// entry.
func TestPlanConverges(t *testing.T) {
	const maxMoves = 4
	p := newPlanSim(t, 64, maxMoves)
	bound := 64/maxMoves + 3
	step := func(name string, want ...string) {
		t.Helper()
		rounds, moves := p.converge(bound, nil)
		p.wantBalanced(want...)
		t.Logf("%s: %d rounds, %d moves, %v", name, rounds, moves, p.counts())
	}
	p.join(ids(5)...)
	step("5 join", ids(5)...)
	p.join("c5")
	step("6th joins", ids(6)...)
	p.drain("c2")
	step("c2 drains", "c0", "c1", "c3", "c4", "c5")
	p.leave("c2")
	p.join("c6", "c7")
	p.leases["c3"] = false // over target: gives shards, takes none
	step("c2 leaves, c6 c7 join, c3 away", "c0", "c1", "c3", "c4", "c5", "c6", "c7")
	p.leases["c3"] = true
	p.leave("c0")
	step("c0 expires", "c1", "c3", "c4", "c5", "c6", "c7")
}

// TestPlanConvergesRandom: from random holdings (free shards, draining
// holders), with random move caps and handlers that release at random,
// planning converges to a balanced domain with the minimum number of moves.
func TestPlanConvergesRandom(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 42))
			n := 1 + r.IntN(100)
			k := 1 + r.IntN(8)
			p := newPlanSim(t, uint32(n), 1+r.IntN(8))
			all := ids(k)
			p.join(all...)
			held := map[string]int{}
			for i := 0; i < n; i++ {
				if r.IntN(4) > 0 {
					id := all[r.IntN(k)]
					p.ok(opAssign(p.name, p.from(p.name, i), id))
					held[id]++
				}
			}
			var eligible []string
			mustMove, free := 0, n
			for _, id := range all {
				free -= held[id]
				if r.IntN(4) == 0 {
					p.drain(id)
					mustMove += held[id]
				} else {
					eligible = append(eligible, id)
				}
			}
			if len(eligible) == 0 {
				rounds, _ := p.converge(n+2, r)
				if c := p.counts(); len(c) != 0 {
					t.Fatalf("after %d rounds with nobody eligible: %v", rounds, c)
				}
				return
			}
			var loads []int
			for _, id := range eligible {
				loads = append(loads, held[id])
			}
			want := mustMove + minMoves(n, loads)
			// Each round moves at least one shard or completes a handover
			// (prob. 1/2 per revoked holder); be generous.
			rounds, moves := p.converge(20*(n+k)+50, r)
			p.wantBalanced(eligible...)
			if moves != want {
				t.Fatalf("%d moves, want the minimum %d (n=%d, loads %v, %d from draining, %d free, cap %d)",
					moves, want, n, loads, mustMove, free, p.maxMoves)
			}
			t.Logf("n=%d k=%d cap=%d: %d rounds, %d moves", n, k, p.maxMoves, rounds, moves)
		})
	}
}

// TestPlanUnitDomain: a UNIT domain's single shard goes to one consumer and
// stays there.
func TestPlanUnitDomain(t *testing.T) {
	p := newPlanSim(t, 1, 4)
	p.ok(opCreate("leader", unit, 0))
	p.name = "leader"
	for _, id := range []string{"b", "a", "c"} {
		p.incs[id] = id + "-1"
		p.leases[id] = true
		p.ok(opJoin(id, p.incs[id], "leader"))
	}
	ops := p.plan()
	if len(ops) != 1 || assignsOf(ops)[0].GetConsumerId() == "" {
		t.Fatalf("plan %v, want one assign", ops)
	}
	p.converge(2, nil)
	if ops := p.plan(); len(ops) != 0 {
		t.Fatalf("singleton re-planned: %v", ops)
	}
	if st := p.shard("leader", 0).holder.state; st != stateActive {
		t.Fatalf("singleton holder %v, want ACTIVE", st)
	}
}

// TestRegressionDrainRevocationsNotCappedAcrossRounds: with nobody
// eligible, a draining holder's shards are revoked without successor; those
// revocations count as moves in flight, so the cap bounds them across
// rounds, not only per round.
func TestRegressionDrainRevocationsNotCappedAcrossRounds(t *testing.T) {
	p := newPlanSim(t, 6, 2)
	p.join("c0")
	p.converge(2, nil)
	p.drain("c0")
	p.apply(p.plan()) // two revocations outstanding: the cap
	if ops := p.plan(); len(ops) != 0 {
		t.Fatalf("with %d revocations outstanding (cap %d), planned %d more: %v", p.revoked(), p.maxMoves, len(ops), ops)
	}
}

// TestPlannerRound drives Planner.Plan, the whole round the leader
// proposes: assignments from the lease book, an expiry round alone (with
// the consumer each expiry was judged from), a revoked grant's frozen
// deadline, a session announcing a stale TTL, and a domain whose
// delegation does not allow granting.
func TestPlannerRound(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 4)) // TTL 3 s
	h.ok(opJoin("a", "a1", "orders"), opJoin("b", "b1", "orders"))
	t0 := time.Unix(1000, 0)
	ttls := map[string]time.Duration{"orders": 3 * time.Second}
	in := PlanInput{
		Now: t0.Add(time.Second),
		Leases: map[string]Lease{
			"a": {Incarnation: "a1", Anchor: t0, HeardAt: t0, Connected: true, TTLs: ttls},
			"b": {Incarnation: "b1", Anchor: t0, HeardAt: t0, Connected: true, TTLs: ttls},
		},
		Frozen:     map[GrantKey]time.Time{},
		Deadline:   func(anchor time.Time, ttl time.Duration) time.Time { return anchor.Add(ttl) },
		Unanchored: t0,
		Grantable:  func(string, time.Duration) bool { return true },
		MaxMoves:   4,
	}
	var p Planner
	kinds := func(ops []*cellv1.Op) string {
		var out []string
		for _, op := range ops {
			switch o := op.GetOp().(type) {
			case *cellv1.Op_Assign:
				out = append(out, "assign "+o.Assign.GetConsumerId())
			case *cellv1.Op_Leave:
				out = append(out, "leave "+o.Leave.GetConsumerId())
			case *cellv1.Op_Release:
				out = append(out, fmt.Sprintf("release %s expired=%v", o.Release.GetConsumerId(), o.Release.GetExpired()))
			case *cellv1.Op_Move:
				out = append(out, "move "+o.Move.GetHolder())
			case *cellv1.Op_SetConfirmed:
				out = append(out, fmt.Sprintf("unconfirmed %s=%v", o.SetConfirmed.GetConsumerId(), o.SetConfirmed.GetUnconfirmed()))
			default:
				out = append(out, fmt.Sprintf("%T", o))
			}
		}
		sort.Strings(out)
		return fmt.Sprint(out)
	}

	// Not grantable: nothing is assigned.
	in.Grantable = func(string, time.Duration) bool { return false }
	if pl := p.Plan(h.state(), in); len(pl.Ops) != 0 || pl.ExpiryOf != nil {
		t.Fatalf("ungrantable domain planned %s (expiryOf %v)", kinds(pl.Ops), pl.ExpiryOf)
	}
	in.Grantable = func(string, time.Duration) bool { return true }

	// Balance: 2 shards each, no expiry alignment.
	pl := p.Plan(h.state(), in)
	if got, want := kinds(pl.Ops), "[assign a assign a assign b assign b]"; got != want || pl.ExpiryOf != nil || pl.Stale != nil {
		t.Fatalf("first round %s (expiryOf %v, stale %v), want %s", got, pl.ExpiryOf, pl.Stale, want)
	}
	h.ok(pl.Ops...)

	// A revoked grant of b whose frozen deadline passed, while b's lease
	// (acked since) still runs: released as expired, judged from no anchor.
	bShard := -1
	for i := range 4 {
		if h.shard("orders", i).holder.consumer.id == "b" {
			bShard = i
			break
		}
	}
	tok := h.token("orders", bShard)
	h.ok(opMove("orders", h.from("orders", bShard), "b", tok, "", rebalance))
	in.Frozen[GrantKey{Domain: "orders", From: h.from("orders", bShard), Token: tok}] = t0.Add(1500 * time.Millisecond)
	in.Now = t0.Add(2 * time.Second)
	pl = p.Plan(h.state(), in)
	if got, want := kinds(pl.Ops), "[release b expired=true]"; got != want || !slices.Equal(pl.ExpiryOf, []string{""}) {
		t.Fatalf("frozen round %s (expiryOf %q), want %s judged from no anchor", got, pl.ExpiryOf, want)
	}
	h.ok(pl.Ops...)

	// a's lease ran out (b was acked since): an expiry round and only that,
	// aligned with the consumer it was judged from.
	in.Now = t0.Add(3500 * time.Millisecond)
	bl := in.Leases["b"]
	bl.Anchor, bl.HeardAt = t0.Add(3*time.Second), t0.Add(3*time.Second)
	in.Leases["b"] = bl
	pl = p.Plan(h.state(), in)
	if got, want := kinds(pl.Ops), "[leave a]"; got != want || !slices.Equal(pl.ExpiryOf, []string{"a"}) {
		t.Fatalf("expiry round %s (expiryOf %q), want %s judged from a", got, pl.ExpiryOf, want)
	}
	h.ok(pl.Ops...)

	// b's session announced another TTL (the domain was re-created since
	// its Welcome): reported stale, given nothing.
	bl.TTLs = map[string]time.Duration{"orders": 10 * time.Second}
	in.Leases["b"] = bl
	pl = p.Plan(h.state(), in)
	if len(pl.Stale) != 1 || pl.Stale[0] != (StaleSession{Consumer: "b", Domain: "orders", TTL: 3 * time.Second}) {
		t.Fatalf("stale = %+v, want b announcing orders' old TTL", pl.Stale)
	}
	if got := kinds(pl.Ops); got != "[]" {
		t.Fatalf("stale session's round %s, want nothing", got)
	}

	// With its Welcome's TTL right, b takes every free shard.
	bl.TTLs = ttls
	in.Leases["b"] = bl
	pl = p.Plan(h.state(), in)
	if got, want := kinds(pl.Ops), "[assign b assign b assign b]"; got != want {
		t.Fatalf("last round %s, want %s", got, want)
	}
}
