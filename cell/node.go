package cell

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hashicorp/raft"

	"github.com/wdsio/wds/cell/cellstate"
	"github.com/wdsio/wds/internal/logging"
	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/internal/telemetry"
	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Node is one running cell node: a Raft member, its FSM, the routing hub
// and the gRPC Session and Admin services, which it registers on a server
// it does not own (Register): the process's listener, gRPC server and HTTP
// admin port are internal/serve's. While it is the ready leader it also
// runs a leader (leases, sessions, balancer).
type Node struct {
	cfg     Config
	log     *slog.Logger
	state   *cellstate.State
	fsm     *cellstate.FSM
	hub     *routingHub
	fed     *federationWatcher // nil unless federated with PeerRegions
	raft    *raftnode.Node
	batcher *raftnode.Batcher[*cellv1.Op, cellstate.Result]
	peers   PeerResolver
	served  atomic.Pointer[servedAddrs] // where the process serves the node (Serving)
	done    chan struct{}               // closed by Close once sessions are ended
	// wired is closed once NewNode has set every field: Raft may elect
	// this node (and call onLeadership) before raftnode.Start returns.
	wired   chan struct{}
	metrics *cellMetrics
	ownsMet bool
	tm      *telemetry.Metrics

	mu        sync.Mutex
	leader    *leader
	observers map[*sessionConn]struct{}
	closed    bool

	peerMu    sync.Mutex
	peerConns map[string]*grpc.ClientConn
}

// NewNode starts a cell node: it opens the data dir and starts the Raft
// member. It serves nothing by itself: the process registers the node's
// services on its gRPC server (Register, with ServerOptions), which
// internal/serve does for `wds server`, `wds dev` and the test harness.
// The cell may not have a leader yet (see WaitLeader).
func NewNode(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = logging.Discard()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cell config: %w", err)
	}
	self := cfg.self()
	n := &Node{
		cfg:       cfg,
		log:       logging.Component(cfg.Logger, "cell").With("node", cfg.NodeID, "region", cfg.Region),
		state:     cellstate.NewState(cfg.Region),
		observers: map[*sessionConn]struct{}{},
		peerConns: map[string]*grpc.ClientConn{},
		peers:     cfg.Resolver,
		done:      make(chan struct{}),
		wired:     make(chan struct{}),
	}
	if n.peers == nil {
		n.peers = StaticPeers(cfg.Peers)
	}
	n.tm = cfg.Metrics
	if n.tm == nil {
		tm, err := telemetry.NewMetrics(attribute.String("node", cfg.NodeID), attribute.String("region", cfg.Region))
		if err != nil {
			return nil, err
		}
		n.tm, n.ownsMet = tm, true
	}
	met, err := newCellMetrics(n)
	if err != nil {
		return nil, err
	}
	n.metrics = met
	n.hub = newRoutingHub(n.state, cfg.RoutingCoalesce)
	if cfg.Delegator != nil {
		n.hub.source = cfg.Region // federated: tables are tagged per source
	}
	n.hub.onFlush = func(version uint64, _, subs int) { n.metrics.routingVersion.Store(int64(version)) }
	n.hub.onResync = func() { n.metrics.routingResyncs.Add(context.Background(), 1) }
	n.fsm = &cellstate.FSM{
		State:     n.state,
		OnApply:   n.onApply,
		OnRestore: n.hub.markAll,
	}

	rc := cfg.Raft
	rc.ID = cfg.NodeID
	rc.Dir = cfg.DataDir
	rc.Bind = firstNonEmpty(cfg.RaftBind, self.Raft)
	rc.Advertise = self.Raft
	rc.Peers = nil
	for _, p := range cfg.Peers {
		rc.Peers = append(rc.Peers, raftnode.Peer{ID: p.ID, Address: p.Raft})
	}
	rc.Faults = cfg.Faults
	rc.Logger = cfg.Logger.With("node", cfg.NodeID)
	rc.OnLeadership = n.onLeadership
	rc.WantConfirmed = n.wantConfirmed
	rn, err := raftnode.Start(rc, n.fsm)
	if err != nil {
		if n.ownsMet {
			n.tm.Shutdown(context.Background())
		}
		return nil, err
	}
	n.raft = rn
	n.batcher = raftnode.NewBatcher[*cellv1.Op, cellstate.Result](rn, raftnode.BatcherConfig{
		OnCommitted: func(ops int, took time.Duration) {
			n.metrics.commitOps.Add(context.Background(), int64(ops))
			n.metrics.commitLatency.Record(context.Background(), took.Seconds())
		},
	}, cellstate.EncodeEntry)

	if cfg.Delegator != nil && len(cfg.PeerRegions) > 0 {
		n.fed = n.startFederationWatcher()
	}
	close(n.wired)
	n.log.Info("cell node started", "raft", rn.Addr())
	return n, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Shutdown stops the node gracefully, the way `wds server` does on
