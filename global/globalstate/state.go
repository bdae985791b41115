package globalstate

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Region is a failure domain of the federation.
type Region struct {
	Name string
	// Failover lists the regions that serve this region's REGIONAL key
	// spaces while it is down, in order. Not transitive.
	Failover []string
	// Voters are the region's voters of the global group.
	Voters []Voter
}

// Voter is one node's place in the global group.
type Voter struct {
	ID, Raft, GRPC string
	Region         string
}

func (r Region) clone() Region {
	return Region{Name: r.Name, Failover: slices.Clone(r.Failover), Voters: slices.Clone(r.Voters)}
}

// Proto is r on the wire.
func (r Region) Proto() *globalv1.Region {
	p := &globalv1.Region{Name: r.Name, Failover: slices.Clone(r.Failover)}
	for _, v := range r.Voters {
		p.Voters = append(p.Voters, &globalv1.Voter{Id: v.ID, Raft: v.Raft, Grpc: v.GRPC})
	}
	return p
}

func regionFromProto(r *globalv1.Region) Region {
	out := Region{Name: r.GetName(), Failover: slices.Clone(r.GetFailover())}
	for _, v := range r.GetVoters() {
		out.Voters = append(out.Voters, Voter{ID: v.GetId(), Raft: v.GetRaft(), GRPC: v.GetGrpc(), Region: r.GetName()})
	}
	return out
}

// domain is one domain of the catalog.
type domain struct {
	spec topology.Domain
	// incarnation is the index of the entry that created the domain.
	incarnation uint64
	deleting    bool
	// regions are a REGIONAL domain's key-space regions as configured
	// (empty: every region of the federation).
	regions  []string
	failover wdsv1.Failover
	pins     []pin
	// ranges are the shards' ranges, the same in every key space.
	ranges []topology.Range
	// spaces are the domain's key spaces, by region ("" for GLOBAL and
	// UNIT), sorted.
	spaces []*keySpace
}

// pin places shards [from, to) of the domain's key space in a region (a
// UNIT domain's one shard: from 0, to 1).
type pin struct {
	from, to int
	region   string
}

// keySpace is one key space of a domain: its shards and who holds them.
type keySpace struct {
	d      *domain
	region string
	ranges []topology.Range
	shards []shard
	// retired: the key space's region was removed from the domain; it is
	// delegated no more, and dropped once every shard is free.
	retired bool
	// failoverTo is the region an operator's SetFailover moved the key
	// space to (a REGIONAL domain with failover: manual); "" when none.
	failoverTo string
}

// shard is one shard's delegation.
type shard struct {
	// holder is the region whose cell holds the shard's delegation; ""
	// means free.
	holder     string
	generation uint64
	// withdrawing: the delegation is no longer renewed; the shard stays
	// the holder's until its cell reports it released or it expires.
	withdrawing bool
	// confirmed: the holder's cell listed the delegation as held in a
	// renewal (Confirm): it has it in its log.
	confirmed bool
}

func (sh *shard) free() bool { return sh.holder == "" }

// Result is what one applied op answers its proposer: Err the reason it
// was rejected (a rejected op changed nothing), Resp what it made (the
// committed *wdsv1.Domain for CreateDomain).
type Result struct {
	Resp any
	Err  error
}

// ApplyResult says what one entry changed, for the node.
type ApplyResult struct {
	// Delegations: some region's delegations changed (renewal answers and
	// the cells' catalogs must be recomputed).
	Delegations bool
	// Catalog: domains were created, changed or deleted.
	Catalog bool
}

// State is the global group's replicated state: the regions, the domain
// catalog and every key space's delegations. Like the cell's, it is a pure
// state machine: changes come from ops at log indexes, nothing reads a
// clock, randomness or I/O.
type State struct {
	mu    sync.RWMutex
	index uint64
	// catalogIndex is the index of the last entry that changed the
	// catalog: the version of the catalog cells replicate.
	catalogIndex uint64
	regions      []Region
	domains      map[string]*domain
}

// NewState returns the empty state.
func NewState() *State { return &State{domains: map[string]*domain{}} }

// Index is the log index of the last applied entry.
func (s *State) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

