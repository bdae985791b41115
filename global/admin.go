package global

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wdsio/wds/global/globalstate"
	"github.com/wdsio/wds/internal/lease"
	"github.com/wdsio/wds/internal/rpcerr"
	"github.com/wdsio/wds/internal/rpcfwd"
	"github.com/wdsio/wds/internal/wire"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// leaderOnly are the GlobalAdmin methods a follower forwards to the leader.
var leaderOnly = []string{
	globalv1.GlobalAdmin_CreateDomain_FullMethodName,
	globalv1.GlobalAdmin_DeleteDomain_FullMethodName,
	globalv1.GlobalAdmin_ApplyTopology_FullMethodName,
	globalv1.GlobalAdmin_PlanTopology_FullMethodName,
	globalv1.GlobalAdmin_Failover_FullMethodName,
	globalv1.GlobalAdmin_Join_FullMethodName,
}

// register puts the services on s, gated on the node being open.
func (n *Node) register(s grpc.ServiceRegistrar) {
	wire.RegisterService(wire.Registrar{S: s, Gate: n.serving}, &globalv1.Coordinator_ServiceDesc, &coordinator{n: n})
	fwd := &rpcfwd.Forwarder{
		Self:  n.cfg.NodeID,
		Group: "global group",
		Leader: func() (bool, string, string) {
			if n.IsLeader() {
				return true, "", ""
			}
			id, ep := n.leaderEndpoint()
			return false, id, ep
		},
		Dial: n.dialPeer,
	}
	wire.RegisterService(wire.Registrar{S: s, Gate: n.serving, Unary: fwd.Interceptor(leaderOnly...)}, &globalv1.GlobalAdmin_ServiceDesc, &adminService{n: n})
}

// serving is nil until the node is closed.
func (n *Node) serving() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return rpcerr.New(codes.Unavailable, rpcerr.ReasonShuttingDown, fmt.Sprintf("global voter %s is shut down", n.cfg.NodeID))
	}
	return nil
}

// dialPeer returns a cached connection to another voter's endpoint.
func (n *Node) dialPeer(ep string) (grpc.ClientConnInterface, error) {
	n.peerMu.Lock()
	defer n.peerMu.Unlock()
	if cc := n.peerConns[ep]; cc != nil {
		return cc, nil
	}
	cc, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	n.peerConns[ep] = cc
	return cc, nil
}

type adminService struct {
	globalv1.UnimplementedGlobalAdminServer
	n *Node
}

func status(err error) error { return rpcerr.ToStatus(err) }

func (a *adminService) CreateDomain(ctx context.Context, req *wdsv1.CreateDomainRequest) (*wdsv1.CreateDomainResponse, error) {
	d, err := a.n.CreateDomain(ctx, req.GetDomain())
	if err != nil {
		return nil, status(err)
	}
	return &wdsv1.CreateDomainResponse{Domain: d}, nil
}

func (a *adminService) DeleteDomain(ctx context.Context, req *wdsv1.DeleteDomainRequest) (*wdsv1.DeleteDomainResponse, error) {
	if err := a.n.DeleteDomain(ctx, req.GetName()); err != nil {
		return nil, status(err)
	}
	return &wdsv1.DeleteDomainResponse{}, nil
}

func (a *adminService) ListDomains(context.Context, *wdsv1.ListDomainsRequest) (*wdsv1.ListDomainsResponse, error) {
	live, _, _ := a.n.state.Catalog()
	return &wdsv1.ListDomainsResponse{Domains: live}, nil
}

func (a *adminService) ApplyTopology(ctx context.Context, req *globalv1.ApplyTopologyRequest) (*globalv1.ApplyTopologyResponse, error) {
	t := req.GetTopology()
	if err := a.n.ApplyTopology(ctx, t.GetRegions(), t.GetDomains()); err != nil {
		return nil, status(err)
	}
	return &globalv1.ApplyTopologyResponse{Index: a.n.state.Index()}, nil
}

func (a *adminService) PlanTopology(ctx context.Context, req *globalv1.ApplyTopologyRequest) (*globalv1.PlanTopologyResponse, error) {
	l := a.n.currentLeader()
	if l == nil {
		return nil, a.n.notLeader()
	}
	if err := a.n.checkKeepsAVoter(req.GetTopology().GetRegions()); err != nil {
		return nil, status(err)
	}
	in, _ := l.placeInput(time.Now())
	plan, err := globalstate.PlanTopology(a.n.state, req.GetTopology(), in)
	if err != nil {
		return nil, status(err)
	}
	return plan, nil
}

func (a *adminService) Failover(ctx context.Context, req *globalv1.FailoverRequest) (*globalv1.FailoverResponse, error) {
	idx, err := a.n.Failover(ctx, req.GetDomain(), req.GetRegion(), req.GetTo())
	if err != nil {
		return nil, status(err)
	}
	return &globalv1.FailoverResponse{Index: idx}, nil
}

