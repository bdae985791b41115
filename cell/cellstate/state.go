package cellstate

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// grantState is the lifecycle of a grant (DESIGN.md, "Grant states").
type grantState uint8

const (
	stateNone grantState = iota
	// stateAllocated: the successor was told Prepare; it does not own the
	// shard yet.
	stateAllocated
	// stateActive: the holder owns the shard.
	stateActive
	// stateRevoked: the holder was told to stop; the grant is no longer
	// extended and ends on release or at its deadline.
	stateRevoked
)

func (s grantState) proto() wdsv1.GrantState {
	switch s {
	case stateAllocated:
		return wdsv1.GrantState_GRANT_STATE_ALLOCATED
	case stateActive:
		return wdsv1.GrantState_GRANT_STATE_ACTIVE
	case stateRevoked:
		return wdsv1.GrantState_GRANT_STATE_REVOKED
	}
	return wdsv1.GrantState_GRANT_STATE_UNSPECIFIED
}

func grantStateFromProto(s wdsv1.GrantState) grantState {
	switch s {
	case wdsv1.GrantState_GRANT_STATE_ALLOCATED:
		return stateAllocated
	case wdsv1.GrantState_GRANT_STATE_ACTIVE:
		return stateActive
	case wdsv1.GrantState_GRANT_STATE_REVOKED:
		return stateRevoked
	}
	return stateNone
}

// grant is one lease of a shard. consumer == nil means "no grant".
type grant struct {
	consumer *consumer
	token    topology.Token
	state    grantState
}

// shard is the grant state of one range. holder is ACTIVE or REVOKED; next
// is the ALLOCATED successor of a REVOKED holder.
type shard struct {
	holder grant
	next   grant
	// activatedAt is the log index of the last activation: two grants of one
	// shard must never share a token, so a second activation in the same
	// entry is refused.
	activatedAt uint64
	// generation is that of the delegation covering the shard (0: none); it
	// is the first half of the token of every grant activated here.
	generation uint64
	// relinquished: the delegation of that generation was given up. Nothing
	// is activated (promotion included) until a Delegate of a higher
	// generation covers the shard again.
	relinquished bool
}

// delegated reports whether the shard lies in a live delegation: the only
// place a grant may be activated (contract (5)).
func (sh *shard) delegated() bool { return sh.generation != 0 && !sh.relinquished }

// domain is a work domain of the cell's catalog and the key spaces of it the
// cell holds: one for GLOBAL and UNIT domains; for a REGIONAL domain its own
// region's, and after a regional failover other regions' too.
type domain struct {
	spec         topology.Domain
	createdIndex uint64
	deleting     bool
	// spaces are sorted by region.
	spaces []*keySpace
}

// keySpace is one key space of a domain: ranges tiling the UUID space and
// the grants of its shards (parallel slices).
type keySpace struct {
	d *domain
	// region is the key space's region for a REGIONAL domain, "" otherwise.
	region string
	ranges []topology.Range
	shards []shard
	// duration is D of the latest delegation (informational).
	duration time.Duration
}

// space returns the key space of region, or nil.
func (d *domain) space(region string) *keySpace {
	for _, ks := range d.spaces {
		if ks.region == region {
			return ks
		}
	}
	return nil
}

// addSpace creates the key space of region with the domain's even layout.
func (d *domain) addSpace(region string) (*keySpace, error) {
	ranges, err := topology.SplitEven(d.spec.Shards)
	if err != nil {
		return nil, err
	}
	ks := &keySpace{d: d, region: region, ranges: ranges, shards: make([]shard, len(ranges))}
	d.spaces = append(d.spaces, ks)
	sort.Slice(d.spaces, func(i, j int) bool { return d.spaces[i].region < d.spaces[j].region })
	return ks, nil
}

// shardAt returns the index of the shard starting at from, or -1.
func (ks *keySpace) shardAt(from topology.Bound) int {
	i := topology.FindBound(ks.ranges, from)
	if i < 0 || ks.ranges[i].From != from {
		return -1
	}
	return i
}

// name is the key space's domain name.
func (ks *keySpace) name() string { return ks.d.spec.Name }

// shardRef names a shard of a key space in a consumer's grant index.
type shardRef struct {
	ks  *keySpace
	idx int32
}

// lessRef orders shard references deterministically (domain, region, index).
func lessRef(a, b shardRef) bool {
	if a.ks != b.ks {
		if a.ks.d != b.ks.d {
			return a.ks.name() < b.ks.name()
		}
		return a.ks.region < b.ks.region
	}
	return a.idx < b.idx
}

