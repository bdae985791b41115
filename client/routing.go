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

// Change is one routing update of one key space of a domain.
type Change struct {
	// Version is the routing version (cell log index) after the change.
	Version uint64
	Domain  string
	// Region names the key space: its region for a REGIONAL domain, empty
	// for GLOBAL and UNIT domains (and for any domain of a server that does
	// not name key spaces).
	Region string
	// Routes are the entries that changed; with Replaced, the key space's
	// whole table.
	Routes []Route
	// Replaced: Routes is the key space's whole table (first snapshot,
	// creation, resync).
	Replaced bool
	// Deleted: the key space is gone (the domain was deleted, or no longer
	// has this region's key space).
	Deleted bool
	// Missed counts changes dropped before this one because the watcher
	// did not keep up; look at Table for the current state.
	Missed int
}

// table is the routing of one key space.
type table struct {
	kind   topology.Kind
	routes []Route // sorted by Range.From, tiling the key space
	ranges []topology.Range
}

// Routing is a live routing table: a full snapshot on connect, then ordered
// deltas. It is safe for concurrent use; lookups are O(log n).
//
// It keeps one table per key space: per GLOBAL or UNIT domain, and per
// (REGIONAL domain, region). Lookup, Owner and Table answer from the key
// space a service of this session's region uses: the domain's own for
// GLOBAL and UNIT, this region's for REGIONAL (see Region). LookupIn and
// TableIn name the key space's region explicitly.
type Routing struct {
	mu      sync.RWMutex
	version uint64
	region  string                       // the session's region, once known
	tables  map[string]map[string]*table // domain -> key-space region -> table (merged over sources)
	// sources are, in a federation, each key space's tables per source
	// region (the cell that granted the entries; "" from a lone cell), and
	// each source's version; tables holds their merge. A key space with
	// one source is its table.
	sources  map[string]map[string]map[string]*table // domain -> key space -> source -> table
	versions map[string]uint64                       // source -> version

	wmu      sync.Mutex
	watchers map[*watcher]struct{}
}

type watcher struct {
	ch     chan Change
	missed int
}

func newRouting() *Routing {
	return &Routing{tables: map[string]map[string]*table{}, sources: map[string]map[string]map[string]*table{},
		versions: map[string]uint64{}, watchers: map[*watcher]struct{}{}}
}

// Versions returns, in a federation, the version of each source region's
// tables (its cell's log index) as last applied; a lone cell's is under
// "". Per source, versions only grow.
func (r *Routing) Versions() map[string]uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]uint64, len(r.versions))
	for k, v := range r.versions {
		out[k] = v
	}
	return out
}

// Version is the version of the last applied update.
func (r *Routing) Version() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.version
}

// Region is the region of the session (the cell's region, from the
// Welcome, or the configured one): the key space of a REGIONAL domain that
// Lookup, Owner and Table use. Empty until known (an observer that named no
// region, before its first Welcome).
func (r *Routing) Region() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.region
}

func (r *Routing) setRegion(region string) {
	if region == "" {
		return
	}
	r.mu.Lock()
	r.region = region
	r.mu.Unlock()
}

// local is the table of domain that this session's lookups use: the
// domain's own key space for GLOBAL and UNIT; for REGIONAL, the key space
// of the session's region. A table whose key space has no region (a server
// that does not name key spaces) is the domain's only one and is used as
// before; so is the only key space of a REGIONAL domain while the session's
// region is unknown.
func (r *Routing) local(domain string) *table {
	spaces := r.tables[domain]
	if t := spaces[""]; t != nil {
		return t
	}
	if r.region != "" {
		return spaces[r.region]
	}
	if len(spaces) == 1 {
		for _, t := range spaces {
			return t
		}
	}
	return nil
}

// Lookup returns the route of key in domain: for a REGIONAL domain, in the
// key space of the session's region (see Region; LookupIn names another).
func (r *Routing) Lookup(domain string, key uuid.UUID) (Route, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.local(domain).find(key)
}

// LookupIn returns the route of key in the key space of domain in region:
// region names a REGIONAL domain's key space (after a regional failover one
// cell serves several); it must be empty for GLOBAL and UNIT domains, whose
// key space has no region.
func (r *Routing) LookupIn(domain, region string, key uuid.UUID) (Route, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tables[domain][region].find(key)
}

func (t *table) find(key uuid.UUID) (Route, bool) {
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

// Table returns a copy of a domain's routes in key order (nil if unknown):
// for a REGIONAL domain, those of the key space Lookup uses.
func (r *Routing) Table(domain string) []Route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.local(domain).copyRoutes()
}

// TableIn returns a copy of the routes of the key space of domain in region
// (empty for GLOBAL and UNIT domains) in key order, nil if unknown.
func (r *Routing) TableIn(domain, region string) []Route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tables[domain][region].copyRoutes()
}

func (t *table) copyRoutes() []Route {
	if t == nil {
		return nil
	}
	return append([]Route(nil), t.routes...)
}

