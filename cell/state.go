package cell

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"sync"

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
}

// domain is a work domain and the grants of its shards. ranges and shards
// are parallel; ranges tile the key space in order.
type domain struct {
	spec         topology.Domain
	generation   uint64
	createdIndex uint64
	deleting     bool
	ranges       []topology.Range
	shards       []shard
}

// shardAt returns the index of the shard starting at from, or -1.
func (d *domain) shardAt(from topology.Bound) int {
	i := topology.FindBound(d.ranges, from)
	if i < 0 || d.ranges[i].From != from {
		return -1
	}
	return i
}

// shardRef names a shard of a domain in a consumer's grant index.
type shardRef struct {
	d   *domain
	idx int32
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
	Range       topology.Range
	Token       topology.Token
	Reason      wdsv1.RevokeReason
}

// RouteChange marks routing entries an applied op changed.
type RouteChange struct {
	Domain string
	// Shard is the index of a changed shard, or -1 with Replace or Deleted.
	Shard   int
	Replace bool
	Deleted bool
}

// applyResult collects what one log entry did.
type applyResult struct {
	effects []Effect
	routes  []RouteChange
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

// Index is the log index of the last applied entry.
func (s *State) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

// applyEntry applies the ops of the entry at index. It returns one result
// per op (nil or the reason it was rejected; a rejected op changed nothing).
func (s *State) applyEntry(index uint64, ops []*cellv1.Op, res *applyResult) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index = index
	out := make([]error, len(ops))
	for i, op := range ops {
		out[i] = s.applyOp(index, op, res)
	}
	return out
}

func (s *State) applyOp(index uint64, op *cellv1.Op, res *applyResult) error {
	switch o := op.GetOp().(type) {
	case *cellv1.Op_CreateDomain:
		return s.createDomain(index, o.CreateDomain, res)
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
	default:
		// An op from a newer version: skip it, so a mixed-version cell keeps
		// applying the log (the newer leader will not rely on it until all
		// nodes are upgraded).
		return ErrUnknownOp
	}
}

func (s *State) createDomain(index uint64, op *cellv1.CreateDomain, res *applyResult) error {
	spec, err := topology.DomainFromProto(op.GetDomain())
	if err != nil {
		return err
	}
	if d, ok := s.domains[spec.Name]; ok {
		if d.deleting {
			return fmt.Errorf("%w: domain %q is still being deleted (its grants have not all ended)", ErrFailedPrecondition, spec.Name)
		}
		return fmt.Errorf("%w: domain %q", ErrExists, spec.Name)
	}
	ranges, err := topology.SplitEven(spec.Shards)
	if err != nil {
		return err
	}
	s.domains[spec.Name] = &domain{
		spec:         spec,
		generation:   1,
		createdIndex: index,
		ranges:       ranges,
		shards:       make([]shard, len(ranges)),
	}
	res.routes = append(res.routes, RouteChange{Domain: spec.Name, Shard: -1, Replace: true})
	return nil
}

func (s *State) deleteDomain(index uint64, op *cellv1.DeleteDomain, res *applyResult) error {
	d, ok := s.domains[op.GetName()]
	if !ok {
		return fmt.Errorf("%w: domain %q", ErrNotFound, op.GetName())
	}
	if op.GetPurge() {
		if !d.deleting {
			return fmt.Errorf("%w: domain %q is not being deleted", ErrFailedPrecondition, d.spec.Name)
		}
		for i := range d.shards {
			if d.shards[i].holder.consumer != nil || d.shards[i].next.consumer != nil {
				return fmt.Errorf("%w: domain %q still has grants", ErrFailedPrecondition, d.spec.Name)
			}
		}
		delete(s.domains, d.spec.Name)
		return nil
	}
	if d.deleting {
		return nil // idempotent
	}
	d.deleting = true
	for i := range d.shards {
		sh := &d.shards[i]
		if sh.next.consumer != nil {
			s.dropNext(d, i, wdsv1.RevokeReason_REVOKE_REASON_DOMAIN_DELETED, res)
		}
		if sh.holder.consumer != nil && sh.holder.state == stateActive {
			sh.holder.state = stateRevoked
			res.effects = append(res.effects, s.effect(EffectRevoked, sh.holder, d, i, wdsv1.RevokeReason_REVOKE_REASON_DOMAIN_DELETED))
		}
	}
	res.routes = append(res.routes, RouteChange{Domain: d.spec.Name, Shard: -1, Deleted: true})
	return nil
}