// applyEntry applies the ops of the entry at index.
func (s *State) applyEntry(index uint64, ops []*globalv1.Op, res *ApplyResult) []Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index = index
	out := make([]Result, len(ops))
	for i, op := range ops {
		out[i].Err = s.applyOp(index, op, res, &out[i].Resp)
	}
	if res.Catalog {
		s.catalogIndex = index
	}
	return out
}

func (s *State) applyOp(index uint64, op *globalv1.Op, res *ApplyResult, resp *any) error {
	switch o := op.GetOp().(type) {
	case *globalv1.Op_ApplyTopology:
		return s.applyTopology(index, o.ApplyTopology, res)
	case *globalv1.Op_CreateDomain:
		d, err := s.createDomain(index, o.CreateDomain.GetDomain(), s.regionSet(s.regions))
		if err != nil {
			return err
		}
		s.domains[d.spec.Name] = d
		*resp = s.domainProto(d)
		res.Catalog, res.Delegations = true, true
		return nil
	case *globalv1.Op_DeleteDomain:
		return s.deleteDomain(o.DeleteDomain, res)
	case *globalv1.Op_Delegate:
		return s.delegate(index, o.Delegate, res)
	case *globalv1.Op_Withdraw:
		return s.withdraw(o.Withdraw, res)
	case *globalv1.Op_Released:
		return s.released(o.Released, res)
	case *globalv1.Op_SetFailover:
		return s.setFailover(o.SetFailover, res)
	case *globalv1.Op_Confirm:
		return s.confirm(o.Confirm)
	case *globalv1.Op_Expire:
		e := o.Expire
		if e.GetDomain() != "" && len(e.GetRanges()) > 0 {
			return s.released(&globalv1.Released{Domain: e.GetDomain(), Region: e.GetRegion(), Holder: e.GetHolder(), Generation: e.GetGeneration(), Ranges: e.GetRanges()}, res)
		}
		return s.free(e.GetHolder(), e.GetDomain(), e.GetRegion(), e.GetGeneration(), e.GetDomain() != "", res)
	default:
		if op.GetIgnorable() {
			return ErrUnknownOp
		}
		panic(fmt.Sprintf("global: log entry at index %d holds an op this version does not know (%T) and that may not be skipped: upgrade this node", index, o))
	}
}

func (s *State) regionSet(regions []Region) map[string]bool {
	out := make(map[string]bool, len(regions))
	for _, r := range regions {
		out[r.Name] = true
	}
	return out
}

// createDomain builds a domain from its wire form, checked against the
// regions known; it does not add it.
func (s *State) createDomain(index uint64, p *wdsv1.Domain, regions map[string]bool) (*domain, error) {
	spec, err := topology.DomainFromProto(p)
	if err != nil {
		return nil, err
	}
	if d, ok := s.domains[spec.Name]; ok {
		if d.deleting {
			return nil, fmt.Errorf("%w: domain %q is still being deleted (its delegations have not all ended)", ErrDomainDeleting, spec.Name)
		}
		return nil, fmt.Errorf("%w: domain %q", ErrExists, spec.Name)
	}
	d := &domain{spec: spec, incarnation: index}
	if err := d.configure(p, regions); err != nil {
		return nil, err
	}
	return d, nil
}

