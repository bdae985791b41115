package topology

import (
	"slices"
	"strconv"
	"strings"
)

// GlobalVoter is a node that is also a voter of the global Raft group, with
// the name of its region. Node.Global is its global Raft transport address.
type GlobalVoter struct {
	// Region is the name of the region whose nodes list the node.
	Region string
	// Node is a copy of the node; Node.Global is set.
	Node Node
}

// GlobalVoters returns the voters of the global group: every node with a
// Global address, in file order (regions, then their nodes). It is empty for
// a lone cell, a file of one region without global voters.
func (f *File) GlobalVoters() []GlobalVoter {
	var out []GlobalVoter
	for _, r := range f.Regions {
		for _, n := range r.Nodes {
			if n.Global != "" {
				out = append(out, GlobalVoter{Region: r.Name, Node: n})
			}
		}
	}
	return out
}

// FailoverOf returns the regions that serve region's REGIONAL key spaces
// while it is down, in order of preference: the region's own failover list
// when it has one, else every other region in file order (what wds dev
// uses). The result is a new slice the caller may change. It is empty for
// the only region of a file, and nil for a region that is not in the file.
//
// The list is not transitive: the global group gives the key spaces to the
// first live region of this list, and does not follow that region's list
// when all of these are down.
func (f *File) FailoverOf(region string) []string {
	r, ok := f.Region(region)
	if !ok {
		return nil
	}
	if len(r.Failover) > 0 {
		return slices.Clone(r.Failover)
	}
	out := make([]string, 0, len(f.Regions)-1)
	for _, o := range f.Regions {
		if o.Name != region {
			out = append(out, o.Name)
		}
	}
	return out
}

// validateFederation checks what relates the regions to each other: the
// failover lists, and that a federation has a global group. The regions
// themselves (unique valid names, nodes, addresses) are valid; regions holds
// their names.
func (f *File) validateFederation(regions map[string]string) *FieldError {
	for i, r := range f.Regions {
		fp := index("regions", i) + ".failover"
		seen := make(map[string]int, len(r.Failover))
		for j, name := range r.Failover {
			ep := index(fp, j)
			if _, ok := regions[name]; !ok {
				return f.unknownRegion(ep, name)
			}
			if name == r.Name {
				return Invalid(ep, quote(name), "a region cannot fail over to itself: list the regions that serve its regional key spaces while it is down")
			}
			if k, dup := seen[name]; dup {
				return Invalid(ep, quote(name), "duplicate region, also %s", index(fp, k))
			}
			seen[name] = j
		}
	}
	if len(f.Regions) > 1 && len(f.GlobalVoters()) == 0 {
		return Invalid("regions", strconv.Itoa(len(f.Regions))+" regions",
			"a file of several regions is a federation and needs at least one global voter: give nodes a global address (host:port of the global Raft transport), typically one node per region")
	}
	return nil
}

// validateDomainRegions checks that the regions a valid domain names, at
// path dp, are regions of the file, whose names regions holds.
func (f *File) validateDomainRegions(dp string, d Domain, regions map[string]string) *FieldError {
	for i, name := range d.Regions {
		if _, ok := regions[name]; !ok {
			return f.unknownRegion(index(dp+".regions", i), name)
		}
	}
	for i, p := range d.Pins {
		if _, ok := regions[p.Region]; !ok {
			return f.unknownRegion(index(dp+".pins", i)+".region", p.Region)
		}
	}
	return nil
}

// maxListedRegions bounds the region names an error lists.
const maxListedRegions = 10

func (f *File) unknownRegion(field, name string) *FieldError {
	names := make([]string, 0, min(len(f.Regions), maxListedRegions))
	for _, r := range f.Regions[:min(len(f.Regions), maxListedRegions)] {
		names = append(names, r.Name)
	}
	list := strings.Join(names, ", ")
	if len(f.Regions) > maxListedRegions {
		list += ", … (" + strconv.Itoa(len(f.Regions)) + " in all)"
	}
	if name == "" {
		return Invalid(field, "", "required: a region of the file (%s)", list)
	}
	return Invalid(field, quote(name), "unknown region: the file's regions are %s", list)
}