func (s *State) join(index uint64, op *cellv1.Join, res *applyResult) error {
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
	res.effects = append(res.effects, Effect{Kind: EffectJoined, Consumer: op.GetConsumerId(), Incarnation: inc})
	return nil
}

func (s *State) leave(index uint64, op *cellv1.Leave, res *applyResult) error {
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

// removeConsumer drops every grant of c (promoting successors of shards it
// held) and unregisters it.
func (s *State) removeConsumer(index uint64, c *consumer, res *applyResult) {
	refs := make([]shardRef, 0, len(c.grants))
	for r := range c.grants {
		refs = append(refs, r)
	}
	// Deterministic order: effects and tokens must not depend on map order.
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].d != refs[j].d {
			return refs[i].d.spec.Name < refs[j].d.spec.Name
		}
		return refs[i].idx < refs[j].idx
	})
	for _, r := range refs {
		sh := &r.d.shards[r.idx]
		if sh.holder.consumer == c {
			res.effects = append(res.effects, s.effect(EffectDropped, sh.holder, r.d, int(r.idx), wdsv1.RevokeReason_REVOKE_REASON_LOST))
			s.endHolder(index, r.d, int(r.idx), res)
		} else if sh.next.consumer == c {
			sh.next = grant{}
		}
	}
	delete(s.consumers, c.id)
	res.effects = append(res.effects, Effect{Kind: EffectLeft, Consumer: c.id, Incarnation: c.incarnation})
}

func (s *State) setDraining(op *cellv1.SetDraining, res *applyResult) error {
	c, err := s.consumerInc(op.GetConsumerId(), op.GetIncarnation())
	if err != nil {
		return err
	}
	if !c.draining {
		c.draining = true
		res.effects = append(res.effects, Effect{Kind: EffectDraining, Consumer: c.id, Incarnation: c.incarnation})
	}
	return nil
}

// setConfirmed records whether the leader hears from the consumer; the
// routing entries of its active shards change with it.
func (s *State) setConfirmed(op *cellv1.SetConfirmed, res *applyResult) error {
	c, err := s.consumerInc(op.GetConsumerId(), op.GetIncarnation())
	if err != nil {
		return err
	}
	if c.unconfirmed == op.GetUnconfirmed() {
		return nil
	}
	c.unconfirmed = op.GetUnconfirmed()
	for ref := range c.grants {
		if h := ref.d.shards[ref.idx].holder; h.consumer == c && h.state == stateActive {
			res.routes = append(res.routes, RouteChange{Domain: ref.d.spec.Name, Shard: int(ref.idx)})
		}
	}
	return nil
}

// lookupShard resolves (domain, from) for grant ops.
func (s *State) lookupShard(name string, from []byte) (*domain, int, error) {
	d, ok := s.domains[name]
	if !ok {
		return nil, -1, fmt.Errorf("%w: domain %q", ErrNotFound, name)
	}
	b, err := topology.KeyFromBytes("from", from)
	if err != nil {
		return nil, -1, err
	}
	i := d.shardAt(b)
	if i < 0 {
		return nil, -1, fmt.Errorf("%w: domain %q has no shard starting at %s", ErrNotFound, name, b)
	}
	return d, i, nil
}