// SIGTERM: a leader first hands its leadership to the most up-to-date
// follower (raft's leadership transfer) so that the cell need not wait out
// an election timeout, and its consumer sessions are redirected to the new
// leader as they end; then the node closes as Close does. ctx bounds the
// handover: when it ends first, the node closes anyway.
func (n *Node) Shutdown(ctx context.Context) error {
	if n.raft.State() == raft.Leader {
		start := time.Now()
		if err := n.raft.TransferLeadership(ctx); err != nil {
			n.log.Warn("leadership not handed over before stopping", "err", err)
		} else if id, _ := n.raft.FreshLeader(); id != "" && id != n.cfg.NodeID {
			n.log.Info("leadership handed over", "to", id, "took", time.Since(start).Round(time.Millisecond))
		}
	}
	return n.Close()
}

// TransferLeadership hands the cell's leadership to another voter (raft's
// leadership transfer) and waits until another node leads, or ctx ends;
// it returns at once when this node does not lead or leads alone. Its
// sessions end with a redirect and resume on the new leader, as in a
// graceful stop.
func (n *Node) TransferLeadership(ctx context.Context) error {
	return n.raft.TransferLeadership(ctx)
}

// Close stops the node at once: sessions end with a redirect to the leader
// if one is known (clients reconnect elsewhere), the node stops serving
// (Done is closed, and internal/serve stops the process's gRPC server and
// HTTP port), Raft shuts down, the data dir stays. A leader closed this way leaves the cell to elect another after
// the election timeout; Shutdown hands leadership over first.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	l := n.leader
	n.leader = nil
	obs := n.observers
	n.observers = map[*sessionConn]struct{}{}
	n.mu.Unlock()
	id, ep := n.leaderEndpoint()
	if id == n.cfg.NodeID {
		id, ep = "", ""
	}
	redirect := &wdsv1.Redirect{LeaderId: id, LeaderEndpoint: ep, Reason: "node shutting down"}
	if l != nil {
		l.stop(redirect)
	}
	for c := range obs {
		c.close(nil, redirect)
	}
	if n.fed != nil {
		n.fed.stop()
	}
	n.hub.close()
	n.batcher.Close()
	// Streams are ended above: the node serves no more (its handlers
	// refuse new calls, see Register), and the process that serves it
	// stops its gRPC server and HTTP port (internal/serve waits on Done).
	close(n.done)
	err := n.raft.Shutdown()
	n.peerMu.Lock()
	for _, cc := range n.peerConns {
		cc.Close()
	}
	n.peerMu.Unlock()
	if n.ownsMet {
		n.tm.Shutdown(context.Background())
	}
	return err
}

// Endpoint is the node's gRPC address: where the process serves it (see
// Serving), else its advertised client endpoint (Config.Peers).
func (n *Node) Endpoint() string {
	if a := n.served.Load(); a != nil && a.grpc != "" {
		return a.grpc
	}
	return n.cfg.self().GRPC
}

// HTTPAddr is the admin HTTP address of the process serving the node (""
// when it has none, or the node is not served).
func (n *Node) HTTPAddr() string {
	if a := n.served.Load(); a != nil {
		return a.http
	}
	return ""
}