// consumer is one registered consumer incarnation.
type consumer struct {
	id          string
	region      string
	endpoint    string
	domains     []string
	incarnation string
	draining    bool
	joinedIndex uint64
	// unconfirmed: the leader has not heard from this consumer for a while
	// (SetConfirmed). Informational: routing and the shard map say so.
	unconfirmed bool
	// grants indexes the shards this consumer holds or is the successor of,
	// so a session resume and a leave cost O(own grants), not O(all shards).
	grants map[shardRef]struct{}
}

func (c *consumer) serves(domain string) bool { return slices.Contains(c.domains, domain) }

// EffectKind says what an applied op means to a consumer's session.
type EffectKind uint8

const (
	// EffectGranted: the consumer now holds the shard ACTIVE (send Grant).
	EffectGranted EffectKind = iota + 1
	// EffectRevoked: the consumer's grant was revoked (send Revoke), or its
	// allocation cancelled.
	EffectRevoked
	// EffectPrepared: the consumer is the shard's ALLOCATED successor (send
	// Prepare).
	EffectPrepared
	// EffectReleased: the consumer's grant ended by its own Release.
	EffectReleased
	// EffectDropped: the consumer's grant ended without its Release (lease
	// expiry, leave, or replacement by a new incarnation). The client has
	// given up already by the contract; the session says so anyway.
	EffectDropped
	// EffectDraining: the consumer was marked draining.
	EffectDraining
	// EffectLeft: the consumer incarnation was removed.
	EffectLeft
	// EffectJoined: a consumer incarnation was registered.
	EffectJoined
)

// Effect is a consequence of an applied op for one consumer. The cell
// leader turns effects into session messages, in log order.
type Effect struct {
	Kind        EffectKind
	Consumer    string
	Incarnation string
	Domain      string
	// Region is the key space's region ("" for GLOBAL and UNIT domains).
	Region string
	Range  topology.Range
	Token  topology.Token
	Reason wdsv1.RevokeReason
}

// RouteChange marks routing entries an applied op changed.
type RouteChange struct {
	Domain string
	// Region is the key space of Shard.
	Region string
	// Shard is the index of a changed shard, or -1 with Replace or Deleted
	// (which concern every key space of the domain).
	Shard   int
	Replace bool
	Deleted bool
}

// ApplyResult collects what one log entry did, for the node: the effects
// its leader turns into session messages, the routing it changed.
type ApplyResult struct {
	Effects []Effect
	Routes  []RouteChange
	// Delegations: the entry changed which key space the cell holds
	// (Delegate, Relinquish, a domain created or deleted).
	Delegations bool
}

// State is the cell's replicated state: domains, consumers and grants. It
// is a pure state machine: every change comes from an op at a log index, and
// nothing in it reads clocks, randomness or I/O. Readers take RLock.
type State struct {
	mu        sync.RWMutex
	index     uint64
	region    string
	domains   map[string]*domain
	consumers map[string]*consumer
}

// NewState returns the empty state of a cell of region.
func NewState(region string) *State {
	return &State{region: region, domains: map[string]*domain{}, consumers: map[string]*consumer{}}
}

// Region is the cell's region: the key space its REGIONAL domains default
// to. It never changes.
func (s *State) Region() string { return s.region }

// Index is the log index of the last applied entry.
func (s *State) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

// Result is what one applied op answers its proposer, as etcd's apply
// results do: Err is the reason it was rejected (a rejected op changed
// nothing), Resp what the op made, for the ops that make something the
// caller reports (CreateDomain: the *wdsv1.Domain as committed), so callers
// need not read the state again after the commit, when it may have moved on.
type Result struct {
	Resp any
	Err  error
}

// applyEntry applies the ops of the entry at index, one Result per op.
func (s *State) applyEntry(index uint64, ops []*cellv1.Op, res *ApplyResult) []Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index = index
	out := make([]Result, len(ops))
	for i, op := range ops {
		out[i].Err = s.applyOp(index, op, res, &out[i].Resp)
	}
	return out
}

func (s *State) applyOp(index uint64, op *cellv1.Op, res *ApplyResult, resp *any) error {
	switch o := op.GetOp().(type) {
	case *cellv1.Op_CreateDomain:
		return s.createDomain(index, o.CreateDomain, res, resp)
	case *cellv1.Op_DeleteDomain:
		return s.deleteDomain(index, o.DeleteDomain, res)
	case *cellv1.Op_Join:
		return s.join(index, o.Join, res)
	case *cellv1.Op_Leave:
		return s.leave(index, o.Leave, res)
	case *cellv1.Op_SetDraining:
		return s.setDraining(o.SetDraining, res)
	case *cellv1.Op_Assign:
		return s.assign(index, o.Assign, res)
	case *cellv1.Op_Move:
		return s.move(o.Move, res)
	case *cellv1.Op_Release:
		return s.release(index, o.Release, res)
	case *cellv1.Op_SetConfirmed:
		return s.setConfirmed(o.SetConfirmed, res)
	case *cellv1.Op_Delegate:
		return s.delegate(o.Delegate, res)
	case *cellv1.Op_Relinquish:
		return s.relinquish(o.Relinquish, res)
	}
	// An op from a newer version. Skipping an informational one keeps a
	// mixed-version cell applying the log; skipping any other would let
	// this replica's ownership state fork from the newer ones' (Consul's
	// IgnoreUnknownTypeFlag): stop instead, and let the operator upgrade.
	if op.GetIgnorable() {
		return ErrUnknownOp
	}
	panic(fmt.Sprintf("cell: log entry %d holds an op this version does not know and may not skip (upgrade this node): %v", index, op))
}

