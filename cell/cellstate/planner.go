package cellstate

import (
	"sort"
	"time"

	"github.com/wdsio/wds/internal/lease"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// The planner: one balancing round computed from the state and the
// leader's lease book, as log ops. It only reads; the leader proposes what
// it returns, and the FSM re-checks every op when it applies (a stale op
// fails with ErrConflict and the next round plans again).

// Lease is a consumer's lease as the leader's book holds it at the instant
// the round is planned.
type Lease struct {
	Incarnation string
	// Anchor is the send time of the last ack the consumer's lease runs
	// from; HeardAt when the leader last heard from it.
	Anchor, HeardAt time.Time
	// Connected: the consumer has a session stream on this leader.
	Connected bool
	// TTLs are the domain TTLs the session's Welcome announced.
	TTLs map[string]time.Duration
}

// GrantKey names one grant: a shard (domain, key-space region, range
// start) and the grant's token.
type GrantKey struct {
	Domain, Region string
	From           topology.Bound
	Token          topology.Token
}

// PlanInput is what a round is planned from besides the state.
type PlanInput struct {
	Now time.Time
	// Leases are the leader's lease records by consumer id.
	Leases map[string]Lease
	// Frozen holds the deadlines of revoked grants: acks after the
	// revocation no longer extend them.
	Frozen map[GrantKey]time.Time
	// Deadline is the leader's deadline of a grant of ttl whose lease runs
	// from anchor (contract (3)).
	Deadline func(anchor time.Time, ttl time.Duration) time.Time
	// Unanchored is the anchor of a consumer without a lease record: the
	// leader's accession plus its slack (contract (4)).
	Unanchored time.Time
	// Grantable reports whether the domain's delegation lets the leader
	// grant a lease of ttl now (contract (5)).
	Grantable func(domain string, ttl time.Duration) bool
	// MaxMoves caps the revocations in flight per key space.
	MaxMoves int
	// Ended reports delegations the delegator no longer has at all (they
	// expired or were released): every lease the cell extended under them
	// has ended, so a grant still held under one that is not live here
	// ends now instead of at its holder's deadline. Nil: none.
	Ended func(DelegationID) bool
}

// Plan is one round.
type Plan struct {
	Ops []*cellv1.Op
	// ExpiryOf is non-nil only for a round of expiries, aligned with Ops:
	// the consumer whose anchor the op's expiry was judged from, "" when
	// the op does not depend on it (a revoked grant's frozen deadline).
	// The leader fences those leases against acks until the round commits.
	ExpiryOf []string
	// Stale lists connected sessions whose Welcome announced another TTL
	// for a domain than the catalog's (re-created since): they must
	// reconnect and learn the new one. They get nothing until then.
	Stale []StaleSession
}

// StaleSession is a session that announced a domain's old TTL.
type StaleSession struct {
	Consumer, Domain string
	TTL              time.Duration
}

// Planner plans rounds, reusing its memory from one round to the next:
// a busy leader plans every few milliseconds over 10,000 leases.
type Planner struct {
	all []*consumer
}

// Plan returns one balancing round: lease expiries if any are due (and
// nothing else), else assignments, moves and confirmation changes.
func (p *Planner) Plan(s *State, in PlanInput) Plan {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p.all = appendSortedConsumers(p.all[:0], s)
	if pl := p.expiries(s, in); len(pl.Ops) > 0 {
		return pl
	}
	return p.balance(s, in)
}

// deadline is the leader's deadline of c's grants of ttl.
func (in *PlanInput) deadline(c *consumer, ttl time.Duration) time.Time {
	v, ok := in.Leases[c.id]
	if !ok || v.Incarnation != c.incarnation {
		// No lease record (cannot happen: every registered consumer gets
		// one at accession or join): hold as contract (4) does.
		v.Anchor = in.Unanchored
	}
	return in.Deadline(v.Anchor, ttl)
}

func sortedDomainNames(s *State) []string {
	names := make([]string, 0, len(s.domains))
	for n := range s.domains {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// expiries is phase 1 (contract (3)): a shard becomes grantable only once
// its holder released it or is past the leader's deadline.
func (p *Planner) expiries(s *State, in PlanInput) Plan {
	var pl Plan
	leaving := map[*consumer]bool{}
	for _, c := range p.all {
		// Grants are only ever in domains the consumer serves, so its
		// longest-lived grant has the largest TTL among them.
		maxTTL := time.Duration(0)
		for _, name := range c.domains {
			if d, ok := s.domains[name]; ok && d.spec.TTL > maxTTL {
				maxTTL = d.spec.TTL
			}
		}
		if maxTTL == 0 {
			maxTTL = topology.DefaultTTL
		}
		if in.Now.After(in.deadline(c, maxTTL)) {
			leaving[c] = true
			pl.Ops = append(pl.Ops, &cellv1.Op{Op: &cellv1.Op_Leave{Leave: &cellv1.Leave{
				ConsumerId: c.id, Incarnation: []byte(c.incarnation), Reason: cellv1.LeaveReason_LEAVE_REASON_EXPIRED,
			}}})
			pl.ExpiryOf = append(pl.ExpiryOf, c.id)
		}
	}
	// Grants of shorter-TTL domains, and revoked grants (frozen deadlines),
	// lapse before their consumer does: one pass over the shards, in a
	// deterministic order.
	for _, name := range sortedDomainNames(s) {
		d := s.domains[name]
		for _, ks := range d.spaces {
			for i := range ks.shards {
				h := ks.shards[i].holder
				if h.consumer == nil || leaving[h.consumer] {
					continue
				}
				sh := &ks.shards[i]
				if in.Ended != nil && !(sh.delegated() && sh.generation == h.token.Generation) &&
					in.Ended(DelegationID{Domain: name, Region: ks.region, Generation: h.token.Generation}) {
					// Its delegation's global deadline has passed: the
					// holder's lease ended before it (contract (5)).
					pl.Ops = append(pl.Ops, releaseOp(ks, i, h.consumer.id, h.token, true))
					pl.ExpiryOf = append(pl.ExpiryOf, "")
					continue
				}
				dl := in.deadline(h.consumer, d.spec.TTL)
				anchored := h.consumer.id
				if h.state == stateRevoked {
					if f, ok := in.Frozen[GrantKey{Domain: name, Region: ks.region, From: ks.ranges[i].From, Token: h.token}]; ok && f.Before(dl) {
						dl, anchored = f, "" // later acks cannot extend a revoked grant
					}
				}
				if in.Now.After(dl) {
					pl.Ops = append(pl.Ops, releaseOp(ks, i, h.consumer.id, h.token, true))
					pl.ExpiryOf = append(pl.ExpiryOf, anchored)
				}
			}
		}
	}
	if len(pl.Ops) == 0 {
		pl.ExpiryOf = nil
	}
	return pl
}

// balance is phase 2: per domain, assignments and moves. It indexes the
// consumers by the domains they serve once, so a round costs
// O(shards + Σ domains per consumer), not O(domains × consumers).
func (p *Planner) balance(s *State, in PlanInput) Plan {
	var pl Plan
	names := sortedDomainNames(s)
	servers := make(map[string][]*consumer, len(names))
	for _, c := range p.all {
		for _, name := range c.domains {
			servers[name] = append(servers[name], c)
		}
	}
	for _, name := range names {
		d := s.domains[name]
		if d.deleting {
			if domainEmpty(d) {
				pl.Ops = append(pl.Ops, &cellv1.Op{Op: &cellv1.Op_DeleteDomain{DeleteDomain: &cellv1.DeleteDomain{Name: name, Purge: true}}})
			}
			continue
		}
		if !in.Grantable(name, d.spec.TTL) {
			// Contract (5): grant nothing new while the delegation is
			// unconfirmed or lapsing (the FSM refuses outside one anyway).
			continue
		}
		var eligible []*consumer
		for _, c := range servers[name] {
			v, ok := in.Leases[c.id]
			if !ok || v.Incarnation != c.incarnation || c.draining || c.region != s.region {
				continue
			}
			if in.Now.After(in.Deadline(v.Anchor, d.spec.TTL)) {
				continue
			}
			if v.Connected && v.TTLs[name] != d.spec.TTL {
				// The domain was re-created with another TTL since this
				// session's Welcome: the client would compute its deadline
				// from the old one.
				if _, announced := v.TTLs[name]; announced {
					pl.Stale = append(pl.Stale, StaleSession{Consumer: c.id, Domain: name, TTL: d.spec.TTL})
				}
				continue
			}
			eligible = append(eligible, c)
		}
		for _, ks := range d.spaces {
			pl.Ops = append(pl.Ops, planDomain(ks, eligible, in.Leases, in.MaxMoves)...)
		}
	}
	pl.Ops = append(pl.Ops, confirmOps(p.all, in.Leases, in.Now)...)
	return pl
}

// UnconfirmedAfter is how long a consumer without a stream may go unheard
// before routing and the shard map call it unconfirmed: long enough for a
// session to resume after a blip or a leader change (clients find the new
// leader within a second of its accession), short enough that a consumer
// gone with a whole-cell restart is not shown as a healthy owner for most
// of its lease.
const UnconfirmedAfter = 2 * time.Second

// confirmOps marks the consumers the leader stopped hearing from as
// unconfirmed, and those it hears from again as confirmed. A consumer with
// a stream heartbeats every interval (a third of its smallest TTL), so it is
// unconfirmed after 2.5 intervals without one, the client's own limit for a
// silent stream; one without a stream after UnconfirmedAfter.
func confirmOps(all []*consumer, leases map[string]Lease, now time.Time) []*cellv1.Op {
	var ops []*cellv1.Op
	for _, c := range all {
		v, ok := leases[c.id]
		if !ok || v.Incarnation != c.incarnation {
			continue
		}
		grace := UnconfirmedAfter
		if v.Connected {
			grace = max(grace, lease.HeartbeatInterval(MinTTL(v.TTLs))*5/2)
		}
		if want := now.Sub(v.HeardAt) > grace; want != c.unconfirmed {
			// Ignorable: informational, an older node may skip it.
			ops = append(ops, &cellv1.Op{Ignorable: true, Op: &cellv1.Op_SetConfirmed{SetConfirmed: &cellv1.SetConfirmed{
				ConsumerId: c.id, Incarnation: []byte(c.incarnation), Unconfirmed: want,
			}}})
		}
	}
	return ops
}

// MinTTL is the smallest of a session's domain TTLs (the default TTL for
// none): its heartbeat interval is a third of it.
func MinTTL(ttls map[string]time.Duration) time.Duration {
	m := time.Duration(0)
	for _, t := range ttls {
		if m == 0 || t < m {
			m = t
		}
	}
	if m == 0 {
		m = topology.DefaultTTL
	}
	return m
}

// planDomain balances one key space of a domain over the shards under a
// live delegation: every eligible consumer ends with ⌊n/k⌋ or ⌈n/k⌉ of
// them, with the fewest moves. Shards without an eligible owner
// are assigned (at once when unheld, as successors when their holder is
// revoked) or moved away from a draining holder; then consumers above their
// target give shards to those below. Moves in flight are capped.
func planDomain(ks *keySpace, eligible []*consumer, leases map[string]Lease, maxMoves int) []*cellv1.Op {
	var ops []*cellv1.Op
	n, k := 0, len(eligible)
	for i := range ks.shards {
		if ks.shards[i].delegated() {
			n++
		}
	}
	// Moves in flight: every revoked grant not yet released or expired,
	// with or without a successor.
	inflight := 0
	for i := range ks.shards {
		if ks.shards[i].holder.state == stateRevoked {
			inflight++
		}
	}
	if k == 0 {
		// Nobody can take over: a draining holder still gets its shards
		// revoked so it can finish draining.
		for i := range ks.shards {
			h := ks.shards[i].holder
			if h.consumer != nil && h.state == stateActive && h.consumer.draining && ks.shards[i].next.consumer == nil && inflight < maxMoves {
				ops = append(ops, moveOp(ks, i, h, "", wdsv1.RevokeReason_REVOKE_REASON_DRAIN))
				inflight++
			}
		}
		return ops
	}
	isEligible := make(map[*consumer]bool, k)
	for _, c := range eligible {
		isEligible[c] = true
	}
	// effective owner: the successor if any, else an ACTIVE holder.
	owner := func(i int) *consumer {
		sh := &ks.shards[i]
		if sh.next.consumer != nil {
			return sh.next.consumer
		}
		if sh.holder.state == stateActive {
			return sh.holder.consumer
		}
		return nil
	}
	load := make(map[*consumer]int, k)
	for i := range ks.shards {
		if o := owner(i); o != nil && isEligible[o] {
			load[o]++
		}
	}
	// The consumers the shards are balanced over: those connected, and
	// those holding some of them (a disconnected holder may resume). A
	// disconnected consumer holding nothing — one a restarted leader's
	// log still lists but that has not come back, maybe dead — would keep
	// its share unserved until its lease ran out: until it connects, the
	// others take that share (and give it back, gracefully, once it does).
	counted := make([]*consumer, 0, k)
	for _, c := range eligible {
		if leases[c.id].Connected || load[c] > 0 {
			counted = append(counted, c)
		}
	}
	if len(counted) == 0 {
		return ops
	}
	k = len(counted)
	// Those holding most get the ⌈n/k⌉ targets: fewest moves.
	order := append([]*consumer(nil), counted...)
	sort.SliceStable(order, func(a, b int) bool {
		if load[order[a]] != load[order[b]] {
			return load[order[a]] > load[order[b]]
		}
		return order[a].id < order[b].id
	})
	target := make(map[*consumer]int, k)
	for i, c := range order {
		target[c] = n / k
		if i < n%k {
			target[c]++
		}
	}
	// Receivers: connected consumers below target, most-deficient first.
	var receivers []*consumer
	for _, c := range order {
		if leases[c.id].Connected && load[c] < target[c] {
			receivers = append(receivers, c)
		}
	}
	nextReceiver := func() *consumer {
		for len(receivers) > 0 {
			r := receivers[len(receivers)-1]
			if load[r] < target[r] {
				return r
			}
			receivers = receivers[:len(receivers)-1]
		}
		return nil
	}
	// Ascending deficit order so the slice end has the largest deficit:
	// fill evenly by always taking from the end, popping when full.
	sort.SliceStable(receivers, func(a, b int) bool {
		return target[receivers[a]]-load[receivers[a]] < target[receivers[b]]-load[receivers[b]]
	})

	// 1. Shards without an eligible effective owner.
	for i := range ks.shards {
		sh := &ks.shards[i]
		if !sh.delegated() {
			continue // nothing is granted outside a live delegation
		}
		if o := owner(i); o != nil && isEligible[o] {
			continue
		}
		if sh.next.consumer != nil {
			continue // successor not eligible (e.g. draining): it resolves on activation
		}
		r := nextReceiver()
		if r == nil {
			break
		}
		switch {
		case sh.holder.consumer == nil:
			ops = append(ops, assignOp(ks, i, r))
		case sh.holder.state == stateRevoked:
			if sh.holder.consumer == r {
				continue
			}
			ops = append(ops, assignOp(ks, i, r)) // already counted in flight
		default: // ACTIVE holder that is not eligible: draining or leaving
			if inflight >= maxMoves {
				continue
			}
			ops = append(ops, moveOp(ks, i, sh.holder, r.id, wdsv1.RevokeReason_REVOKE_REASON_DRAIN))
			inflight++
		}
		load[r]++
	}

	// 2. Over-target consumers give shards to under-target ones.
	if inflight < maxMoves {
		for i := range ks.shards {
			if inflight >= maxMoves {
				break
			}
			sh := &ks.shards[i]
			h := sh.holder
			if !sh.delegated() || h.consumer == nil || h.state != stateActive || sh.next.consumer != nil || !isEligible[h.consumer] {
				continue
			}
			if load[h.consumer] <= target[h.consumer] {
				continue
			}
			r := nextReceiver()
			if r == nil {
				break
			}
			ops = append(ops, moveOp(ks, i, h, r.id, wdsv1.RevokeReason_REVOKE_REASON_REBALANCE))
			load[h.consumer]--
			load[r]++
			inflight++
		}
	}
	return ops
}

func assignOp(ks *keySpace, i int, c *consumer) *cellv1.Op {
	return &cellv1.Op{Op: &cellv1.Op_Assign{Assign: &cellv1.Assign{Domain: ks.name(), Region: ks.region, From: ks.ranges[i].From.Bytes(), ConsumerId: c.id}}}
}

func moveOp(ks *keySpace, i int, h grant, next string, reason wdsv1.RevokeReason) *cellv1.Op {
	return &cellv1.Op{Op: &cellv1.Op_Move{Move: &cellv1.Move{
		Domain: ks.name(), Region: ks.region, From: ks.ranges[i].From.Bytes(), Holder: h.consumer.id,
		Token: topology.TokenToProto(h.token), Next: next, Reason: reason,
	}}}
}

func releaseOp(ks *keySpace, i int, consumerID string, tok topology.Token, expired bool) *cellv1.Op {
	return &cellv1.Op{Op: &cellv1.Op_Release{Release: &cellv1.Release{
		Domain: ks.name(), Region: ks.region, From: ks.ranges[i].From.Bytes(), ConsumerId: consumerID,
		Token: topology.TokenToProto(tok), Expired: expired,
	}}}
}

func sortedConsumers(s *State) []*consumer {
	return appendSortedConsumers(make([]*consumer, 0, len(s.consumers)), s)
}

func appendSortedConsumers(out []*consumer, s *State) []*consumer {
	for _, c := range s.consumers {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}
