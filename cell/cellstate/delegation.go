package cellstate

import (
	"sort"
	"time"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Delegations as the log records them (contract (5)): which key space the
// cell holds, at which generation, for how long. The leader's view of
// their deadlines is package cell's; this is what every replica agrees on.

// DelegationID names one delegation: a generation of a key space.
type DelegationID struct {
	Domain string
	// Region is the key space's region (REGIONAL domains), else "".
	Region     string
	Generation uint64
}

// Delegation is a lease of key space to the cell.
type Delegation struct {
	DelegationID
	// Ranges lie on the domain's shard boundaries; nil means the whole key
	// space.
	Ranges []topology.Range
	// Duration is D; the cell holds the delegation until s + D·(1−ε).
	Duration time.Duration
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

// LiveDelegations returns, per domain, the delegations live in the state
// (some shard of that generation not relinquished), with their D.
func (s *State) LiveDelegations() (map[string][]DelegationID, map[DelegationID]time.Duration) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	live := map[string][]DelegationID{}
	dur := map[DelegationID]time.Duration{}
	for name, d := range s.domains {
		if d.deleting {
			continue
		}
		for _, ks := range d.spaces {
			seen := map[uint64]bool{}
			for i := range ks.shards {
				sh := &ks.shards[i]
				if !sh.delegated() || seen[sh.generation] {
					continue
				}
				seen[sh.generation] = true
				id := DelegationID{Domain: name, Region: ks.region, Generation: sh.generation}
				live[name] = append(live[name], id)
				dur[id] = ks.duration
			}
		}
		sort.Slice(live[name], func(i, j int) bool { return live[name][i].Less(live[name][j]) })
	}
	return live, dur
}

// StaleDelegations returns the delegations under which some shard still
// has a holder although that generation is no longer live on the shard
// (relinquished, or a later generation delegated since): grants of an
// earlier life of the cell, or of a lapse, waiting out their leases. The
// delegator says which of them it no longer has at all (ended): their
// grants may end at once (PlanInput.Ended).
func (s *State) StaleDelegations() []DelegationID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seen := map[DelegationID]bool{}
	var out []DelegationID
	for _, name := range sortedDomainNames(s) {
		for _, ks := range s.domains[name].spaces {
			for i := range ks.shards {
				sh := &ks.shards[i]
				h := sh.holder
				if h.consumer == nil || (sh.delegated() && sh.generation == h.token.Generation) {
					continue
				}
				id := DelegationID{Domain: name, Region: ks.region, Generation: h.token.Generation}
				if !seen[id] {
					seen[id] = true
					out = append(out, id)
				}
			}
		}
	}
	return out
}

// ReleasedRanges returns, per delegation, the ranges the cell relinquished
// (or whose domain it is deleting) in which no shard has a holder or a
// successor left (the "released" report): the delegator may move them on at once, since nothing is ever
// activated again under a generation relinquished there. A delegation
// relinquished whole and emptied is reported with all its ranges.
func (s *State) ReleasedRanges() []Delegation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Delegation
	for name, d := range s.domains {
		for _, ks := range d.spaces {
			byGen := map[uint64]*Delegation{}
			var gens []uint64
			for i := range ks.shards {
				sh := &ks.shards[i]
				// A domain being deleted grants nothing again either.
				if sh.generation == 0 || !(sh.relinquished || d.deleting) || sh.holder.consumer != nil || sh.next.consumer != nil {
					continue
				}
				dl := byGen[sh.generation]
				if dl == nil {
					dl = &Delegation{DelegationID: DelegationID{Domain: name, Region: ks.region, Generation: sh.generation}}
					byGen[sh.generation] = dl
					gens = append(gens, sh.generation)
				}
				dl.Ranges = topology.AppendRun(dl.Ranges, ks.ranges[i])
			}
			for _, g := range gens {
				out = append(out, *byGen[g])
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j].DelegationID) })
	return out
}

