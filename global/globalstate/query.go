package globalstate

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// The query API: every method takes the state's lock itself and returns
// values, copies or new protos, never pointers into the state.

// DelegationID names one delegation: a generation of a key space held by
// a region.
type DelegationID struct {
	Domain string
	// Region is the key space's region (REGIONAL domains), else "".
	Region     string
	Generation uint64
}

// Less orders delegations by domain, key space and generation.
func (a DelegationID) Less(b DelegationID) bool {
	if a.Domain != b.Domain {
		return a.Domain < b.Domain
	}
	if a.Region != b.Region {
		return a.Region < b.Region
	}
	return a.Generation < b.Generation
}

// Delegation is a lease of key space to a region's cell.
type Delegation struct {
	DelegationID
	Holder string
	// Ranges are maximal runs of adjacent shards, in key order.
	Ranges []topology.Range
	// Withdrawing: no longer renewed; the holder's until released or
	// expired.
	Withdrawing bool
	// Confirmed: the holder's cell listed it as held in a renewal.
	Confirmed bool
}

// Regions returns the federation's regions in topology order.
func (s *State) Regions() []Region {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Region, len(s.regions))
	for i, r := range s.regions {
		out[i] = r.clone()
	}
	return out
}

// Voters are the global voters the regions list, region by region (empty
// for a state whose topology lists none: one applied before voters were
// recorded).
func (s *State) Voters() []Voter {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Voter
	for _, r := range s.regions {
		out = append(out, r.Voters...)
	}
	return out
}

// CatalogIndex is the version of the catalog: the index of the last entry
// that changed it.
func (s *State) CatalogIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.catalogIndex
}

// Catalog returns the domains not being deleted, by name, the names of
// those being deleted, and the catalog's version.
func (s *State) Catalog() (live []*wdsv1.Domain, deleting []string, version uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	version = s.catalogIndex
	for _, name := range sortedNames(s) {
		d := s.domains[name]
		if d.deleting {
			deleting = append(deleting, name)
			continue
		}
		live = append(live, s.domainProto(d))
	}
	return live, deleting, version
}

// Domain returns one domain of the catalog and whether it is being
// deleted.
func (s *State) Domain(name string) (*wdsv1.Domain, bool, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.domains[name]
	if !ok {
		return nil, false, false
	}
	return s.domainProto(d), d.deleting, true
}

// Delegations returns every delegation (holder, key space, generation),
// in order; with holder set, only that region's.
func (s *State) Delegations(holder string) []Delegation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Delegation
	for _, name := range sortedNames(s) {
		d := s.domains[name]
		for _, ks := range d.spaces {
			out = append(out, ks.delegations(holder)...)
		}
	}
	return out
}

