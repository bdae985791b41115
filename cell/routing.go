package cell

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/wdsio/wds/cell/cellstate"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// routingHub publishes routing on one node. Every node applies the same log,
// so every node can serve routing: consumers' sessions on the leader,
// observers anywhere.
//
// Applied entries only mark shards dirty (cheap, on the FSM goroutine). After
// a short coalescing window the hub reads the marked entries from State in
// one consistent view at version v (the applied index) and sends each
// subscriber one delta of the domains it watches. Many changes to one shard
// within the window become one entry. Subscribing and flushing (which
// reads State after taking subsMu) are serialized, so a subscriber's
// snapshot and its first delta never miss or reorder a change: a change is
// either in the snapshot or marked dirty for a later flush.
//
// Two locks: the FSM goroutine only ever takes markMu, for a moment; the
// slow work — building and delivering snapshots and deltas to thousands of
// sessions — happens under subsMu. A reconnect storm (thousands of
// snapshots) must never stall the FSM, or commits slow down, the leader's
// confirmation ages and heartbeats go unacknowledged.
type routingHub struct {
	state  *cellstate.State
	window time.Duration

	markMu   sync.Mutex
	dirty    map[string]map[cellstate.ShardPos]struct{}
	replaced map[string]bool
	deleted  map[string]bool
	armed    bool
	closed   bool

	subsMu  sync.Mutex
	subs    map[*subscription]struct{}
	version uint64 // version of the last flush

	// onFlush observes each flush (for metrics): entries sent, subscribers.
	onFlush func(version uint64, domains int, subscribers int)
	// onResync observes each snapshot sent to a stream that fell behind.
	onResync func()

	// source is the cell's region when it is federated: its own tables are
	// sent tagged with it (and its log index), beside the foreign tables of
	// the other regions' cells. Empty for a lone cell (untagged, as before).
	source string
	// foreign are the tables of other regions' cells (the federation
	// watcher's), by source region and domain; foreignDirty what changed
	// since the last flush. Under markMu.
	foreign      map[string]map[string]*foreignDomain
	foreignDirty map[string]map[string]bool
}

// foreignDomain is one domain's tables as another region's cell serves
// them: per key space, its entries (only the shards delegated to it).
type foreignDomain struct {
	version uint64
	kind    wdsv1.DomainKind
	spaces  map[string][]*wdsv1.RouteEntry
}

// subscription is one session's interest in routing. deliver is called
// under the hub lock, in version order; it must not block.
type subscription struct {
	domains map[string]bool
	deliver func(routingBatch)
	// ownOnly: the cell's own tables only (a peer cell's watcher).
	ownOnly bool
}

func newRoutingHub(state *cellstate.State, window time.Duration) *routingHub {
	return &routingHub{
		state:    state,
		window:   window,
		dirty:    map[string]map[cellstate.ShardPos]struct{}{},
		replaced: map[string]bool{},
		deleted:  map[string]bool{},
		subs:     map[*subscription]struct{}{},

		foreign:      map[string]map[string]*foreignDomain{},
		foreignDirty: map[string]map[string]bool{},
	}
}

// setForeign replaces the table of one key space of domain as source's
// cell serves it (at its version), for the next flush.
func (h *routingHub) setForeign(source, domain, region string, kind wdsv1.DomainKind, version uint64, entries []*wdsv1.RouteEntry) {
	h.markMu.Lock()
	defer h.markMu.Unlock()
	doms := h.foreign[source]
	if doms == nil {
		doms = map[string]*foreignDomain{}
		h.foreign[source] = doms
	}
	fd := doms[domain]
	if fd == nil {
		fd = &foreignDomain{spaces: map[string][]*wdsv1.RouteEntry{}}
		doms[domain] = fd
	}
	if version < fd.version {
		return // an older view (the watcher reconnected to a lagging node)
	}
	fd.version, fd.kind = version, kind
	if entries == nil {
		entries = []*wdsv1.RouteEntry{} // gone there: an empty table replaces it
	}
	fd.spaces[region] = entries
	h.markForeignLocked(source, domain)
}

func (h *routingHub) markForeignLocked(source, domain string) {
	m := h.foreignDirty[source]
	if m == nil {
		m = map[string]bool{}
		h.foreignDirty[source] = m
	}
	m[domain] = true
	h.armLocked()
}

