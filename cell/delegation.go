package cell

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/wdsio/wds/cell/cellstate"
	"github.com/wdsio/wds/internal/lease"
	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Delegator is whoever delegates key space to the cell: the global group in
// a federation, a test double in tests. A lone cell has none (Config.Delegator
// nil) and delegates every key space to itself without expiry.
//
// The cell leader calls Renew about every Config.RenewInterval, and at once
// when it takes office. Contract (5): the leader notes the send time s of
// each call; every delegation the answer lists is the cell's until
// s + D·(1−ε) on the leader's monotonic clock. The delegator holds it as the
// cell's until r + D·(1+ε) from its own receive time r. A delegation the
// answer does not list is the delegator's again: the cell relinquishes it.
type Delegator interface {
	Renew(ctx context.Context, req RenewRequest) (RenewResponse, error)
}

// DelegationID names one delegation: a generation of a key space.
type DelegationID = cellstate.DelegationID

// Delegation is a lease of key space to the cell.
type Delegation = cellstate.Delegation

// RenewRequest is what the cell leader tells the delegator.
type RenewRequest struct {
	Region string
	NodeID string
	// Held are the delegations live in the cell's log.
	Held []DelegationID
	// Released are ranges of delegations the cell relinquished in which no
	// shard has a holder or a successor any more: the delegator may move
	// them on at once instead of waiting out D·(1+ε).
	Released []Delegation
	// Load is the cell's live consumers per domain (placement's input).
	Load map[string]int
	// CatalogIndex is the version of the last catalog the leader was sent
	// (0: none yet).
	CatalogIndex uint64
	// Domains are every domain the cell's log holds, deleting ones
	// included.
	Domains []string
	// Stale are the delegations not live in the cell's log under which a
	// shard still has a holder (cellstate.State.StaleDelegations).
	Stale []DelegationID
}

// RenewResponse lists every delegation the delegator holds as the cell's.
// A delegation listed with fewer ranges than the cell holds of it has
// been partly withdrawn: the cell relinquishes the rest.
type RenewResponse struct {
	Delegations []Delegation
	// Catalog, when set, is the federation's catalog: the cell creates
	// (federated) the domains it lacks and deletes the others.
	Catalog *Catalog
	// Ended are those of the request's Held and Stale the delegator no
	// longer has at all: they expired or were released, so every lease the
	// cell extended under them has ended and their grants may end now.
	Ended []DelegationID
}

// Catalog is the federation's domain catalog at a version.
type Catalog = cellstate.Catalog

// CatalogKeeper keeps a federated cell's domain catalog (the global group).
type CatalogKeeper interface {
	CreateDomain(ctx context.Context, d *wdsv1.Domain) (*wdsv1.Domain, error)
	DeleteDomain(ctx context.Context, name string) error
}

// Nudger is a Delegator that can ask the cell to renew at once (its
// delegations or the catalog changed): renewLoop renews whenever Nudges
// delivers.
type Nudger interface {
	Nudges() <-chan struct{}
}

// delegationView is the cell leader's view of its delegations (contract
// (5)): per delegation live in the log, covered until a deadline, unknown
// (no renewal answered since this leader took office: acks for its domain
// are withheld, nothing is revoked), or lapsing (the deadline would not cover
// a lease extension: acks are withheld and one relinquish sweep proposed).
//
// A lone cell's view is self: everything covered, forever.
type delegationView struct {
	self      bool
	accession time.Time
	drift     float64

	mu sync.RWMutex
	// renewed: a renewal was answered since accession.
	renewed bool
	// cover is each delegation's deadline from the latest answer listing it.
	cover map[DelegationID]time.Time
	// live are, per domain, the delegations live in the FSM, and until the
	// earliest of their deadlines (zero when one is not covered at all).
	live  map[string][]DelegationID
	until map[string]time.Time
	// sweeping: a relinquish of the delegation is being proposed.
	sweeping map[DelegationID]bool
	// duration is D per live delegation, from the log (the accession
	// fallback: after D·(1+ε) without any answer the delegation has lapsed
	// for sure).
	duration map[DelegationID]time.Duration
}

func newDelegationView(self bool, accession time.Time, drift float64) *delegationView {
	return &delegationView{
		self: self, accession: accession, drift: drift,
		cover: map[DelegationID]time.Time{}, live: map[string][]DelegationID{},
		until: map[string]time.Time{}, sweeping: map[DelegationID]bool{},
		duration: map[DelegationID]time.Duration{},
	}
}

// covered reports whether every live delegation of domain covers grants
// held until hold. A domain without live delegations is covered: nothing in
// it is active or can be activated, and a delegation that arrives later is
// covered further than any lease extended before it.
func (v *delegationView) coveredLocked(domain string, hold time.Time) bool {
	if len(v.live[domain]) == 0 {
		return true
	}
	if !v.renewed {
		return false
	}
	return hold.Before(v.until[domain])
}

