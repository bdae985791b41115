package cell

import (
	"context"
	"fmt"
	"sort"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hashicorp/raft"

	"github.com/wdsio/wds/internal/rpcfwd"
	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// adminService implements wdsv1.AdminServer. Every call but Status is
// answered by the leader: followers forward it (adminForwarder).
type adminService struct {
	wdsv1.UnimplementedAdminServer
	n *Node
}

// leaderOnlyAdmin are the Admin methods only the ready leader answers:
// every one but Status.
var leaderOnlyAdmin = []string{
	wdsv1.Admin_CreateDomain_FullMethodName,
	wdsv1.Admin_ListDomains_FullMethodName,
	wdsv1.Admin_DescribeDomain_FullMethodName,
	wdsv1.Admin_ListConsumers_FullMethodName,
	wdsv1.Admin_DeleteDomain_FullMethodName,
	wdsv1.Admin_ShardMap_FullMethodName,
	wdsv1.Admin_Drain_FullMethodName,
}

// adminForwarder is the interceptor that forwards the leader-only Admin
// calls a follower receives to the leader (rpcfwd): the handlers below
// run only on the ready leader.
func (n *Node) adminForwarder() grpc.UnaryServerInterceptor {
	f := &rpcfwd.Forwarder{
		Self:  n.cfg.NodeID,
		Group: "cell",
		Leader: func() (bool, string, string) {
			if n.currentLeader() != nil {
				return true, "", ""
			}
			id, ep := n.leaderEndpoint()
			return false, id, ep
		},
		Dial: func(ep string) (grpc.ClientConnInterface, error) { return n.dialPeer(ep) },
	}
	return f.Interceptor(leaderOnlyAdmin...)
}

func (a *adminService) CreateDomain(ctx context.Context, req *wdsv1.CreateDomainRequest) (*wdsv1.CreateDomainResponse, error) {
	spec, err := topology.DomainFromProto(req.GetDomain())
	if err != nil {
		return nil, toStatus(err)
	}
	res, err := a.n.propose(ctx, &cellv1.Op{Op: &cellv1.Op_CreateDomain{CreateDomain: &cellv1.CreateDomain{
		Domain: topology.DomainToProto(spec), Federated: a.n.cfg.Delegator != nil,
	}}})
	if err != nil {
		return nil, toStatus(err)
	}
	if res[0].Err != nil {
		return nil, toStatus(res[0].Err)
	}
	// The domain as the entry created it (the state may have moved on).
	return &wdsv1.CreateDomainResponse{Domain: res[0].Resp.(*wdsv1.Domain)}, nil
}

func (a *adminService) ListDomains(ctx context.Context, req *wdsv1.ListDomainsRequest) (*wdsv1.ListDomainsResponse, error) {
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
	connected := a.n.connectedConsumers()
	s := a.n.state
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := &wdsv1.ListConsumersResponse{}
	for _, c := range sortedConsumers(s) {
		info := consumerInfo(c, connected[c.id])
		info.ShardsByDomain = map[string]uint32{}
		for ref := range c.grants {
			if h := ref.ks.shards[ref.idx].holder; h.consumer == c && h.state == stateActive {
				info.ShardsByDomain[ref.ks.name()]++
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
	if res[0].Err != nil {
		return nil, toStatus(res[0].Err)
	}
	return &wdsv1.DeleteDomainResponse{}, nil
}

func (a *adminService) ShardMap(ctx context.Context, req *wdsv1.ShardMapRequest) (*wdsv1.ShardMapResponse, error) {
	s := a.n.state
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, err := a.lookupDomain("domain", req.GetDomain())
	if err != nil {
		return nil, toStatus(err)
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

// shardInfoLocked describes shard i of ks. Caller holds the state lock.
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

func (a *adminService) Status(ctx context.Context, _ *wdsv1.StatusRequest) (*wdsv1.StatusResponse, error) {
	n := a.n
	r := n.raft.Status()
	leaderID, leaderEP := n.leaderEndpoint()
	out := &wdsv1.StatusResponse{
		NodeId:         n.cfg.NodeID,
		Region:         n.cfg.Region,
		State:          r.State.String(),
		LeaderId:       leaderID,
		LeaderEndpoint: leaderEP,
		Term:           r.Term,
		CommitIndex:    r.CommitIndex,
		AppliedIndex:   r.AppliedIndex,
		Sessions:       uint32(n.sessionCount()),
	}
	// The other nodes' health first: the leader's answer then tells
	// whether this node has caught up, without asking it twice.
	var leaderAnswer *wdsv1.LocateResponse
	if servers, err := n.raft.Servers(); err == nil {
		var health map[string]*wdsv1.NodeInfo
		health, leaderAnswer = n.peerHealth(servers)
		for _, srv := range servers {
			ep, _ := n.peers.Endpoint(string(srv.ID))
			info := health[string(srv.ID)]
			if info == nil {
				info = &wdsv1.NodeInfo{}
			}
			info.Id, info.RaftAddress, info.Endpoint = string(srv.ID), string(srv.Address), ep
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
	a.n.state.mu.RLock()
	c, ok := a.n.state.consumers[req.GetConsumerId()]
	var inc string
	var shards uint32
	if ok {
		inc = c.incarnation
		for ref := range c.grants {
			if h := ref.ks.shards[ref.idx].holder; h.consumer == c && h.state == stateActive {
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
	if res[0].Err != nil {
		return nil, toStatus(res[0].Err)
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
