package cellstate

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// This file holds the FSM test harness (hand-built raft.Logs, op builders,
// checkInvariants) and the per-op tests of State, all driven through
// fsm.Apply.

const testRegion = "us-east"

// harness drives one fsm with hand-built log entries at increasing indexes
// and checks the state's invariants after every entry.
type harness struct {
	t     testing.TB
	f     *FSM
	index uint64
	// last is what the last applied entry did (effects, routes).
	last ApplyResult
}

func newHarness(t testing.TB) *harness {
	h := &harness{t: t, f: &FSM{State: NewState(testRegion)}}
	h.f.OnApply = func(_ uint64, res *ApplyResult) {
		h.last = ApplyResult{Effects: slices.Clone(res.Effects), Routes: slices.Clone(res.Routes)}
	}
	return h
}

func (h *harness) state() *State { return h.f.State }

// run runs fn as a subtest whose failures the harness reports to the
// subtest's t.
func (h *harness) run(t *testing.T, name string, fn func(t *testing.T)) {
	t.Helper()
	outer := h.t
	t.Run(name, func(t *testing.T) {
		h.t = t
		defer func() { h.t = outer }()
		fn(t)
	})
	if t.Failed() {
		t.FailNow()
	}
}

// logEntry builds the raft.Log the leader would commit for ops.
func logEntry(t testing.TB, index uint64, ops ...*cellv1.Op) *raft.Log {
	t.Helper()
	data, err := proto.Marshal(&cellv1.Entry{Ops: ops})
	if err != nil {
		t.Fatalf("marshal entry: %v", err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

// entry applies ops as one log entry at the next index and returns the
// per-op results.
func (h *harness) entry(ops ...*cellv1.Op) []error {
	h.t.Helper()
	h.index++
	return h.applyLog(logEntry(h.t, h.index, ops...), len(ops))
}

func (h *harness) applyLog(l *raft.Log, nops int) []error {
	h.t.Helper()
	h.last = ApplyResult{}
	out := h.f.Apply(l)
	results, ok := out.([]Result)
	if !ok {
		h.t.Fatalf("Apply returned %T, want []Result", out)
	}
	errs := make([]error, len(results))
	for i, r := range results {
		errs[i] = r.Err
		if r.Err != nil && r.Resp != nil {
			h.t.Fatalf("op %d was rejected (%v) but answered %v", i, r.Err, r.Resp)
		}
	}
	if len(errs) != nops {
		h.t.Fatalf("Apply returned %d results for %d ops", len(errs), nops)
	}
	if got := h.state().Index(); got != l.Index {
		h.t.Fatalf("state index %d after applying entry %d", got, l.Index)
	}
	checkInvariants(h.t, h.state())
	return errs
}

// ok applies ops as one entry and fails the test unless every op succeeds.
func (h *harness) ok(ops ...*cellv1.Op) {
	h.t.Helper()
	for i, err := range h.entry(ops...) {
		if err != nil {
			h.t.Fatalf("entry %d op %d (%v): %v", h.index, i, ops[i], err)
		}
	}
}

// reject applies op alone and checks that it fails with want (errors.Is),
// and that it changed nothing: the snapshot (but for the applied index) is
// byte-identical and there are no effects or route changes.
func (h *harness) reject(op *cellv1.Op, want error) error {
	h.t.Helper()
	before := snapshotAt(h.state(), 0)
	err := h.entry(op)[0]
	if !errors.Is(err, want) {
		h.t.Fatalf("op %v: err = %v, want %v", op, err, want)
	}
	after := snapshotAt(h.state(), 0)
	if !proto.Equal(before, after) {
		h.t.Fatalf("rejected op %v changed the state:\nbefore %v\nafter  %v", op, before, after)
	}
	if !bytes.Equal(marshalDet(h.t, before), marshalDet(h.t, after)) {
		h.t.Fatalf("rejected op %v changed the snapshot bytes", op)
	}
	if len(h.last.Effects) != 0 || len(h.last.Routes) != 0 {
		h.t.Fatalf("rejected op %v had effects %v routes %v", op, h.last.Effects, h.last.Routes)
	}
	return err
}

// snapshotAt is the state's snapshot with its index overwritten, so states
// reached at different log positions compare by content.
func snapshotAt(s *State, index uint64) *cellv1.Snapshot {
	snap := s.snapshot()
	snap.Index = index
	return snap
}

func marshalDet(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

func wantFieldError(t testing.TB, err error, field string) {
	t.Helper()
	var fe *topology.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v (%T), want a *topology.FieldError naming %q", err, err, field)
	}
	if fe.Field != field {
		t.Fatalf("FieldError names %q, want %q (%v)", fe.Field, field, err)
	}
	if !errors.Is(err, topology.ErrInvalid) {
		t.Fatalf("err = %v does not match topology.ErrInvalid", err)
	}
}

// --- accessors (tests run on the test goroutine, Apply is synchronous) ---

// domain returns the one key space of a domain of a lone cell.
func (h *harness) domain(name string) *keySpace {
	h.t.Helper()
	d, ok := h.state().domains[name]
	if !ok {
		h.t.Fatalf("no domain %q", name)
	}
	if len(d.spaces) != 1 {
		h.t.Fatalf("domain %q has %d key spaces, want 1", name, len(d.spaces))
	}
	return d.spaces[0]
}

func (h *harness) shard(name string, i int) *shard { return &h.domain(name).shards[i] }

func (h *harness) from(name string, i int) topology.Bound { return h.domain(name).ranges[i].From }

func (h *harness) token(name string, i int) topology.Token { return h.shard(name, i).holder.token }

func (h *harness) consumer(id string) *consumer {
	h.t.Helper()
	c, ok := h.state().consumers[id]
	if !ok {
		h.t.Fatalf("no consumer %q", id)
	}
	return c
}

// wantHolder checks a shard's holder (consumer id, state); id "" means none.
func (h *harness) wantHolder(name string, i int, id string, st grantState) {
	h.t.Helper()
	g := h.shard(name, i).holder
	if got := grantID(g); got != id || g.state != st {
		h.t.Fatalf("%s shard %d holder = %q/%v, want %q/%v", name, i, got, g.state, id, st)
	}
}

// wantNext checks a shard's successor; id "" means none.
func (h *harness) wantNext(name string, i int, id string) {
	h.t.Helper()
	g := h.shard(name, i).next
	want := stateAllocated
	if id == "" {
		want = stateNone
	}
	if got := grantID(g); got != id || g.state != want {
		h.t.Fatalf("%s shard %d next = %q/%v, want %q/%v", name, i, got, g.state, id, want)
	}
}

func grantID(g grant) string {
	if g.consumer == nil {
		return ""
	}
	return g.consumer.id
}

// wantEffects checks the last entry's effects as "kind:consumer:shardFrom"
// strings, in order (tokens and reasons checked separately where they matter).
func (h *harness) wantEffects(want ...Effect) {
	h.t.Helper()
	got := h.last.Effects
	if len(got) != len(want) {
		h.t.Fatalf("effects = %v, want %v", fmtEffects(got), fmtEffects(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.Kind != g.Kind || w.Consumer != g.Consumer || w.Domain != g.Domain || w.Range != g.Range ||
			(w.Incarnation != "" && w.Incarnation != g.Incarnation) ||
			(!w.Token.IsZero() && w.Token != g.Token) ||
			(w.Reason != 0 && w.Reason != g.Reason) {
			h.t.Fatalf("effect %d = %v, want %v\nall: %v", i, fmtEffect(g), fmtEffect(w), fmtEffects(got))
		}
	}
}

func (h *harness) eff(kind EffectKind, id, name string, i int) Effect {
	e := Effect{Kind: kind, Consumer: id, Domain: name}
	if name != "" {
		e.Range = h.domain(name).ranges[i]
	}
	return e
}

func fmtEffect(e Effect) string {
	return fmt.Sprintf("{%d %s/%s %s %s tok=%s reason=%v}", e.Kind, e.Consumer, e.Incarnation, e.Domain, e.Range, e.Token, e.Reason)
}

func fmtEffects(es []Effect) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = fmtEffect(e)
	}
	return out
}

// --- op builders ---

func opCreate(name string, kind wdsv1.DomainKind, shards uint32) *cellv1.Op {
	return opCreateProto(&wdsv1.Domain{Name: name, Kind: kind, Shards: shards, TtlMillis: 3000})
}

func opCreateProto(d *wdsv1.Domain) *cellv1.Op {
	return &cellv1.Op{Op: &cellv1.Op_CreateDomain{CreateDomain: &cellv1.CreateDomain{Domain: d}}}
}

func opDelete(name string, purge bool) *cellv1.Op {
	return &cellv1.Op{Op: &cellv1.Op_DeleteDomain{DeleteDomain: &cellv1.DeleteDomain{Name: name, Purge: purge}}}
}

func opJoin(id, inc string, domains ...string) *cellv1.Op {
	return &cellv1.Op{Op: &cellv1.Op_Join{Join: &cellv1.Join{
		ConsumerId: id, Region: testRegion, Endpoint: id + ":7000", Domains: domains, Incarnation: []byte(inc),
	}}}
}

func opLeave(id, inc string) *cellv1.Op {
	return &cellv1.Op{Op: &cellv1.Op_Leave{Leave: &cellv1.Leave{
		ConsumerId: id, Incarnation: []byte(inc), Reason: cellv1.LeaveReason_LEAVE_REASON_GRACEFUL,
	}}}
}

func opDrain(id, inc string) *cellv1.Op {
	return &cellv1.Op{Op: &cellv1.Op_SetDraining{SetDraining: &cellv1.SetDraining{ConsumerId: id, Incarnation: []byte(inc)}}}
}

func opAssign(name string, from topology.Bound, id string) *cellv1.Op {
	return &cellv1.Op{Op: &cellv1.Op_Assign{Assign: &cellv1.Assign{Domain: name, From: from.Bytes(), ConsumerId: id}}}
}

func opMove(name string, from topology.Bound, holder string, tok topology.Token, next string, reason wdsv1.RevokeReason) *cellv1.Op {
	return &cellv1.Op{Op: &cellv1.Op_Move{Move: &cellv1.Move{
		Domain: name, From: from.Bytes(), Holder: holder, Token: topology.TokenToProto(tok), Next: next, Reason: reason,
	}}}
}

func opRelease(name string, from topology.Bound, id string, tok topology.Token, expired bool) *cellv1.Op {
	return &cellv1.Op{Op: &cellv1.Op_Release{Release: &cellv1.Release{
		Domain: name, From: from.Bytes(), ConsumerId: id, Token: topology.TokenToProto(tok), Expired: expired,
	}}}
}

const (
	global   = wdsv1.DomainKind_DOMAIN_KIND_GLOBAL
	unit     = wdsv1.DomainKind_DOMAIN_KIND_UNIT
	regional = wdsv1.DomainKind_DOMAIN_KIND_REGIONAL

	rebalance = wdsv1.RevokeReason_REVOKE_REASON_REBALANCE
	drain     = wdsv1.RevokeReason_REVOKE_REASON_DRAIN
)

// --- invariants ---

// checkInvariants checks the structural invariants of s:
//   - every domain's ranges tile the key space, one shard per range, as many
//     as its spec says;
//   - a holder is ACTIVE or REVOKED with a token of the domain's generation
//     from an applied index; no holder means an empty grant;
//   - a successor is ALLOCATED (no token), only behind a REVOKED holder,
//     never the holder itself; a deleting domain has no ACTIVE holder and no
//     successor;
//   - grants reference registered consumers, and every consumer's grant
//     index is exactly the set of shards it holds or succeeds.
func checkInvariants(t testing.TB, s *State) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("invariant (index %d): "+format, append([]any{s.index}, args...)...)
	}
	want := map[*consumer]map[shardRef]struct{}{}
	add := func(c *consumer, r shardRef) {
		if want[c] == nil {
			want[c] = map[shardRef]struct{}{}
		}
		want[c][r] = struct{}{}
	}
	registered := func(c *consumer) bool { return s.consumers[c.id] == c }
	for name, d := range s.domains {
		if d.spec.Name != name {
			fail("domain keyed %q is named %q", name, d.spec.Name)
		}
		for j, ks := range d.spaces {
			if ks.d != d {
				fail("domain %q key space %q points to another domain", name, ks.region)
			}
			if j > 0 && !(d.spaces[j-1].region < ks.region) {
				fail("domain %q key spaces out of order or repeated: %q after %q", name, ks.region, d.spaces[j-1].region)
			}
			if (d.spec.Kind == topology.KindRegional) != (ks.region != "") {
				fail("domain %q (%v) has key space region %q", name, d.spec.Kind, ks.region)
			}
			checkKeySpace(t, s, ks, fail, registered, add)
		}
	}
	for id, c := range s.consumers {
		if c.id != id {
			fail("consumer keyed %q has id %q", id, c.id)
		}
		if c.incarnation == "" {
			fail("consumer %q has no incarnation", id)
		}
		for r := range c.grants {
			if s.domains[r.ks.name()] != r.ks.d || r.ks.d.space(r.ks.region) != r.ks {
				fail("consumer %q indexes a shard of a removed domain %q", id, r.ks.name())
			} else if _, ok := want[c][r]; !ok {
				fail("consumer %q indexes %s/%s[%d], which it neither holds nor succeeds", id, r.ks.name(), r.ks.region, r.idx)
			}
		}
		for r := range want[c] {
			if _, ok := c.grants[r]; !ok {
				fail("consumer %q holds or succeeds %s/%s[%d] but its index misses it", id, r.ks.name(), r.ks.region, r.idx)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// checkKeySpace checks the invariants of one key space's shards.
func checkKeySpace(t testing.TB, s *State, ks *keySpace, fail func(string, ...any), registered func(*consumer) bool, add func(*consumer, shardRef)) {
	t.Helper()
	d := ks.d
	name := d.spec.Name + "/" + ks.region
	if len(ks.ranges) != len(ks.shards) || len(ks.ranges) != d.spec.Shards {
		fail("domain %q: %d ranges, %d shards, spec says %d", name, len(ks.ranges), len(ks.shards), d.spec.Shards)
	}
	if err := topology.ValidateTiling(ks.ranges); err != nil {
		fail("domain %q ranges do not tile: %v", name, err)
	}
	for i := range ks.shards {
		sh := &ks.shards[i]
		ho, nx := sh.holder, sh.next
		if ho.consumer == nil {
			if ho != (grant{}) {
				fail("%s[%d]: empty holder with state %v token %s", name, i, ho.state, ho.token)
			}
		} else {
			if !registered(ho.consumer) {
				fail("%s[%d]: holder %q is not a registered consumer", name, i, ho.consumer.id)
			}
			if ho.state != stateActive && ho.state != stateRevoked {
				fail("%s[%d]: holder %q in state %v", name, i, ho.consumer.id, ho.state)
			}
			if ho.token.IsZero() || ho.token.Generation == 0 || ho.token.Generation > sh.generation || ho.token.Index > s.index || ho.token.Index < d.createdIndex {
				fail("%s[%d]: holder token %s (shard generation %d, created %d)", name, i, ho.token, sh.generation, d.createdIndex)
			}
			if ho.token.Index > sh.activatedAt {
				fail("%s[%d]: holder token %s activated after the shard's last activation %d", name, i, ho.token, sh.activatedAt)
			}
			if d.deleting && ho.state == stateActive {
				fail("%s[%d]: ACTIVE holder in a deleting domain", name, i)
			}
			if ho.state == stateActive && !sh.delegated() {
				fail("%s[%d]: ACTIVE holder outside a live delegation (generation %d, relinquished %v)", name, i, sh.generation, sh.relinquished)
			}
			add(ho.consumer, shardRef{ks, int32(i)})
		}
		if nx.consumer == nil {
			if nx != (grant{}) {
				fail("%s[%d]: empty successor with state %v", name, i, nx.state)
			}
			continue
		}
		if !registered(nx.consumer) {
			fail("%s[%d]: successor %q is not a registered consumer", name, i, nx.consumer.id)
		}
		if nx.state != stateAllocated || !nx.token.IsZero() {
			fail("%s[%d]: successor %q in state %v token %s", name, i, nx.consumer.id, nx.state, nx.token)
		}
		if ho.consumer == nil || ho.state != stateRevoked {
			fail("%s[%d]: successor %q behind holder %q in state %v", name, i, nx.consumer.id, grantID(ho), ho.state)
		}
		if nx.consumer == ho.consumer {
			fail("%s[%d]: %q is its own successor", name, i, nx.consumer.id)
		}
		if d.deleting {
			fail("%s[%d]: successor in a deleting domain", name, i)
		}
		if !sh.delegated() {
			fail("%s[%d]: successor outside a live delegation", name, i)
		}
		add(nx.consumer, shardRef{ks, int32(i)})
	}
}

// --- tests ---

func TestStateCreateDomain(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 8), opCreate("leader", unit, 0), opCreate("carts", regional, 3))
	if got := len(h.last.Routes); got != 3 || !h.last.Routes[0].Replace || h.last.Routes[0].Shard != -1 {
		t.Fatalf("routes = %+v, want three Replace changes", h.last.Routes)
	}
	for name, n := range map[string]int{"orders": 8, "leader": 1, "carts": 3} {
		d := h.domain(name)
		if len(d.ranges) != n || len(d.shards) != n {
			t.Fatalf("%s: %d ranges, want %d", name, len(d.ranges), n)
		}
		for i := range d.shards {
			if sh := &d.shards[i]; sh.generation != 1 || !sh.delegated() {
				t.Fatalf("%s[%d]: generation %d relinquished %v, want a self-delegation at generation 1", name, i, sh.generation, sh.relinquished)
			}
		}
		if d.d.createdIndex != 1 || d.d.deleting {
			t.Fatalf("%s: created %d deleting %v", name, d.d.createdIndex, d.d.deleting)
		}
		if d.ranges[0].From != topology.Start || d.ranges[n-1].To != topology.End {
			t.Fatalf("%s: ranges %v do not span the key space", name, d.ranges)
		}
	}
	if !h.domain("leader").ranges[0].IsFull() {
		t.Fatalf("unit domain range %v, want the full key space", h.domain("leader").ranges[0])
	}

	h.reject(opCreate("orders", global, 8), ErrExists)
	h.reject(opCreate("orders", global, 16), ErrExists) // another shape: still a duplicate

	for _, tc := range []struct {
		name  string
		d     *wdsv1.Domain
		field string
	}{
		{"nil domain", nil, "domain"},
		{"bad name", &wdsv1.Domain{Name: "Bad Name", Kind: global, Shards: 4}, "domain.name"},
		{"empty name", &wdsv1.Domain{Kind: global, Shards: 4}, "domain.name"},
		{"no kind", &wdsv1.Domain{Name: "x", Shards: 4}, "domain.kind"},
		{"unknown kind", &wdsv1.Domain{Name: "x", Kind: 42, Shards: 4}, "domain.kind"},
		{"no shards", &wdsv1.Domain{Name: "x", Kind: global}, "domain.shards"},
		{"too many shards", &wdsv1.Domain{Name: "x", Kind: global, Shards: topology.MaxShards + 1}, "domain.shards"},
		{"unit with shards", &wdsv1.Domain{Name: "x", Kind: unit, Shards: 2}, "domain.shards"},
		{"ttl too short", &wdsv1.Domain{Name: "x", Kind: global, Shards: 4, TtlMillis: 10}, "domain.ttl"},
		{"negative ttl", &wdsv1.Domain{Name: "x", Kind: global, Shards: 4, TtlMillis: -1}, "domain.ttl_millis"},
	} {
		h.run(t, tc.name, func(t *testing.T) {
			err := h.reject(opCreateProto(tc.d), topology.ErrInvalid)
			wantFieldError(t, err, tc.field)
		})
	}
	if _, ok := h.state().domains["x"]; ok {
		t.Fatal("an invalid domain was created")
	}
}

func TestStateJoin(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 4))
	h.ok(opJoin("a", "a1", "orders"), opJoin("b", "b1", "orders"), opJoin("c", "c1", "orders"))
	h.wantEffects(
		Effect{Kind: EffectJoined, Consumer: "a", Incarnation: "a1"},
		Effect{Kind: EffectJoined, Consumer: "b", Incarnation: "b1"},
		Effect{Kind: EffectJoined, Consumer: "c", Incarnation: "c1"},
	)
	if c := h.consumer("a"); c.region != testRegion || c.endpoint != "a:7000" || !c.serves("orders") || c.joinedIndex != 2 || len(c.grants) != 0 {
		t.Fatalf("consumer a = %+v", c)
	}

	h.run(t, "replay", func(t *testing.T) {
		before := snapshotAt(h.state(), 0)
		if err := h.entry(opJoin("a", "a1", "orders", "other"))[0]; err != nil {
			t.Fatalf("replayed join: %v", err)
		}
		if !proto.Equal(before, snapshotAt(h.state(), 0)) || len(h.last.Effects) != 0 {
			t.Fatalf("replayed join changed the state or had effects %v", fmtEffects(h.last.Effects))
		}
	})
	h.run(t, "invalid", func(t *testing.T) {
		wantFieldError(t, h.reject(opJoin("", "x1", "orders"), topology.ErrInvalid), "consumer_id")
		wantFieldError(t, h.reject(opJoin("bad id!", "x1", "orders"), topology.ErrInvalid), "consumer_id")
		wantFieldError(t, h.reject(opJoin("x", "", "orders"), topology.ErrInvalid), "incarnation")
		// The invalid new incarnation of a registered consumer must not
		// touch the old one.
		wantFieldError(t, h.reject(opJoin("a", "", "orders"), topology.ErrInvalid), "incarnation")
	})

	h.run(t, "new incarnation", func(t *testing.T) {
		// a holds shard 0 ACTIVE and shard 1 REVOKED with successor b, and
		// is the successor of shard 2 (held REVOKED by c).
		h.ok(opAssign("orders", h.from("orders", 0), "a"), opAssign("orders", h.from("orders", 1), "a"), opAssign("orders", h.from("orders", 2), "c"))
		h.ok(opMove("orders", h.from("orders", 1), "a", h.token("orders", 1), "b", rebalance),
			opMove("orders", h.from("orders", 2), "c", h.token("orders", 2), "a", rebalance))
		before1 := h.token("orders", 1)

		h.ok(opJoin("a", "a2", "orders"))
		idx := h.index
		h.wantEffects(
			Effect{Kind: EffectDropped, Consumer: "a", Incarnation: "a1", Domain: "orders", Range: h.domain("orders").ranges[0]},
			Effect{Kind: EffectDropped, Consumer: "a", Incarnation: "a1", Domain: "orders", Range: h.domain("orders").ranges[1]},
			Effect{Kind: EffectGranted, Consumer: "b", Domain: "orders", Range: h.domain("orders").ranges[1], Token: topology.Token{Generation: 1, Index: idx}},
			Effect{Kind: EffectLeft, Consumer: "a", Incarnation: "a1"},
			Effect{Kind: EffectJoined, Consumer: "a", Incarnation: "a2"},
		)
		h.wantHolder("orders", 0, "", stateNone)
		h.wantHolder("orders", 1, "b", stateActive)
		h.wantNext("orders", 1, "")
		if tok := h.token("orders", 1); !before1.Less(tok) || tok != (topology.Token{Generation: 1, Index: idx}) {
			t.Fatalf("promoted token %s, want %d.%d > %s", tok, 1, idx, before1)
		}
		h.wantHolder("orders", 2, "c", stateRevoked)
		h.wantNext("orders", 2, "")
		a := h.consumer("a")
		if a.incarnation != "a2" || len(a.grants) != 0 || a.joinedIndex != idx {
			t.Fatalf("new incarnation = %+v", a)
		}
		// The old incarnation is gone: its ops are refused.
		h.reject(opLeave("a", "a1"), ErrConflict)
		h.reject(opDrain("a", "a1"), ErrConflict)
	})
}

func TestStateAssign(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 4), opCreate("other", global, 2))
	h.ok(opJoin("a", "a1", "orders"), opJoin("b", "b1", "orders"), opJoin("x", "x1", "other"))
	f0 := h.from("orders", 0)

	h.ok(opAssign("orders", f0, "a"))
	idx := h.index
	h.wantHolder("orders", 0, "a", stateActive)
	if tok := h.token("orders", 0); tok != (topology.Token{Generation: 1, Index: idx}) {
		t.Fatalf("token %s, want 1.%d", tok, idx)
	}
	h.wantEffects(Effect{Kind: EffectGranted, Consumer: "a", Incarnation: "a1", Domain: "orders", Range: h.domain("orders").ranges[0], Token: topology.Token{Generation: 1, Index: idx}})
	if len(h.last.Routes) != 1 || h.last.Routes[0] != (RouteChange{Domain: "orders", Shard: 0}) {
		t.Fatalf("routes = %+v", h.last.Routes)
	}

	// Held ACTIVE: refused, to another consumer and to the holder itself.
	h.reject(opAssign("orders", f0, "b"), ErrConflict)
	h.reject(opAssign("orders", f0, "a"), ErrConflict)

	// Bad references.
	h.reject(opAssign("nope", f0, "a"), ErrNotFound)
	h.reject(opAssign("orders", f0, "ghost"), ErrNotFound)
	h.reject(opAssign("orders", h.from("orders", 1), "x"), ErrFailedPrecondition) // x does not serve orders
	h.reject(opAssign("orders", h.domain("orders").ranges[0].Midpoint(), "a"), ErrNotFound)
	wantFieldError(t, h.reject(&cellv1.Op{Op: &cellv1.Op_Assign{Assign: &cellv1.Assign{Domain: "orders", From: []byte{1, 2, 3}, ConsumerId: "a"}}}, topology.ErrInvalid), "from")
	wantFieldError(t, h.reject(&cellv1.Op{Op: &cellv1.Op_Assign{Assign: &cellv1.Assign{Domain: "orders", ConsumerId: "a"}}}, topology.ErrInvalid), "from")

	// Revoked holder: the assignee becomes the ALLOCATED successor.
	h.ok(opMove("orders", f0, "a", h.token("orders", 0), "", rebalance))
	h.reject(opAssign("orders", f0, "a"), ErrConflict) // not to the revoked holder itself
	tok := h.token("orders", 0)
	h.ok(opAssign("orders", f0, "b"))
	h.wantHolder("orders", 0, "a", stateRevoked)
	h.wantNext("orders", 0, "b")
	if h.token("orders", 0) != tok {
		t.Fatal("assigning a successor changed the holder's token")
	}
	h.wantEffects(Effect{Kind: EffectPrepared, Consumer: "b", Incarnation: "b1", Domain: "orders", Range: h.domain("orders").ranges[0]})
	if !h.last.Effects[0].Token.IsZero() {
		t.Fatalf("Prepare carries token %s, want none", h.last.Effects[0].Token)
	}
	// A successor is set: no second one.
	h.reject(opAssign("orders", f0, "b"), ErrConflict)
	h.ok(opJoin("c", "c1", "orders"))
	h.reject(opAssign("orders", f0, "c"), ErrConflict)
}