// keySpaceRegion is the key-space region a shard op names: region for a
// REGIONAL domain, where an empty one (an entry or client from before key
// spaces) means the cell's own region; always "" for GLOBAL and UNIT.
func (s *State) keySpaceRegion(d *domain, region string) string {
	if d.spec.Kind != topology.KindRegional {
		return ""
	}
	if region == "" {
		return s.region
	}
	return region
}

func (s *State) createDomain(index uint64, op *cellv1.CreateDomain, res *ApplyResult, resp *any) error {
	spec, err := topology.DomainFromProto(op.GetDomain())
	if err != nil {
		return err
	}
	if d, ok := s.domains[spec.Name]; ok {
		if d.deleting {
			return fmt.Errorf("%w: domain %q is still being deleted (its grants have not all ended)", ErrDomainDeleting, spec.Name)
		}
		return fmt.Errorf("%w: domain %q", ErrExists, spec.Name)
	}
	d := &domain{spec: spec, createdIndex: index}
	if op.GetFederated() && op.GetDomain().GetCreatedIndex() != 0 {
		// A federated cell keeps the catalog's incarnation (the global log
		// index that created the domain), so that a re-created domain is
		// told apart from the one it replaces.
		d.createdIndex = op.GetDomain().GetCreatedIndex()
	}
	if !op.GetFederated() {
		// A lone cell delegates the key space to itself: generation 1, the
		// tokens of every cell before delegations existed.
		ks, err := d.addSpace(s.keySpaceRegion(d, ""))
		if err != nil {
			return err
		}
		for i := range ks.shards {
			ks.shards[i].generation = 1
		}
	} else if _, err := topology.SplitEven(spec.Shards); err != nil {
		return err
	}
	s.domains[spec.Name] = d
	res.Routes = append(res.Routes, RouteChange{Domain: spec.Name, Shard: -1, Replace: true})
	res.Delegations = true
	*resp = s.domainProto(d)
	return nil
}

func (s *State) deleteDomain(index uint64, op *cellv1.DeleteDomain, res *ApplyResult) error {
	d, ok := s.domains[op.GetName()]
	if !ok {
		return fmt.Errorf("%w: domain %q", ErrNotFound, op.GetName())
	}
	if op.GetPurge() {
		if !d.deleting {
			return fmt.Errorf("%w: domain %q is not being deleted", ErrFailedPrecondition, d.spec.Name)
		}
		if !domainEmpty(d) {
			return fmt.Errorf("%w: domain %q still has grants", ErrFailedPrecondition, d.spec.Name)
		}
		delete(s.domains, d.spec.Name)
		res.Delegations = true
		return nil
	}
	if d.deleting {
		return nil // idempotent
	}
	d.deleting = true
	routes := len(res.Routes)
	for _, ks := range d.spaces {
		for i := range ks.shards {
			s.revokeShard(ks, i, wdsv1.RevokeReason_REVOKE_REASON_DOMAIN_DELETED, res)
		}
	}
	// The whole table goes: no per-shard changes before it.
	res.Routes = append(res.Routes[:routes], RouteChange{Domain: d.spec.Name, Shard: -1, Deleted: true})
	res.Delegations = true
	return nil
}

// revokeShard drops a shard's successor and revokes its ACTIVE holder.
func (s *State) revokeShard(ks *keySpace, i int, reason wdsv1.RevokeReason, res *ApplyResult) {
	sh := &ks.shards[i]
	if sh.next.consumer != nil {
		s.dropNext(ks, i, reason, res)
	}
	if sh.holder.consumer != nil && sh.holder.state == stateActive {
		sh.holder.state = stateRevoked
		res.Effects = append(res.Effects, s.effect(EffectRevoked, sh.holder, ks, i, reason))
		res.Routes = append(res.Routes, RouteChange{Domain: ks.name(), Region: ks.region, Shard: i})
	}
}

// domainEmpty reports whether no shard of any key space of d has a grant.
func domainEmpty(d *domain) bool {
	for _, ks := range d.spaces {
		for i := range ks.shards {
			if ks.shards[i].holder.consumer != nil || ks.shards[i].next.consumer != nil {
				return false
			}
		}
	}
	return true
}

