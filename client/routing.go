package client

import (
	"sort"
	"sync"

	"github.com/google/uuid"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Route is one routing entry: who owns a shard.
type Route struct {
	Domain string
	// Region is the key space's region for a REGIONAL domain; empty for
	// GLOBAL and UNIT domains.
	Region string
	Range  topology.Range
	// Owner is the consumer id, empty when the shard has no active owner
	// (unassigned, or being handed over).
	Owner string
	// Endpoint is the owner's address for routing requests to it.
	Endpoint string
	// Token is the owner's fencing token.
	Token topology.Token
	// Unconfirmed: the cell leader has not heard from the owner for a
	// while (it disconnected, or has not resumed after a leader change or
	// a restart of the cell). Its grant stands until its lease deadline,
	// but it may be gone: requests routed to it may fail until the shard
	// moves.
	Unconfirmed bool
}

// Change is one routing update of one domain.
type Change struct {
	// Version is the routing version (cell log index) after the change.
	Version uint64
	Domain  string
	// Routes are the entries that changed; with Replaced, the whole table.
	Routes []Route
	// Replaced: Routes is the domain's whole table (first snapshot,
	// creation, resync).
	Replaced bool
	// Deleted: the domain is gone.
	Deleted bool
	// Missed counts changes dropped before this one because the watcher
	// did not keep up; look at Table for the current state.
	Missed int
}

type table struct {
	kind   topology.Kind
	routes []Route // sorted by Range.From, tiling the key space
	ranges []topology.Range
}

// Routing is a live routing table: a full snapshot on connect, then ordered
// deltas. It is safe for concurrent use; lookups are O(log n).
type Routing struct {
	mu      sync.RWMutex
	version uint64
	tables  map[string]*table

	wmu      sync.Mutex
	watchers map[*watcher]struct{}
}

type watcher struct {
	ch     chan Change
	missed int
}

func newRouting() *Routing {
	return &Routing{tables: map[string]*table{}, watchers: map[*watcher]struct{}{}}
}

// Version is the version of the last applied update.
func (r *Routing) Version() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.version
}

// Lookup returns the route of key in domain.
func (r *Routing) Lookup(domain string, key uuid.UUID) (Route, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t := r.tables[domain]
	if t == nil {
		return Route{}, false
	}
	i := topology.Find(t.ranges, key)
	if i < 0 {
		return Route{}, false
	}
	return t.routes[i], true
}

// Owner is Lookup reduced to the owner's id and endpoint; ok is false when
// the key has no active owner.
func (r *Routing) Owner(domain string, key uuid.UUID) (owner, endpoint string, tok topology.Token, ok bool) {
	rt, found := r.Lookup(domain, key)
	if !found || rt.Owner == "" {
		return "", "", topology.Token{}, false
	}
	return rt.Owner, rt.Endpoint, rt.Token, true
}

// Table returns a copy of a domain's routes in key order (nil if unknown).
func (r *Routing) Table(domain string) []Route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t := r.tables[domain]
	if t == nil {
		return nil
	}
	return append([]Route(nil), t.routes...)
}

// Domains lists the domains with a table.
func (r *Routing) Domains() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.tables))
	for d := range r.tables {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// Watch returns a channel of changes until cancel is called. A watcher
// that falls more than buffer changes behind loses changes (see
// Change.Missed) rather than stalling the session.
func (r *Routing) Watch(buffer int) (<-chan Change, func()) {
	if buffer < 1 {
		buffer = 1
	}
	w := &watcher{ch: make(chan Change, buffer)}
	r.wmu.Lock()
	r.watchers[w] = struct{}{}
	r.wmu.Unlock()
	var once sync.Once
	return w.ch, func() {
		once.Do(func() {
			r.wmu.Lock()
			delete(r.watchers, w)
			r.wmu.Unlock()
			close(w.ch)
		})
	}
}

func (r *Routing) notify(changes []Change) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	for w := range r.watchers {
		for _, c := range changes {
			c.Missed = w.missed
			select {
			case w.ch <- c:
				w.missed = 0
			default:
				w.missed++
			}
		}
	}
}

// apply applies one Routing message. Invalid entries are an error: the
// session drops the stream and resyncs.
func (r *Routing) apply(m *wdsv1.Routing) error {
	// Changes are built only for watchers: a consumer that only looks
	// routes up skips copying every entry (a watcher that registers during
	// this call sees the result in Table, and changes after it).
	r.wmu.Lock()
	watched := len(r.watchers) > 0
	r.wmu.Unlock()
	var changes []Change
	r.mu.Lock()
	for _, dr := range m.GetDomains() {
		name := dr.GetDomain()
		ch := Change{Version: m.GetVersion(), Domain: name, Replaced: dr.GetReplace(), Deleted: dr.GetDeleted()}
		if dr.GetDeleted() {
			delete(r.tables, name)
			changes = append(changes, ch)
			continue
		}
		t := r.tables[name]
		if t == nil || dr.GetReplace() {
			t = &table{kind: topology.KindFromProto(dr.GetKind())}
			r.tables[name] = t
		}
		if watched {
			ch.Routes = make([]Route, 0, len(dr.GetEntries()))
		}
		for _, e := range dr.GetEntries() {
			rt, err := routeFromProto(name, e)
			if err != nil {
				r.mu.Unlock()
				return err
			}
			t.upsert(rt)
			if watched {
				ch.Routes = append(ch.Routes, rt)
			}
		}
		changes = append(changes, ch)
	}
	if m.GetVersion() > r.version {
		r.version = m.GetVersion()
	}
	r.mu.Unlock()
	if watched {
		r.notify(changes)
	}
	return nil
}

func (t *table) upsert(rt Route) {
	n := len(t.routes)
	if n == 0 || t.routes[n-1].Range.From.Less(rt.Range.From) {
		t.routes = append(t.routes, rt)
		t.ranges = append(t.ranges, rt.Range)
		return
	}
	i := sort.Search(n, func(i int) bool { return !t.routes[i].Range.From.Less(rt.Range.From) })
	if i < n && t.routes[i].Range.From == rt.Range.From {
		t.routes[i] = rt
		t.ranges[i] = rt.Range
		return
	}
	t.routes = append(t.routes, Route{})
	copy(t.routes[i+1:], t.routes[i:])
	t.routes[i] = rt
	t.ranges = append(t.ranges, topology.Range{})
	copy(t.ranges[i+1:], t.ranges[i:])
	t.ranges[i] = rt.Range
}

func routeFromProto(domain string, e *wdsv1.RouteEntry) (Route, error) {
	rng, err := topology.RangeFromProto("routing.entries.range", e.GetRange())
	if err != nil {
		return Route{}, err
	}
	return Route{Domain: domain, Range: rng, Owner: e.GetOwner(), Endpoint: e.GetEndpoint(), Token: topology.TokenFromProto(e.GetToken()), Unconfirmed: e.GetUnconfirmed()}, nil
}