// foreignRoutingLocked builds the routing of source's tables of domain: a
// replacement of each key space it has. Caller holds markMu.
func (h *routingHub) foreignRoutingLocked(source, domain string) []*wdsv1.DomainRouting {
	fd := h.foreign[source][domain]
	var out []*wdsv1.DomainRouting
	var regions []string
	if fd != nil {
		for r := range fd.spaces {
			regions = append(regions, r)
		}
	}
	sort.Strings(regions)
	for _, r := range regions {
		entries := fd.spaces[r]
		for start := 0; start < len(entries) || start == 0; start += cellstate.MaxEntriesPerMessage {
			end := min(start+cellstate.MaxEntriesPerMessage, len(entries))
			out = append(out, &wdsv1.DomainRouting{Domain: domain, Region: r, Kind: fd.kind, Replace: start == 0,
				Entries: entries[start:end], Source: source, SourceVersion: fd.version})
			if len(entries) == 0 {
				break
			}
		}
	}
	return out
}

// tagOwn marks the cell's own tables with its region and version, in a
// federation.
func (h *routingHub) tagOwn(version uint64, doms []*wdsv1.DomainRouting) {
	if h.source == "" {
		return
	}
	for _, d := range doms {
		if d.GetDeleted() && d.GetRegion() == "" {
			continue // the domain is gone: every source's table with it
		}
		d.Source, d.SourceVersion = h.source, version
	}
}

// mark records routing changes of an applied entry.
func (h *routingHub) mark(changes []cellstate.RouteChange) {
	if len(changes) == 0 {
		return
	}
	h.markMu.Lock()
	defer h.markMu.Unlock()
	for _, c := range changes {
		switch {
		case c.Deleted:
			h.deleted[c.Domain] = true
			delete(h.replaced, c.Domain)
			delete(h.dirty, c.Domain)
		case c.Replace:
			h.replaced[c.Domain] = true
			delete(h.deleted, c.Domain)
			delete(h.dirty, c.Domain)
		default:
			if h.replaced[c.Domain] {
				continue
			}
			m := h.dirty[c.Domain]
			if m == nil {
				m = map[cellstate.ShardPos]struct{}{}
				h.dirty[c.Domain] = m
			}
			m[cellstate.ShardPos{Region: c.Region, I: c.Shard}] = struct{}{}
		}
	}
	h.armLocked()
}

// markAll makes the next flush replace every domain (after a snapshot
// restore, when individual changes are unknown).
func (h *routingHub) markAll() {
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	h.markMu.Lock()
	defer h.markMu.Unlock()
	h.dirty = map[string]map[cellstate.ShardPos]struct{}{}
	for name, deleting := range h.state.DomainNames() {
		if deleting {
			h.deleted[name] = true
		} else {
			h.replaced[name] = true
		}
	}
	// Domains the subscribers watch that no longer exist.
	for s := range h.subs {
		for name := range s.domains {
			if !h.replaced[name] {
				h.deleted[name] = true
			}
		}
	}
	h.armLocked()
}

func (h *routingHub) armLocked() {
	if h.armed || h.closed {
		return
	}
	h.armed = true
	time.AfterFunc(h.window, h.flush)
}

func (h *routingHub) close() {
	h.subsMu.Lock()
	h.markMu.Lock()
	h.closed = true
	h.subs = map[*subscription]struct{}{}
	h.markMu.Unlock()
	h.subsMu.Unlock()
}

// flush sends the pending changes to every subscriber.
func (h *routingHub) flush() {
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	h.markMu.Lock()
	h.armed = false
	closed := h.closed
	dirty, replaced, deleted := h.dirty, h.replaced, h.deleted
	h.dirty, h.replaced, h.deleted = map[string]map[cellstate.ShardPos]struct{}{}, map[string]bool{}, map[string]bool{}
	// The foreign tables that changed, built now (their entries are
	// immutable once stored).
	foreign := map[string][]*wdsv1.DomainRouting{}
	for source, doms := range h.foreignDirty {
		for name := range doms {
			foreign[name] = append(foreign[name], h.foreignRoutingLocked(source, name)...)
		}
	}
	h.foreignDirty = map[string]map[string]bool{}
	h.markMu.Unlock()
	if closed {
		return
	}

	version, changed := h.state.RoutingChanges(deleted, replaced, dirty)
	for _, doms := range changed {
		h.tagOwn(version, doms)
	}
	h.version = version
	if len(changed) == 0 && len(foreign) == 0 {
		return
	}
	// Subscribers watching the same changed domains get the same bytes:
	// encode each distinct delta once.
	encoded := map[string]routingBatch{}
	n := 0
	var names []string
	for s := range h.subs {
		names = names[:0]
		for name := range s.domains {
			if changed[name] != nil || (!s.ownOnly && foreign[name] != nil) {
				names = append(names, name)
			}
		}
		if len(names) == 0 {
			continue
		}
		sort.Strings(names)
		key := strings.Join(names, "\x00")
		if s.ownOnly {
			key = "own\x00" + key
		}
		b, ok := encoded[key]
		if !ok {
			var doms []*wdsv1.DomainRouting
			for _, name := range names {
				doms = append(doms, changed[name]...)
				if !s.ownOnly {
					doms = append(doms, foreign[name]...)
				}
			}
			if len(doms) == 0 {
				continue
			}
			b = encodeRouting(packRouting(version, false, doms))
			encoded[key] = b
		}
		n++
		s.deliver(b)
	}
	if h.onFlush != nil {
		h.onFlush(version, len(changed), n)
	}
}