// ID is the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// IsLeader reports whether this node is the cell's ready leader.
func (n *Node) IsLeader() bool { return n.currentLeader() != nil }

// RaftStatus reports the node's Raft state and indexes (tests, status).
func (n *Node) RaftStatus() raftnode.Status { return n.raft.Status() }

// Faults returns the node's transport fault hook (nil unless configured).
func (n *Node) Faults() *raftnode.Faults { return n.cfg.Faults }

// AppliedIndex is the index of the last entry applied to the FSM.
func (n *Node) AppliedIndex() uint64 { return n.state.Index() }

// Metrics is the node's metrics registry.
func (n *Node) Metrics() *telemetry.Metrics { return n.tm }

func (n *Node) currentLeader() *leader {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leader
}

// leaderEndpoint is the leader's id and client endpoint, only as far as
// this node knows them fresh (raftnode.FreshLeader): a follower that has not
// heard from the leader within the heartbeat timeout, and a node that won
// an election but is still taking office, name none. Clients are never
// sent to a leader that may be dead; told "unknown", they ask again.
func (n *Node) leaderEndpoint() (id, endpoint string) {
	id, _ = n.raft.FreshLeader()
	if id == n.cfg.NodeID && n.currentLeader() == nil {
		return "", "" // elected, not yet in office (catching up)
	}
	if ep, ok := n.peers.Endpoint(id); ok {
		return id, ep
	}
	return id, ""
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
		id, ep := n.leaderEndpoint()
		old.stop(&wdsv1.Redirect{LeaderId: id, LeaderEndpoint: ep, Reason: "leadership moved"})
	}
	n.metrics.isLeader.Store(0)
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
	n.metrics.isLeader.Store(1)
	n.metrics.leaderChanges.Add(context.Background(), 1)
	n.log.Info("leading the cell", "term", ev.Term, "consumers", len(l.leases))
	l.start()
}

// onApply runs on the FSM goroutine after each entry.
func (n *Node) onApply(index uint64, res *cellstate.ApplyResult) {
	n.hub.mark(res.Routes)
	for _, e := range res.Effects {
		switch e.Kind {
		case cellstate.EffectGranted:
			n.metrics.grants.Add(context.Background(), 1)
		case cellstate.EffectRevoked:
			n.metrics.revokes.Add(context.Background(), 1)
		case cellstate.EffectReleased:
			n.metrics.releases.Add(context.Background(), 1)
		case cellstate.EffectDropped:
			n.metrics.expiries.Add(context.Background(), 1)
		}
	}
	if l := n.currentLeader(); l != nil {
		l.dispatch(index, res.Effects)
		if n.cfg.Delegator != nil && endsRelinquished(res.Effects) {
			select {
			case l.reportKick <- struct{}{}:
			default:
			}
		}
		if res.Delegations {
			// After dispatch: a relinquish's revocations are queued (and
			// counted by their sessions) before the leader stops
			// withholding acks for the delegation's domain.
			l.delegations.setLive(n.state.LiveDelegations())
		}
		if len(res.Routes) > 0 {
			// Observers on followers see the change once the followers
			// learn it committed, which only an AppendEntries sent after
			// the commit tells them. An entry already in the log past
			// this one does not help: pipelined, it went out before this
			// one committed, carrying the older commit index; then the
			// log goes idle and followers hear of the commit only at the
			// replication timer (CommitTimeout..2·CommitTimeout later).
			// Nudge: at most one barrier is in flight, so under load this
			// costs one small entry per commit round trip.
			n.raft.Nudge()
		}
	}
}