// grantable reports whether the balancer may grant in domain: its
// delegations are confirmed and cover a lease held until hold.
func (v *delegationView) grantable(domain string, hold time.Time) bool {
	if v.self {
		return true
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.coveredLocked(domain, hold)
}

// withheld returns the domains among ttls whose lease an ack sent now must
// not extend, and whether a lapsing delegation wants a sweep.
func (v *delegationView) withheld(ttls map[string]time.Duration, now time.Time) (out []string, sweep bool) {
	if v.self {
		return nil, false
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	for dom, ttl := range ttls {
		hold := now.Add(lease.Params{TTL: ttl, Drift: v.drift}.LeaderHold())
		if v.coveredLocked(dom, hold) {
			continue
		}
		out = append(out, dom)
		if v.renewed {
			sweep = true
		}
	}
	sort.Strings(out)
	return out, sweep
}

// refreshLocked recomputes the per-domain deadlines.
func (v *delegationView) refreshLocked() {
	clear(v.until)
	for dom, ids := range v.live {
		var min time.Time
		for i, id := range ids {
			dl, ok := v.cover[id]
			if !ok {
				min = time.Time{}
				break
			}
			if i == 0 || dl.Before(min) {
				min = dl
			}
		}
		v.until[dom] = min
	}
}

// setLive replaces the live delegations with the FSM's (after an applied
// entry that changed them, and at accession).
func (v *delegationView) setLive(live map[string][]DelegationID, durations map[DelegationID]time.Duration) {
	if v.self {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.live, v.duration = live, durations
	for id := range v.sweeping {
		if !containsID(live[id.Domain], id) {
			delete(v.sweeping, id)
		}
	}
	v.refreshLocked()
}

func containsID(ids []DelegationID, id DelegationID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// answered records a renewal sent at sent and answered with resp.
func (v *delegationView) answered(sent time.Time, resp RenewResponse) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.renewed = true
	clear(v.cover)
	for _, d := range resp.Delegations {
		// The delegation's lease arithmetic is clause (1)'s: the holder
		// keeps it until send time + D·(1−ε).
		v.cover[d.DelegationID] = lease.Params{TTL: d.Duration, Drift: v.drift}.ClientDeadline(sent)
	}
	v.refreshLocked()
}

// lapsing returns the live delegations that would not cover a lease of the
// domain's TTL extended at now (or that an unanswered new leader knows have
// lapsed), and marks them sweeping. ttl gives each domain's TTL; it is
// called under the view's lock, so it must not take the state's (the
// planner takes the state's, then the view's).
func (v *delegationView) lapsing(now time.Time, ttl func(domain string) time.Duration) []DelegationID {
	if v.self {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []DelegationID
	for dom, ids := range v.live {
		hold := now.Add(lease.Params{TTL: ttl(dom), Drift: v.drift}.LeaderHold())
		for _, id := range ids {
			if v.sweeping[id] {
				continue
			}
			lapsed := false
			if v.renewed {
				dl, ok := v.cover[id]
				lapsed = !ok || !hold.Before(dl)
			} else if d := v.duration[id]; d > 0 {
				// Never answered: the delegation was renewed last by an
				// earlier leader, before this one's accession. It has lapsed
				// for sure once D·(1+ε) has passed since.
				lapsed = now.After(v.accession.Add(lease.Params{TTL: d, Drift: v.drift}.LeaderHold()))
			}
			if lapsed {
				v.sweeping[id] = true
				out = append(out, id)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// unsweep lets a sweep whose proposal failed be proposed again.
func (v *delegationView) unsweep(ids []DelegationID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, id := range ids {
		delete(v.sweeping, id)
	}
}

// --- the leader's renewal loop ---

// earlyReport is the least time between a renewal and an early one that
// sends a grown released report.
const earlyReport = 50 * time.Millisecond

// renewLoop renews the cell's delegations about every RenewInterval and
// sweeps lapsing ones. It runs only on a leader with a Delegator.
func (l *leader) renewLoop() {
	defer l.wg.Done()
	tick := time.NewTicker(l.n.cfg.RenewInterval)
	defer tick.Stop()
	var nudges <-chan struct{}
	if nd, ok := l.n.cfg.Delegator.(Nudger); ok {
		nudges = nd.Nudges()
	}
	var last time.Time
	for {
		l.renewOnce()
		last = time.Now()
		l.sweepLapsing()
		select {
		case <-l.ctx.Done():
			return
		case <-tick.C:
		case <-nudges:
		case <-l.sweepKick:
			l.sweepLapsing()
			continue
		case <-l.reportKick:
			// A grant in a relinquished range ended: report it soon, at
			// most one early renewal per earlyReport.
			if wait := earlyReport - time.Since(last); wait > 0 {
				select {
				case <-l.ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
	}
}

func (l *leader) renewOnce() {
	live, _ := l.n.state.LiveDelegations()
	req := RenewRequest{Region: l.n.cfg.Region, NodeID: l.n.cfg.NodeID, Released: l.n.state.ReleasedRanges(),
		Load: map[string]int{}, CatalogIndex: l.catalogIndex.Load()}
	for _, dc := range l.n.state.DomainCounts() {
		req.Load[dc.Name] = int(dc.Consumers)
	}
	for name := range l.n.state.DomainNames() {
		req.Domains = append(req.Domains, name)
	}
	sort.Strings(req.Domains)
	for _, ids := range live {
		req.Held = append(req.Held, ids...)
	}
	req.Stale = l.n.state.StaleDelegations()
	sort.Slice(req.Held, func(i, j int) bool { return req.Held[i].Less(req.Held[j]) })
	ctx, cancel := context.WithTimeout(l.ctx, 2*l.n.cfg.RenewInterval)
	defer cancel()
	sent := time.Now()
	resp, err := l.n.cfg.Delegator.Renew(ctx, req)
	if err != nil {
		if l.ctx.Err() == nil {
			l.log.Debug("delegation renewal failed", "err", err)
			l.n.metrics.renewalFailures.Add(context.Background(), 1)
		}
		return
	}
	l.delegations.answered(sent, resp)
	l.n.metrics.renewals.Add(context.Background(), 1)
	// Each answer names the ended delegations among this request's held
	// and stale ones: replace the set (it shrinks as their grants end).
	l.mu.Lock()
	clear(l.ended)
	for _, id := range resp.Ended {
		l.ended[id] = true
	}
	l.mu.Unlock()
	// The catalog first: a delegation of a domain this answer creates is
	// recorded only once the domain exists (DelegateOps skips unknown
	// domains), and it must be recorded from this answer, which may be the
	// only one that lists it.
	if resp.Catalog != nil {
		if ops := l.n.state.CatalogOps(*resp.Catalog); len(ops) > 0 {
			if _, err := l.n.propose(l.ctx, ops...); err != nil {
				if l.ctx.Err() == nil {
					l.log.Debug("catalog not recorded", "err", err)
				}
				return
			}
		}
	}
	ops := append(l.n.state.DelegateOps(resp.Delegations), l.n.state.RelinquishOps(resp.Delegations)...)
	if len(ops) > 0 {
		if _, err := l.n.propose(l.ctx, ops...); err != nil {
			if l.ctx.Err() == nil {
				l.log.Debug("delegations not recorded", "err", err)
			}
			return
		}
	}
	if resp.Catalog != nil && l.n.state.CatalogSynced(*resp.Catalog) {
		// Recorded: later renewals need not carry it again. Until then
		// (a re-created domain waits for its old incarnation's purge)
		// every answer carries it.
		l.catalogIndex.Store(resp.Catalog.Index)
	}
	l.poke()
}

// sweepLapsing proposes one Relinquish per lapsing delegation. Its revokes
// reach the sessions through the FSM's effects, ahead of any later ack.
func (l *leader) sweepLapsing() {
	// The TTLs are read from the state before the view is locked: the
	// planner holds the state's read lock while it asks the view, so the
	// view must never wait for the state (with an FSM write waiting in
	// between, that was a deadlock).
	ttls := map[string]time.Duration{}
	for dom := range l.n.state.DomainNames() {
		if t, ok := l.n.domainTTL(dom); ok {
			ttls[dom] = t
		}
	}
	ids := l.delegations.lapsing(time.Now(), func(dom string) time.Duration {
		if t, ok := ttls[dom]; ok {
			return t
		}
		return topology.MaxTTL // a domain newer than the map: the strictest hold
	})
	if len(ids) == 0 {
		return
	}
	ops := make([]*cellv1.Op, len(ids))
	for i, id := range ids {
		ops[i] = &cellv1.Op{Op: &cellv1.Op_Relinquish{Relinquish: &cellv1.Relinquish{Domain: id.Domain, Region: id.Region, Generation: id.Generation}}}
	}
	l.log.Info("relinquishing lapsing delegations", "delegations", len(ids), "first", ids[0].Domain)
	go func() {
		if _, err := l.n.propose(l.ctx, ops...); err != nil {
			l.delegations.unsweep(ids)
			if l.ctx.Err() == nil {
				l.log.Debug("relinquish sweep not committed", "err", err)
			}
		}
	}()
}

// wantSweep asks the renewal loop to sweep (an ack was withheld for a
// lapsing delegation).
func (l *leader) wantSweep() {
	select {
	case l.sweepKick <- struct{}{}:
	default:
	}
}
