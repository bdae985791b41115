package global

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/wdsio/wds/global/globalstate"
	"github.com/wdsio/wds/internal/logging"
	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/internal/rpcerr"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// ErrNotLeader: the node is not the global group's (ready) leader.
var ErrNotLeader = &rpcerr.Sentinel{Text: "global: not leader", Code: codes.Unavailable, Reason: rpcerr.ReasonNotLeader, KeepText: true}

// Node is one voter of the global group: a Raft member with the global
// FSM, and, while it leads, the leader's renewal book and placement loop.
// It registers the Coordinator service on a server it does not own.
type Node struct {
	cfg     Config
	log     *slog.Logger
	state   *globalstate.State
	fsm     *globalstate.FSM
	raft    *raftnode.Node
	batcher *raftnode.Batcher[*globalv1.Op, globalstate.Result]

	mu     sync.Mutex
	leader *leader
	closed bool
	// wired is closed once NewNode has set every field: Raft may elect
	// this node before raftnode.Start returns.
	wired chan struct{}

	peerMu    sync.Mutex
	peerConns map[string]*grpc.ClientConn

	keySpaces *keySpaceMetrics
	// stopMembership ends membershipLoop.
	stopMembership context.CancelFunc
	membershipDone chan struct{}
}

// NewNode starts a global voter: it opens the data dir and starts the Raft
// member. Register its services on the process's gRPC server.
func NewNode(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = logging.Discard()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("global config: %w", err)
	}
	self, _ := cfg.self()
	n := &Node{
		cfg:       cfg,
		log:       logging.Component(cfg.Logger, "global").With("node", cfg.NodeID, "region", self.Region),
		state:     globalstate.NewState(),
		peerConns: map[string]*grpc.ClientConn{},
		wired:     make(chan struct{}),
	}
	km, err := newKeySpaceMetrics(cfg.Metrics, n.state)
	if err != nil {
		return nil, fmt.Errorf("global metrics: %w", err)
	}
	n.keySpaces = km
	n.fsm = &globalstate.FSM{State: n.state, OnApply: n.onApply}
	rc := cfg.Raft
	rc.Group = "global"
	rc.ID = cfg.NodeID
	rc.Dir = cfg.DataDir
	if rc.Transport == nil {
		rc.Bind = cfg.RaftBind
		if rc.Bind == "" {
			rc.Bind = self.Raft
		}
		rc.Advertise = self.Raft
	}
	// The voters change with the topology (membership.go): the node
	// bootstraps, joins or waits once it has asked its peers.
	rc.ChangingVoters = true
	rc.CheckStoredVoters = cfg.FixedVoters
	rc.Peers = nil
	for _, p := range cfg.Peers {
		rc.Peers = append(rc.Peers, raftnode.Peer{ID: p.ID, Address: p.Raft})
	}
	rc.Faults = cfg.Faults
	rc.Logger = cfg.Logger.With("node", cfg.NodeID)
	rc.OnLeadership = n.onLeadership
	rc.WantConfirmed = func() bool { return len(n.state.Holders()) > 0 }
	rn, err := raftnode.Start(rc, n.fsm)
	if err != nil {
		return nil, err
	}
	n.raft = rn
	n.batcher = raftnode.NewBatcher[*globalv1.Op, globalstate.Result](rn, raftnode.BatcherConfig{}, globalstate.EncodeEntry)
	close(n.wired)
	ctx, cancel := context.WithCancel(context.Background())
	n.stopMembership, n.membershipDone = cancel, make(chan struct{})
	go func() {
		defer close(n.membershipDone)
		n.membershipLoop(ctx)
	}()
	n.log.Info("global voter started", "raft", rn.Addr())
	return n, nil
}

// Register puts the global group's services (Coordinator, GlobalAdmin)
// on s, which must carry wire.Codec (cell.ServerOptions has it). A
// follower forwards GlobalAdmin's changes to the leader; once the node is
// closed its handlers refuse new calls.
func (n *Node) Register(s grpc.ServiceRegistrar) { n.register(s) }

// ID is the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// IsLeader reports whether this node is the group's ready leader.
func (n *Node) IsLeader() bool { return n.currentLeader() != nil }

// State is the replicated state (read it through its query API).
func (n *Node) State() *globalstate.State { return n.state }

