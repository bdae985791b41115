package cellstate

import (
	"sort"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Routing tables built from the state, for the routing hub: snapshots of
// domains, and the changes of a coalescing window, each at the applied
// index they were read at (the routing version).

// MaxEntriesPerMessage bounds routing entries per message (about 80 bytes
// each) so no message nears gRPC's size limits; a key space's table is
// built in parts of at most this many entries.
const MaxEntriesPerMessage = 8192

// ShardPos is a shard's position in a domain: its key space and index.
type ShardPos struct {
	Region string
	I      int
}

// deletedRouting is the routing of a domain that does not exist (or is
// being deleted).
func deletedRouting(name string) []*wdsv1.DomainRouting {
	return []*wdsv1.DomainRouting{{Domain: name, Deleted: true, Replace: true}}
}

// RoutingChanges builds the routing of a window's changes at the current
// version: domains deleted, domains replaced whole (created, restored), and
// the dirty shards of the others. A domain deleted and re-created within
// the window is replaced.
func (s *State) RoutingChanges(deleted, replaced map[string]bool, dirty map[string]map[ShardPos]struct{}) (version uint64, changed map[string][]*wdsv1.DomainRouting) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	changed = map[string][]*wdsv1.DomainRouting{}
	replace := func(name string) {
		d, ok := s.domains[name]
		if !ok || d.deleting {
			changed[name] = deletedRouting(name)
			return
		}
		changed[name] = domainRoutingLocked(d, s.region, nil)
	}
	for name := range deleted {
		if d, ok := s.domains[name]; ok && !d.deleting {
			replace(name) // deleted and re-created within the window
			continue
		}
		changed[name] = deletedRouting(name)
	}
	for name := range replaced {
		if changed[name] == nil {
			replace(name)
		}
	}
	for name, idx := range dirty {
		d, ok := s.domains[name]
		if !ok || d.deleting || changed[name] != nil {
			continue
		}
		changed[name] = domainRoutingLocked(d, s.region, idx)
	}
	return s.index, changed
}

// RoutingSnapshot builds the whole routing of the named domains at the
// current version, in order; unknown domains are reported deleted.
func (s *State) RoutingSnapshot(names []string) (version uint64, doms []*wdsv1.DomainRouting) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, name := range names {
		d, ok := s.domains[name]
		if !ok || d.deleting {
			doms = append(doms, deletedRouting(name)...)
			continue
		}
		doms = append(doms, domainRoutingLocked(d, s.region, nil)...)
	}
	return s.index, doms
}

// DomainNames returns every domain of the catalog, each with whether it
// is being deleted.
func (s *State) DomainNames() map[string]bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]bool, len(s.domains))
	for name, d := range s.domains {
		out[name] = d.deleting
	}
	return out
}

// domainRoutingLocked builds routing entries of d, one DomainRouting (or
// several, for large tables) per key space: all of them (dirty nil,
// Replace) or the dirty shards. Only the first part of a key space's
// replacement has Replace set. Caller holds state.mu.
func domainRoutingLocked(d *domain, cellRegion string, dirty map[ShardPos]struct{}) []*wdsv1.DomainRouting {
	var out []*wdsv1.DomainRouting
	for _, ks := range d.spaces {
		var idx []int
		if dirty != nil {
			for p := range dirty {
				if p.Region == ks.region && p.I >= 0 && p.I < len(ks.shards) {
					idx = append(idx, p.I)
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
// (idx nil, Replace) or the listed shards — only shards under a live
// delegation: a cell's table lists what it may grant, and in a federation
// the other shards are other cells' (every shard of a lone cell is).
func keySpaceRoutingLocked(ks *keySpace, idx []int) []*wdsv1.DomainRouting {
	replace := idx == nil
	var list []int
	if replace {
		list = make([]int, 0, len(ks.shards))
		for i := range ks.shards {
			if ks.shards[i].delegated() {
				list = append(list, i)
			}
		}
	} else {
		list = make([]int, 0, len(idx))
		for _, i := range idx {
			if ks.shards[i].delegated() {
				list = append(list, i)
			}
		}
		if len(list) == 0 {
			return nil
		}
	}
	var out []*wdsv1.DomainRouting
	kind := topology.KindToProto(ks.d.spec.Kind)
	for start := 0; start < len(list) || start == 0; start += MaxEntriesPerMessage {
		end := min(start+MaxEntriesPerMessage, len(list))
		dr := &wdsv1.DomainRouting{Domain: ks.name(), Region: ks.region, Replace: replace && start == 0, Kind: kind,
			Entries: make([]*wdsv1.RouteEntry, 0, end-start)}
		for _, i := range list[start:end] {
			dr.Entries = append(dr.Entries, routeEntryLocked(ks, i))
		}
		out = append(out, dr)
		if len(list) == 0 {
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