func (s *State) assign(index uint64, op *cellv1.Assign, res *applyResult) error {
	d, i, err := s.lookupShard(op.GetDomain(), op.GetFrom())
	if err != nil {
		return err
	}
	if d.deleting {
		return fmt.Errorf("%w: domain %q is being deleted", ErrFailedPrecondition, d.spec.Name)
	}
	c, ok := s.consumers[op.GetConsumerId()]
	if !ok {
		return fmt.Errorf("%w: consumer %q", ErrNotFound, op.GetConsumerId())
	}
	if !c.serves(d.spec.Name) {
		return fmt.Errorf("%w: consumer %q does not serve domain %q", ErrFailedPrecondition, c.id, d.spec.Name)
	}
	sh := &d.shards[i]
	switch {
	case sh.next.consumer != nil:
		return fmt.Errorf("%w: shard already has a successor", ErrConflict)
	case sh.holder.consumer == nil:
		return s.activate(index, d, i, c, res)
	case sh.holder.state == stateRevoked && sh.holder.consumer != c:
		sh.next = grant{consumer: c, state: stateAllocated}
		c.grants[shardRef{d, int32(i)}] = struct{}{}
		res.effects = append(res.effects, s.effect(EffectPrepared, sh.next, d, i, 0))
		return nil
	default:
		return fmt.Errorf("%w: shard is held", ErrConflict)
	}
}

// activate makes c the ACTIVE holder of an unheld shard with a fresh token.
func (s *State) activate(index uint64, d *domain, i int, c *consumer, res *applyResult) error {
	sh := &d.shards[i]
	if sh.activatedAt == index {
		// A second grant in one entry would reuse the token.
		return fmt.Errorf("%w: shard was already granted in this log entry", ErrConflict)
	}
	sh.holder = grant{consumer: c, token: topology.Token{Generation: d.generation, Index: index}, state: stateActive}
	sh.activatedAt = index
	c.grants[shardRef{d, int32(i)}] = struct{}{}
	res.effects = append(res.effects, s.effect(EffectGranted, sh.holder, d, i, 0))
	res.routes = append(res.routes, RouteChange{Domain: d.spec.Name, Shard: i})
	return nil
}

func (s *State) move(op *cellv1.Move, res *applyResult) error {
	d, i, err := s.lookupShard(op.GetDomain(), op.GetFrom())
	if err != nil {
		return err
	}
	sh := &d.shards[i]
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
			return fmt.Errorf("%w: domain %q is being deleted", ErrFailedPrecondition, d.spec.Name)
		}
		next = c
	}
	sh.holder.state = stateRevoked
	res.effects = append(res.effects, s.effect(EffectRevoked, sh.holder, d, i, op.GetReason()))
	res.routes = append(res.routes, RouteChange{Domain: d.spec.Name, Shard: i})
	if next != nil {
		sh.next = grant{consumer: next, state: stateAllocated}
		next.grants[shardRef{d, int32(i)}] = struct{}{}
		res.effects = append(res.effects, s.effect(EffectPrepared, sh.next, d, i, 0))
	}
	return nil
}

func (s *State) release(index uint64, op *cellv1.Release, res *applyResult) error {
	d, i, err := s.lookupShard(op.GetDomain(), op.GetFrom())
	if err != nil {
		return err
	}
	sh := &d.shards[i]
	switch {
	case sh.holder.consumer != nil && sh.holder.consumer.id == op.GetConsumerId() &&
		sh.holder.token == topology.TokenFromProto(op.GetToken()):
		kind := EffectReleased
		if op.GetExpired() {
			kind = EffectDropped
		}
		res.effects = append(res.effects, s.effect(kind, sh.holder, d, i, wdsv1.RevokeReason_REVOKE_REASON_LOST))
		s.endHolder(index, d, i, res)
		return nil
	case sh.next.consumer != nil && sh.next.consumer.id == op.GetConsumerId() && topology.TokenFromProto(op.GetToken()).IsZero():
		// Cancelling an allocation names no token (it has none); a Release
		// with a token is about a grant, and a late duplicate of an older
		// one must not cancel the consumer's current allocation.
		s.dropNext(d, i, wdsv1.RevokeReason_REVOKE_REASON_LOST, res)
		return nil
	}
	return fmt.Errorf("%w: consumer %q holds no grant of that shard with token %s", ErrConflict, op.GetConsumerId(), topology.TokenFromProto(op.GetToken()))
}