// subscribe registers a subscriber and delivers its snapshot of domains.
// Unknown domains are reported deleted in the snapshot.
func (h *routingHub) subscribe(domains []string, ownOnly bool, deliver func(routingBatch)) *subscription {
	s := &subscription{domains: map[string]bool{}, deliver: deliver, ownOnly: ownOnly}
	for _, d := range domains {
		s.domains[d] = true
	}
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	h.subs[s] = struct{}{}
	h.deliverSnapshotLocked(s)
	return s
}

// resync delivers a fresh snapshot to a subscriber whose deltas were
// dropped (a slow stream).
func (h *routingHub) resync(s *subscription) {
	h.subsMu.Lock()
	defer h.subsMu.Unlock()
	if _, ok := h.subs[s]; ok {
		h.deliverSnapshotLocked(s)
		if h.onResync != nil {
			h.onResync()
		}
	}
}

func (h *routingHub) deliverSnapshotLocked(s *subscription) {
	names := make([]string, 0, len(s.domains))
	for n := range s.domains {
		names = append(names, n)
	}
	sort.Strings(names)
	version, doms := h.state.RoutingSnapshot(names)
	h.tagOwn(version, doms)
	if !s.ownOnly {
		h.markMu.Lock()
		for _, name := range names {
			var sources []string
			for source := range h.foreign {
				sources = append(sources, source)
			}
			sort.Strings(sources)
			for _, source := range sources {
				doms = append(doms, h.foreignRoutingLocked(source, name)...)
			}
		}
		h.markMu.Unlock()
	}
	s.deliver(encodeRouting(packRouting(version, true, doms)))
}

func (h *routingHub) unsubscribe(s *subscription) {
	h.subsMu.Lock()
	delete(h.subs, s)
	h.subsMu.Unlock()
}

// packRouting splits domain parts into messages of at most
// cellstate.MaxEntriesPerMessage entries; all but the last have More set.
func packRouting(version uint64, snapshot bool, doms []*wdsv1.DomainRouting) []*wdsv1.Routing {
	var out []*wdsv1.Routing
	cur := &wdsv1.Routing{Version: version, Snapshot: snapshot}
	n := 0
	for _, d := range doms {
		if n > 0 && n+len(d.Entries) > cellstate.MaxEntriesPerMessage {
			cur.More = true
			out = append(out, cur)
			cur = &wdsv1.Routing{Version: version, Snapshot: snapshot}
			n = 0
		}
		cur.Domains = append(cur.Domains, d)
		n += len(d.Entries)
	}
	out = append(out, cur)
	return out
}

// foreignShards returns the other regions' entries of domain as shard
// infos (owner, token, key space, the source as delegated_to).
func (h *routingHub) foreignShards(domain string) []*wdsv1.ShardInfo {
	h.markMu.Lock()
	defer h.markMu.Unlock()
	var out []*wdsv1.ShardInfo
	for source, doms := range h.foreign {
		fd := doms[domain]
		if fd == nil {
			continue
		}
		for region, entries := range fd.spaces {
			for _, e := range entries {
				si := &wdsv1.ShardInfo{Range: e.GetRange(), Owner: e.GetOwner(), Token: e.GetToken(), Endpoint: e.GetEndpoint(),
					Unconfirmed: e.GetUnconfirmed(), Region: region, DelegatedTo: source}
				if e.GetOwner() != "" {
					si.State = wdsv1.GrantState_GRANT_STATE_ACTIVE
				}
				out = append(out, si)
			}
		}
	}
	return out
}
