package cell

import (
	"sort"
	"strings"
	"sync"
	"time"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// maxEntriesPerMessage bounds routing entries per message (about 80 bytes
// each) so no message nears gRPC's size limits.
const maxEntriesPerMessage = 8192

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
	state  *State
	window time.Duration

	markMu   sync.Mutex
	dirty    map[string]map[shardPos]struct{}
	replaced map[string]bool
	deleted  map[string]bool
	armed    bool
	closed   bool

	subsMu  sync.Mutex
	subs    map[*subscription]struct{}
	version uint64 // version of the last flush

	// onFlush observes each flush (for metrics): entries sent, subscribers.
	onFlush func(version uint64, domains int, subscribers int)
}

// shardPos is a shard's position in a domain: its key space and index.
type shardPos struct {
	region string
	i      int
}

// subscription is one session's interest in routing. deliver is called
// under the hub lock, in version order; it must not block.
type subscription struct {
	domains map[string]bool
	deliver func(routingBatch)
}

func newRoutingHub(state *State, window time.Duration) *routingHub {
	return &routingHub{
		state:    state,
		window:   window,
		dirty:    map[string]map[shardPos]struct{}{},
		replaced: map[string]bool{},
		deleted:  map[string]bool{},
		subs:     map[*subscription]struct{}{},
	}
}