// delegationRanges resolves a Delegate's or Relinquish's ranges to shard
// indexes of ks (topology.ShardIndexes: on shard boundaries, empty for
// every shard).
func delegationRanges(ks *keySpace, ranges []*wdsv1.KeyRange) ([]int, error) {
	return topology.ShardIndexes(ks.name(), ks.ranges, ranges)
}

func (s *State) delegate(op *cellv1.Delegate, res *ApplyResult) error {
	d, ok := s.domains[op.GetDomain()]
	if !ok {
		return fmt.Errorf("%w: domain %q", ErrNotFound, op.GetDomain())
	}
	if d.deleting {
		return fmt.Errorf("%w: domain %q is being deleted", ErrDomainDeleting, d.spec.Name)
	}
	if op.GetGeneration() == 0 {
		return topology.Invalid("generation", "0", "must be positive")
	}
	region := op.GetRegion()
	if d.spec.Kind == topology.KindRegional {
		if err := topology.ValidateName("region", region); err != nil {
			return err
		}
	} else if region != "" {
		return topology.Invalid("region", region, "only REGIONAL domains have per-region key spaces")
	}
	ks := d.space(region)
	fresh := ks == nil
	if fresh {
		var err error
		if ks, err = d.addSpace(region); err != nil {
			return err
		}
	}
	idx, err := delegationRanges(ks, op.GetRanges())
	if err == nil {
		for _, i := range idx {
			sh := &ks.shards[i]
			if sh.generation > op.GetGeneration() || (sh.generation == op.GetGeneration() && sh.relinquished) {
				err = fmt.Errorf("%w: domain %q shard %s is under generation %d; generation %d is stale", ErrConflict, d.spec.Name, ks.ranges[i], sh.generation, op.GetGeneration())
				break
			}
		}
	}
	if err != nil {
		if fresh {
			d.spaces = slices.DeleteFunc(d.spaces, func(x *keySpace) bool { return x == ks })
		}
		return err
	}
	for _, i := range idx {
		sh := &ks.shards[i]
		sh.generation, sh.relinquished = op.GetGeneration(), false
	}
	ks.duration = time.Duration(op.GetDurationMillis()) * time.Millisecond
	if fresh {
		res.Routes = append(res.Routes, RouteChange{Domain: d.spec.Name, Shard: -1, Replace: true})
	}
	res.Delegations = true
	return nil
}

// relinquish gives up a delegation (see cellv1.Relinquish): the shards of
// that generation in its ranges have their ACTIVE grants revoked and their
// successors dropped, and activate nothing until delegated again. Shards
// under another generation are left alone (their delegation was replaced).
func (s *State) relinquish(op *cellv1.Relinquish, res *ApplyResult) error {
	d, ok := s.domains[op.GetDomain()]
	if !ok {
		return fmt.Errorf("%w: domain %q", ErrNotFound, op.GetDomain())
	}
	ks := d.space(s.keySpaceRegion(d, op.GetRegion()))
	if ks == nil {
		return fmt.Errorf("%w: domain %q has no key space of region %q here", ErrNotFound, d.spec.Name, op.GetRegion())
	}
	idx, err := delegationRanges(ks, op.GetRanges())
	if err != nil {
		return err
	}
	for _, i := range idx {
		sh := &ks.shards[i]
		if sh.generation != op.GetGeneration() || sh.relinquished {
			continue
		}
		sh.relinquished = true
		s.revokeShard(ks, i, wdsv1.RevokeReason_REVOKE_REASON_DELEGATION, res)
	}
	// The cell's table lists only delegated shards: replace it.
	res.Routes = append(res.Routes, RouteChange{Domain: d.spec.Name, Shard: -1, Replace: true})
	res.Delegations = true
	return nil
}

func (s *State) join(index uint64, op *cellv1.Join, res *ApplyResult) error {
	if err := topology.ValidateConsumerID("consumer_id", op.GetConsumerId()); err != nil {
		return err
	}
	inc := string(op.GetIncarnation())
	if inc == "" {
		return topology.Invalid("incarnation", "", "required")
	}
	if c, ok := s.consumers[op.GetConsumerId()]; ok {
		if c.incarnation == inc {
			return nil // replayed join
		}
		// A new incarnation replaces a dead one: the leader proposes this
		// only once the old lease is past its deadline.
		s.removeConsumer(index, c, res)
	}
	s.consumers[op.GetConsumerId()] = &consumer{
		id:          op.GetConsumerId(),
		region:      op.GetRegion(),
		endpoint:    op.GetEndpoint(),
		domains:     slices.Clone(op.GetDomains()),
		incarnation: inc,
		joinedIndex: index,
		grants:      map[shardRef]struct{}{},
	}
	res.Effects = append(res.Effects, Effect{Kind: EffectJoined, Consumer: op.GetConsumerId(), Incarnation: inc})
	return nil
}