func TestStateMove(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 4), opCreate("other", global, 1))
	h.ok(opJoin("a", "a1", "orders"), opJoin("b", "b1", "orders"), opJoin("x", "x1", "other"))
	f0 := h.from("orders", 0)
	h.ok(opAssign("orders", f0, "a"))
	tok := h.token("orders", 0)

	stale := topology.Token{Generation: 1, Index: tok.Index - 1}
	h.reject(opMove("orders", f0, "a", stale, "b", rebalance), ErrConflict)
	h.reject(opMove("orders", f0, "a", topology.Token{}, "b", rebalance), ErrConflict)
	h.reject(opMove("orders", f0, "a", topology.Token{Generation: 2, Index: tok.Index}, "b", rebalance), ErrConflict)
	h.reject(opMove("orders", f0, "b", tok, "a", rebalance), ErrConflict)                  // wrong holder
	h.reject(opMove("orders", h.from("orders", 1), "a", tok, "b", rebalance), ErrConflict) // unheld shard
	h.reject(opMove("orders", f0, "a", tok, "ghost", rebalance), ErrNotFound)
	h.reject(opMove("orders", f0, "a", tok, "a", rebalance), ErrConflict)
	h.reject(opMove("orders", f0, "a", tok, "x", rebalance), ErrFailedPrecondition)
	h.reject(opMove("nope", f0, "a", tok, "b", rebalance), ErrNotFound)

	h.ok(opMove("orders", f0, "a", tok, "b", drain))
	h.wantHolder("orders", 0, "a", stateRevoked)
	h.wantNext("orders", 0, "b")
	if h.token("orders", 0) != tok {
		t.Fatal("a move changed the holder's token")
	}
	h.wantEffects(
		Effect{Kind: EffectRevoked, Consumer: "a", Domain: "orders", Range: h.domain("orders").ranges[0], Token: tok, Reason: drain},
		Effect{Kind: EffectPrepared, Consumer: "b", Domain: "orders", Range: h.domain("orders").ranges[0]},
	)
	// A REVOKED holder cannot be moved again.
	h.reject(opMove("orders", f0, "a", tok, "", rebalance), ErrConflict)

	// Move without a successor: REVOKED only.
	f1 := h.from("orders", 1)
	h.ok(opAssign("orders", f1, "b"))
	h.ok(opMove("orders", f1, "b", h.token("orders", 1), "", rebalance))
	h.wantHolder("orders", 1, "b", stateRevoked)
	h.wantNext("orders", 1, "")
	h.wantEffects(Effect{Kind: EffectRevoked, Consumer: "b", Domain: "orders", Range: h.domain("orders").ranges[1], Reason: rebalance})
}

