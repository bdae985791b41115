package cellstate

import (
	"sort"
	"time"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
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

// ReleasedDelegations returns the relinquished delegations none of whose
// shards has a holder or successor left (the "released" report).
func (s *State) ReleasedDelegations() []DelegationID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []DelegationID
	for name, d := range s.domains {
		for _, ks := range d.spaces {
			busy := map[uint64]bool{}
			for i := range ks.shards {
				sh := &ks.shards[i]
				if sh.generation == 0 {
					continue
				}
				b := !sh.relinquished || sh.holder.consumer != nil || sh.next.consumer != nil
				busy[sh.generation] = busy[sh.generation] || b
			}
			for g, b := range busy {
				if !b {
					out = append(out, DelegationID{Domain: name, Region: ks.region, Generation: g})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
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