// configure sets the placement settings of d (regions, failover, pins)
// from p and makes its key spaces match: new ones are added, ones whose
// region is gone are retired.
func (d *domain) configure(p *wdsv1.Domain, regions map[string]bool) error {
	name := d.spec.Name
	var ksRegions []string
	switch d.spec.Kind {
	case topology.KindRegional:
		for i, r := range p.GetRegions() {
			if !regions[r] {
				return topology.Invalid(fmt.Sprintf("regions[%d]", i), r, "unknown region (domain %q)", name)
			}
			if slices.Contains(p.GetRegions()[:i], r) {
				return topology.Invalid(fmt.Sprintf("regions[%d]", i), r, "duplicate region (domain %q)", name)
			}
		}
		ksRegions = slices.Clone(p.GetRegions())
		if len(ksRegions) == 0 {
			for r := range regions {
				ksRegions = append(ksRegions, r)
			}
		}
		if len(ksRegions) == 0 {
			return topology.Invalid("regions", "", "a REGIONAL domain needs at least one region (domain %q)", name)
		}
		if len(p.GetPins()) > 0 {
			return topology.Invalid("pins", "", "a REGIONAL domain's key spaces are placed by region; pins are for GLOBAL and UNIT domains (domain %q)", name)
		}
	default:
		if len(p.GetRegions()) > 0 {
			return topology.Invalid("regions", p.GetRegions()[0], "only REGIONAL domains have regions (domain %q is %s)", name, d.spec.Kind)
		}
		if p.GetFailover() != wdsv1.Failover_FAILOVER_UNSPECIFIED {
			return topology.Invalid("failover", p.GetFailover().String(), "only REGIONAL domains have a failover setting (domain %q is %s)", name, d.spec.Kind)
		}
		ksRegions = []string{""}
	}
	if d.ranges == nil {
		ranges, err := topology.SplitEven(d.spec.Shards)
		if err != nil {
			return err
		}
		d.ranges = ranges
	}
	pins, err := parsePins(d.spec, d.ranges, p.GetPins(), regions)
	if err != nil {
		return err
	}
	d.regions = slices.Clone(p.GetRegions())
	d.failover = p.GetFailover()
	d.spec.FailbackAfter = time.Duration(p.GetFailbackAfterMillis()) * time.Millisecond
	d.pins = pins
	sort.Strings(ksRegions)
	for _, r := range ksRegions {
		if ks := d.space(r); ks != nil {
			ks.retired = false
			continue
		}
		d.spaces = append(d.spaces, &keySpace{d: d, region: r, ranges: d.ranges, shards: make([]shard, len(d.ranges))})
	}
	for _, ks := range d.spaces {
		if !slices.Contains(ksRegions, ks.region) {
			ks.retired = true
		}
		if d.failover != wdsv1.Failover_FAILOVER_MANUAL || !regions[ks.failoverTo] {
			ks.failoverTo = "" // an auto domain, or the region is gone
		}
	}
	sort.Slice(d.spaces, func(i, j int) bool { return d.spaces[i].region < d.spaces[j].region })
	d.dropRetired()
	return nil
}

// parsePins resolves pins to shard indexes: on shard boundaries, not
// overlapping, in known regions; a UNIT domain has at most one, without a
// range.
func parsePins(spec topology.Domain, ranges []topology.Range, pins []*wdsv1.Pin, regions map[string]bool) ([]pin, error) {
	var out []pin
	for i, p := range pins {
		f := fmt.Sprintf("pins[%d]", i)
		if !regions[p.GetRegion()] {
			return nil, topology.Invalid(f+".region", p.GetRegion(), "unknown region (domain %q)", spec.Name)
		}
		if spec.Kind == topology.KindUnit {
			if i > 0 {
				return nil, topology.Invalid(f, "", "a UNIT domain has at most one pin (domain %q)", spec.Name)
			}
			if p.GetRange() != nil {
				return nil, topology.Invalid(f+".range", "", "a UNIT domain's pin names only a region (domain %q)", spec.Name)
			}
			out = append(out, pin{from: 0, to: 1, region: p.GetRegion()})
			continue
		}
		r, err := topology.RangeFromProto(f+".range", p.GetRange())
		if err != nil {
			return nil, err
		}
		from := topology.FindBound(ranges, r.From)
		if from < 0 || ranges[from].From != r.From {
			return nil, topology.Invalid(f+".range.from", r.From.String(), "not a shard boundary of domain %q", spec.Name)
		}
		to := from
		for to < len(ranges) && ranges[to].To.Less(r.To) {
			to++
		}
		if to == len(ranges) || ranges[to].To != r.To {
			return nil, topology.Invalid(f+".range.to", r.To.String(), "not a shard boundary of domain %q", spec.Name)
		}
		np := pin{from: from, to: to + 1, region: p.GetRegion()}
		for j, o := range out {
			if np.from < o.to && o.from < np.to {
				return nil, topology.Invalid(f+".range", r.String(), "overlaps pins[%d] (domain %q)", j, spec.Name)
			}
		}
		out = append(out, np)
	}
	return out, nil
}

