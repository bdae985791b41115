package cell

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/wdsio/wds/cell/cellstate"
	"github.com/wdsio/wds/internal/lease"
	"github.com/wdsio/wds/internal/rpcerr"
	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// grantKey names one grant: a shard (domain, key-space region, range
// start) and the grant's token. Frozen deadlines are per grant, not per
// shard: a revocation sent to the shard's ALLOCATED successor must never
// touch the holder's.
type grantKey = cellstate.GrantKey

// consumerLease is the leader's lease bookkeeping for one consumer
// incarnation (DESIGN.md contract (2) and (4)). It lives as long as the
// incarnation is registered, whether or not a stream is attached.
type consumerLease struct {
	id          string
	incarnation string

	mu sync.Mutex
	// anchor is the instant the lease runs from: the receive time of the
	// latest heartbeat whose ack was handed to the stream, but never before
	// accession+L for consumers inherited from an earlier leader, nor before
	// the join for new ones. Grants of a domain with TTL T are held until
	// anchor + T·(1+ε).
	anchor      time.Time
	conn        *sessionConn
	drainedSent bool
	// ttls are the TTLs the attached session's Welcome announced; the
	// client computes its deadlines from them.
	ttls map[string]time.Duration
	// expiring is set while the balancer's expiry of (some of) this
	// consumer's grants, decided from the current anchor, is being
	// committed: no ack may go out meanwhile (see fenceExpiries).
	expiring bool
	// heardAt is when this leader last heard from the consumer (the
	// receive time of its latest Hello or heartbeat), or the accession or
	// join for a consumer it has not heard from yet. Unlike anchor it moves
	// whether or not the ack goes out, and it is never in the future. The
	// balancer marks a consumer unconfirmed when it is old (SetConfirmed).
	heardAt time.Time
}

func (cl *consumerLease) deadline(p lease.Params) time.Time {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return p.LeaderDeadline(cl.anchor)
}

// leader is the state a node keeps only while it is the cell's ready
// leader: leases, attached consumer sessions, frozen deadlines of revoked
// grants and the balancer. A new leader object is built at each accession.
type leader struct {
	n         *Node
	accession time.Time
	log       *slog.Logger
	ctx       context.Context
	cancel    context.CancelFunc

	mu     sync.Mutex
	leases map[string]*consumerLease
	// frozen holds, per revoked grant whose Revoke was sent (or which a
	// Welcome left out), the deadline it was frozen at.
	frozen  map[grantKey]time.Time
	stopped bool
	// ended are delegations the delegator said it no longer has at all
	// (RenewResponse.Ended): grants still held under them end at once.
	ended map[DelegationID]bool

	kick chan struct{}
	// delegations is the leader's view of the cell's delegations; sweepKick
	// asks the renewal loop to relinquish lapsing ones now.
	delegations *delegationView
	sweepKick   chan struct{}
	// reportKick asks the renewal loop to renew early: a grant in a
	// relinquished range ended, so the released report may have grown
	// (the delegator moves those ranges on as soon as it hears).
	reportKick chan struct{}
	// catalogIndex is the version of the last catalog the delegator sent
	// that the log holds (a federated cell's catalog is the delegator's).
	catalogIndex atomic.Uint64
	wg           sync.WaitGroup
	// scratch is owned by the balancer goroutine.
	scratch planScratch
}

func newLeader(n *Node, accession time.Time) *leader {
	ctx, cancel := context.WithCancel(context.Background())
	l := &leader{
		n:          n,
		accession:  accession,
		log:        n.log.With("role", "leader"),
		ctx:        ctx,
		cancel:     cancel,
		leases:     map[string]*consumerLease{},
		frozen:     map[grantKey]time.Time{},
		ended:      map[DelegationID]bool{},
		kick:       make(chan struct{}, 1),
		sweepKick:  make(chan struct{}, 1),
		reportKick: make(chan struct{}, 1),
	}
	l.delegations = newDelegationView(n.cfg.Delegator == nil, accession, n.cfg.Drift)
	l.delegations.setLive(n.state.LiveDelegations())
	// Contract (4): every inherited grant is held until
	// accession + T·(1+ε) + L, i.e. its lease is anchored at accession + L.
	anchor := accession.Add(lease.AccessionSlack(n.cfg.Raft.ConfirmWindow, n.cfg.Drift))
	for id, inc := range n.state.Incarnations() {
		l.leases[id] = &consumerLease{id: id, incarnation: inc, anchor: anchor, heardAt: accession}
	}
	return l
}

