package cell

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"time"

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
	if c := a.n.cfg.Catalog; c != nil {
		d, err := c.CreateDomain(ctx, topology.DomainToProto(spec))
		if err != nil {
			return nil, toStatus(err)
		}
		// Answer once this cell has it too, so that consumers may join
		// here at once (it arrives with the next renewal, nudged).
		a.n.awaitDomain(ctx, d.GetName(), true)
		return &wdsv1.CreateDomainResponse{Domain: d}, nil
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
	return &wdsv1.ListDomainsResponse{Domains: a.n.state.ListDomains()}, nil
}

func (a *adminService) DescribeDomain(ctx context.Context, req *wdsv1.DescribeDomainRequest) (*wdsv1.DescribeDomainResponse, error) {
	out, err := a.n.state.DescribeDomain(req.GetName(), a.n.connectedConsumers())
	if err != nil {
		return nil, toStatus(err)
	}
	return out, nil
}

// ListConsumers lists every registered consumer with its active shards per
// domain.
func (a *adminService) ListConsumers(ctx context.Context, req *wdsv1.ListConsumersRequest) (*wdsv1.ListConsumersResponse, error) {
	return &wdsv1.ListConsumersResponse{Consumers: a.n.state.ListConsumers(a.n.connectedConsumers())}, nil
}

func (a *adminService) DeleteDomain(ctx context.Context, req *wdsv1.DeleteDomainRequest) (*wdsv1.DeleteDomainResponse, error) {
	if c := a.n.cfg.Catalog; c != nil {
		if err := c.DeleteDomain(ctx, req.GetName()); err != nil {
			return nil, toStatus(err)
		}
		a.n.awaitDomain(ctx, req.GetName(), false)
		return &wdsv1.DeleteDomainResponse{}, nil
	}
	if err := a.n.state.CheckDomain("name", req.GetName()); err != nil {
		return nil, toStatus(err)
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
	out, err := a.n.state.ShardMap(req.GetDomain())
	if err != nil {
		return nil, toStatus(err)
	}
	if src := a.n.hub.source; src != "" {
		// A federation: every shard federation-wide, the other regions'
		// from the routing their cells serve.
		mergeForeignShards(out, src, a.n.hub.foreignShards(req.GetDomain()))
	}
	return out, nil
}

// mergeForeignShards adds the other regions' shards to a federated cell's
// map: each shard once (per key space and range start), the cell's own
// record first, then an owned entry over an unowned one and the higher
// token (the later delegation); sorted by key space and range.
func mergeForeignShards(out *wdsv1.ShardMapResponse, self string, foreign []*wdsv1.ShardInfo) {
	type key struct{ region, from string }
	at := map[key]int{}
	for i, s := range out.Shards {
		s.DelegatedTo = self
		at[key{s.GetRegion(), string(s.GetRange().GetFrom())}] = i
	}
	for _, f := range foreign {
		k := key{f.GetRegion(), string(f.GetRange().GetFrom())}
		i, ok := at[k]
		if !ok {
			at[k] = len(out.Shards)
			out.Shards = append(out.Shards, f)
			continue
		}
		cur := out.Shards[i]
		if cur.GetDelegatedTo() == self && cur.GetOwner() != "" {
			continue // the cell's own grant
		}
		ct, ft := topology.TokenFromProto(cur.GetToken()), topology.TokenFromProto(f.GetToken())
		if (f.GetOwner() != "" && cur.GetOwner() == "") || (f.GetOwner() != "" && ct.Less(ft)) {
			out.Shards[i] = f
		}
	}
	sort.SliceStable(out.Shards, func(i, j int) bool {
		a, b := out.Shards[i], out.Shards[j]
		if a.GetRegion() != b.GetRegion() {
			return a.GetRegion() < b.GetRegion()
		}
		return bytes.Compare(a.GetRange().GetFrom(), b.GetRange().GetFrom()) < 0
	})
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
	counts := n.state.Counts()
	out.Domains, out.Consumers, out.Grants = counts.Domains, counts.Consumers, counts.Grants
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
	c, ok := a.n.state.ConsumerView(req.GetConsumerId())
	inc, shards := c.Incarnation, c.Active
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

// awaitDomain waits (a few seconds at most, or until ctx ends) until this
// node's state has the domain live (present) or not live any more.
func (n *Node) awaitDomain(ctx context.Context, name string, present bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if (n.state.CheckDomain("name", name) == nil) == present {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