func (d *domain) space(region string) *keySpace {
	for _, ks := range d.spaces {
		if ks.region == region {
			return ks
		}
	}
	return nil
}

// dropRetired removes retired key spaces none of whose shards is held.
func (d *domain) dropRetired() {
	d.spaces = slices.DeleteFunc(d.spaces, func(ks *keySpace) bool { return ks.retired && ks.allFree() })
}

func (ks *keySpace) allFree() bool {
	for i := range ks.shards {
		if !ks.shards[i].free() {
			return false
		}
	}
	return true
}

func (d *domain) allFree() bool {
	for _, ks := range d.spaces {
		if !ks.allFree() {
			return false
		}
	}
	return true
}

// checkVoters validates the global voters of a topology's regions against
// each other and against the voters the state lists now: every voter has an
// id, a Raft address and a gRPC endpoint, ids and Raft addresses are
// unique, a voter keeps its Raft address (the group's Raft configuration
// names it there), and a topology may not remove every voter.
func (s *State) checkVoters(regions []Region) error {
	current := map[string]Voter{}
	for _, r := range s.regions {
		for _, v := range r.Voters {
			current[v.ID] = v
		}
	}
	ids := map[string]string{}   // id → region
	addrs := map[string]string{} // raft address → id
	total := 0
	for i, r := range regions {
		for j, v := range r.Voters {
			total++
			f := fmt.Sprintf("regions[%d].voters[%d]", i, j)
			if err := topology.ValidateConsumerID(f+".id", v.ID); err != nil {
				return err
			}
			if v.Raft == "" {
				return topology.Invalid(f+".raft", "", "required (voter %q)", v.ID)
			}
			if v.GRPC == "" {
				return topology.Invalid(f+".grpc", "", "required (voter %q)", v.ID)
			}
			if other, dup := ids[v.ID]; dup {
				return topology.Invalid(f+".id", v.ID, "duplicate voter (also in region %s)", other)
			}
			ids[v.ID] = r.Name
			if other, dup := addrs[v.Raft]; dup {
				return topology.Invalid(f+".raft", v.Raft, "voters %q and %q share a global Raft address", other, v.ID)
			}
			addrs[v.Raft] = v.ID
			if c, ok := current[v.ID]; ok && c.Raft != v.Raft {
				return fmt.Errorf("%w: %s.raft: voter %q is in the global group at %s; a voter's global Raft address cannot change (remove it, then add it under a new id)", ErrFailedPrecondition, f, v.ID, c.Raft)
			}
		}
	}
	if total == 0 && len(current) > 0 {
		return fmt.Errorf("%w: regions: the topology lists no global voter; it would remove every voter of the global group (%d now)", ErrFailedPrecondition, len(current))
	}
	if len(current) > 0 {
		kept := false
		for id := range ids {
			if _, ok := current[id]; ok {
				kept = true
			}
		}
		if !kept {
			var now []string
			for id := range current {
				now = append(now, id)
			}
			sort.Strings(now)
			return fmt.Errorf("%w: regions: the topology keeps none of the global group's voters (%s): the group would be left to nodes that are not in it; keep at least one, and replace voters over several applies (add the new ones, then remove the old)", ErrFailedPrecondition, strings.Join(now, ", "))
		}
	}
	return nil
}

