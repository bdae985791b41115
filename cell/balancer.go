package cell

import (
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/wdsio/wds/internal/lease"
	"github.com/wdsio/wds/internal/rpcerr"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// balanceLoop is the leader's planner: on every trigger (an applied entry, a
// session attaching or leaving) and every BalanceInterval it plans one round
// — lease expiries first, then assignments and moves — proposes it, and
// waits for it to apply before planning again, so it never plans twice from
// one state.
func (l *leader) balanceLoop() {
	defer l.wg.Done()
	tick := time.NewTicker(l.n.cfg.BalanceInterval)
	defer tick.Stop()
	var last time.Time
	gap := minRoundGap
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.kick:
		case <-tick.C:
		}
		// Every applied entry kicks the planner; under a stream of entries
		// (joins, releases) one round per minRoundGap is plenty, and a
		// round costs O(shards + consumers).
		if wait := gap - time.Since(last); wait > 0 {
			select {
			case <-l.ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		now := last
		if !l.n.raft.Confirmed(now) {
			continue
		}
		ops := l.plan(now)
		// Keep the planner's duty cycle near a tenth of a core: with
		// 10,000 consumers a round takes milliseconds, and planning
		// back-to-back starves the rest (and the GC) on small machines.
		gap = max(minRoundGap, 10*time.Since(last))
		ops, fenced := l.fenceExpiries(ops)
		if len(ops) == 0 {
			continue
		}
		if _, err := l.n.propose(l.ctx, ops...); err != nil {
			// The entry may still commit (leadership lost after
			// replication), so the fence stays: this leader either loses
			// its lease records with its leadership, or decides the same
			// expiry again next round (the anchor cannot move while
			// fenced) and lifts the fence once that round commits.
			l.log.Debug("balance round not committed", "ops", len(ops), "err", err)
			select {
			case <-l.ctx.Done():
				return
			case <-time.After(l.n.cfg.BalanceInterval):
			}
			continue
		}
		// Committed and dispatched: a Revoke LOST is queued ahead of any
		// later ack, or the session is closed. Acks may flow again.
		unfence(fenced)
		l.poke() // the round changed state: look again
	}
}

// minRoundGap is the least time between two planning rounds.
const minRoundGap = 10 * time.Millisecond

// leaseView is a consumer's lease as the planner sees it at one instant.
type leaseView struct {
	incarnation string
	anchor      time.Time
	heardAt     time.Time
	connected   bool
	conn        *sessionConn
	ttls        map[string]time.Duration
}

// planScratch is the planner's reusable memory: rebuilding maps of 10,000
// leases every round would be most of the garbage a busy leader makes.
type planScratch struct {
	views  map[string]leaseView
	frozen map[grantKey]time.Time
	all    []*consumer
	// expiryIDs is aligned with the ops of a round of expiries: the
	// consumer whose anchor the op's expiry was judged from, "" when the
	// op does not depend on it (a revoked grant's frozen deadline).
	expiryIDs []string
}

// plan returns the ops of one balancing round.
func (l *leader) plan(now time.Time) []*cellv1.Op {
	// Lock order: leader before state.
	sc := &l.scratch
	sc.expiryIDs = sc.expiryIDs[:0]
	if sc.views == nil {
		sc.views = map[string]leaseView{}
		sc.frozen = map[grantKey]time.Time{}
	}
	clear(sc.views)
	clear(sc.frozen)
	views, frozen := sc.views, sc.frozen
	l.mu.Lock()
	for id, cl := range l.leases {
		cl.mu.Lock()
		views[id] = leaseView{incarnation: cl.incarnation, anchor: cl.anchor, heardAt: cl.heardAt, connected: cl.conn != nil, conn: cl.conn, ttls: cl.ttls}
		cl.mu.Unlock()
	}
	for k, v := range l.frozen {
		frozen[k] = v
	}
	l.mu.Unlock()

	s := l.n.state
	s.mu.RLock()
	defer s.mu.RUnlock()

	// Phase 1: expiries (contract (3): a shard becomes grantable only once
	// its holder released it or is past the leader's deadline).
	var ops []*cellv1.Op
	deadline := func(c *consumer, ttl time.Duration) time.Time {
		v, ok := views[c.id]
		if !ok || v.incarnation != c.incarnation {
			// No lease record (cannot happen: every registered consumer
			// gets one at accession or join): hold as contract (4) does.
			v.anchor = l.accession.Add(lease.AccessionSlack(l.n.cfg.Raft.ConfirmWindow, l.n.cfg.Drift))
		}
		return l.params(ttl).LeaderDeadline(v.anchor)
	}
	sc.all = appendSortedConsumers(sc.all[:0], s)
	all := sc.all
	names := make([]string, 0, len(s.domains))
	for n := range s.domains {
		names = append(names, n)
	}
	sort.Strings(names)
	leaving := map[*consumer]bool{}
	for _, c := range all {
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
		if now.After(deadline(c, maxTTL)) {
			leaving[c] = true
			ops = append(ops, &cellv1.Op{Op: &cellv1.Op_Leave{Leave: &cellv1.Leave{
				ConsumerId: c.id, Incarnation: []byte(c.incarnation), Reason: cellv1.LeaveReason_LEAVE_REASON_EXPIRED,
			}}})
			sc.expiryIDs = append(sc.expiryIDs, c.id)
		}
	}
	// Grants of shorter-TTL domains, and revoked grants (frozen deadlines),
	// lapse before their consumer does: one pass over the shards, in a
	// deterministic order.
	for _, name := range names {
		d := s.domains[name]
		for _, ks := range d.spaces {
			for i := range ks.shards {
				h := ks.shards[i].holder
				if h.consumer == nil || leaving[h.consumer] {
					continue
				}
				dl := deadline(h.consumer, d.spec.TTL)
				anchored := h.consumer.id
				if h.state == stateRevoked {
					if f, ok := frozen[grantKey{domain: name, region: ks.region, from: ks.ranges[i].From, token: h.token}]; ok && f.Before(dl) {
						dl, anchored = f, "" // later acks cannot extend a revoked grant
					}
				}
				if now.After(dl) {
					ops = append(ops, releaseOp(ks, i, h.consumer.id, h.token, true))
					sc.expiryIDs = append(sc.expiryIDs, anchored)
				}
			}
		}
	}
	if len(ops) > 0 {
		return ops
	}

	// Phase 2: per domain, assignments and moves. Index the consumers by
	// the domains they serve once, so a round costs O(shards + Σ domains
	// per consumer), not O(domains × consumers).
	servers := make(map[string][]*consumer, len(names))
	for _, c := range all {
		for _, name := range c.domains {
			servers[name] = append(servers[name], c)
		}
	}
	for _, name := range names {
		d := s.domains[name]
		if d.deleting {
			if domainEmpty(d) {
				ops = append(ops, &cellv1.Op{Op: &cellv1.Op_DeleteDomain{DeleteDomain: &cellv1.DeleteDomain{Name: name, Purge: true}}})
			}
			continue
		}
		if !l.delegations.grantable(name, now.Add(l.params(d.spec.TTL).LeaderHold())) {
			// Contract (5): grant nothing new while the delegation is
			// unconfirmed or lapsing (the FSM refuses outside one anyway).
			continue
		}
		var eligible []*consumer
		for _, c := range servers[name] {
			v, ok := views[c.id]
			if !ok || v.incarnation != c.incarnation || c.draining || c.region != s.region {
				continue
			}
			if now.After(l.params(d.spec.TTL).LeaderDeadline(v.anchor)) {
				continue
			}
			if v.connected && v.ttls[name] != d.spec.TTL {
				// The domain was re-created with another TTL since this
				// session's Welcome: the client would compute its deadline
				// from the old one. Make it reconnect and learn the new one.
				if _, announced := v.ttls[name]; announced {
					go v.conn.close(rpcerr.New(codes.Unavailable, rpcerr.ReasonDomainChanged, fmt.Sprintf("domain %q changed (ttl %v); reconnect", name, d.spec.TTL), rpcerr.KeyDomain, name), nil)
				}
				continue
			}
			eligible = append(eligible, c)
		}
		for _, ks := range d.spaces {
			ops = append(ops, planDomain(ks, eligible, views, l.n.cfg.MaxMovesInFlight)...)
		}
	}
	return append(ops, confirmOps(all, views, now)...)
}

// unconfirmedAfter is how long a consumer without a stream may go unheard
// before routing and the shard map call it unconfirmed: long enough for a
// session to resume after a blip or a leader change (clients find the new
// leader within a second of its accession), short enough that a consumer
// gone with a whole-cell restart is not shown as a healthy owner for most
// of its lease.
const unconfirmedAfter = 2 * time.Second

// confirmOps marks the consumers the leader stopped hearing from as
// unconfirmed, and those it hears from again as confirmed. A consumer with
// a stream heartbeats every interval (a third of its smallest TTL), so it is
// unconfirmed after 2.5 intervals without one, the client's own limit for a
// silent stream; one without a stream after unconfirmedAfter.
func confirmOps(all []*consumer, views map[string]leaseView, now time.Time) []*cellv1.Op {
	var ops []*cellv1.Op
	for _, c := range all {
		v, ok := views[c.id]
		if !ok || v.incarnation != c.incarnation {
			continue
		}
		grace := unconfirmedAfter
		if v.connected {
			grace = max(grace, lease.HeartbeatInterval(minTTL(v.ttls))*5/2)
		}
		if want := now.Sub(v.heardAt) > grace; want != c.unconfirmed {
			// Ignorable: informational, an older node may skip it.
			ops = append(ops, &cellv1.Op{Ignorable: true, Op: &cellv1.Op_SetConfirmed{SetConfirmed: &cellv1.SetConfirmed{
				ConsumerId: c.id, Incarnation: []byte(c.incarnation), Unconfirmed: want,
			}}})
		}
	}
	return ops
}

// planDomain balances one key space of a domain over the shards under a
// live delegation: every eligible consumer ends with ⌊n/k⌋ or ⌈n/k⌉ of
// them, with the fewest moves. Shards without an eligible owner
// are assigned (at once when unheld, as successors when their holder is
// revoked) or moved away from a draining holder; then consumers above their
// target give shards to those below. Moves in flight are capped.
func planDomain(ks *keySpace, eligible []*consumer, views map[string]leaseView, maxMoves int) []*cellv1.Op {
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
	// Those holding most get the ⌈n/k⌉ targets: fewest moves.
	order := append([]*consumer(nil), eligible...)
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
		if views[c.id].connected && load[c] < target[c] {
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

// fenceExpiries makes a round's expiry decisions hold against acks
// (contract (3)). plan judged leases from a snapshot of their anchors; an
// ack handed to a stream since then moved the anchor and told the client
// its grants run longer, so those decisions are stale and dropped (the
// next round decides again). For the others the lease is marked expiring
// under the same lock beforeAck takes, so no ack goes out between the
// decision and its dispatch. Without this an ack queued behind a slow
// write could leave after the planner freed the shards, and the client
// would run them while they were granted to another.
func (l *leader) fenceExpiries(ops []*cellv1.Op) (kept []*cellv1.Op, fenced []*consumerLease) {
	ids := l.scratch.expiryIDs
	if len(ids) != len(ops) {
		return ops, nil // not a round of expiries
	}
	views := l.scratch.views
	var stale map[string]bool
	seen := map[string]bool{}
	l.mu.Lock()
	for _, id := range ids {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		cl, v := l.leases[id], views[id]
		if cl == nil {
			continue // no lease record, so no session that could be acked
		}
		cl.mu.Lock()
		if cl.incarnation != v.incarnation || !cl.anchor.Equal(v.anchor) {
			if stale == nil {
				stale = map[string]bool{}
			}
			stale[id] = true
		} else {
			// Possibly fenced already by a round whose commit failed:
			// this round lifts it when it commits.
			cl.expiring = true
			fenced = append(fenced, cl)
		}
		cl.mu.Unlock()
	}
	l.mu.Unlock()
	if stale == nil {
		return ops, fenced
	}
	for i, op := range ops {
		if !stale[ids[i]] {
			kept = append(kept, op)
		}
	}
	return kept, fenced
}

// unfence lets acks flow again for leases fenceExpiries marked.
func unfence(fenced []*consumerLease) {
	for _, cl := range fenced {
		cl.mu.Lock()
		cl.expiring = false
		cl.mu.Unlock()
	}
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