func (s *State) leave(index uint64, op *cellv1.Leave, res *ApplyResult) error {
	c, err := s.consumerInc(op.GetConsumerId(), op.GetIncarnation())
	if err != nil {
		return err
	}
	s.removeConsumer(index, c, res)
	return nil
}

func (s *State) consumerInc(id string, inc []byte) (*consumer, error) {
	c, ok := s.consumers[id]
	if !ok {
		return nil, fmt.Errorf("%w: consumer %q", ErrNotFound, id)
	}
	if c.incarnation != string(inc) {
		return nil, fmt.Errorf("%w: consumer %q has another incarnation", ErrConflict, id)
	}
	return c, nil
}

// sortedRefs returns c's grant references in a deterministic order: effects
// and tokens must not depend on map order.
func sortedRefs(c *consumer) []shardRef {
	refs := make([]shardRef, 0, len(c.grants))
	for r := range c.grants {
		refs = append(refs, r)
	}
	sort.Slice(refs, func(i, j int) bool { return lessRef(refs[i], refs[j]) })
	return refs
}

// removeConsumer drops every grant of c (promoting successors of shards it
// held) and unregisters it.
func (s *State) removeConsumer(index uint64, c *consumer, res *ApplyResult) {
	for _, r := range sortedRefs(c) {
		sh := &r.ks.shards[r.idx]
		if sh.holder.consumer == c {
			res.Effects = append(res.Effects, s.effect(EffectDropped, sh.holder, r.ks, int(r.idx), wdsv1.RevokeReason_REVOKE_REASON_LOST))
			s.endHolder(index, r.ks, int(r.idx), res)
		} else if sh.next.consumer == c {
			sh.next = grant{}
		}
	}
	delete(s.consumers, c.id)
	res.Effects = append(res.Effects, Effect{Kind: EffectLeft, Consumer: c.id, Incarnation: c.incarnation})
}

func (s *State) setDraining(op *cellv1.SetDraining, res *ApplyResult) error {
	c, err := s.consumerInc(op.GetConsumerId(), op.GetIncarnation())
	if err != nil {
		return err
	}
	if !c.draining {
		c.draining = true
		res.Effects = append(res.Effects, Effect{Kind: EffectDraining, Consumer: c.id, Incarnation: c.incarnation})
	}
	return nil
}

// setConfirmed records whether the leader hears from the consumer; the
// routing entries of its active shards change with it.
func (s *State) setConfirmed(op *cellv1.SetConfirmed, res *ApplyResult) error {
	c, err := s.consumerInc(op.GetConsumerId(), op.GetIncarnation())
	if err != nil {
		return err
	}
	if c.unconfirmed == op.GetUnconfirmed() {
		return nil
	}
	c.unconfirmed = op.GetUnconfirmed()
	for _, ref := range sortedRefs(c) {
		if h := ref.ks.shards[ref.idx].holder; h.consumer == c && h.state == stateActive {
			res.Routes = append(res.Routes, RouteChange{Domain: ref.ks.name(), Region: ref.ks.region, Shard: int(ref.idx)})
		}
	}
	return nil
}

// lookupShard resolves (domain, key-space region, from) for grant ops.
func (s *State) lookupShard(name, region string, from []byte) (*keySpace, int, error) {
	d, ok := s.domains[name]
	if !ok {
		return nil, -1, fmt.Errorf("%w: domain %q", ErrNotFound, name)
	}
	b, err := topology.KeyFromBytes("from", from)
	if err != nil {
		return nil, -1, err
	}
	ks := d.space(s.keySpaceRegion(d, region))
	if ks == nil {
		return nil, -1, fmt.Errorf("%w: domain %q has no key space of region %q in this cell", ErrNotFound, name, region)
	}
	i := ks.shardAt(b)
	if i < 0 {
		return nil, -1, fmt.Errorf("%w: domain %q has no shard starting at %s", ErrNotFound, name, b)
	}
	return ks, i, nil
}