func (l *leader) start() {
	l.wg.Add(1)
	go l.balanceLoop()
	if l.n.cfg.Delegator != nil {
		l.wg.Add(1)
		go l.renewLoop()
	}
	l.poke()
}

// stop ends the leadership: every consumer session is told to go to the
// new leader.
func (l *leader) stop(redirect *wdsv1.Redirect) {
	l.cancel()
	l.mu.Lock()
	l.stopped = true
	conns := []*sessionConn{}
	for _, cl := range l.leases {
		cl.mu.Lock()
		if cl.conn != nil {
			conns = append(conns, cl.conn)
			cl.conn = nil
		}
		cl.mu.Unlock()
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.close(nil, redirect)
	}
	l.wg.Wait()
}

func (l *leader) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (l *leader) params(ttl time.Duration) lease.Params {
	return lease.Params{TTL: ttl, Drift: l.n.cfg.Drift}
}

// --- effects ---

// dispatch turns an applied entry's effects into session messages and
// lease bookkeeping. It runs on the FSM goroutine, in log order.
func (l *leader) dispatch(index uint64, effects []cellstate.Effect) {
	if len(effects) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	touched := map[*consumerLease]bool{}
	for _, e := range effects {
		cl := l.leases[e.Consumer]
		if e.Kind == cellstate.EffectJoined {
			if cl == nil || cl.incarnation != e.Incarnation {
				// Anchored at the commit: later than the Hello it answers,
				// so conservative.
				now := time.Now()
				l.leases[e.Consumer] = &consumerLease{id: e.Consumer, incarnation: e.Incarnation, anchor: now, heardAt: now}
			}
			continue
		}
		if cl == nil || cl.incarnation != e.Incarnation {
			continue
		}
		key := grantKey{Domain: e.Domain, Region: e.Region, From: e.Range.From, Token: e.Token}
		item := outItem{index: index, domain: e.Domain, region: e.Region, rng: e.Range, token: e.Token, reason: e.Reason}
		switch e.Kind {
		case cellstate.EffectGranted:
			item.kind = itemGrant
		case cellstate.EffectRevoked:
			item.kind = itemRevoke
		case cellstate.EffectPrepared:
			item.kind = itemPrepare
		case cellstate.EffectReleased:
			delete(l.frozen, key)
			touched[cl] = true
			continue
		case cellstate.EffectDropped:
			delete(l.frozen, key)
			touched[cl] = true
			item.kind = itemRevoke
			item.reason = wdsv1.RevokeReason_REVOKE_REASON_LOST
		case cellstate.EffectDraining:
			touched[cl] = true
			continue
		case cellstate.EffectLeft:
			delete(l.leases, e.Consumer)
			cl.mu.Lock()
			conn := cl.conn
			cl.conn = nil
			cl.mu.Unlock()
			if conn != nil {
				conn.close(rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonLeaseExpired, "session ended: the consumer's lease expired or it left; reconnect to join again"), nil)
			}
			continue
		default:
			continue
		}
		cl.mu.Lock()
		conn := cl.conn
		cl.mu.Unlock()
		if conn != nil {
			conn.enqueue(item)
		}
		if e.Kind == cellstate.EffectRevoked {
			touched[cl] = true
		}
	}
	if len(touched) > 0 {
		for cl := range touched {
			if !l.n.state.Drained(cl.id, cl.incarnation) {
				continue
			}
			cl.mu.Lock()
			if !cl.drainedSent && cl.conn != nil {
				cl.drainedSent = true
				cl.conn.enqueue(outItem{kind: itemDrained})
			}
			cl.mu.Unlock()
		}
	}
	l.poke()
}

// --- connOwner: lease bookkeeping at send time ---

type consumerOwner struct {
	l  *leader
	cl *consumerLease
	// domains and their TTLs, fixed for the incarnation.
	ttls map[string]time.Duration
}

