package globalstate

import (
	"fmt"
	"slices"

	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	"github.com/wdsio/wds/topology"
)

// snapshot copies the state into its persisted form, in a deterministic
// order.
func (s *State) snapshot() *globalv1.Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := &globalv1.Snapshot{Index: s.index, CatalogIndex: s.catalogIndex}
	for _, r := range s.regions {
		snap.Regions = append(snap.Regions, r.Proto())
	}
	for _, name := range sortedNames(s) {
		d := s.domains[name]
		ds := &globalv1.DomainState{Domain: s.domainProto(d), Deleting: d.deleting}
		for _, ks := range d.spaces {
			kss := &globalv1.KeySpaceState{Region: ks.region, FailoverTo: ks.failoverTo}
			for i, sh := range ks.shards {
				kss.Shards = append(kss.Shards, &globalv1.ShardState{
					Range: topology.RangeToProto(ks.ranges[i]), Holder: sh.holder, Generation: sh.generation, Withdrawing: sh.withdrawing, Confirmed: sh.confirmed,
				})
			}
			ds.KeySpaces = append(ds.KeySpaces, kss)
		}
		snap.Domains = append(snap.Domains, ds)
	}
	return snap
}

// restore replaces the state with snap. A snapshot that does not describe
// a valid state is an error, and the state is left as it was.
func (s *State) restore(snap *globalv1.Snapshot) error {
	var regions []Region
	names := map[string]bool{}
	for _, r := range snap.GetRegions() {
		regions = append(regions, regionFromProto(r))
		names[r.GetName()] = true
	}
	domains := map[string]*domain{}
	for _, ds := range snap.GetDomains() {
		p := ds.GetDomain()
		spec, err := topology.DomainFromProto(p)
		if err != nil {
			return fmt.Errorf("global: snapshot: %w", err)
		}
		d := &domain{spec: spec, incarnation: p.GetCreatedIndex(), deleting: ds.GetDeleting()}
		ranges, err := topology.SplitEven(spec.Shards)
		if err != nil {
			return fmt.Errorf("global: snapshot: %w", err)
		}
		d.ranges = ranges
		pins, err := parsePins(spec, ranges, p.GetPins(), names)
		if err != nil {
			return fmt.Errorf("global: snapshot: domain %q: %w", spec.Name, err)
		}
		d.regions, d.failover, d.pins = slices.Clone(p.GetRegions()), p.GetFailover(), pins
		for _, kss := range ds.GetKeySpaces() {
			if len(kss.GetShards()) != len(ranges) {
				return fmt.Errorf("global: snapshot: domain %q key space %q has %d shards, want %d", spec.Name, kss.GetRegion(), len(kss.GetShards()), len(ranges))
			}
			ks := &keySpace{d: d, region: kss.GetRegion(), ranges: ranges, shards: make([]shard, len(ranges)), failoverTo: kss.GetFailoverTo()}
			for i, ss := range kss.GetShards() {
				ks.shards[i] = shard{holder: ss.GetHolder(), generation: ss.GetGeneration(), withdrawing: ss.GetWithdrawing(), confirmed: ss.GetConfirmed()}
			}
			d.spaces = append(d.spaces, ks)
		}
		d.markRetired(names)
		domains[spec.Name] = d
	}
	s.mu.Lock()
	s.index, s.catalogIndex, s.regions, s.domains = snap.GetIndex(), snap.GetCatalogIndex(), regions, domains
	s.mu.Unlock()
	return nil
}

// markRetired marks the key spaces whose region the domain no longer has.
func (d *domain) markRetired(regions map[string]bool) {
	for _, ks := range d.spaces {
		switch {
		case d.spec.Kind != topology.KindRegional:
			ks.retired = ks.region != ""
		case len(d.regions) > 0:
			ks.retired = !slices.Contains(d.regions, ks.region)
		default:
			ks.retired = !regions[ks.region]
		}
	}
}

func sortedNames(s *State) []string {
	names := make([]string, 0, len(s.domains))
	for n := range s.domains {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