func (s *State) assign(index uint64, op *cellv1.Assign, res *ApplyResult) error {
	ks, i, err := s.lookupShard(op.GetDomain(), op.GetRegion(), op.GetFrom())
	if err != nil {
		return err
	}
	d := ks.d
	if d.deleting {
		return fmt.Errorf("%w: domain %q is being deleted", ErrDomainDeleting, d.spec.Name)
	}
	c, ok := s.consumers[op.GetConsumerId()]
	if !ok {
		return fmt.Errorf("%w: consumer %q", ErrNotFound, op.GetConsumerId())
	}
	if !c.serves(d.spec.Name) {
		return fmt.Errorf("%w: consumer %q does not serve domain %q", ErrFailedPrecondition, c.id, d.spec.Name)
	}
	sh := &ks.shards[i]
	if !sh.delegated() {
		return fmt.Errorf("%w: shard %s of domain %q is not under a live delegation", ErrFailedPrecondition, ks.ranges[i], d.spec.Name)
	}
	switch {
	case sh.next.consumer != nil:
		return fmt.Errorf("%w: shard already has a successor", ErrConflict)
	case sh.holder.consumer == nil:
		return s.activate(index, ks, i, c, res)
	case sh.holder.state == stateRevoked && sh.holder.consumer != c:
		sh.next = grant{consumer: c, state: stateAllocated}
		c.grants[shardRef{ks, int32(i)}] = struct{}{}
		res.Effects = append(res.Effects, s.effect(EffectPrepared, sh.next, ks, i, 0))
		return nil
	default:
		return fmt.Errorf("%w: shard is held", ErrConflict)
	}
}

// activate makes c the ACTIVE holder of an unheld shard with a fresh token
// (the delegation's generation, this entry's index). It is the only place
// a grant becomes ACTIVE, and it refuses outside a live delegation.
func (s *State) activate(index uint64, ks *keySpace, i int, c *consumer, res *ApplyResult) error {
	sh := &ks.shards[i]
	if !sh.delegated() {
		return fmt.Errorf("%w: shard %s of domain %q is not under a live delegation", ErrFailedPrecondition, ks.ranges[i], ks.name())
	}
	if sh.activatedAt == index {
		// A second grant in one entry would reuse the token.
		return fmt.Errorf("%w: shard was already granted in this log entry", ErrConflict)
	}
	sh.holder = grant{consumer: c, token: topology.Token{Generation: sh.generation, Index: index}, state: stateActive}
	sh.activatedAt = index
	c.grants[shardRef{ks, int32(i)}] = struct{}{}
	res.Effects = append(res.Effects, s.effect(EffectGranted, sh.holder, ks, i, 0))
	res.Routes = append(res.Routes, RouteChange{Domain: ks.name(), Region: ks.region, Shard: i})
	return nil
}

func (s *State) move(op *cellv1.Move, res *ApplyResult) error {
	ks, i, err := s.lookupShard(op.GetDomain(), op.GetRegion(), op.GetFrom())
	if err != nil {
		return err
	}
	d := ks.d
	sh := &ks.shards[i]
	h := sh.holder
	if h.consumer == nil || h.consumer.id != op.GetHolder() || h.state != stateActive || h.token != topology.TokenFromProto(op.GetToken()) {
		return fmt.Errorf("%w: shard is not held ACTIVE by %q with token %s", ErrConflict, op.GetHolder(), topology.TokenFromProto(op.GetToken()))
	}
	var next *consumer
	if op.GetNext() != "" {
		c, ok := s.consumers[op.GetNext()]
		switch {
		case !ok:
			return fmt.Errorf("%w: consumer %q", ErrNotFound, op.GetNext())
		case c == h.consumer:
			return fmt.Errorf("%w: cannot move a shard to its holder", ErrConflict)
		case !c.serves(d.spec.Name):
			return fmt.Errorf("%w: consumer %q does not serve domain %q", ErrFailedPrecondition, c.id, d.spec.Name)
		case d.deleting:
			return fmt.Errorf("%w: domain %q is being deleted", ErrDomainDeleting, d.spec.Name)
		case !sh.delegated():
			return fmt.Errorf("%w: shard %s of domain %q is not under a live delegation", ErrFailedPrecondition, ks.ranges[i], d.spec.Name)
		}
		next = c
	}
	sh.holder.state = stateRevoked
	res.Effects = append(res.Effects, s.effect(EffectRevoked, sh.holder, ks, i, op.GetReason()))
	res.Routes = append(res.Routes, RouteChange{Domain: d.spec.Name, Region: ks.region, Shard: i})
	if next != nil {
		sh.next = grant{consumer: next, state: stateAllocated}
		next.grants[shardRef{ks, int32(i)}] = struct{}{}
		res.Effects = append(res.Effects, s.effect(EffectPrepared, sh.next, ks, i, 0))
	}
	return nil
}