// RaftStatus reports the node's Raft state and indexes.
func (n *Node) RaftStatus() raftnode.Status { return n.raft.Status() }

// domainTTL is the grant TTL of a domain of the catalog.
func (n *Node) domainTTL(name string) (time.Duration, bool) {
	d, _, ok := n.state.Domain(name)
	if !ok {
		return 0, false
	}
	return time.Duration(d.GetTtlMillis()) * time.Millisecond, true
}

func (n *Node) currentLeader() *leader {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leader
}

// LeaderEndpoint is the gRPC endpoint of the group's leader as far as
// this node knows it fresh ("" if none).
func (n *Node) LeaderEndpoint() string {
	_, ep := n.leaderEndpoint()
	return ep
}

// leaderEndpoint is the gRPC endpoint of the leader as far as this node
// knows it fresh ("" if none).
func (n *Node) leaderEndpoint() (id, endpoint string) {
	id, _ = n.raft.FreshLeader()
	if id == "" {
		return "", ""
	}
	return id, n.endpointOf(id)
}

// endpointOf is voter id's gRPC endpoint ("" if unknown): as the applied
// topology lists it first (it names voters added after this node's file
// was written), else as this node's file does.
func (n *Node) endpointOf(id string) string {
	for _, v := range n.state.Voters() {
		if v.ID == id {
			return v.GRPC
		}
	}
	for _, p := range n.cfg.Peers {
		if p.ID == id {
			return p.GRPC
		}
	}
	return ""
}

func (n *Node) onLeadership(ev raftnode.Leadership) {
	<-n.wired // a leader uses n.raft and the batcher
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	old := n.leader
	n.leader = nil
	n.mu.Unlock()
	if old != nil {
		old.stop()
	}
	if !ev.Leader {
		return
	}
	l := newLeader(n, ev.Accession)
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.leader = l
	n.mu.Unlock()
	n.log.Info("leading the global group", "term", ev.Term)
	l.start()
}

func (n *Node) onApply(_ uint64, res *globalstate.ApplyResult) {
	if !res.Delegations && !res.Catalog {
		return
	}
	n.keySpaces.observe(n.state)
	if l := n.currentLeader(); l != nil {
		l.changed()
	}
}

