package cellstate

import (
	"fmt"
	"slices"
	"sort"
	"time"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// The query API of State: what the admin service, the leader, the node,
// the session service and the metrics read of the replicated state. Every
// method takes the read lock itself and returns values, copies or freshly
// built protos, never pointers into the state, so callers neither lock it
// nor know its layout. (The balancer's plan and the routing hub still read
// the internals; they move with the state.)

// liveDomainLocked resolves a domain of the catalog that is not being
// deleted; the errors name field. Caller holds s.mu.
func (s *State) liveDomainLocked(field, name string) (*domain, error) {
	if err := topology.ValidateName(field, name); err != nil {
		return nil, err
	}
	d, ok := s.domains[name]
	if !ok || d.deleting {
		return nil, fmt.Errorf("%w: %s: domain %q does not exist", ErrNotFound, field, name)
	}
	return d, nil
}

// CheckDomain reports whether name is a valid name of a domain of the
// catalog that is not being deleted: nil, a validation error, or ErrNotFound,
// both naming field.
func (s *State) CheckDomain(field, name string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, err := s.liveDomainLocked(field, name)
	return err
}

// DomainsExist checks that every name is a domain of the catalog that is not
// being deleted. The first that is not is an ErrNotFound naming
// field[i].
func (s *State) DomainsExist(field string, names []string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i, name := range names {
		if d, ok := s.domains[name]; !ok || d.deleting {
			return fmt.Errorf("%w: %s[%d]: domain %q does not exist", ErrNotFound, field, i, name)
		}
	}
	return nil
}

// DomainTTLs resolves the TTL of each named domain. Unknown domains and
// domains being deleted are ErrNotFound naming field[i].
func (s *State) DomainTTLs(field string, names []string) (map[string]time.Duration, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]time.Duration, len(names))
	for i, name := range names {
		d, ok := s.domains[name]
		if !ok || d.deleting {
			return nil, fmt.Errorf("%w: %s[%d]: domain %q does not exist (create it with `wds domain create`)", ErrNotFound, field, i, name)
		}
		out[name] = d.spec.TTL
	}
	return out, nil
}

// DomainTTL is the TTL of a domain of the catalog (one being deleted
// included).
func (s *State) DomainTTL(name string) (time.Duration, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if d, ok := s.domains[name]; ok {
		return d.spec.TTL, true
	}
	return 0, false
}

// MaxTTL is the largest TTL among the domains of the consumer incarnation:
// those it serves that are in the catalog and those it holds grants of. It
// reports false if no consumer has that incarnation or none has a TTL.
func (s *State) MaxTTL(incarnation string) (time.Duration, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.consumers {
		if c.incarnation != incarnation {
			continue
		}
		m := time.Duration(0)
		for _, name := range c.domains {
			if d, ok := s.domains[name]; ok && d.spec.TTL > m {
				m = d.spec.TTL
			}
		}
		for ref := range c.grants {
			if ref.ks.d.spec.TTL > m {
				m = ref.ks.d.spec.TTL
			}
		}
		return m, m > 0
	}
	return 0, false
}

