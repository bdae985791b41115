package globalstate

import (
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// PlanTopology says what applying topology would change, applying
// nothing: regions and domains added, changed and removed, and the
// delegation moves placement would then make with the regions live and
// loaded as in says (computed on a copy of the state, letting every
// withdrawal be released at once until placement settles). An invalid
// topology is the error ApplyTopology would give.
func PlanTopology(s *State, topology *globalv1.ApplyTopology, in PlaceInput) (*globalv1.PlanTopologyResponse, error) {
	before := s.snapshot()
	sim := NewState()
	if err := sim.restore(before); err != nil {
		return nil, err
	}
	var res ApplyResult
	if r := sim.applyEntry(before.GetIndex()+1, []*globalv1.Op{{Op: &globalv1.Op_ApplyTopology{ApplyTopology: topology}}}, &res); r[0].Err != nil {
		return nil, r[0].Err
	}
	after := sim.snapshot()
	plan := &globalv1.PlanTopologyResponse{}

	oldRegions := map[string]*globalv1.Region{}
	for _, r := range before.GetRegions() {
		oldRegions[r.GetName()] = r
	}
	newRegions := map[string]bool{}
	for _, r := range after.GetRegions() {
		newRegions[r.GetName()] = true
		switch old, ok := oldRegions[r.GetName()]; {
		case !ok:
			plan.RegionsAdded = append(plan.RegionsAdded, r.GetName())
		case !slices.Equal(old.GetFailover(), r.GetFailover()):
			plan.RegionsChanged = append(plan.RegionsChanged, r.GetName())
		}
	}
	for name := range oldRegions {
		if !newRegions[name] {
			plan.RegionsRemoved = append(plan.RegionsRemoved, name)
		}
	}
	sort.Strings(plan.RegionsRemoved)
	plan.VotersAdded, plan.VotersRemoved = voterChanges(before.GetRegions(), after.GetRegions())

	oldDomains := map[string]*globalv1.DomainState{}
	for _, d := range before.GetDomains() {
		oldDomains[d.GetDomain().GetName()] = d
	}
	for _, d := range after.GetDomains() {
		name := d.GetDomain().GetName()
		old, ok := oldDomains[name]
		switch {
		case !ok:
			created := proto.Clone(d.GetDomain()).(*wdsv1.Domain)
			created.CreatedIndex = 0 // known once applied
			plan.DomainsCreated = append(plan.DomainsCreated, created)
		case d.GetDeleting() && !old.GetDeleting():
			plan.DomainsDeleted = append(plan.DomainsDeleted, name)
		case !proto.Equal(old.GetDomain(), d.GetDomain()):
			plan.DomainsChanged = append(plan.DomainsChanged, d.GetDomain())
		}
	}

	// Placement on the copy until it settles, every withdrawal released.
	start := shardHolders(sim)
	index := before.GetIndex() + 1
	for round := 0; round < 100; round++ {
		ops := sim.Place(in)
		for _, dl := range sim.Delegations("") {
			if dl.Withdrawing {
				ops = append(ops, &globalv1.Op{Op: &globalv1.Op_Released{Released: &globalv1.Released{
					Domain: dl.Domain, Region: dl.Region, Holder: dl.Holder, Generation: dl.Generation, Ranges: rangesProto(dl.Ranges),
				}}})
			}
		}
		if len(ops) == 0 {
			break
		}
		index++
		sim.applyEntry(index, ops, &ApplyResult{})
	}
	end := shardHolders(sim)
	type moveKey struct{ domain, region, from, to string }
	moves := map[moveKey]uint32{}
	var keys []moveKey
	for k, from := range start {
		to := end[k]
		if from == "" || to == "" || from == to {
			continue
		}
		mk := moveKey{k.domain, k.region, from, to}
		if moves[mk] == 0 {
			keys = append(keys, mk)
		}
		moves[mk]++
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.domain != b.domain {
			return a.domain < b.domain
		}
		if a.region != b.region {
			return a.region < b.region
		}
		if a.from != b.from {
			return a.from < b.from
		}
		return a.to < b.to
	})
	for _, k := range keys {
		plan.Moves = append(plan.Moves, &globalv1.PlannedMove{
			Domain: k.domain, Region: k.region, FromRegion: k.from, ToRegion: k.to,
			Shards: moves[k], ConsumersAffected: uint32(in.Consumers[k.from][k.domain]),
		})
	}
	return plan, nil
}

type shardKey struct {
	domain, region string
	i              int
}

// shardHolders maps every held shard to its holder.
func shardHolders(s *State) map[shardKey]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[shardKey]string{}
	for name, d := range s.domains {
		for _, ks := range d.spaces {
			for i, sh := range ks.shards {
				if !sh.free() {
					out[shardKey{name, ks.region, i}] = sh.holder
				}
			}
		}
	}
	return out
}

// voterChanges are the global voters after lists and before does not
// (added), and the other way round (removed), by id.
func voterChanges(before, after []*globalv1.Region) (added, removed []*globalv1.Voter) {
	ids := func(rs []*globalv1.Region) map[string]bool {
		out := map[string]bool{}
		for _, r := range rs {
			for _, v := range r.GetVoters() {
				out[v.GetId()] = true
			}
		}
		return out
	}
	was, is := ids(before), ids(after)
	for _, r := range after {
		for _, v := range r.GetVoters() {
			if !was[v.GetId()] {
				added = append(added, v)
			}
		}
	}
	for _, r := range before {
		for _, v := range r.GetVoters() {
			if !is[v.GetId()] {
				removed = append(removed, v)
			}
		}
	}
	return added, removed
}