// propose commits ops through the batcher. It fails with ErrNotLeader on a
// follower.
func (n *Node) propose(ctx context.Context, ops ...*cellv1.Op) ([]cellstate.Result, error) {
	if n.currentLeader() == nil {
		return nil, ErrNotLeader
	}
	res, err := n.batcher.Propose(ctx, ops...)
	if errors.Is(err, raftnode.ErrNotLeader) {
		return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return res, err
}

// domainTTL is the TTL of a domain of the catalog.
func (n *Node) domainTTL(name string) (time.Duration, bool) { return n.state.DomainTTL(name) }

func (n *Node) addObserver(c *sessionConn) {
	n.mu.Lock()
	n.observers[c] = struct{}{}
	n.mu.Unlock()
}

func (n *Node) removeObserver(c *sessionConn) {
	n.mu.Lock()
	delete(n.observers, c)
	n.mu.Unlock()
}

// sessionCount is the number of sessions attached to this node.
func (n *Node) sessionCount() int {
	n.mu.Lock()
	count := len(n.observers)
	l := n.leader
	n.mu.Unlock()
	if l != nil {
		count += len(l.connected())
	}
	return count
}

// connectedConsumers lists the consumers with a stream on this leader.
func (n *Node) connectedConsumers() map[string]bool {
	if l := n.currentLeader(); l != nil {
		return l.connected()
	}
	return map[string]bool{}
}

func (l *leader) connected() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	for id, cl := range l.leases {
		cl.mu.Lock()
		if cl.conn != nil {
			out[id] = true
		}
		cl.mu.Unlock()
	}
	return out
}

func (n *Node) health() error {
	if n.raft.State() == raft.Shutdown {
		return errors.New("raft is shut down")
	}
	return nil
}

// ready is /readyz: see readiness.
func (n *Node) ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), readinessTimeout)
	defer cancel()
	return n.readiness(ctx)
}

// readinessTimeout bounds a readiness check: asking the leader its commit
// index, then waiting a moment for this node to apply up to it.
const readinessTimeout = time.Second

// readiness is nil when the node can serve what it has: it is the ready
// leader, or it heard from the leader within the heartbeat timeout and has
// applied everything the leader had committed when asked just now. A
// restarted follower knows its own log but not what was committed (its
// commit index is 0, or only as far as its log reaches, until the leader
// catches it up); comparing its own applied and commit indexes would call
// it ready while it still shows an empty or stale cell.
func (n *Node) readiness(ctx context.Context) error { return n.readyAgainst(ctx, nil) }

// readyAgainst is readiness given the leader's answer to Locate when the
// caller has it already (Status asked every node); nil asks the leader.
func (n *Node) readyAgainst(ctx context.Context, lr *wdsv1.LocateResponse) error {
	if err := n.health(); err != nil {
		return err
	}
	if n.currentLeader() != nil {
		return nil
	}
	id, ep := n.leaderEndpoint()
	if id == "" || ep == "" {
		return errors.New("no leader known (none heard from within the heartbeat timeout)")
	}
	if lr == nil || lr.GetNodeId() != id || !lr.GetLeader() {
		cc, err := n.dialPeer(ep)
		if err != nil {
			return fmt.Errorf("leader %s at %s: %v", id, ep, err)
		}
		if lr, err = wdsv1.NewSessionClient(cc).Locate(ctx, &wdsv1.LocateRequest{}); err != nil {
			return fmt.Errorf("leader %s at %s does not answer: %v", id, ep, status.Convert(err).Message())
		}
	}
	want := lr.GetCommitIndex()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		applied := n.raft.AppliedIndex()
		if applied >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("catching up: applied %d of the %d entries leader %s has committed", applied, want, id)
		case <-t.C:
		}
	}
}