// KeySpaces lists the regions of the key spaces of domain with a table, in
// order: [""] for a GLOBAL or UNIT domain, one region per key space of a
// REGIONAL domain.
func (r *Routing) KeySpaces(domain string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.tables[domain]))
	for region := range r.tables[domain] {
		out = append(out, region)
	}
	sort.Strings(out)
	return out
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
	merge := map[[2]string]bool{} // key spaces whose merged table must be rebuilt
	for _, dr := range m.GetDomains() {
		name, region, source := dr.GetDomain(), dr.GetRegion(), dr.GetSource()
		if v := dr.GetSourceVersion(); source != "" && v > 0 {
			if v < r.versions[source] {
				continue // older than what we have (a node that lags)
			}
			r.versions[source] = v
		}
		ch := Change{Version: m.GetVersion(), Domain: name, Region: region, Replaced: dr.GetReplace(), Deleted: dr.GetDeleted()}
		spaces := r.sources[name]
		if dr.GetDeleted() {
			switch {
			case region == "":
				// A deletion naming no region is the domain's: every key
				// space and source goes (a cell deletes a domain with one
				// such message).
				delete(r.sources, name)
				delete(r.tables, name)
			default:
				if len(spaces[region]) > 0 {
					delete(spaces[region], source)
				}
				merge[[2]string{name, region}] = true
			}
			changes = append(changes, ch)
			continue
		}
		if spaces == nil {
			spaces = map[string]map[string]*table{}
			r.sources[name] = spaces
		}
		bySource := spaces[region]
		if bySource == nil {
			bySource = map[string]*table{}
			spaces[region] = bySource
		}
		t := bySource[source]
		if t == nil || dr.GetReplace() {
			t = &table{kind: topology.KindFromProto(dr.GetKind())}
			bySource[source] = t
		}
		if watched {
			ch.Routes = make([]Route, 0, len(dr.GetEntries()))
		}
		for _, e := range dr.GetEntries() {
			rt, err := routeFromProto(name, region, e)
			if err != nil {
				r.mu.Unlock()
				return err
			}
			t.upsert(rt)
			if watched {
				ch.Routes = append(ch.Routes, rt)
			}
		}
		merge[[2]string{name, region}] = true
		changes = append(changes, ch)
	}
	for k := range merge {
		r.mergeLocked(k[0], k[1])
	}
	if watched {
		for i := range changes {
			// A replacement is the key space's whole table as the merge of
			// its sources says, not one source's part of it.
			if c := &changes[i]; c.Replaced && !c.Deleted && len(r.sources[c.Domain][c.Region]) > 1 {
				c.Routes = r.tables[c.Domain][c.Region].copyRoutes()
			}
		}
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

// mergeLocked rebuilds the table of one key space from its sources: with
// one source it is that source's table; with several (a federation, while
// a range moves between cells), per shard the owned entry wins, and of two
// owned ones the higher token (the later delegation).
func (r *Routing) mergeLocked(domain, region string) {
	bySource := r.sources[domain][region]
	spaces := r.tables[domain]
	if len(bySource) == 0 {
		if spaces != nil {
			delete(spaces, region)
			if len(spaces) == 0 {
				delete(r.tables, domain)
			}
		}
		return
	}
	if spaces == nil {
		spaces = map[string]*table{}
		r.tables[domain] = spaces
	}
	// Usually one source holds the whole key space and the others list
	// nothing of it (a cell lists only the shards delegated to it): serve
	// that source's table as it is, without a merge per update.
	var only *table
	nonEmpty := 0
	for _, t := range bySource {
		if only == nil {
			only = t
		}
		if len(t.routes) > 0 {
			nonEmpty++
			only = t
		}
	}
	if nonEmpty <= 1 {
		spaces[region] = only
		return
	}
	var all []Route
	kind := topology.KindUnspecified
	for _, t := range bySource {
		all = append(all, t.routes...)
		if kind == topology.KindUnspecified {
			kind = t.kind
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Range.From.Less(all[j].Range.From) })
	merged := &table{kind: kind}
	for _, rt := range all {
		n := len(merged.routes)
		if n > 0 && merged.routes[n-1].Range.Overlaps(rt.Range) {
			if better(rt, merged.routes[n-1]) {
				merged.routes[n-1], merged.ranges[n-1] = rt, rt.Range
			}
			continue
		}
		merged.routes = append(merged.routes, rt)
		merged.ranges = append(merged.ranges, rt.Range)
	}
	spaces[region] = merged
}

// better reports whether route a should be served over b for the same
// shard: an owned route over an unowned one, a higher token over a lower.
func better(a, b Route) bool {
	if (a.Owner != "") != (b.Owner != "") {
		return a.Owner != ""
	}
	return b.Token.Less(a.Token)
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

func routeFromProto(domain, region string, e *wdsv1.RouteEntry) (Route, error) {
	rng, err := topology.RangeFromProto("routing.entries.range", e.GetRange())
	if err != nil {
		return Route{}, err
	}
	return Route{Domain: domain, Region: region, Range: rng, Owner: e.GetOwner(), Endpoint: e.GetEndpoint(), Token: topology.TokenFromProto(e.GetToken()), Unconfirmed: e.GetUnconfirmed()}, nil
}