func (s *State) release(index uint64, op *cellv1.Release, res *ApplyResult) error {
	ks, i, err := s.lookupShard(op.GetDomain(), op.GetRegion(), op.GetFrom())
	if err != nil {
		return err
	}
	sh := &ks.shards[i]
	switch {
	case sh.holder.consumer != nil && sh.holder.consumer.id == op.GetConsumerId() &&
		sh.holder.token == topology.TokenFromProto(op.GetToken()):
		kind := EffectReleased
		if op.GetExpired() {
			kind = EffectDropped
		}
		res.Effects = append(res.Effects, s.effect(kind, sh.holder, ks, i, wdsv1.RevokeReason_REVOKE_REASON_LOST))
		s.endHolder(index, ks, i, res)
		return nil
	case sh.next.consumer != nil && sh.next.consumer.id == op.GetConsumerId() && topology.TokenFromProto(op.GetToken()).IsZero():
		// Cancelling an allocation names no token (it has none); a Release
		// with a token is about a grant, and a late duplicate of an older
		// one must not cancel the consumer's current allocation.
		s.dropNext(ks, i, wdsv1.RevokeReason_REVOKE_REASON_LOST, res)
		return nil
	}
	return fmt.Errorf("%w: consumer %q holds no grant of that shard with token %s", ErrConflict, op.GetConsumerId(), topology.TokenFromProto(op.GetToken()))
}

// endHolder removes a shard's holder and promotes its successor, if any —
// but only inside a live delegation: a successor allocated before the
// delegation was relinquished must not become the owner after it.
func (s *State) endHolder(index uint64, ks *keySpace, i int, res *ApplyResult) {
	sh := &ks.shards[i]
	delete(sh.holder.consumer.grants, shardRef{ks, int32(i)})
	sh.holder = grant{}
	res.Routes = append(res.Routes, RouteChange{Domain: ks.name(), Region: ks.region, Shard: i})
	if next := sh.next.consumer; next != nil {
		switch {
		case !sh.delegated():
			s.dropNext(ks, i, wdsv1.RevokeReason_REVOKE_REASON_DELEGATION, res)
		case sh.activatedAt == index:
			// The shard was activated earlier in this very entry: a second
			// activation would reuse its token. Cancel the allocation
			// instead; the balancer grants the shard in a later entry.
			s.dropNext(ks, i, wdsv1.RevokeReason_REVOKE_REASON_REBALANCE, res)
		default:
			sh.next = grant{}
			// Cannot fail: the shard is delegated, unheld and not
			// activated at index.
			_ = s.activate(index, ks, i, next, res)
		}
	}
}

func (s *State) dropNext(ks *keySpace, i int, reason wdsv1.RevokeReason, res *ApplyResult) {
	sh := &ks.shards[i]
	res.Effects = append(res.Effects, s.effect(EffectRevoked, sh.next, ks, i, reason))
	delete(sh.next.consumer.grants, shardRef{ks, int32(i)})
	sh.next = grant{}
}

func (s *State) effect(kind EffectKind, g grant, ks *keySpace, i int, reason wdsv1.RevokeReason) Effect {
	return Effect{
		Kind:        kind,
		Consumer:    g.consumer.id,
		Incarnation: g.consumer.incarnation,
		Domain:      ks.name(),
		Region:      ks.region,
		Range:       ks.ranges[i],
		Token:       g.token,
		Reason:      reason,
	}
}

// --- snapshots ---

// snapshot returns the whole state as a protobuf message. It copies, so
// the caller may persist it while Apply goes on.
func (s *State) snapshot() *cellv1.Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := &cellv1.Snapshot{Index: s.index}
	names := make([]string, 0, len(s.domains))
	for n := range s.domains {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := s.domains[n]
		ds := &cellv1.DomainState{Domain: s.domainProto(d), Deleting: d.deleting}
		for _, ks := range d.spaces {
			kss := &cellv1.KeySpaceState{
				Region:         ks.region,
				DurationMillis: ks.duration.Milliseconds(),
				Shards:         make([]*cellv1.ShardState, len(ks.shards)),
			}
			for i := range ks.shards {
				sh := &ks.shards[i]
				kss.Shards[i] = &cellv1.ShardState{
					Range:        topology.RangeToProto(ks.ranges[i]),
					Holder:       grantRecord(sh.holder),
					Next:         grantRecord(sh.next),
					Generation:   sh.generation,
					Relinquished: sh.relinquished,
					ActivatedAt:  sh.activatedAt,
				}
			}
			ds.KeySpaces = append(ds.KeySpaces, kss)
		}
		out.Domains = append(out.Domains, ds)
	}
	ids := make([]string, 0, len(s.consumers))
	for id := range s.consumers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		c := s.consumers[id]
		out.Consumers = append(out.Consumers, &cellv1.ConsumerState{
			Id:          c.id,
			Region:      c.region,
			Endpoint:    c.endpoint,
			Domains:     slices.Clone(c.domains),
			Incarnation: []byte(c.incarnation),
			Draining:    c.draining,
			JoinedIndex: c.joinedIndex,
			Unconfirmed: c.unconfirmed,
		})
	}
	return out
}

func grantRecord(g grant) *cellv1.GrantRecord {
	if g.consumer == nil {
		return nil
	}
	return &cellv1.GrantRecord{ConsumerId: g.consumer.id, Token: topology.TokenToProto(g.token), State: g.state.proto()}
}