func (a *adminService) Join(ctx context.Context, req *globalv1.JoinRequest) (*globalv1.JoinResponse, error) {
	idx, err := a.n.Join(ctx, req.GetNodeId(), req.GetRaftAddress())
	if err != nil {
		return nil, status(err)
	}
	return &globalv1.JoinResponse{Index: idx}, nil
}

func (a *adminService) GetTopology(context.Context, *globalv1.GetTopologyRequest) (*globalv1.GetTopologyResponse, error) {
	live, _, _ := a.n.state.Catalog()
	resp := &globalv1.GetTopologyResponse{Index: a.n.state.Index(), Domains: live}
	for _, r := range a.n.state.Regions() {
		resp.Regions = append(resp.Regions, r.Proto())
	}
	return resp, nil
}

func (a *adminService) GlobalStatus(context.Context, *globalv1.GlobalStatusRequest) (*globalv1.GlobalStatusResponse, error) {
	n := a.n
	st := n.raft.Status()
	id, ep := n.leaderEndpoint()
	resp := &globalv1.GlobalStatusResponse{
		NodeId: n.cfg.NodeID, State: st.State.String(), LeaderId: id, LeaderEndpoint: ep,
		Term: st.Term, AppliedIndex: n.state.Index(),
	}
	resp.Voters, resp.Configured = n.voterStatus(id)
	if !resp.Configured {
		resp.BootstrapVoters = n.bootstrapVoters()
	}
	l := n.currentLeader()
	if l == nil {
		return resp, nil
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	keySpaces := n.state.RegionalKeySpaces()
	for _, r := range n.state.Regions() {
		rs := &globalv1.RegionStatus{Name: r.Name, LastRenewalAgoMillis: -1, RenewingForMillis: -1, Consumers: map[string]uint32{}}
		var liveFor time.Duration
		if b := l.regions[r.Name]; b != nil {
			if !b.renewedAt.IsZero() {
				rs.LastRenewalAgoMillis = now.Sub(b.renewedAt).Milliseconds()
				rs.Renewing = now.Sub(b.renewedAt) <= n.cfg.LiveWindow
				rs.CellLeader = b.cellLeader
				if rs.Renewing {
					liveFor = now.Sub(b.liveSince)
					rs.RenewingForMillis = liveFor.Milliseconds()
				}
			}
			for d, c := range b.load {
				rs.Consumers[d] = uint32(c)
			}
		}
		for _, k := range keySpaces {
			if k.Region != r.Name && slices.Contains(k.Serving, r.Name) {
				rs.ServingForOthers = append(rs.ServingForOthers, &globalv1.KeySpaceRef{Domain: k.Domain, KeySpace: k.Region})
			}
			if k.Region == r.Name && k.Away() {
				a := &globalv1.AwayKeySpace{Domain: k.Domain, ServedBy: k.Serving, FailbackInMillis: -1, Manual: k.Manual}
				if rs.Renewing && !k.Manual {
					a.FailbackInMillis = max(0, k.FailbackAfter-liveFor).Milliseconds()
				}
				rs.Away = append(rs.Away, a)
			}
		}
		resp.Regions = append(resp.Regions, rs)
	}
	for _, dl := range n.state.Delegations("") {
		ds := &globalv1.DelegationStatus{Domain: dl.Domain, Region: dl.Region, Holder: dl.Holder, Generation: dl.Generation, Withdrawing: dl.Withdrawing}
		for _, r := range dl.Ranges {
			ds.Ranges = append(ds.Ranges, topology.RangeToProto(r))
		}
		if ttl, ok := n.domainTTL(dl.Domain); ok {
			deadline := lease.Params{TTL: n.cfg.Duration(ttl), Drift: n.cfg.Drift}.LeaderDeadline(l.baseLocked(l.regions[dl.Holder]))
			ds.ExpiresInMillis = deadline.Sub(now).Milliseconds()
		}
		resp.Delegations = append(resp.Delegations, ds)
	}
	return resp, nil
}

// voterStatus lists the voters of this node's Raft configuration, with
// the gRPC endpoint and region the applied topology gives them, then the
// voters the topology lists that have not joined yet. configured is false
// while the node has no configuration (it has not bootstrapped or joined).
func (n *Node) voterStatus(leaderID string) (voters []*globalv1.GlobalVoter, configured bool) {
	listed := map[string]globalstate.Voter{}
	for _, v := range n.state.Voters() {
		listed[v.ID] = v
	}
	servers, err := n.raft.Servers()
	if err != nil || len(servers) == 0 {
		return nil, false
	}
	in := map[string]bool{}
	for _, s := range servers {
		id := string(s.ID)
		in[id] = true
		v := listed[id]
		voters = append(voters, &globalv1.GlobalVoter{Id: id, RaftAddress: string(s.Address), Leader: id == leaderID, Grpc: v.GRPC, Region: v.Region})
	}
	for _, v := range n.state.Voters() {
		if !in[v.ID] {
			voters = append(voters, &globalv1.GlobalVoter{Id: v.ID, RaftAddress: v.Raft, Grpc: v.GRPC, Region: v.Region, Joining: true})
		}
	}
	return voters, true
}