func TestStateRelease(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 4))
	h.ok(opJoin("a", "a1", "orders"), opJoin("b", "b1", "orders"), opJoin("c", "c1", "orders"))
	f0, f1, f2 := h.from("orders", 0), h.from("orders", 1), h.from("orders", 2)
	h.ok(opAssign("orders", f0, "a"), opAssign("orders", f1, "a"), opAssign("orders", f2, "a"))
	tok := h.token("orders", 0)
	h.ok(opMove("orders", f0, "a", tok, "b", rebalance))

	h.run(t, "wrong token or consumer", func(t *testing.T) {
		h.reject(opRelease("orders", f0, "a", topology.Token{Generation: 1, Index: tok.Index + 1}, false), ErrConflict)
		h.reject(opRelease("orders", f0, "a", topology.Token{}, false), ErrConflict)
		h.reject(opRelease("orders", f0, "c", tok, false), ErrConflict)
		h.reject(opRelease("orders", h.from("orders", 3), "a", tok, false), ErrConflict)
		h.reject(opRelease("nope", f0, "a", tok, false), ErrNotFound)
	})

	// The holder releases: its successor becomes ACTIVE with this entry's
	// index as token, strictly greater than the released one.
	h.ok(opRelease("orders", f0, "a", tok, false))
	idx := h.index
	newTok := topology.Token{Generation: 1, Index: idx}
	h.wantHolder("orders", 0, "b", stateActive)
	h.wantNext("orders", 0, "")
	if got := h.token("orders", 0); got != newTok || !tok.Less(got) {
		t.Fatalf("successor token %s, want %s > %s", got, newTok, tok)
	}
	r0 := h.domain("orders").ranges[0]
	h.wantEffects(
		Effect{Kind: EffectReleased, Consumer: "a", Domain: "orders", Range: r0, Token: tok},
		Effect{Kind: EffectGranted, Consumer: "b", Domain: "orders", Range: r0, Token: newTok},
	)
	// The old token is dead now.
	h.reject(opRelease("orders", f0, "a", tok, false), ErrConflict)
	h.reject(opMove("orders", f0, "b", tok, "c", rebalance), ErrConflict)

	// An expired release is reported as dropped; the shard is free.
	h.ok(opRelease("orders", f1, "a", h.token("orders", 1), true))
	h.wantEffects(Effect{Kind: EffectDropped, Consumer: "a", Domain: "orders", Range: h.domain("orders").ranges[1]})
	h.wantHolder("orders", 1, "", stateNone)

	// The successor releases its allocation: the holder stays REVOKED.
	tok2 := h.token("orders", 2)
	h.ok(opMove("orders", f2, "a", tok2, "c", rebalance))
	h.ok(opRelease("orders", f2, "c", topology.Token{}, false))
	h.wantHolder("orders", 2, "a", stateRevoked)
	h.wantNext("orders", 2, "")
	h.wantEffects(Effect{Kind: EffectRevoked, Consumer: "c", Domain: "orders", Range: h.domain("orders").ranges[2]})
	if _, ok := h.consumer("c").grants[shardRef{h.domain("orders"), 2}]; ok {
		t.Fatal("released allocation still indexed")
	}
	// A REVOKED holder may release too.
	h.ok(opRelease("orders", f2, "a", tok2, false))
	h.wantHolder("orders", 2, "", stateNone)
	if n := len(h.consumer("a").grants); n != 0 {
		t.Fatalf("a still indexes %d grants", n)
	}
}

