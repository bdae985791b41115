package global

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/wdsio/wds/global/globalstate"
	"github.com/wdsio/wds/internal/lease"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
)

// leader is what the global group's ready leader keeps in memory: per
// region, when it last answered the region's renewal (the receive time r
// of contract (5): the region's delegations are its until r + D·(1+ε)),
// the region's load report, and the coordinator streams to nudge. It
// decides expiries and runs placement. Like the cell's lease book it is
// never in the log: a new leader starts every region's clock at its
// accession plus the slack that covers a deposed leader's last answers.
type leader struct {
	n         *Node
	accession time.Time
	// accessionIndex is the last index applied when this leader took
	// office: a delegation of a higher generation was made under it, so it
	// knows whether it ever listed it in an answer (answered).
	accessionIndex uint64
	ctx            context.Context
	cancel         context.CancelFunc
	wg             sync.WaitGroup
	kick           chan struct{}

	mu      sync.Mutex
	regions map[string]*regionBook
	// withdrawnAt is when this leader first saw each withdrawing
	// delegation (after its Withdraw applied): no answer sent after that
	// lists it, so the holder's cover of it ends by then + D·(1−ε), and it
	// may be expired at then + D·(1+ε) whether or not the region goes on
	// renewing (a cell that never recorded it never reports it released).
	withdrawnAt map[withdrawKey]time.Time
	// answered are the delegations this leader listed in an answer to
	// their holder. One made under this leader and never answered was
	// never the holder's cell's to cover: withdrawn, it is free at once.
	answered map[withdrawKey]bool
}

type withdrawKey struct {
	holder string
	id     globalstate.DelegationID
}

// regionBook is the leader's record of one region.
type regionBook struct {
	// renewedAt is the receive time of the last answered renewal (zero:
	// none since accession).
	renewedAt time.Time
	// cellLeader is the node id of the cell leader that sent that renewal.
	cellLeader string
	// liveSince is when the region's current run of renewals began: the
	// first answered renewal after none, or after a gap longer than the
	// live window (fail-back waits for a run of FailbackAfter).
	liveSince time.Time
	// load is the region's last load report (live consumers per domain),
	// and since when it has not changed.
	load      map[string]int
	loadSince time.Time
	// expiring are delegations this leader decided to expire: renewals are
	// answered without them from the decision on.
	expiring map[globalstate.DelegationID]bool
	// streams are the region's coordinator streams to nudge.
	streams map[chan struct{}]bool
}

func newLeader(n *Node, accession time.Time) *leader {
	ctx, cancel := context.WithCancel(context.Background())
	return &leader{n: n, accession: accession, accessionIndex: n.state.Index(), ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1),
		regions: map[string]*regionBook{}, withdrawnAt: map[withdrawKey]time.Time{}, answered: map[withdrawKey]bool{}}
}

func (l *leader) start() {
	l.wg.Add(2)
	go l.placeLoop()
	go l.voterLoop()
	if b := l.n.cfg.Bootstrap; b != nil && len(l.n.state.Regions()) == 0 {
		l.wg.Add(1)
		go l.bootstrap(b)
	}
}

