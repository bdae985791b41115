package cell

import (
	"fmt"
	"maps"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/wdsio/wds/cell/cellstate"
	"github.com/wdsio/wds/internal/lease"
	"github.com/wdsio/wds/internal/rpcerr"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
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

// planScratch is the planner's reusable memory: rebuilding maps of 10,000
// leases every round would be most of the garbage a busy leader makes.
type planScratch struct {
	planner cellstate.Planner
	leases  map[string]cellstate.Lease
	conns   map[string]*sessionConn
	frozen  map[grantKey]time.Time
	// expiryOf is the last round's Plan.ExpiryOf (fenceExpiries reads it).
	expiryOf []string
}

// plan returns the ops of one balancing round: it copies the lease book
// (lock order: leader before lease before state) and lets the state's
// planner decide.
func (l *leader) plan(now time.Time) []*cellv1.Op {
	sc := &l.scratch
	if sc.leases == nil {
		sc.leases = map[string]cellstate.Lease{}
		sc.conns = map[string]*sessionConn{}
		sc.frozen = map[grantKey]time.Time{}
	}
	clear(sc.leases)
	clear(sc.conns)
	clear(sc.frozen)
	l.mu.Lock()
	for id, cl := range l.leases {
		cl.mu.Lock()
		sc.leases[id] = cellstate.Lease{Incarnation: cl.incarnation, Anchor: cl.anchor, HeardAt: cl.heardAt, Connected: cl.conn != nil, TTLs: cl.ttls}
		if cl.conn != nil {
			sc.conns[id] = cl.conn
		}
		cl.mu.Unlock()
	}
	for k, v := range l.frozen {
		sc.frozen[k] = v
	}
	var ended map[DelegationID]bool
	if len(l.ended) > 0 {
		ended = maps.Clone(l.ended)
	}
	l.mu.Unlock()

	pl := sc.planner.Plan(l.n.state, cellstate.PlanInput{
		Now:        now,
		Leases:     sc.leases,
		Frozen:     sc.frozen,
		Deadline:   func(anchor time.Time, ttl time.Duration) time.Time { return l.params(ttl).LeaderDeadline(anchor) },
		Unanchored: l.accession.Add(lease.AccessionSlack(l.n.cfg.Raft.ConfirmWindow, l.n.cfg.Drift)),
		Grantable: func(domain string, ttl time.Duration) bool {
			return l.delegations.grantable(domain, now.Add(l.params(ttl).LeaderHold()))
		},
		MaxMoves: l.n.cfg.MaxMovesInFlight,
		Ended:    func(id DelegationID) bool { return ended[id] },
	})
	sc.expiryOf = pl.ExpiryOf
	for _, st := range pl.Stale {
		// The domain was re-created with another TTL since this session's
		// Welcome: make it reconnect and learn the new one.
		if conn := sc.conns[st.Consumer]; conn != nil {
			go conn.close(rpcerr.New(codes.Unavailable, rpcerr.ReasonDomainChanged, fmt.Sprintf("domain %q changed (ttl %v); reconnect", st.Domain, st.TTL), rpcerr.KeyDomain, st.Domain), nil)
		}
	}
	return pl.Ops
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
	ids := l.scratch.expiryOf
	if ids == nil || len(ids) != len(ops) {
		return ops, nil // not a round of expiries
	}
	views := l.scratch.leases
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
		if cl.incarnation != v.Incarnation || !cl.anchor.Equal(v.Anchor) {
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