func TestStateLeave(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 4))
	h.ok(opJoin("a", "a1", "orders"), opJoin("b", "b1", "orders"), opJoin("c", "c1", "orders"))
	f := func(i int) topology.Bound { return h.from("orders", i) }
	h.ok(opAssign("orders", f(0), "a"), opAssign("orders", f(1), "a"), opAssign("orders", f(2), "c"), opAssign("orders", f(3), "b"))
	h.ok(opMove("orders", f(1), "a", h.token("orders", 1), "b", rebalance), opMove("orders", f(2), "c", h.token("orders", 2), "a", rebalance))

	h.reject(opLeave("ghost", "g1"), ErrNotFound)
	h.reject(opLeave("a", "a0"), ErrConflict)
	h.reject(opLeave("a", ""), ErrConflict)

	h.ok(opLeave("a", "a1"))
	idx := h.index
	r := h.domain("orders").ranges
	h.wantEffects(
		Effect{Kind: EffectDropped, Consumer: "a", Domain: "orders", Range: r[0]},
		Effect{Kind: EffectDropped, Consumer: "a", Domain: "orders", Range: r[1]},
		Effect{Kind: EffectGranted, Consumer: "b", Domain: "orders", Range: r[1], Token: topology.Token{Generation: 1, Index: idx}},
		Effect{Kind: EffectLeft, Consumer: "a", Incarnation: "a1"},
	)
	if _, ok := h.state().consumers["a"]; ok {
		t.Fatal("a is still registered")
	}
	h.wantHolder("orders", 0, "", stateNone)
	h.wantHolder("orders", 1, "b", stateActive)
	h.wantHolder("orders", 2, "c", stateRevoked)
	h.wantNext("orders", 2, "")
	h.wantHolder("orders", 3, "b", stateActive)
	h.reject(opLeave("a", "a1"), ErrNotFound)
}