// peerHealth asks every other voter, at once and for at most
// peerHealthTimeout, what it knows (Locate), for Status. It returns each
// one's health and the answer of the one that leads, if any did.
func (n *Node) peerHealth(servers []raft.Server) (map[string]*wdsv1.NodeInfo, *wdsv1.LocateResponse) {
	out := map[string]*wdsv1.NodeInfo{}
	var leader *wdsv1.LocateResponse
	var wg sync.WaitGroup
	// A follower that has not applied the leader's commit index is behind;
	// a healthy one may be a few entries behind even so (hashicorp/raft
	// tells followers of commits at CommitTimeout, and under load the
	// log moves on while they answer), hence the slack.
	var leaderCommit uint64
	const slack = 16
	if l := n.currentLeader(); l != nil {
		leaderCommit = n.raft.CommitIndex()
	}
	type answer struct {
		id string
		r  *wdsv1.LocateResponse
		e  error
	}
	answers := make(chan answer, len(servers))
	for _, srv := range servers {
		id := string(srv.ID)
		ep, ok := n.peers.Endpoint(id)
		if !ok || id == n.cfg.NodeID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), peerHealthTimeout)
			defer cancel()
			cc, err := n.dialPeer(ep)
			var r *wdsv1.LocateResponse
			if err == nil {
				r, err = wdsv1.NewSessionClient(cc).Locate(ctx, &wdsv1.LocateRequest{})
			}
			answers <- answer{id, r, err}
		}()
	}
	wg.Wait()
	close(answers)
	var all []answer
	for a := range answers {
		all = append(all, a)
		if a.e == nil && a.r.GetLeader() {
			leaderCommit, leader = a.r.GetCommitIndex(), a.r
		}
	}
	for _, a := range all {
		info := &wdsv1.NodeInfo{Id: a.id}
		switch {
		case a.e != nil:
			info.Health = "unreachable: " + shortStatus(a.e)
		default:
			info.Term, info.AppliedIndex = a.r.GetTerm(), a.r.GetAppliedIndex()
			switch {
			case a.r.GetLeader():
				info.Health = "ok"
			case a.r.GetLeaderId() == "":
				info.Health = "no leader known"
			case leaderCommit > 0 && a.r.GetAppliedIndex()+slack < leaderCommit:
				info.Health = fmt.Sprintf("catching up: applied %d of %d", a.r.GetAppliedIndex(), leaderCommit)
			default:
				info.Health = "ok"
			}
		}
		out[a.id] = info
	}
	return out, leader
}

// peerHealthTimeout bounds how long Status waits for the other nodes: a
// dead one refuses at once, a hung one is reported unreachable.
const peerHealthTimeout = 300 * time.Millisecond

func shortStatus(err error) string {
	msg := status.Convert(err).Message()
	if status.Code(err) == codes.DeadlineExceeded || strings.Contains(msg, "deadline exceeded") {
		return fmt.Sprintf("no answer within %v", peerHealthTimeout)
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 && i+2 < len(msg) {
		return strings.Trim(msg[i+2:], "\" ")
	}
	return msg
}

// wantConfirmed tells raftnode whether the leader must keep its
// leadership confirmed: only leases need it (acks to consumers, expiry
// decisions), and a domain being deleted waits for the balancer to purge
// it. An idle cell with neither appends nothing to its log: the barriers
// that keep the confirmation fresh (4 per second) are the only entries an
// idle cell would otherwise write. Observers and admin reads need no
// confirmation, and every write confirms by committing.
func (n *Node) wantConfirmed() bool { return n.state.HasWork() }

// WaitLeader waits until some node of nodes is the ready leader, with its
// leadership confirmed.
func WaitLeader(ctx context.Context, nodes ...*Node) (*Node, error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		for _, n := range nodes {
			if n != nil && n.IsLeader() {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				err := n.raft.Confirm(cctx)
				cancel()
				if err == nil {
					return n, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cell: no leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

var _ = topology.DefaultTTL

// endsRelinquished reports whether effects end grants that a relinquish
// revoked (reason delegation) or drop successors: the cell's released
// report may have grown.
func endsRelinquished(effects []cellstate.Effect) bool {
	for _, e := range effects {
		if e.Kind == cellstate.EffectReleased || e.Kind == cellstate.EffectDropped {
			return true
		}
	}
	return false
}

// DebugDelegations describes, for tests' failure logs, the delegations in
// the node's log and the leader's view of them.
func (n *Node) DebugDelegations() string {
	live, dur := n.state.LiveDelegations()
	out := fmt.Sprintf("live %v (D %v) released %v", live, dur, n.state.ReleasedRanges())
	if l := n.currentLeader(); l != nil {
		l.delegations.mu.RLock()
		out += fmt.Sprintf("; view renewed %v cover %v until %v sweeping %v", l.delegations.renewed, l.delegations.cover, l.delegations.until, l.delegations.sweeping)
		l.delegations.mu.RUnlock()
	}
	return out
}