// beforeAck implements contracts (2), (3), (4) and (5) at the moment an ack
// is handed to the stream: the node must have confirmed its leadership
// within the window, no expiry decided from the current anchor may be in
// flight, and then the lease is anchored at the heartbeat's receive time.
// The domains whose delegation would not cover the extended lease (unknown
// to a new leader, or lapsing) are withheld: the ack does not extend them,
// and a lapsing one gets its relinquish sweep.
func (o *consumerOwner) beforeAck(c *sessionConn, received time.Time) (bool, []string) {
	now := time.Now()
	confirmed := o.l.n.raft.Confirmed(now)
	var withheld []string
	if confirmed {
		var sweep bool
		withheld, sweep = o.l.delegations.withheld(o.ttls, now)
		if sweep {
			o.l.wantSweep()
		}
	}
	o.cl.mu.Lock()
	current := o.cl.conn == c
	if current && received.After(o.cl.heardAt) {
		o.cl.heardAt = received // heard, whether or not the ack goes out
	}
	ok := confirmed && current && !o.cl.expiring
	if ok && received.After(o.cl.anchor) {
		o.cl.anchor = received
	}
	o.cl.mu.Unlock()
	if !confirmed {
		o.l.n.metrics.acksWithheld.Add(context.Background(), 1)
	} else if len(withheld) > 0 {
		o.l.n.metrics.acksWithheld.Add(context.Background(), 1)
	}
	return ok, withheld
}

// beforeRevoke freezes revoked grants at the lease's current deadline: the
// client's view of them cannot extend past acks sent before this point.
func (o *consumerOwner) beforeRevoke(_ *sessionConn, keys []grantKey) {
	if len(keys) == 0 {
		return
	}
	o.cl.mu.Lock()
	anchor := o.cl.anchor
	o.cl.mu.Unlock()
	o.l.mu.Lock()
	defer o.l.mu.Unlock()
	for _, k := range keys {
		if k.Token.IsZero() {
			continue // a successor's allocation: no lease to freeze
		}
		ttl, ok := o.ttls[k.Domain]
		if !ok {
			ttl = topology.MaxTTL
		}
		dl := o.l.params(ttl).LeaderDeadline(anchor)
		if old, ok := o.l.frozen[k]; !ok || dl.Before(old) {
			o.l.frozen[k] = dl
		}
	}
}

func (o *consumerOwner) resync(c *sessionConn) {
	if c.sub != nil {
		o.l.n.hub.resync(c.sub)
	}
}

// --- attaching sessions ---