// delegations groups ks's held shards by (holder, generation, withdrawing)
// into runs: a delegation partly withdrawn is two entries.
func (ks *keySpace) delegations(holder string) []Delegation {
	type key struct {
		holder      string
		gen         uint64
		withdrawing bool
	}
	var order []key
	byKey := map[key]*Delegation{}
	for i := range ks.shards {
		sh := &ks.shards[i]
		if sh.free() || (holder != "" && sh.holder != holder) {
			continue
		}
		k := key{sh.holder, sh.generation, sh.withdrawing}
		dl := byKey[k]
		if dl == nil {
			dl = &Delegation{DelegationID: DelegationID{Domain: ks.d.spec.Name, Region: ks.region, Generation: sh.generation}, Holder: sh.holder, Withdrawing: sh.withdrawing}
			byKey[k] = dl
			order = append(order, k)
		}
		if sh.confirmed {
			dl.Confirmed = true
		}
		dl.Ranges = topology.AppendRun(dl.Ranges, ks.ranges[i])
	}
	out := make([]Delegation, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	slices.SortFunc(out, func(a, b Delegation) int {
		if a.Holder != b.Holder {
			if a.Holder < b.Holder {
				return -1
			}
			return 1
		}
		switch {
		case a.Generation != b.Generation:
			return cmp.Compare(a.Generation, b.Generation)
		case a.Withdrawing != b.Withdrawing && !a.Withdrawing:
			return -1
		case a.Withdrawing != b.Withdrawing:
			return 1
		}
		return 0
	})
	return out
}

// Renewable returns what a renewal from holder is answered with: its
// delegations that are not being withdrawn, in domains not being deleted.
func (s *State) Renewable(holder string) []Delegation {
	var out []Delegation
	for _, dl := range s.Delegations(holder) {
		if dl.Withdrawing {
			continue
		}
		s.mu.RLock()
		d := s.domains[dl.Domain]
		deleting := d == nil || d.deleting
		s.mu.RUnlock()
		if !deleting {
			out = append(out, dl)
		}
	}
	return out
}

// Holders returns the regions that hold any delegation, sorted.
func (s *State) Holders() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seen := map[string]bool{}
	for _, d := range s.domains {
		for _, ks := range d.spaces {
			for i := range ks.shards {
				if h := ks.shards[i].holder; h != "" {
					seen[h] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for h := range seen {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// ShardHolder is one shard's delegation as `wds shards` shows it.
type ShardHolder struct {
	Region      string // key space
	Range       topology.Range
	Holder      string // "" when free
	Generation  uint64
	Withdrawing bool
}

// ShardHolders returns every shard of the domain with its delegation, by
// key space and key order.
func (s *State) ShardHolders(name string) ([]ShardHolder, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.domains[name]
	if !ok {
		return nil, fmt.Errorf("%w: domain %q does not exist", ErrNotFound, name)
	}
	var out []ShardHolder
	for _, ks := range d.spaces {
		for i, sh := range ks.shards {
			out = append(out, ShardHolder{Region: ks.region, Range: ks.ranges[i], Holder: sh.holder, Generation: sh.generation, Withdrawing: sh.withdrawing})
		}
	}
	return out, nil
}

// WouldRelease reports whether a Released op would free anything: a cell
// reports a relinquished range at every renewal until it is delegated
// again, and the leader proposes only the reports that still matter.
func (s *State) WouldRelease(op *globalv1.Released) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ks, err := s.lookupSpace(op.GetDomain(), op.GetRegion())
	if err != nil {
		return false
	}
	idx, err := shardIndexes(ks, op.GetRanges())
	if err != nil {
		return false
	}
	for _, i := range idx {
		if sh := &ks.shards[i]; sh.holder == op.GetHolder() && sh.generation == op.GetGeneration() {
			return true
		}
	}
	return false
}

// RegionalKeySpace is one key space of a REGIONAL domain and where it is
// served, as status and metrics show it.
type RegionalKeySpace struct {
	Domain string
	// Region is the key space's own region.
	Region string
	// Serving are the regions holding delegations of it, sorted (more than
	// one while it moves).
	Serving []string
	// Manual: the domain fails over by hand; FailoverTo is where an
	// operator moved it ("" for none).
	Manual     bool
	FailoverTo string
	// FailbackAfter is the domain's stable period (default applied).
	FailbackAfter time.Duration
}

// Away reports whether the key space is served, wholly or partly, by a
// region other than its own.
func (k RegionalKeySpace) Away() bool {
	for _, r := range k.Serving {
		if r != k.Region {
			return true
		}
	}
	return false
}

// RegionalKeySpaces returns every key space of every REGIONAL domain not
// being deleted, by domain and region.
func (s *State) RegionalKeySpaces() []RegionalKeySpace {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []RegionalKeySpace
	for _, name := range sortedNames(s) {
		d := s.domains[name]
		if d.deleting || d.spec.Kind != topology.KindRegional {
			continue
		}
		for _, ks := range d.spaces {
			k := RegionalKeySpace{Domain: name, Region: ks.region, Manual: d.failover == wdsv1.Failover_FAILOVER_MANUAL,
				FailoverTo: ks.failoverTo, FailbackAfter: d.spec.FailbackAfterOrDefault()}
			for i := range ks.shards {
				if h := ks.shards[i].holder; h != "" && !slices.Contains(k.Serving, h) {
					k.Serving = append(k.Serving, h)
				}
			}
			slices.Sort(k.Serving)
			out = append(out, k)
		}
	}
	return out
}