// ListDomains returns the domains of the catalog not being deleted, as
// committed, sorted by name.
func (s *State) ListDomains() []*wdsv1.Domain {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*wdsv1.Domain
	for _, d := range s.domains {
		if !d.deleting {
			out = append(out, s.domainProto(d))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// consumerInfoLocked describes c; connected says whether a session is
// attached. Caller holds s.mu.
func consumerInfoLocked(c *consumer, connected bool) *wdsv1.ConsumerInfo {
	return &wdsv1.ConsumerInfo{
		Id: c.id, Region: c.region, Endpoint: c.endpoint, Domains: slices.Clone(c.domains),
		Draining: c.draining, Connected: connected, Unconfirmed: c.unconfirmed,
	}
}

// DescribeDomain describes the domain name (not being deleted; errors name
// the field "name"): shard counts over the shards under live delegations
// only (the others are neither owned nor unowned here), and the consumers,
// by id, that serve it or hold ACTIVE shards of it, with their counts.
// connected names the consumers with an attached session.
func (s *State) DescribeDomain(name string, connected map[string]bool) (*wdsv1.DescribeDomainResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, err := s.liveDomainLocked("name", name)
	if err != nil {
		return nil, err
	}
	out := &wdsv1.DescribeDomainResponse{Domain: s.domainProto(d)}
	counts := map[*consumer]uint32{}
	for _, ks := range d.spaces {
		for i := range ks.shards {
			sh := &ks.shards[i]
			if !sh.delegated() {
				continue // not this cell's to grant: neither owned nor unowned here
			}
			switch {
			case sh.holder.consumer == nil:
				out.Unowned++
			case sh.holder.state == stateActive:
				counts[sh.holder.consumer]++
				if sh.holder.consumer.unconfirmed {
					out.Unconfirmed++
				}
			default:
				out.Moving++
				out.Unowned++
			}
		}
	}
	for _, c := range sortedConsumers(s) {
		if !c.serves(d.spec.Name) && counts[c] == 0 {
			continue
		}
		info := consumerInfoLocked(c, connected[c.id])
		info.Shards = counts[c]
		out.Consumers = append(out.Consumers, info)
	}
	return out, nil
}

// ShardMap returns the shards of the domain name (not being deleted; errors
// name the field "domain") at the state's index, every key space in region
// order: those under live delegations, and those outside them that still
// have a holder or a successor.
func (s *State) ShardMap(name string) (*wdsv1.ShardMapResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, err := s.liveDomainLocked("domain", name)
	if err != nil {
		return nil, err
	}
	out := &wdsv1.ShardMapResponse{Domain: d.spec.Name, Version: s.index}
	for _, ks := range d.spaces {
		for i := range ks.shards {
			sh := &ks.shards[i]
			if !sh.delegated() && sh.holder.consumer == nil && sh.next.consumer == nil {
				continue // outside the cell's delegations
			}
			out.Shards = append(out.Shards, shardInfoLocked(ks, i))
		}
	}
	return out, nil
}

// shardInfoLocked describes shard i of ks. Caller holds s.mu.
func shardInfoLocked(ks *keySpace, i int) *wdsv1.ShardInfo {
	sh := &ks.shards[i]
	info := &wdsv1.ShardInfo{Range: topology.RangeToProto(ks.ranges[i]), Region: ks.region}
	if h := sh.holder; h.consumer != nil {
		info.Owner = h.consumer.id
		info.State = h.state.proto()
		info.Token = topology.TokenToProto(h.token)
		info.Endpoint = h.consumer.endpoint
		info.Unconfirmed = h.consumer.unconfirmed && h.state == stateActive
	}
	if sh.next.consumer != nil {
		info.NextOwner = sh.next.consumer.id
	}
	return info
}

// ListConsumers describes every registered consumer, by id, with its ACTIVE
// shards in all and per domain. connected names the consumers with an
// attached session.
func (s *State) ListConsumers(connected map[string]bool) []*wdsv1.ConsumerInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*wdsv1.ConsumerInfo
	for _, c := range sortedConsumers(s) {
		info := consumerInfoLocked(c, connected[c.id])
		info.ShardsByDomain = map[string]uint32{}
		for ref := range c.grants {
			if h := ref.ks.shards[ref.idx].holder; h.consumer == c && h.state == stateActive {
				info.ShardsByDomain[ref.ks.name()]++
				info.Shards++
			}
		}
		out = append(out, info)
	}
	return out
}

// ConsumerView is what the state says of a registered consumer.
type ConsumerView struct {
	Incarnation string
	Draining    bool
	// Grants counts the shards it holds (ACTIVE or REVOKED) or is the
	// ALLOCATED successor of: a draining consumer is drained at 0.
	Grants int
	// Active counts the shards it holds ACTIVE.
	Active uint32
}

// ConsumerView returns the consumer registered under id, if any.
func (s *State) ConsumerView(id string) (ConsumerView, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.consumers[id]
	if !ok {
		return ConsumerView{}, false
	}
	v := ConsumerView{Incarnation: c.incarnation, Draining: c.draining, Grants: len(c.grants)}
	for ref := range c.grants {
		if h := ref.ks.shards[ref.idx].holder; h.consumer == c && h.state == stateActive {
			v.Active++
		}
	}
	return v, true
}

// Drained reports whether the consumer id is registered with incarnation
// inc, draining, and holds nothing any more (no grant, no allocation). It
// costs O(1): dispatch asks it on the FSM goroutine.
func (s *State) Drained(id, inc string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.consumers[id]
	return ok && c.incarnation == inc && c.draining && len(c.grants) == 0
}

// Incarnations returns every registered consumer's incarnation by id.
func (s *State) Incarnations() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]string, len(s.consumers))
	for id, c := range s.consumers {
		out[id] = c.incarnation
	}
	return out
}