// endHolder removes a shard's holder and promotes its successor, if any.
func (s *State) endHolder(index uint64, d *domain, i int, res *applyResult) {
	sh := &d.shards[i]
	delete(sh.holder.consumer.grants, shardRef{d, int32(i)})
	sh.holder = grant{}
	res.routes = append(res.routes, RouteChange{Domain: d.spec.Name, Shard: i})
	if next := sh.next.consumer; next != nil {
		if sh.activatedAt == index {
			// The shard was activated earlier in this very entry: a second
			// activation would reuse its token. Cancel the allocation
			// instead; the balancer grants the shard in a later entry.
			s.dropNext(d, i, wdsv1.RevokeReason_REVOKE_REASON_REBALANCE, res)
			return
		}
		sh.next = grant{}
		// Cannot fail: the shard is unheld and not activated at index.
		_ = s.activate(index, d, i, next, res)
	}
}

func (s *State) dropNext(d *domain, i int, reason wdsv1.RevokeReason, res *applyResult) {
	sh := &d.shards[i]
	res.effects = append(res.effects, s.effect(EffectRevoked, sh.next, d, i, reason))
	delete(sh.next.consumer.grants, shardRef{d, int32(i)})
	sh.next = grant{}
}

func (s *State) effect(kind EffectKind, g grant, d *domain, i int, reason wdsv1.RevokeReason) Effect {
	return Effect{
		Kind:        kind,
		Consumer:    g.consumer.id,
		Incarnation: g.consumer.incarnation,
		Domain:      d.spec.Name,
		Range:       d.ranges[i],
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
		ds := &cellv1.DomainState{
			Domain:     s.domainProto(d),
			Generation: d.generation,
			Shards:     make([]*cellv1.ShardState, len(d.shards)),
		}
		if d.deleting {
			ds.Deleting = true
		}
		for i := range d.shards {
			sh := &d.shards[i]
			ds.Shards[i] = &cellv1.ShardState{
				Range:  topology.RangeToProto(d.ranges[i]),
				Holder: grantRecord(sh.holder),
				Next:   grantRecord(sh.next),
			}
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
		d := &domain{
			spec:         spec,
			generation:   ds.GetGeneration(),
			createdIndex: ds.GetDomain().GetCreatedIndex(),
			deleting:     ds.GetDeleting(),
			ranges:       make([]topology.Range, len(ds.GetShards())),
			shards:       make([]shard, len(ds.GetShards())),
		}
		for i, ss := range ds.GetShards() {
			r, err := topology.RangeFromProto("range", ss.GetRange())
			if err != nil {
				return fmt.Errorf("cell: snapshot domain %q shard %d: %w", spec.Name, i, err)
			}
			d.ranges[i] = r
			for _, pair := range []struct {
				rec *cellv1.GrantRecord
				dst *grant
			}{{ss.GetHolder(), &d.shards[i].holder}, {ss.GetNext(), &d.shards[i].next}} {
				if pair.rec == nil {
					continue
				}
				c, ok := consumers[pair.rec.GetConsumerId()]
				if !ok {
					return fmt.Errorf("cell: snapshot domain %q shard %d: unknown consumer %q", spec.Name, i, pair.rec.GetConsumerId())
				}
				*pair.dst = grant{consumer: c, token: topology.TokenFromProto(pair.rec.GetToken()), state: grantStateFromProto(pair.rec.GetState())}
				c.grants[shardRef{d, int32(i)}] = struct{}{}
			}
		}
		if err := topology.ValidateTiling(d.ranges); err != nil {
			return fmt.Errorf("cell: snapshot domain %q: %w", spec.Name, err)
		}
		domains[spec.Name] = d
	}
	s.mu.Lock()
	s.index = snap.GetIndex()
	s.domains = domains
	s.consumers = consumers
	s.mu.Unlock()
	return nil
}

// equalIncarnation compares a wire session token with a stored incarnation.
func equalIncarnation(stored string, wire []byte) bool {
	return len(wire) > 0 && bytes.Equal([]byte(stored), wire)
}