// applyTopology makes the regions and catalog what the topology says: all
// or nothing.
func (s *State) applyTopology(index uint64, op *globalv1.ApplyTopology, res *ApplyResult) error {
	var regions []Region
	names := map[string]bool{}
	for i, r := range op.GetRegions() {
		f := fmt.Sprintf("regions[%d]", i)
		if err := topology.ValidateName(f+".name", r.GetName()); err != nil {
			return err
		}
		if names[r.GetName()] {
			return topology.Invalid(f+".name", r.GetName(), "duplicate region")
		}
		names[r.GetName()] = true
		regions = append(regions, regionFromProto(r))
	}
	if err := s.checkVoters(regions); err != nil {
		return err
	}
	for i, r := range regions {
		for j, fo := range r.Failover {
			f := fmt.Sprintf("regions[%d].failover[%d]", i, j)
			switch {
			case !names[fo]:
				return topology.Invalid(f, fo, "unknown region")
			case fo == r.Name:
				return topology.Invalid(f, fo, "a region cannot fail over to itself")
			case slices.Contains(r.Failover[:j], fo):
				return topology.Invalid(f, fo, "duplicate region")
			}
		}
	}
	// Build every change before making any.
	created := map[string]*domain{}
	type update struct {
		d *domain
		p *wdsv1.Domain
	}
	var updates []update
	listed := map[string]bool{}
	for i, p := range op.GetDomains() {
		f := fmt.Sprintf("domains[%d]", i)
		name := p.GetName()
		if listed[name] {
			return topology.Invalid(f+".name", name, "duplicate domain")
		}
		listed[name] = true
		if d, ok := s.domains[name]; ok && !d.deleting {
			spec, err := topology.DomainFromProto(p)
			if err != nil {
				return prefix(f, err)
			}
			if spec.Kind != d.spec.Kind || spec.Shards != d.spec.Shards || spec.TTL != d.spec.TTL {
				return fmt.Errorf("%w: %s: domain %q exists as %s; kind, shards and ttl of an existing domain cannot change (delete it and apply again)", ErrFailedPrecondition, f, name, describeSpec(d.spec))
			}
			// Check the new settings on a scratch copy.
			probe := &domain{spec: d.spec}
			if err := probe.configure(p, names); err != nil {
				return prefix(f, err)
			}
			updates = append(updates, update{d, p})
			continue
		}
		d, err := s.createDomain(index, p, names)
		if err != nil {
			return prefix(f, err)
		}
		created[name] = d
	}
	s.regions = regions
	for name, d := range created {
		s.domains[name] = d
	}
	for _, u := range updates {
		if err := u.d.configure(u.p, names); err != nil {
			panic(fmt.Sprintf("global: domain %q configured on a copy but not for real: %v", u.d.spec.Name, err))
		}
	}
	for name, d := range s.domains {
		if !listed[name] && !d.deleting && !op.GetKeepUnlisted() {
			d.deleting = true
		}
	}
	res.Catalog, res.Delegations = true, true
	return nil
}

func describeSpec(d topology.Domain) string {
	return fmt.Sprintf("%s, %d shards, ttl %v", d.Kind, d.Shards, d.TTL)
}

// prefix puts a field path in front of a field error's field.
func prefix(path string, err error) error {
	if fe, ok := err.(*topology.FieldError); ok {
		c := *fe
		// DomainFromProto names fields under "domain."; here the domain
		// is path.
		c.Field = path + "." + strings.TrimPrefix(fe.Field, "domain.")
		return &c
	}
	return fmt.Errorf("%s: %w", path, err)
}

func (s *State) deleteDomain(op *globalv1.DeleteDomain, res *ApplyResult) error {
	d, ok := s.domains[op.GetName()]
	if !ok {
		return fmt.Errorf("%w: domain %q does not exist", ErrNotFound, op.GetName())
	}
	if !op.GetPurge() {
		if d.deleting {
			return fmt.Errorf("%w: domain %q is already being deleted", ErrDomainDeleting, d.spec.Name)
		}
		d.deleting = true
		res.Catalog, res.Delegations = true, true
		return nil
	}
	if !d.deleting || !d.allFree() {
		return fmt.Errorf("%w: domain %q still has delegations", ErrConflict, d.spec.Name)
	}
	delete(s.domains, d.spec.Name)
	res.Catalog = true
	return nil
}

// lookupSpace finds a key space of a live domain.
func (s *State) lookupSpace(name, region string) (*keySpace, error) {
	d, ok := s.domains[name]
	if !ok {
		return nil, fmt.Errorf("%w: domain %q does not exist", ErrNotFound, name)
	}
	ks := d.space(region)
	if ks == nil {
		return nil, fmt.Errorf("%w: domain %q has no key space of region %q", ErrNotFound, name, region)
	}
	return ks, nil
}

// shardIndexes resolves ranges on shard boundaries of ks to shard indexes
// (empty: every shard).
func shardIndexes(ks *keySpace, ranges []*wdsv1.KeyRange) ([]int, error) {
	return topology.ShardIndexes(ks.d.spec.Name, ks.ranges, ranges)
}