func (s *State) domainProto(d *domain) *wdsv1.Domain {
	p := topology.DomainToProto(d.spec)
	p.CreatedIndex = d.createdIndex
	return p
}

// restore replaces the state with a snapshot. It builds the new state
// completely before swapping it in, so a bad snapshot leaves the old one.
func (s *State) restore(snap *cellv1.Snapshot) error {
	consumers := map[string]*consumer{}
	for _, cs := range snap.GetConsumers() {
		consumers[cs.GetId()] = &consumer{
			id:          cs.GetId(),
			region:      cs.GetRegion(),
			endpoint:    cs.GetEndpoint(),
			domains:     slices.Clone(cs.GetDomains()),
			incarnation: string(cs.GetIncarnation()),
			draining:    cs.GetDraining(),
			joinedIndex: cs.GetJoinedIndex(),
			unconfirmed: cs.GetUnconfirmed(),
			grants:      map[shardRef]struct{}{},
		}
	}
	domains := map[string]*domain{}
	for _, ds := range snap.GetDomains() {
		spec, err := topology.DomainFromProto(ds.GetDomain())
		if err != nil {
			return fmt.Errorf("cell: snapshot domain: %w", err)
		}
		d := &domain{spec: spec, createdIndex: ds.GetDomain().GetCreatedIndex(), deleting: ds.GetDeleting()}
		spaces := ds.GetKeySpaces()
		if len(spaces) == 0 && len(ds.GetShards()) > 0 {
			// Written before key spaces: one self-delegated key space whose
			// shards all carry the domain's generation.
			legacy := &cellv1.KeySpaceState{Region: s.keySpaceRegion(d, "")}
			for _, ss := range ds.GetShards() {
				c := proto.Clone(ss).(*cellv1.ShardState)
				c.Generation = ds.GetGeneration()
				legacy.Shards = append(legacy.Shards, c)
			}
			spaces = []*cellv1.KeySpaceState{legacy}
		}
		for _, kss := range spaces {
			ks := &keySpace{
				d:        d,
				region:   kss.GetRegion(),
				ranges:   make([]topology.Range, len(kss.GetShards())),
				shards:   make([]shard, len(kss.GetShards())),
				duration: time.Duration(kss.GetDurationMillis()) * time.Millisecond,
			}
			where := fmt.Sprintf("domain %q key space %q", spec.Name, ks.region)
			for i, ss := range kss.GetShards() {
				r, err := topology.RangeFromProto("range", ss.GetRange())
				if err != nil {
					return fmt.Errorf("cell: snapshot %s shard %d: %w", where, i, err)
				}
				ks.ranges[i] = r
				sh := &ks.shards[i]
				sh.generation, sh.relinquished, sh.activatedAt = ss.GetGeneration(), ss.GetRelinquished(), ss.GetActivatedAt()
				for _, pair := range []struct {
					rec *cellv1.GrantRecord
					dst *grant
				}{{ss.GetHolder(), &sh.holder}, {ss.GetNext(), &sh.next}} {
					if pair.rec == nil {
						continue
					}
					c, ok := consumers[pair.rec.GetConsumerId()]
					if !ok {
						return fmt.Errorf("cell: snapshot %s shard %d: unknown consumer %q", where, i, pair.rec.GetConsumerId())
					}
					*pair.dst = grant{consumer: c, token: topology.TokenFromProto(pair.rec.GetToken()), state: grantStateFromProto(pair.rec.GetState())}
					c.grants[shardRef{ks, int32(i)}] = struct{}{}
				}
			}
			if err := topology.ValidateTiling(ks.ranges); err != nil {
				return fmt.Errorf("cell: snapshot %s: %w", where, err)
			}
			if len(ks.ranges) != spec.Shards {
				return fmt.Errorf("cell: snapshot %s: %d shards, the domain has %d", where, len(ks.ranges), spec.Shards)
			}
			if (spec.Kind == topology.KindRegional) != (ks.region != "") || d.space(ks.region) != nil {
				return fmt.Errorf("cell: snapshot %s: not a key space of a %v domain, or repeated", where, spec.Kind)
			}
			d.spaces = append(d.spaces, ks)
		}
		sort.Slice(d.spaces, func(i, j int) bool { return d.spaces[i].region < d.spaces[j].region })
		domains[spec.Name] = d
	}
	s.mu.Lock()
	s.index = snap.GetIndex()
	s.domains = domains
	s.consumers = consumers
	s.mu.Unlock()
	return nil
}

// SameIncarnation reports whether a session token on the wire names the
// stored incarnation (an empty token names none).
func SameIncarnation(stored string, wire []byte) bool {
	return len(wire) > 0 && bytes.Equal([]byte(stored), wire)
}