func TestStateSetDraining(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 2))
	h.ok(opJoin("a", "a1", "orders"))
	h.ok(opAssign("orders", h.from("orders", 0), "a"))
	h.reject(opDrain("ghost", "g1"), ErrNotFound)
	h.reject(opDrain("a", "a0"), ErrConflict)

	h.ok(opDrain("a", "a1"))
	h.wantEffects(Effect{Kind: EffectDraining, Consumer: "a", Incarnation: "a1"})
	if !h.consumer("a").draining {
		t.Fatal("a is not draining")
	}
	// Draining changes no grant.
	h.wantHolder("orders", 0, "a", stateActive)
	before := snapshotAt(h.state(), 0)
	h.ok(opDrain("a", "a1"))
	h.wantEffects()
	if !proto.Equal(before, snapshotAt(h.state(), 0)) {
		t.Fatal("a repeated SetDraining changed the state")
	}
}

func TestStateDeleteDomain(t *testing.T) {
	h := newHarness(t)
	h.ok(opCreate("orders", global, 4))
	h.ok(opJoin("a", "a1", "orders"), opJoin("b", "b1", "orders"))
	f := func(i int) topology.Bound { return h.from("orders", i) }
	h.ok(opAssign("orders", f(0), "a"), opAssign("orders", f(1), "a"), opAssign("orders", f(2), "b"))
	h.ok(opMove("orders", f(1), "a", h.token("orders", 1), "b", rebalance), opMove("orders", f(2), "b", h.token("orders", 2), "", rebalance))
	maxTok := h.token("orders", 0)

	h.reject(opDelete("nope", false), ErrNotFound)
	h.reject(opDelete("orders", true), ErrFailedPrecondition) // purge before delete

	h.ok(opDelete("orders", false))
	r := h.domain("orders").ranges
	del := wdsv1.RevokeReason_REVOKE_REASON_DOMAIN_DELETED
	h.wantEffects(
		Effect{Kind: EffectRevoked, Consumer: "a", Domain: "orders", Range: r[0], Reason: del},
		Effect{Kind: EffectRevoked, Consumer: "b", Domain: "orders", Range: r[1], Reason: del},
	)
	if len(h.last.Routes) != 1 || h.last.Routes[0] != (RouteChange{Domain: "orders", Shard: -1, Deleted: true}) {
		t.Fatalf("routes = %+v", h.last.Routes)
	}
	if !h.domain("orders").d.deleting {
		t.Fatal("domain not marked deleting")
	}
	h.wantHolder("orders", 0, "a", stateRevoked)
	h.wantHolder("orders", 1, "a", stateRevoked)
	h.wantNext("orders", 1, "")
	h.wantHolder("orders", 2, "b", stateRevoked)
	h.wantHolder("orders", 3, "", stateNone)

	// Idempotent, and nothing new is granted meanwhile.
	before := snapshotAt(h.state(), 0)
	h.ok(opDelete("orders", false))
	if !proto.Equal(before, snapshotAt(h.state(), 0)) || len(h.last.Effects) != 0 {
		t.Fatal("a repeated delete changed the state")
	}
	h.reject(opAssign("orders", f(3), "a"), ErrFailedPrecondition)
	h.reject(opAssign("orders", f(0), "b"), ErrFailedPrecondition)
	h.reject(opCreate("orders", global, 4), ErrFailedPrecondition)
	h.reject(opDelete("orders", true), ErrFailedPrecondition) // grants left

	h.ok(opRelease("orders", f(0), "a", h.token("orders", 0), false), opRelease("orders", f(1), "a", h.token("orders", 1), false))
	h.wantHolder("orders", 1, "", stateNone)
	h.reject(opDelete("orders", true), ErrFailedPrecondition) // b's grant left
	h.ok(opRelease("orders", f(2), "b", h.token("orders", 2), true))
	h.ok(opDelete("orders", true))
	if _, ok := h.state().domains["orders"]; ok {
		t.Fatal("purged domain still present")
	}
	h.reject(opDelete("orders", true), ErrNotFound)

	// The name is free again; tokens of the new domain exceed the old ones.
	h.ok(opCreate("orders", global, 2))
	h.ok(opAssign("orders", h.from("orders", 0), "b"))
	if tok := h.token("orders", 0); !maxTok.Less(tok) {
		t.Fatalf("token %s of the re-created domain is not above %s", tok, maxTok)
	}
}