// mark records routing changes of an applied entry.
func (h *routingHub) mark(changes []RouteChange) {
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
				m = map[shardPos]struct{}{}
				h.dirty[c.Domain] = m
			}
			m[shardPos{c.Region, c.Shard}] = struct{}{}
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
	h.dirty = map[string]map[shardPos]struct{}{}
	h.state.mu.RLock()
	for name, d := range h.state.domains {
		if d.deleting {
			h.deleted[name] = true
		} else {
			h.replaced[name] = true
		}
	}
	h.state.mu.RUnlock()
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
	h.dirty, h.replaced, h.deleted = map[string]map[shardPos]struct{}{}, map[string]bool{}, map[string]bool{}
	h.markMu.Unlock()
	if closed {
		return
	}

	h.state.mu.RLock()
	version := h.state.index
	changed := map[string][]*wdsv1.DomainRouting{}
	for name := range deleted {
		if d, ok := h.state.domains[name]; ok && !d.deleting {
			replaced[name] = true // deleted and re-created within the window
			continue
		}
		changed[name] = []*wdsv1.DomainRouting{{Domain: name, Deleted: true, Replace: true}}
	}
	for name := range replaced {
		d, ok := h.state.domains[name]
		if !ok || d.deleting {
			changed[name] = []*wdsv1.DomainRouting{{Domain: name, Deleted: true, Replace: true}}
			continue
		}
		changed[name] = domainRoutingLocked(d, h.state.region, nil)
	}
	for name, idx := range dirty {
		d, ok := h.state.domains[name]
		if !ok || d.deleting || changed[name] != nil {
			continue
		}
		changed[name] = domainRoutingLocked(d, h.state.region, idx)
	}
	h.state.mu.RUnlock()
	h.version = version
	if len(changed) == 0 {
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
			if changed[name] != nil {
				names = append(names, name)
			}
		}
		if len(names) == 0 {
			continue
		}
		sort.Strings(names)
		key := strings.Join(names, "\x00")
		b, ok := encoded[key]
		if !ok {
			var doms []*wdsv1.DomainRouting
			for _, name := range names {
				doms = append(doms, changed[name]...)
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
func (h *routingHub) subscribe(domains []string, deliver func(routingBatch)) *subscription {
	s := &subscription{domains: map[string]bool{}, deliver: deliver}
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
	}
}

func (h *routingHub) deliverSnapshotLocked(s *subscription) {
	names := make([]string, 0, len(s.domains))
	for n := range s.domains {
		names = append(names, n)
	}
	sort.Strings(names)
	h.state.mu.RLock()
	version := h.state.index
	var doms []*wdsv1.DomainRouting
	for _, name := range names {
		d, ok := h.state.domains[name]
		if !ok || d.deleting {
			doms = append(doms, &wdsv1.DomainRouting{Domain: name, Deleted: true, Replace: true})
			continue
		}
		doms = append(doms, domainRoutingLocked(d, h.state.region, nil)...)
	}
	h.state.mu.RUnlock()
	s.deliver(encodeRouting(packRouting(version, true, doms)))
}

func (h *routingHub) unsubscribe(s *subscription) {
	h.subsMu.Lock()
	delete(h.subs, s)
	h.subsMu.Unlock()
}

// domainRoutingLocked builds routing entries of d, one DomainRouting (or
// several, for large tables) per key space: all of them (dirty nil,
// Replace) or the dirty shards. Only the first part of a key space's
// replacement has Replace set. Caller holds state.mu.
func domainRoutingLocked(d *domain, cellRegion string, dirty map[shardPos]struct{}) []*wdsv1.DomainRouting {
	var out []*wdsv1.DomainRouting
	for _, ks := range d.spaces {
		var idx []int
		if dirty != nil {
			for p := range dirty {
				if p.region == ks.region && p.i >= 0 && p.i < len(ks.shards) {
					idx = append(idx, p.i)
				}
			}
			if len(idx) == 0 {
				continue
			}
			sort.Ints(idx)
		}
		out = append(out, keySpaceRoutingLocked(ks, idx)...)
	}
	if dirty == nil && len(d.spaces) == 0 {
		// A domain none of whose key space the cell holds yet: an empty
		// table, so watchers know it exists — for a REGIONAL domain, its
		// key space of the cell's own region (never a region-less table,
		// which clients would take for the domain's only key space).
		region := ""
		if d.spec.Kind == topology.KindRegional {
			region = cellRegion
		}
		out = append(out, &wdsv1.DomainRouting{Domain: d.spec.Name, Region: region, Replace: true, Kind: topology.KindToProto(d.spec.Kind)})
	}
	return out
}

// keySpaceRoutingLocked builds the entries of one key space: all of them
// (idx nil, Replace) or the listed shards.
func keySpaceRoutingLocked(ks *keySpace, idx []int) []*wdsv1.DomainRouting {
	replace := idx == nil
	total := len(idx)
	if replace {
		total = len(ks.shards)
	}
	var out []*wdsv1.DomainRouting
	kind := topology.KindToProto(ks.d.spec.Kind)
	for start := 0; start < total || (start == 0 && total == 0); start += maxEntriesPerMessage {
		end := min(start+maxEntriesPerMessage, total)
		dr := &wdsv1.DomainRouting{Domain: ks.name(), Region: ks.region, Replace: replace && start == 0, Kind: kind,
			Entries: make([]*wdsv1.RouteEntry, 0, end-start)}
		for k := start; k < end; k++ {
			i := k
			if !replace {
				i = idx[k]
			}
			dr.Entries = append(dr.Entries, routeEntryLocked(ks, i))
		}
		out = append(out, dr)
		if total == 0 {
			break
		}
	}
	return out
}

func routeEntryLocked(ks *keySpace, i int) *wdsv1.RouteEntry {
	e := &wdsv1.RouteEntry{Range: topology.RangeToProto(ks.ranges[i])}
	if h := ks.shards[i].holder; h.consumer != nil && h.state == stateActive {
		e.Owner = h.consumer.id
		e.Endpoint = h.consumer.endpoint
		e.Token = topology.TokenToProto(h.token)
		e.Unconfirmed = h.consumer.unconfirmed
	}
	return e
}

// packRouting splits domain parts into messages of at most
// maxEntriesPerMessage entries; all but the last have More set.
func packRouting(version uint64, snapshot bool, doms []*wdsv1.DomainRouting) []*wdsv1.Routing {
	var out []*wdsv1.Routing
	cur := &wdsv1.Routing{Version: version, Snapshot: snapshot}
	n := 0
	for _, d := range doms {
		if n > 0 && n+len(d.Entries) > maxEntriesPerMessage {
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