// bootstrap applies the topology the group was started with, once: the
// first leader of a group whose state knows no region proposes it (until
// it commits, or another entry gave the state regions).
func (l *leader) bootstrap(t *globalv1.ApplyTopology) {
	defer l.wg.Done()
	for l.ctx.Err() == nil && len(l.n.state.Regions()) == 0 {
		_, err := l.n.proposeOne(l.ctx, &globalv1.Op{Op: &globalv1.Op_ApplyTopology{ApplyTopology: t}})
		if err == nil {
			l.n.log.Info("applied the topology the group was started with", "regions", len(t.GetRegions()), "domains", len(t.GetDomains()))
			return
		}
		if l.ctx.Err() != nil {
			return
		}
		l.n.log.Error("bootstrap topology not applied", "err", err)
		select {
		case <-l.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (l *leader) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *leader) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// changed is called after an applied entry changed delegations or the
// catalog: placement looks again, and every stream is nudged to renew.
func (l *leader) changed() {
	l.poke()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.regions {
		for ch := range b.streams {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

func (l *leader) book(region string) *regionBook {
	b := l.regions[region]
	if b == nil {
		b = &regionBook{expiring: map[globalstate.DelegationID]bool{}, streams: map[chan struct{}]bool{}}
		l.regions[region] = b
	}
	return b
}

// base is the time a region's deadlines run from: its last answered
// renewal, or for a region this leader never answered, its accession plus
// the slack covering answers a deposed leader may still have given.
func (l *leader) baseLocked(b *regionBook) time.Time {
	if b != nil && !b.renewedAt.IsZero() {
		return b.renewedAt
	}
	return l.accession.Add(lease.AccessionSlack(l.n.cfg.Raft.ConfirmWindow, l.n.cfg.Drift))
}

// answer records a renewal received at received from region and returns
// the delegations to answer it with: the region's renewable ones, less
// those this leader decided to expire. Under l.mu, so that no answer goes
// out between an expiry decision and its fence.
func (l *leader) answer(region, cellLeader string, received time.Time, load map[string]int) []globalstate.Delegation {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.book(region)
	if b.renewedAt.IsZero() || received.Sub(b.renewedAt) > l.n.cfg.LiveWindow {
		b.liveSince = received
	}
	b.renewedAt, b.cellLeader = received, cellLeader
	if !maps.Equal(load, b.load) {
		b.load, b.loadSince = load, received
		l.poke()
	}
	var out []globalstate.Delegation
	for _, dl := range l.n.state.Renewable(region) {
		if !b.expiring[dl.DelegationID] {
			out = append(out, dl)
			l.answered[withdrawKey{region, dl.DelegationID}] = true
		}
	}
	return out
}

// attach registers a coordinator stream of region for nudges.
func (l *leader) attach(region string, ch chan struct{}) {
	l.mu.Lock()
	l.book(region).streams[ch] = true
	l.mu.Unlock()
}

func (l *leader) detach(region string, ch chan struct{}) {
	l.mu.Lock()
	delete(l.book(region).streams, ch)
	l.mu.Unlock()
}

// placeLoop decides expiries and placement, one round at a time, each
// committed before the next is planned.
func (l *leader) placeLoop() {
	defer l.wg.Done()
	tick := time.NewTicker(l.n.cfg.PlaceInterval)
	defer tick.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.kick:
		case <-tick.C:
		}
		now := time.Now()
		if !l.n.raft.Confirmed(now) {
			continue
		}
		ops := l.expiries(now)
		if len(ops) == 0 {
			if in, settled := l.placeInput(now); settled {
				ops = l.n.state.Place(in)
			}
		}
		if len(ops) == 0 {
			continue
		}
		if _, err := l.n.propose(l.ctx, ops...); err != nil {
			l.n.log.Debug("placement round not committed", "ops", len(ops), "err", err)
			continue
		}
		l.poke()
	}
}

// expiries returns Expire ops for every delegation past its deadline,
// fencing each against renewals first (contract (5), as the cell's (3)).
func (l *leader) expiries(now time.Time) []*globalv1.Op {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ops []*globalv1.Op
	for _, dl := range l.n.state.Delegations("") {
		b := l.book(dl.Holder)
		if b.expiring[dl.DelegationID] && !dl.Withdrawing {
			continue // decided; its Expire is committing or was refused
		}
		ttl, ok := l.n.domainTTL(dl.Domain)
		if !ok {
			continue
		}
		d := lease.Params{TTL: l.n.cfg.Duration(ttl), Drift: l.n.cfg.Drift}
		deadline := d.LeaderDeadline(l.baseLocked(b))
		if dl.Withdrawing {
			k := withdrawKey{dl.Holder, dl.DelegationID}
			if dl.Generation > l.accessionIndex && !l.answered[k] {
				// Made under this leader and withdrawn before any answer
				// listed it: the holder's cell never covered it.
				deadline = time.Time{}
			}
			at, ok := l.withdrawnAt[k]
			if !ok {
				// First seen withdrawing (by a new leader: at accession,
				// plus the slack of a deposed leader's answers).
				at = lease.Later(now, l.accession.Add(lease.AccessionSlack(l.n.cfg.Raft.ConfirmWindow, l.n.cfg.Drift)))
				l.withdrawnAt[k] = at
			}
			if w := d.LeaderDeadline(at); w.Before(deadline) {
				deadline = w
			}
		}
		if !now.After(deadline) {
			continue
		}
		if !dl.Withdrawing {
			// The fence: no answer lists it from now on. (A withdrawn
			// part is in no answer already; proposing its Expire twice
			// only conflicts.)
			b.expiring[dl.DelegationID] = true
		}
		ops = append(ops, &globalv1.Op{Op: &globalv1.Op_Expire{Expire: &globalv1.Expire{
			Holder: dl.Holder, Domain: dl.Domain, Region: dl.Region, Generation: dl.Generation,
			Ranges: rangesToProto(dl.Ranges), // this part only (withdrawn or not)
		}}})
		l.n.log.Info("delegation expired", "holder", dl.Holder, "domain", dl.Domain, "key_space", dl.Region, "generation", dl.Generation)
	}
	// Forget decisions whose delegation is gone (expired, or released).
	held := map[globalstate.DelegationID]bool{}
	for _, dl := range l.n.state.Delegations("") {
		held[dl.DelegationID] = true
	}
	for _, b := range l.regions {
		for id := range b.expiring {
			if !held[id] {
				delete(b.expiring, id)
			}
		}
	}
	withdrawing := map[withdrawKey]bool{}
	for _, dl := range l.n.state.Delegations("") {
		if dl.Withdrawing {
			withdrawing[withdrawKey{dl.Holder, dl.DelegationID}] = true
		}
	}
	for k := range l.withdrawnAt {
		if !withdrawing[k] {
			delete(l.withdrawnAt, k)
		}
	}
	heldBy := map[withdrawKey]bool{}
	for _, dl := range l.n.state.Delegations("") {
		heldBy[withdrawKey{dl.Holder, dl.DelegationID}] = true
	}
	for k := range l.answered {
		if !heldBy[k] {
			delete(l.answered, k)
		}
	}
	return ops
}

// placeInput is placement's view: live regions (renewed within the live
// window) and their load reports. It is not settled while a live region's
// report changed within Settle (hysteresis: consumers joining one by one
// move shards once); the loop is woken when it will be.
func (l *leader) placeInput(now time.Time) (in globalstate.PlaceInput, settled bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	in = globalstate.PlaceInput{Live: map[string]bool{}, Consumers: map[string]map[string]int{}, MaxMoves: l.n.cfg.MaxMovesInFlight,
		LiveFor: map[string]time.Duration{}}
	settled = true
	// Lapsed: the deadline a delegation of the domain held by the region
	// would have passed (the same clock expiries run on). Computed here:
	// Place calls it under the state's lock.
	deadlines := map[string]map[string]time.Time{}
	live, _, _ := l.n.state.Catalog()
	for _, r := range l.n.state.Regions() {
		base := l.baseLocked(l.regions[r.Name])
		deadlines[r.Name] = map[string]time.Time{}
		for _, d := range live {
			ttl := time.Duration(d.GetTtlMillis()) * time.Millisecond
			deadlines[r.Name][d.GetName()] = lease.Params{TTL: l.n.cfg.Duration(ttl), Drift: l.n.cfg.Drift}.LeaderDeadline(base)
		}
	}
	in.Lapsed = func(region, domain string) bool {
		dl, ok := deadlines[region][domain]
		return ok && now.After(dl)
	}
	for name, b := range l.regions {
		if b.renewedAt.IsZero() || now.Sub(b.renewedAt) > l.n.cfg.LiveWindow {
			continue
		}
		in.Live[name] = true
		in.LiveFor[name] = now.Sub(b.liveSince)
		if wait := l.n.cfg.Settle - now.Sub(b.loadSince); wait > 0 {
			settled = false
			l.wakeAfter(wait)
		}
		in.Consumers[name] = b.load
	}
	return in, settled
}

// wakeAfter pokes the loop after d.
func (l *leader) wakeAfter(d time.Duration) {
	time.AfterFunc(d, l.poke)
}