// GrantRef names one grant: the shard (domain, key-space region, range) and
// its token.
type GrantRef struct {
	Domain string
	Region string
	Range  topology.Range
	Token  topology.Token
}

// ConsumerWelcome is what a Welcome says of a consumer incarnation, read in
// one consistent view of the state.
type ConsumerWelcome struct {
	// Index is the log index the view reflects (the welcome watermark).
	Index uint64
	// Found: the consumer is registered with the incarnation asked for.
	// The rest is empty otherwise.
	Found    bool
	Draining bool
	// Grants are its ACTIVE grants, Revoked its REVOKED ones, each in
	// (domain, region, shard) order.
	Grants  []*wdsv1.ShardGrant
	Revoked []GrantRef
}

// WelcomeOf reads what a Welcome to the consumer id of incarnation inc
// reports, at the state's index.
func (s *State) WelcomeOf(id, inc string) ConsumerWelcome {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := ConsumerWelcome{Index: s.index}
	c, ok := s.consumers[id]
	if !ok || c.incarnation != inc {
		return out
	}
	out.Found, out.Draining = true, c.draining
	for _, ref := range sortedRefs(c) {
		h := ref.ks.shards[ref.idx].holder
		if h.consumer != c {
			continue
		}
		r := ref.ks.ranges[ref.idx]
		switch h.state {
		case stateActive:
			out.Grants = append(out.Grants, &wdsv1.ShardGrant{Domain: ref.ks.name(), Region: ref.ks.region, Range: topology.RangeToProto(r), Token: topology.TokenToProto(h.token)})
		case stateRevoked:
			out.Revoked = append(out.Revoked, GrantRef{Domain: ref.ks.name(), Region: ref.ks.region, Range: r, Token: h.token})
		}
	}
	return out
}

// StateCounts are the totals Status reports.
type StateCounts struct {
	// Domains not being deleted.
	Domains uint32
	// Consumers registered.
	Consumers uint32
	// Grants of all consumers: held (ACTIVE or REVOKED) or ALLOCATED.
	Grants uint32
}

// Counts returns the state's totals.
func (s *State) Counts() StateCounts {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out StateCounts
	for _, d := range s.domains {
		if !d.deleting {
			out.Domains++
		}
	}
	out.Consumers = uint32(len(s.consumers))
	for _, c := range s.consumers {
		out.Grants += uint32(len(c.grants))
	}
	return out
}

// HasWork reports whether the state holds anything a leader must keep its
// leadership confirmed for: a registered consumer, or a domain being
// deleted (which waits for the balancer to purge it).
func (s *State) HasWork() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.consumers) > 0 {
		return true
	}
	for _, d := range s.domains {
		if d.deleting {
			return true
		}
	}
	return false
}

// DomainCounts is what the per-domain gauges report for one domain.
type DomainCounts struct {
	Name string
	// Unowned: shards under live delegations without an ACTIVE holder.
	Unowned int64
	// Moving: shards under live delegations whose holder is REVOKED.
	Moving int64
	// Consumers: registered consumers that serve the domain.
	Consumers int64
}

// DomainCounts returns the per-domain gauges' values, in no particular
// order. Domains being deleted are left out.
func (s *State) DomainCounts() []DomainCounts {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]DomainCounts, 0, len(s.domains))
	at := make(map[string]int, len(s.domains))
	for name, d := range s.domains {
		if d.deleting {
			continue
		}
		dc := DomainCounts{Name: name}
		for _, ks := range d.spaces {
			for i := range ks.shards {
				if !ks.shards[i].delegated() {
					continue // not this cell's to grant
				}
				h := &ks.shards[i].holder
				if h.consumer == nil || h.state != stateActive {
					dc.Unowned++
				}
				if h.consumer != nil && h.state == stateRevoked {
					dc.Moving++
				}
			}
		}
		at[name] = len(out)
		out = append(out, dc)
	}
	// O(consumers × their domains), not O(consumers × domains).
	for _, c := range s.consumers {
		for _, name := range c.domains {
			if i, ok := at[name]; ok {
				out[i].Consumers++
			}
		}
	}
	return out
}