// TestStateUnknownOp: an op this version does not know is skipped with
// ErrUnknownOp; the other ops of its entry apply.
// TestStateUnknownOp: an op of a newer version is skipped when it says it
// is ignorable (informational), and stops the node otherwise: applying the
// log without it would fork this replica's ownership state.
func TestStateUnknownOp(t *testing.T) {
	h := newHarness(t)
	// Ops carrying only field 99 (and the ignorable flag, field 15), as a
	// newer version would write them.
	ignorable := []byte{0x0a, 0x05, 0x78, 0x01, 0x98, 0x06, 0x01} // Entry.ops{ Op{ ignorable: true, field 99: 1 } }
	var data []byte
	for _, part := range [][]byte{
		marshalDet(t, &cellv1.Entry{Ops: []*cellv1.Op{opCreate("orders", global, 2)}}),
		ignorable,
		marshalDet(t, &cellv1.Entry{Ops: []*cellv1.Op{{Ignorable: true}, opJoin("a", "a1", "orders")}}),
	} {
		data = append(data, part...)
	}
	h.index++
	errs := h.applyLog(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: data}, 4)
	if errs[0] != nil || !errors.Is(errs[1], ErrUnknownOp) || !errors.Is(errs[2], ErrUnknownOp) || errs[3] != nil {
		t.Fatalf("results = %v, want [nil ErrUnknownOp ErrUnknownOp nil]", errs)
	}
	h.domain("orders")
	h.consumer("a")

	vital := []byte{0x0a, 0x03, 0x98, 0x06, 0x01} // Entry.ops{ Op{ field 99: 1 } }
	defer func() {
		if recover() == nil {
			t.Fatal("an unknown op that is not ignorable was skipped")
		}
	}()
	h.index++
	h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: vital})
}