// RelinquishOps returns the Relinquish ops for the shards of the listed
// delegations that the listing no longer covers: a delegator that lists a
// delegation with fewer ranges than before has withdrawn the others. A
// delegation listed without ranges covers its whole key space.
func (s *State) RelinquishOps(listed []Delegation) []*cellv1.Op {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ops []*cellv1.Op
	for _, dl := range listed {
		if len(dl.Ranges) == 0 {
			continue
		}
		d, ok := s.domains[dl.Domain]
		if !ok {
			continue
		}
		ks := d.space(s.keySpaceRegion(d, dl.Region))
		if ks == nil {
			continue
		}
		var runs []topology.Range
		for i := range ks.shards {
			sh := &ks.shards[i]
			if sh.generation != dl.Generation || sh.relinquished || rangesContain(dl.Ranges, ks.ranges[i]) {
				continue
			}
			runs = topology.AppendRun(runs, ks.ranges[i])
		}
		if len(runs) == 0 {
			continue
		}
		op := &cellv1.Relinquish{Domain: dl.Domain, Region: dl.Region, Generation: dl.Generation}
		for _, r := range runs {
			op.Ranges = append(op.Ranges, topology.RangeToProto(r))
		}
		ops = append(ops, &cellv1.Op{Op: &cellv1.Op_Relinquish{Relinquish: op}})
	}
	return ops
}

// rangesContain reports whether r lies within one of ranges.
func rangesContain(ranges []topology.Range, r topology.Range) bool {
	for _, x := range ranges {
		if !r.From.Less(x.From) && !x.To.Less(r.To) {
			return true
		}
	}
	return false
}

// Catalog is the federation's domain catalog as the delegator sends it.
type Catalog struct {
	// Index is its version (the delegator's log index).
	Index    uint64
	Domains  []*wdsv1.Domain
	Deleting []string
}

// CatalogSynced reports whether the cell's catalog is c: every domain of
// c present (not deleting) with its incarnation, every other domain being
// deleted.
func (s *State) CatalogSynced(c Catalog) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	want := map[string]bool{}
	for _, w := range c.Domains {
		want[w.GetName()] = true
		d, ok := s.domains[w.GetName()]
		if !ok || d.deleting || d.createdIndex != w.GetCreatedIndex() {
			return false
		}
	}
	for name, d := range s.domains {
		if !want[name] && !d.deleting {
			return false
		}
	}
	return true
}

// CatalogOps returns the ops that make a federated cell's catalog the
// delegator's: CreateDomain (federated: nothing is granted in it before a
// delegation) for domains it lacks, DeleteDomain for domains the catalog
// deletes or no longer lists, and for a domain re-created since (another
// incarnation), the deletion first (it is created again once purged).
func (s *State) CatalogOps(c Catalog) []*cellv1.Op {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ops []*cellv1.Op
	want := map[string]*wdsv1.Domain{}
	for _, d := range c.Domains {
		want[d.GetName()] = d
	}
	for _, name := range sortedDomainNames(s) {
		d := s.domains[name]
		w, ok := want[name]
		if d.deleting || (ok && d.createdIndex == w.GetCreatedIndex()) {
			continue
		}
		ops = append(ops, &cellv1.Op{Op: &cellv1.Op_DeleteDomain{DeleteDomain: &cellv1.DeleteDomain{Name: name}}})
	}
	for _, w := range c.Domains {
		if _, ok := s.domains[w.GetName()]; !ok {
			ops = append(ops, &cellv1.Op{Op: &cellv1.Op_CreateDomain{CreateDomain: &cellv1.CreateDomain{Domain: w, Federated: true}}})
		}
	}
	return ops
}

// DelegateOps returns the Delegate ops that record the delegations not
// yet (fully) live in the state. Stale ones (a shard under a higher
// generation) are left out; the FSM would refuse them anyway.
func (s *State) DelegateOps(delegations []Delegation) []*cellv1.Op {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ops []*cellv1.Op
	for _, dl := range delegations {
		op := &cellv1.Delegate{
			Domain: dl.Domain, Region: dl.Region, Generation: dl.Generation,
			DurationMillis: dl.Duration.Milliseconds(),
		}
		for _, r := range dl.Ranges {
			op.Ranges = append(op.Ranges, topology.RangeToProto(r))
		}
		d, ok := s.domains[dl.Domain]
		if !ok || d.deleting {
			continue // the catalog reaches the cell separately
		}
		ks := d.space(dl.Region)
		if ks == nil {
			ops = append(ops, &cellv1.Op{Op: &cellv1.Op_Delegate{Delegate: op}})
			continue
		}
		idx, err := delegationRanges(ks, op.Ranges)
		if err != nil {
			continue
		}
		needed := false
		for _, i := range idx {
			sh := &ks.shards[i]
			if sh.generation < dl.Generation {
				needed = true
			}
		}
		if needed {
			ops = append(ops, &cellv1.Op{Op: &cellv1.Op_Delegate{Delegate: op}})
		}
	}
	return ops
}