// attachConsumer admits a consumer Hello: it resumes the incarnation the
// session token names, or registers a new one, and queues the Welcome. It
// returns the conn to serve.
func (l *leader) attachConsumer(ctx context.Context, h *wdsv1.Hello, received time.Time, stream wdsv1.Session_ConnectServer) (*sessionConn, *consumerOwner, error) {
	id := h.GetConsumerId()
	c, exists := l.n.state.ConsumerView(id)
	inc := c.Incarnation
	resume := exists && cellstate.SameIncarnation(c.Incarnation, h.GetSessionToken())
	ttls, err := l.n.state.DomainTTLs("hello.domains", h.GetDomains())
	if err != nil {
		return nil, nil, err
	}

	if !resume {
		if exists {
			// Another incarnation holds the id. Admit the newcomer only once
			// that lease is past every deadline: two processes must never
			// share an id while one may still believe it owns shards.
			l.mu.Lock()
			cl := l.leases[id]
			l.mu.Unlock()
			if cl != nil {
				cl.mu.Lock()
				attached := cl.conn != nil
				anchor := cl.anchor
				cl.mu.Unlock()
				until := l.params(topology.MaxTTL).LeaderDeadline(anchor)
				if d, ok := l.n.state.MaxTTL(inc); ok {
					until = l.params(d).LeaderDeadline(anchor)
				}
				if attached {
					// A live process heartbeats on it: no countdown would end.
					return nil, nil, fmt.Errorf("%w: consumer_id %q is held by a live, heartbeating session (duplicate consumer id): give this process another id; it is admitted under this one only if that session ends and its lease lapses",
						ErrDuplicateConsumer, id)
				}
				if time.Now().Before(until) {
					return nil, nil, fmt.Errorf("%w: consumer_id %q is still held by an earlier session that ended without a drain (duplicate consumer id); a restarted process is admitted once its lease lapses, at most %v from now",
						ErrDuplicateConsumer, id, time.Until(until).Round(time.Millisecond))
				}
			}
		}
		var buf [16]byte
		if _, err := rand.Read(buf[:]); err != nil {
			return nil, nil, err
		}
		inc = string(buf[:])
		res, err := l.n.propose(ctx, &cellv1.Op{Op: &cellv1.Op_Join{Join: &cellv1.Join{
			ConsumerId: id, Region: h.GetRegion(), Endpoint: h.GetEndpoint(), Domains: h.GetDomains(), Incarnation: buf[:],
		}}})
		if err != nil {
			return nil, nil, err
		}
		if res[0].Err != nil {
			return nil, nil, res[0].Err
		}
	}

	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return nil, nil, ErrNotLeader
	}
	cl := l.leases[id]
	if cl == nil || cl.incarnation != inc {
		l.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: consumer %q changed while joining; retry", ErrConflict, id)
	}
	owner := &consumerOwner{l: l, cl: cl, ttls: ttls}
	conn := newSessionConn(stream, owner, l.n.cfg.MaxSessionQueue, l.n.cfg.MaxRoutingQueue)
	cl.mu.Lock()
	old := cl.conn
	cl.conn = conn
	cl.ttls = ttls
	cl.drainedSent = false
	cl.mu.Unlock()
	l.mu.Unlock()
	if old != nil {
		old.close(rpcerr.New(codes.Aborted, rpcerr.ReasonSessionSuperseded, "session superseded by a newer stream of the same consumer"), nil)
	}

	// Build the welcome after attaching, so no effect is missed: effects up
	// to the watermark are in it, later ones are queued behind it.
	w := &wdsv1.Welcome{
		SessionToken:            []byte(inc),
		NodeId:                  l.n.cfg.NodeID,
		Region:                  l.n.cfg.Region,
		Drift:                   l.n.cfg.Drift,
		AckSeq:                  h.GetSeq(),
		Acked:                   true,
		HeartbeatIntervalMillis: lease.HeartbeatInterval(cellstate.MinTTL(ttls)).Milliseconds(),
	}
	for _, d := range h.GetDomains() {
		w.Leases = append(w.Leases, &wdsv1.DomainLease{Domain: d, TtlMillis: ttls[d].Milliseconds()})
	}
	view := l.n.state.WelcomeOf(id, inc)
	watermark, draining := view.Index, view.Draining
	w.Grants = view.Grants
	var frozen []grantKey
	for _, g := range view.Revoked {
		frozen = append(frozen, grantKey{Domain: g.Domain, Region: g.Region, From: g.Range.From, Token: g.Token})
	}
	conn.enqueueWelcome(outItem{kind: itemWelcome, welcome: w, frozen: frozen, received: received}, watermark)
	if draining {
		// Re-evaluate: a resumed draining consumer may already be empty.
		l.dispatch(watermark, []cellstate.Effect{{Kind: cellstate.EffectDraining, Consumer: id, Incarnation: inc}})
	}
	l.poke()
	return conn, owner, nil
}

// detach forgets a finished stream. A drained consumer that closes its
// stream leaves at once; any other keeps its lease until it resumes or the
// lease expires.
func (l *leader) detach(cl *consumerLease, conn *sessionConn) {
	cl.mu.Lock()
	if cl.conn == conn {
		cl.conn = nil
	}
	cl.mu.Unlock()
	leave := l.n.state.Drained(cl.id, cl.incarnation)
	if leave {
		go func() {
			_, err := l.n.propose(l.ctx, &cellv1.Op{Op: &cellv1.Op_Leave{Leave: &cellv1.Leave{
				ConsumerId: cl.id, Incarnation: []byte(cl.incarnation), Reason: cellv1.LeaveReason_LEAVE_REASON_GRACEFUL,
			}}})
			if err != nil && !errors.Is(err, context.Canceled) {
				l.log.Debug("graceful leave not committed", "consumer", cl.id, "err", err)
			}
		}()
	}
	l.poke()
}
