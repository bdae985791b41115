package cell

import (
	"context"
	"fmt"
	"sort"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hashicorp/raft"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// forwardedKey marks an admin call a follower forwarded, so a call never
// bounces between two nodes that each think the other leads.
const forwardedKey = "wds-forwarded-by"

// adminService implements wdsv1.AdminServer. Every call but Status is
// answered by the leader: followers forward it.
type adminService struct {
	wdsv1.UnimplementedAdminServer
	n *Node
}

// leaderClient returns nil when this node is the ready leader (answer
// locally), else a client for the leader.
func (a *adminService) leaderClient(ctx context.Context) (wdsv1.AdminClient, context.Context, error) {
	if a.n.currentLeader() != nil {
		return nil, ctx, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		return nil, ctx, status.Errorf(codes.Unavailable, "node %s is not the leader (forwarded by %s); retry", a.n.cfg.NodeID, md.Get(forwardedKey)[0])
	}
	id, ep := a.n.leaderEndpoint()
	if ep == "" || id == a.n.cfg.NodeID {
		return nil, ctx, status.Error(codes.Unavailable, "the cell has no leader right now; retry shortly")
	}
	cc, err := a.n.dialPeer(ep)
	if err != nil {
		return nil, ctx, status.Errorf(codes.Unavailable, "forward to leader %s at %s: %v", id, ep, err)
	}
	out := metadata.AppendToOutgoingContext(ctx, forwardedKey, a.n.cfg.NodeID)
	return wdsv1.NewAdminClient(cc), out, nil
}

func (a *adminService) CreateDomain(ctx context.Context, req *wdsv1.CreateDomainRequest) (*wdsv1.CreateDomainResponse, error) {
	spec, err := topology.DomainFromProto(req.GetDomain())
	if err != nil {
		return nil, toStatus(err)
	}
	if c, fctx, err := a.leaderClient(ctx); err != nil || c != nil {
		if err != nil {
			return nil, err
		}
		return c.CreateDomain(fctx, req)
	}
	res, err := a.n.propose(ctx, &cellv1.Op{Op: &cellv1.Op_CreateDomain{CreateDomain: &cellv1.CreateDomain{Domain: topology.DomainToProto(spec)}}})
	if err != nil {
		return nil, toStatus(err)
	}
	if res[0] != nil {
		return nil, toStatus(res[0])
	}
	s := a.n.state
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.domains[spec.Name]
	if !ok {
		return nil, status.Errorf(codes.Aborted, "domain %q was deleted concurrently", spec.Name)
	}
	return &wdsv1.CreateDomainResponse{Domain: s.domainProto(d)}, nil
}

func (a *adminService) ListDomains(ctx context.Context, req *wdsv1.ListDomainsRequest) (*wdsv1.ListDomainsResponse, error) {
	if c, fctx, err := a.leaderClient(ctx); err != nil || c != nil {
		if err != nil {
			return nil, err
		}
		return c.ListDomains(fctx, req)
	}
	s := a.n.state
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := &wdsv1.ListDomainsResponse{}
	for _, d := range s.domains {
		if !d.deleting {
			out.Domains = append(out.Domains, s.domainProto(d))
		}
	}
	sort.Slice(out.Domains, func(i, j int) bool { return out.Domains[i].Name < out.Domains[j].Name })
	return out, nil
}

func (a *adminService) lookupDomain(field, name string) (*domain, error) {
	if err := topology.ValidateName(field, name); err != nil {
		return nil, err
	}
	d, ok := a.n.state.domains[name]
	if !ok || d.deleting {
		return nil, fmt.Errorf("%w: %s: domain %q does not exist", ErrNotFound, field, name)
	}
	return d, nil
}

func (a *adminService) DescribeDomain(ctx context.Context, req *wdsv1.DescribeDomainRequest) (*wdsv1.DescribeDomainResponse, error) {
	if c, fctx, err := a.leaderClient(ctx); err != nil || c != nil {
		if err != nil {
			return nil, err
		}
		return c.DescribeDomain(fctx, req)
	}
	connected := a.n.connectedConsumers()
	s := a.n.state
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, err := a.lookupDomain("name", req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &wdsv1.DescribeDomainResponse{Domain: s.domainProto(d)}
	counts := map[*consumer]uint32{}
	for i := range d.shards {
		sh := &d.shards[i]
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
	for _, c := range sortedConsumers(s) {
		if !c.serves(d.spec.Name) && counts[c] == 0 {
			continue
		}
		info := consumerInfo(c, connected[c.id])
		info.Shards = counts[c]
		out.Consumers = append(out.Consumers, info)
	}
	return out, nil
}

func consumerInfo(c *consumer, connected bool) *wdsv1.ConsumerInfo {
	return &wdsv1.ConsumerInfo{
		Id: c.id, Region: c.region, Endpoint: c.endpoint, Domains: c.domains,
		Draining: c.draining, Connected: connected, Unconfirmed: c.unconfirmed,
	}
}

// ListConsumers lists every registered consumer with its active shards per
// domain.
func (a *adminService) ListConsumers(ctx context.Context, req *wdsv1.ListConsumersRequest) (*wdsv1.ListConsumersResponse, error) {
	if c, fctx, err := a.leaderClient(ctx); err != nil || c != nil {
		if err != nil {
			return nil, err
		}
		return c.ListConsumers(fctx, req)
	}
	connected := a.n.connectedConsumers()
	s := a.n.state
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := &wdsv1.ListConsumersResponse{}
	for _, c := range sortedConsumers(s) {
		info := consumerInfo(c, connected[c.id])
		info.ShardsByDomain = map[string]uint32{}
		for ref := range c.grants {
			if h := ref.d.shards[ref.idx].holder; h.consumer == c && h.state == stateActive {
				info.ShardsByDomain[ref.d.spec.Name]++
				info.Shards++
			}
		}
		out.Consumers = append(out.Consumers, info)
	}
	return out, nil
}

func (a *adminService) DeleteDomain(ctx context.Context, req *wdsv1.DeleteDomainRequest) (*wdsv1.DeleteDomainResponse, error) {
	if err := topology.ValidateName("name", req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	if c, fctx, err := a.leaderClient(ctx); err != nil || c != nil {
		if err != nil {
			return nil, err
		}
		return c.DeleteDomain(fctx, req)
	}
	a.n.state.mu.RLock()
	d, ok := a.n.state.domains[req.GetName()]
	deleting := ok && d.deleting
	a.n.state.mu.RUnlock()
	if !ok || deleting {
		return nil, toStatus(fmt.Errorf("%w: name: domain %q does not exist", ErrNotFound, req.GetName()))
	}
	res, err := a.n.propose(ctx, &cellv1.Op{Op: &cellv1.Op_DeleteDomain{DeleteDomain: &cellv1.DeleteDomain{Name: req.GetName()}}})
	if err != nil {
		return nil, toStatus(err)
	}
	if res[0] != nil {
		return nil, toStatus(res[0])
	}
	return &wdsv1.DeleteDomainResponse{}, nil
}

func (a *adminService) ShardMap(ctx context.Context, req *wdsv1.ShardMapRequest) (*wdsv1.ShardMapResponse, error) {
	if c, fctx, err := a.leaderClient(ctx); err != nil || c != nil {
		if err != nil {
			return nil, err
		}
		return c.ShardMap(fctx, req)
	}
	s := a.n.state
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, err := a.lookupDomain("domain", req.GetDomain())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &wdsv1.ShardMapResponse{Domain: d.spec.Name, Version: s.index, Shards: make([]*wdsv1.ShardInfo, len(d.shards))}
	for i := range d.shards {
		sh := &d.shards[i]
		info := &wdsv1.ShardInfo{Range: topology.RangeToProto(d.ranges[i])}
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
		out.Shards[i] = info
	}
	return out, nil
}

func (a *adminService) Status(ctx context.Context, _ *wdsv1.StatusRequest) (*wdsv1.StatusResponse, error) {
	n := a.n
	r := n.raft.Raft
	leaderID, leaderEP := n.leaderEndpoint()
	out := &wdsv1.StatusResponse{
		NodeId:         n.cfg.NodeID,
		Region:         n.cfg.Region,
		State:          r.State().String(),
		LeaderId:       leaderID,
		LeaderEndpoint: leaderEP,
		Term:           r.CurrentTerm(),
		CommitIndex:    r.CommitIndex(),
		AppliedIndex:   r.AppliedIndex(),
		Sessions:       uint32(n.sessionCount()),
	}
	// The other nodes' health first: the leader's answer then tells
	// whether this node has caught up, without asking it twice.
	var leaderAnswer *wdsv1.LocateResponse
	if f := r.GetConfiguration(); f.Error() == nil {
		servers := f.Configuration().Servers
		var health map[string]*wdsv1.NodeInfo
		health, leaderAnswer = n.peerHealth(servers)
		for _, srv := range servers {
			p, _ := n.cfg.peer(string(srv.ID))
			info := health[string(srv.ID)]
			if info == nil {
				info = &wdsv1.NodeInfo{}
			}
			info.Id, info.RaftAddress, info.Endpoint = string(srv.ID), string(srv.Address), p.GRPC
			info.Suffrage, info.Leader = suffrage(srv.Suffrage), string(srv.ID) == leaderID
			out.Nodes = append(out.Nodes, info)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, readinessTimeout)
	defer cancel()
	if err := n.readyAgainst(rctx, leaderAnswer); err != nil {
		out.ReadyReason = err.Error()
	} else {
		out.Ready = true
	}
	for _, info := range out.Nodes {
		if info.Id == n.cfg.NodeID {
			info.Term, info.AppliedIndex = out.Term, out.AppliedIndex
			info.Health = "ok"
			if !out.Ready {
				info.Health = out.ReadyReason
			}
		}
	}
	s := n.state
	s.mu.RLock()
	for _, d := range s.domains {
		if !d.deleting {
			out.Domains++
		}
	}
	out.Consumers = uint32(len(s.consumers))
	for _, c := range s.consumers {
		out.Grants += uint32(len(c.grants))
	}
	s.mu.RUnlock()
	return out, nil
}

func suffrage(s raft.ServerSuffrage) string {
	if s == raft.Voter {
		return "Voter"
	}
	return "Nonvoter"
}

func (a *adminService) Drain(ctx context.Context, req *wdsv1.DrainRequest) (*wdsv1.DrainResponse, error) {
	if err := topology.ValidateConsumerID("consumer_id", req.GetConsumerId()); err != nil {
		return nil, toStatus(err)
	}
	if c, fctx, err := a.leaderClient(ctx); err != nil || c != nil {
		if err != nil {
			return nil, err
		}
		return c.Drain(fctx, req)
	}
	a.n.state.mu.RLock()
	c, ok := a.n.state.consumers[req.GetConsumerId()]
	var inc string
	var shards uint32
	if ok {
		inc = c.incarnation
		for ref := range c.grants {
			if h := ref.d.shards[ref.idx].holder; h.consumer == c && h.state == stateActive {
				shards++
			}
		}
	}
	a.n.state.mu.RUnlock()
	if !ok {
		return nil, toStatus(fmt.Errorf("%w: consumer_id: consumer %q is not connected to this cell", ErrNotFound, req.GetConsumerId()))
	}
	res, err := a.n.propose(ctx, &cellv1.Op{Op: &cellv1.Op_SetDraining{SetDraining: &cellv1.SetDraining{
		ConsumerId: req.GetConsumerId(), Incarnation: []byte(inc),
	}}})
	if err != nil {
		return nil, toStatus(err)
	}
	if res[0] != nil {
		return nil, toStatus(res[0])
	}
	return &wdsv1.DrainResponse{Shards: shards}, nil
}

// dialPeer returns a cached client connection to another node's endpoint.
func (n *Node) dialPeer(endpoint string) (*grpc.ClientConn, error) {
	n.peerMu.Lock()
	defer n.peerMu.Unlock()
	if cc, ok := n.peerConns[endpoint]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	n.peerConns[endpoint] = cc
	return cc, nil
}