// delegate leases free shards to a region at generation index.
func (s *State) delegate(index uint64, op *globalv1.Delegate, res *ApplyResult) error {
	ks, err := s.lookupSpace(op.GetDomain(), op.GetRegion())
	if err != nil {
		return err
	}
	if ks.d.deleting {
		return fmt.Errorf("%w: domain %q", ErrDomainDeleting, ks.d.spec.Name)
	}
	if ks.retired {
		return fmt.Errorf("%w: domain %q has no key space of region %q any more", ErrFailedPrecondition, ks.d.spec.Name, ks.region)
	}
	if !s.regionSet(s.regions)[op.GetHolder()] {
		return topology.Invalid("holder", op.GetHolder(), "unknown region")
	}
	idx, err := shardIndexes(ks, op.GetRanges())
	if err != nil {
		return err
	}
	for _, i := range idx {
		if !ks.shards[i].free() {
			return fmt.Errorf("%w: shard %s of domain %q is delegated to %s", ErrConflict, ks.ranges[i], ks.d.spec.Name, ks.shards[i].holder)
		}
	}
	for _, i := range idx {
		ks.shards[i] = shard{holder: op.GetHolder(), generation: index}
	}
	res.Delegations = true
	return nil
}

// withdraw stops renewing a delegation's ranges.
func (s *State) withdraw(op *globalv1.Withdraw, res *ApplyResult) error {
	ks, err := s.lookupSpace(op.GetDomain(), op.GetRegion())
	if err != nil {
		return err
	}
	idx, err := shardIndexes(ks, op.GetRanges())
	if err != nil {
		return err
	}
	n := 0
	for _, i := range idx {
		sh := &ks.shards[i]
		if sh.holder != op.GetHolder() || sh.generation != op.GetGeneration() {
			if len(op.GetRanges()) > 0 {
				return fmt.Errorf("%w: shard %s of domain %q is not delegated to %s at generation %d", ErrConflict, ks.ranges[i], ks.d.spec.Name, op.GetHolder(), op.GetGeneration())
			}
			continue
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%w: no shard of domain %q is delegated to %s at generation %d", ErrConflict, ks.d.spec.Name, op.GetHolder(), op.GetGeneration())
	}
	for _, i := range idx {
		sh := &ks.shards[i]
		if sh.holder == op.GetHolder() && sh.generation == op.GetGeneration() {
			sh.withdrawing = true
		}
	}
	res.Delegations = true
	return nil
}

// released frees the reported ranges of a delegation.
func (s *State) released(op *globalv1.Released, res *ApplyResult) error {
	if len(op.GetRanges()) == 0 {
		return s.free(op.GetHolder(), op.GetDomain(), op.GetRegion(), op.GetGeneration(), true, res)
	}
	ks, err := s.lookupSpace(op.GetDomain(), op.GetRegion())
	if err != nil {
		return err
	}
	idx, err := shardIndexes(ks, op.GetRanges())
	if err != nil {
		return err
	}
	n := 0
	for _, i := range idx {
		if sh := &ks.shards[i]; sh.holder == op.GetHolder() && sh.generation == op.GetGeneration() {
			*sh = shard{}
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: no reported shard of domain %q is delegated to %s at generation %d", ErrConflict, ks.d.spec.Name, op.GetHolder(), op.GetGeneration())
	}
	ks.d.dropRetired()
	res.Delegations = true
	return nil
}

// free ends delegations of holder: with filter, only (domain, region,
// generation)'s; else every one. Nothing matching is a conflict.
func (s *State) free(holder, name, region string, generation uint64, filter bool, res *ApplyResult) error {
	n := 0
	for dn, d := range s.domains {
		if filter && dn != name {
			continue
		}
		for _, ks := range d.spaces {
			if filter && ks.region != region {
				continue
			}
			for i := range ks.shards {
				sh := &ks.shards[i]
				if sh.holder == holder && (!filter || sh.generation == generation) {
					ks.shards[i] = shard{}
					n++
				}
			}
		}
		d.dropRetired()
	}
	if n == 0 {
		if filter {
			return fmt.Errorf("%w: no shard of domain %q (key space %q) is delegated to %s at generation %d", ErrConflict, name, region, holder, generation)
		}
		return fmt.Errorf("%w: region %s holds no delegation", ErrConflict, holder)
	}
	res.Delegations = true
	return nil
}

// confirm marks a delegation as recorded by its holder's cell.
func (s *State) confirm(op *globalv1.Confirm) error {
	ks, err := s.lookupSpace(op.GetDomain(), op.GetRegion())
	if err != nil {
		return err
	}
	n := 0
	for i := range ks.shards {
		sh := &ks.shards[i]
		if sh.holder == op.GetHolder() && sh.generation == op.GetGeneration() {
			sh.confirmed = true
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: region %s holds no shard of domain %q (key space %q) at generation %d", ErrConflict, op.GetHolder(), op.GetDomain(), op.GetRegion(), op.GetGeneration())
	}
	return nil
}

// setFailover records an operator's manual failover of a key space.
func (s *State) setFailover(op *globalv1.SetFailover, res *ApplyResult) error {
	ks, to, err := s.checkFailover(op, true)
	if err != nil {
		return err
	}
	ks.failoverTo = to
	res.Delegations = true
	return nil
}

// CheckFailover reports whether SetFailover op names a key space that may
// fail over by hand, and a known region to move it to (the reason it does
// not, naming the field). Applying it also refuses while the key space's
// region still holds any of it.
func (s *State) CheckFailover(op *globalv1.SetFailover) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, _, err := s.checkFailover(op, false)
	return err
}

// checkFailover validates a SetFailover (with held, also that the region
// holds none of the key space, unless it moves home) and returns the key
// space and what its failoverTo becomes ("" for home). Under s.mu.
func (s *State) checkFailover(op *globalv1.SetFailover, held bool) (*keySpace, string, error) {
	ks, err := s.lookupSpace(op.GetDomain(), op.GetRegion())
	if err != nil {
		return nil, "", err
	}
	d := ks.d
	switch {
	case d.spec.Kind != topology.KindRegional:
		return nil, "", topology.Invalid("domain", d.spec.Name, "is %s: only a regional domain's key spaces fail over by hand (the others follow their consumers)", d.spec.Kind)
	case d.deleting:
		return nil, "", fmt.Errorf("%w: domain %q", ErrDomainDeleting, d.spec.Name)
	case d.failover != wdsv1.Failover_FAILOVER_MANUAL:
		return nil, "", fmt.Errorf("%w: domain %q fails over automatically (failover: auto); wds failover is for domains with failover: manual", ErrFailedPrecondition, d.spec.Name)
	case ks.retired:
		return nil, "", fmt.Errorf("%w: domain %q has no key space of region %q any more", ErrFailedPrecondition, d.spec.Name, ks.region)
	case !s.regionSet(s.regions)[op.GetTo()]:
		return nil, "", topology.Invalid("to", op.GetTo(), "unknown region")
	}
	if op.GetTo() == ks.region {
		return ks, "", nil // home: the key space follows its region again
	}
	for i := range ks.shards {
		if !held {
			break
		}
		if ks.shards[i].holder == ks.region {
			return nil, "", fmt.Errorf("%w: region %s still holds key space %s of domain %q (shard %s): its delegation may be live until the global leader expires it, D·(1+ε) after the region's last renewal; retry then", ErrFailedPrecondition, ks.region, ks.region, d.spec.Name, ks.ranges[i])
		}
	}
	return ks, op.GetTo(), nil
}

// domainProto is the wire form of d.
func (s *State) domainProto(d *domain) *wdsv1.Domain {
	p := topology.DomainToProto(d.spec)
	p.CreatedIndex = d.incarnation
	p.Pins = nil // the state's own, below (the spec's are those it was created with)
	p.Regions = slices.Clone(d.regions)
	p.Failover = d.failover
	for _, pn := range d.pins {
		wp := &wdsv1.Pin{Region: pn.region}
		if d.spec.Kind != topology.KindUnit {
			wp.Range = topology.RangeToProto(topology.Range{From: d.ranges[pn.from].From, To: d.ranges[pn.to-1].To})
		}
		p.Pins = append(p.Pins, wp)
	}
	return p
}