// propose commits ops through the batcher; ErrNotLeader on a follower.
func (n *Node) propose(ctx context.Context, ops ...*globalv1.Op) ([]globalstate.Result, error) {
	if n.currentLeader() == nil {
		return nil, ErrNotLeader
	}
	res, err := n.batcher.Propose(ctx, ops...)
	if errors.Is(err, raftnode.ErrNotLeader) {
		return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return res, err
}

// proposeOne commits one op and returns its result's error.
func (n *Node) proposeOne(ctx context.Context, op *globalv1.Op) (globalstate.Result, error) {
	res, err := n.propose(ctx, op)
	if err != nil {
		return globalstate.Result{}, err
	}
	return res[0], res[0].Err
}

// ApplyTopology commits the regions and catalog of a topology as one
// entry (leader only).
func (n *Node) ApplyTopology(ctx context.Context, regions []*globalv1.Region, domains []*wdsv1.Domain) error {
	if err := n.checkKeepsAVoter(regions); err != nil {
		return err
	}
	_, err := n.proposeOne(ctx, &globalv1.Op{Op: &globalv1.Op_ApplyTopology{ApplyTopology: &globalv1.ApplyTopology{Regions: regions, Domains: domains}}})
	return err
}

// checkKeepsAVoter refuses a topology that lists global voters but none
// of the voters of the group's Raft configuration (the state checks the
// voters it lists; only the leader knows the configuration). Applied, it
// would leave the group to nodes that are not in it, and those, asking
// only each other, could bootstrap a second group.
func (n *Node) checkKeepsAVoter(regions []*globalv1.Region) error {
	listed := map[string]bool{}
	for _, r := range regions {
		for _, v := range r.GetVoters() {
			listed[v.GetId()] = true
		}
	}
	servers, err := n.raft.Servers()
	if err != nil || len(listed) == 0 || len(servers) == 0 {
		return nil
	}
	var in []string
	for _, s := range servers {
		if listed[string(s.ID)] {
			return nil
		}
		in = append(in, string(s.ID))
	}
	return fmt.Errorf("%w: regions: the topology keeps none of the voters in the global group's configuration (%s): the group would be left to nodes that are not in it; keep at least one, and replace voters over several applies (add the new ones, then remove the old)", globalstate.ErrFailedPrecondition, strings.Join(in, ", "))
}

// CreateDomain adds a domain to the catalog (leader only) and returns it
// as committed.
func (n *Node) CreateDomain(ctx context.Context, d *wdsv1.Domain) (*wdsv1.Domain, error) {
	r, err := n.proposeOne(ctx, &globalv1.Op{Op: &globalv1.Op_CreateDomain{CreateDomain: &globalv1.CreateDomain{Domain: d}}})
	if err != nil {
		return nil, err
	}
	return r.Resp.(*wdsv1.Domain), nil
}

// DeleteDomain starts deleting a domain federation-wide (leader only).
func (n *Node) DeleteDomain(ctx context.Context, name string) error {
	_, err := n.proposeOne(ctx, &globalv1.Op{Op: &globalv1.Op_DeleteDomain{DeleteDomain: &globalv1.DeleteDomain{Name: name}}})
	return err
}

// Failover moves a manual REGIONAL key space to region to (leader only;
// to = region: home) and returns the index that recorded it. Moving it
// away is refused while region renews: failover is for a region that is
// down (the state refuses it too while the region still holds any of the
// key space).
func (n *Node) Failover(ctx context.Context, domain, region, to string) (uint64, error) {
	l := n.currentLeader()
	if l == nil {
		return 0, ErrNotLeader
	}
	for _, f := range []struct{ name, v string }{{"domain", domain}, {"region", region}, {"to", to}} {
		if f.v == "" {
			return 0, topology.Invalid(f.name, "", "required")
		}
	}
	op := &globalv1.SetFailover{Domain: domain, Region: region, To: to}
	if err := n.state.CheckFailover(op); err != nil {
		return 0, err
	}
	if to != region {
		now := time.Now()
		l.mu.Lock()
		b := l.regions[region]
		renewing := b != nil && !b.renewedAt.IsZero() && now.Sub(b.renewedAt) <= n.cfg.LiveWindow
		l.mu.Unlock()
		if renewing {
			return 0, fmt.Errorf("%w: region %s is renewing its delegations: wds failover moves the key space of a region that is down (a live region serves its own)", globalstate.ErrFailedPrecondition, region)
		}
	}
	if _, err := n.proposeOne(ctx, &globalv1.Op{Op: &globalv1.Op_SetFailover{SetFailover: op}}); err != nil {
		return 0, err
	}
	return n.state.Index(), nil
}

// Renewals returns, on the leader, when it last answered each region's
// renewal (nil on a follower).
func (n *Node) Renewals() map[string]time.Time {
	l := n.currentLeader()
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]time.Time{}
	for name, b := range l.regions {
		if !b.renewedAt.IsZero() {
			out[name] = b.renewedAt
		}
	}
	return out
}

// WaitLeader waits until some node of nodes is the ready, confirmed leader.
func WaitLeader(ctx context.Context, nodes ...*Node) (*Node, error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		for _, n := range nodes {
			if n != nil && n.IsLeader() && n.raft.Confirmed(time.Now()) {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no global leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Shutdown stops the node gracefully: the leader hands leadership over
// first (bounded by ctx), so the group does not wait out an election
// timeout; then Close.
func (n *Node) Shutdown(ctx context.Context) error {
	if n.IsLeader() {
		start := time.Now()
		if err := n.raft.TransferLeadership(ctx); err != nil {
			n.log.Warn("global leadership not handed over before stopping", "err", err)
		} else if id, _ := n.raft.FreshLeader(); id != "" && id != n.cfg.NodeID {
			n.log.Info("global leadership handed over", "to", id, "took", time.Since(start).Round(time.Millisecond))
		}
	}
	return n.Close()
}

// Close stops the node: the leader's streams end, Raft shuts down, the data
// dir stays.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	l := n.leader
	n.leader = nil
	n.mu.Unlock()
	if l != nil {
		l.stop()
	}
	n.stopMembership()
	<-n.membershipDone
	n.batcher.Close()
	err := n.raft.Shutdown()
	n.peerMu.Lock()
	for _, cc := range n.peerConns {
		cc.Close()
	}
	n.peerConns = map[string]*grpc.ClientConn{}
	n.peerMu.Unlock()
	return err
}
