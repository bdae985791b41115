package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/wdsio/wds/internal/logging"
)

// ErrNotLeader is returned by operations that need the node to be the ready
// leader of its group.
var ErrNotLeader = errors.New("raftnode: not the leader")

// Peer is one initial voter of the group.
type Peer struct {
	ID      string // Raft server id
	Address string // Raft transport address, host:port
}

// DefaultGroup is the group name of a Config that names none.
const DefaultGroup = "cell"

// Config configures one Raft member. Use DefaultLANConfig or DefaultWANConfig
// and override fields.
type Config struct {
	// Group names the Raft group ("cell", "global"): every log line the
	// node emits carries it as group=..., so that the logs of a process
	// running two groups tell them apart. Empty means DefaultGroup.
	Group string
	// ID is this member's server id; it must be one of Peers.
	ID string
	// Dir holds the WAL (log + stable store) and snapshots; it survives
	// restarts.
	Dir string
	// Bind is the Raft transport listen address (host:port; port 0 picks
	// one). Unused with Transport.
	Bind string
	// Advertise is the address peers dial, when it differs from Bind.
	Advertise string
	// Transport, if set, replaces the TCP transport (Bind and Advertise
	// are then unused): tests give each node one of NewInmemTransports.
	// The node owns it from Start on and closes it on Shutdown, so a
	// restarted node needs a new one (connected to its peers anew).
	Transport raft.Transport
	// Peers are the voters the group is bootstrapped with on first start.
	// Ignored once the data dir holds state.
	Peers []Peer
	// ChangingVoters is for a group whose voters change at run time
	// (AddVoter, RemoveServer): the configuration a data dir stores is
	// not checked against Peers, Start does not bootstrap (the caller
	// calls Bootstrap once it knows the group does not exist yet, or
	// waits for a leader to add the node), and a node removed from the
	// group keeps running, idle, instead of shutting Raft down.
	ChangingVoters bool
	// CheckStoredVoters keeps, with ChangingVoters, the check that a data
	// dir's stored voters are Peers (ErrVoterMismatch otherwise): for a
	// group whose voters could change but never do (wds dev).
	CheckStoredVoters bool

	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout are passed to
	// hashicorp/raft (see raft.Config).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is raft's idle heartbeat for timely commit propagation.
	CommitTimeout time.Duration
	// MaxAppendEntries bounds entries per AppendEntries RPC.
	MaxAppendEntries int
	// ConfirmWindow is W: the leader acknowledges lease heartbeats only while
	// its latest quorum confirmation is younger than W. Confirmation is
	// renewed every ConfirmWindow/4.
	ConfirmWindow time.Duration
	// TransportTimeout bounds Raft RPC I/O.
	TransportTimeout time.Duration

	// SnapshotInterval, SnapshotThreshold, TrailingLogs and SnapshotRetain
	// control log compaction (see raft.Config).
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotRetain    int

	// Faults, if set, lets tests partition the transport (TCP or
	// injected): the node consults it, under its ID, on every RPC it
	// sends and receives.
	Faults *Faults
	// Logger receives the node's and raft's logs (raft's with
	// component=raft), all with group=Group.
	Logger *slog.Logger
	// WantConfirmed, if set, is asked (on the leader, every ConfirmWindow/8)
	// whether anything needs leadership confirmed now (lease heartbeats to
	// acknowledge, expiries to decide). While it answers false an idle
	// leader appends nothing: confirmation lapses, and Confirm renews it on
	// demand. Nil means always.
	WantConfirmed func() bool
	// OnLeadership is called, in order, on every leadership change of this
	// node: with Leader true once the node is leader and its FSM has applied
	// every earlier entry (a barrier committed in its term), with Leader
	// false as soon as it is not.
	OnLeadership func(Leadership)
}

// Leadership is a leadership change of the local node.
type Leadership struct {
	Leader bool
	// Accession is when the node learned it became leader (monotonic), set
	// when Leader is true. It is never earlier than the real election.
	Accession time.Time
	Term      uint64
}

// DefaultLANConfig suits a cell: three nodes on a LAN (or one machine).
// Elections complete in about a second.
func DefaultLANConfig() Config {
	return Config{
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		// hashicorp/raft sends every follower an AppendEntries at this
		// period even when idle (to carry the commit index): at 10 ms it
		// was most of an idle cell's CPU. Followers learn a routing
		// change's commit from the leader's Nudge instead, one round trip
		// after it.
		CommitTimeout:     50 * time.Millisecond,
		MaxAppendEntries:  256,
		ConfirmWindow:     time.Second,
		TransportTimeout:  2 * time.Second,
		SnapshotInterval:  30 * time.Second,
		SnapshotThreshold: 16384,
		TrailingLogs:      10240,
		SnapshotRetain:    2,
	}
}

// DefaultWANConfig suits a group whose voters span regions.
func DefaultWANConfig() Config {
	c := DefaultLANConfig()
	c.HeartbeatTimeout = 2 * time.Second
	c.ElectionTimeout = 2 * time.Second
	c.LeaderLeaseTimeout = time.Second
	c.CommitTimeout = 50 * time.Millisecond
	c.ConfirmWindow = 3 * time.Second
	c.TransportTimeout = 5 * time.Second
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("raftnode: id: must be set")
	case c.Dir == "":
		return errors.New("raftnode: dir: must be set")
	case c.Bind == "" && c.Transport == nil:
		return errors.New("raftnode: bind: must be set")
	case len(c.Peers) == 0:
		return errors.New("raftnode: peers: at least one voter is required")
	case c.ConfirmWindow <= 0:
		return fmt.Errorf("raftnode: confirm_window: must be positive, got %v", c.ConfirmWindow)
	case c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("raftnode: leader_lease_timeout %v must not exceed heartbeat_timeout %v", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	self := false
	seen := map[string]bool{}
	for _, p := range c.Peers {
		if seen[p.ID] {
			return fmt.Errorf("raftnode: peers: duplicate id %q", p.ID)
		}
		seen[p.ID] = true
		if p.ID == c.ID {
			self = true
		}
	}
	if !self {
		return fmt.Errorf("raftnode: peers: must include this node %q", c.ID)
	}
	return nil
}

// Node is a running Raft member.
type Node struct {
	cfg       Config
	raft      *raft.Raft
	log       *slog.Logger
	wal       *wal.WAL
	meta      *metadb.BoltMetaDB
	transport raft.Transport
	notifyCh  chan bool
	done      chan struct{}
	wg        sync.WaitGroup

	mu          sync.Mutex
	epoch       uint64 // bumped on every leadership change
	ready       bool   // leader and caught up (barrier done)
	accession   time.Time
	confirmedAt time.Time
	stopConfirm chan struct{}
	confirming  chan struct{} // closed when the barrier in flight is done
	nudging     bool
	nudgeAgain  bool

	emitMu sync.Mutex
}

// Start opens the data dir, starts the transport and Raft, and bootstraps
// the group on first start.
func Start(cfg Config, fsm raft.FSM) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = logging.Discard()
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	log := cfg.Logger.With("group", cfg.Group)
	hl := logging.HCLog(log, "raft")
	w, meta, err := openLogStore(cfg.Dir, hl)
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, max(cfg.SnapshotRetain, 1), hl.Named("snapshots"))
	if err != nil {
		w.Close()
		meta.Close()
		return nil, fmt.Errorf("raftnode: snapshot store: %w", err)
	}
	trans := cfg.Transport
	if trans == nil {
		layer, err := newStreamLayer(cfg.Bind, cfg.Advertise)
		if err != nil {
			w.Close()
			meta.Close()
			return nil, fmt.Errorf("raftnode: listen %s: %w", cfg.Bind, err)
		}
		trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  layer,
			MaxPool: 3,
			Timeout: cfg.TransportTimeout,
			Logger:  hl.Named("transport"),
		})
	}
	if cfg.Faults != nil {
		ft, err := wrapFaults(trans, cfg.Faults, cfg.ID)
		if err != nil {
			closeTransport(trans)
			w.Close()
			meta.Close()
			return nil, fmt.Errorf("raftnode: faults: %w", err)
		}
		trans = ft
	}

	n := &Node{
		cfg:       cfg,
		log:       log,
		wal:       w,
		meta:      meta,
		transport: trans,
		notifyCh:  make(chan bool, 64),
		done:      make(chan struct{}),
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	if cfg.MaxAppendEntries > 0 {
		rc.MaxAppendEntries = cfg.MaxAppendEntries
	}
	rc.BatchApplyCh = true
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NotifyCh = n.notifyCh
	rc.Logger = hl
	rc.NoLegacyTelemetry = true

	if cfg.ChangingVoters {
		rc.ShutdownOnRemove = false
	}
	existing, err := raft.HasExistingState(w, w, snaps)
	if err == nil && existing && (!cfg.ChangingVoters || cfg.CheckStoredVoters) {
		err = checkStoredVoters(rc, w, snaps, cfg, string(trans.LocalAddr()))
	}
	if err != nil {
		closeTransport(trans)
		w.Close()
		meta.Close()
		return nil, err
	}
	r, err := raft.NewRaft(rc, fsm, w, w, snaps, trans)
	if err != nil {
		closeTransport(trans)
		w.Close()
		meta.Close()
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	n.raft = r
	if !existing && !cfg.ChangingVoters {
		if _, err := n.Bootstrap(); err != nil {
			n.Shutdown()
			return nil, err
		}
	}
	n.wg.Add(1)
	go n.watchLeadership()
	return n, nil
}

// Bootstrap makes Peers the group's first configuration, if the node has
// no state yet; it reports whether it did. Every initial voter must
// bootstrap with the same Peers: two different first configurations at
// index 1 would break Raft's log matching.
func (n *Node) Bootstrap() (bool, error) {
	var servers []raft.Server
	for _, p := range n.cfg.Peers {
		addr := p.Address
		if p.ID == n.cfg.ID {
			addr = n.Addr()
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(addr)})
	}
	err := n.await(n.raft.BootstrapCluster(raft.Configuration{Servers: servers}))
	switch {
	case errors.Is(err, raft.ErrCantBootstrap):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("raftnode: bootstrap: %w", err)
	}
	return true, nil
}

// Configured reports whether the node has a configuration: it
// bootstrapped, or a leader sent it the group's log.
func (n *Node) Configured() bool {
	servers, err := n.Servers()
	return err == nil && len(servers) > 0
}

// AddVoter adds a voter to the group (leader only) and waits until the
// new configuration is committed; it returns that configuration's index.
// Adding a voter already in the configuration at addr is a no-op.
func (n *Node) AddVoter(ctx context.Context, id, addr string) (uint64, error) {
	return n.changeConfiguration(ctx, func(timeout time.Duration) raft.IndexFuture {
		return n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout)
	})
}

// RemoveServer removes a server from the group (leader only) and waits
// until the new configuration is committed. A leader that removes itself
// steps down once it is.
func (n *Node) RemoveServer(ctx context.Context, id string) (uint64, error) {
	return n.changeConfiguration(ctx, func(timeout time.Duration) raft.IndexFuture {
		return n.raft.RemoveServer(raft.ServerID(id), 0, timeout)
	})
}

func (n *Node) changeConfiguration(ctx context.Context, change func(time.Duration) raft.IndexFuture) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	timeout := n.cfg.TransportTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if timeout <= 0 {
		return 0, ctx.Err()
	}
	f := change(timeout)
	err := n.awaitContext(ctx, f)
	switch {
	case errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost):
		return 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return 0, err
	case err != nil:
		return 0, fmt.Errorf("raftnode: configuration change: %w", err)
	}
	return f.Index(), nil
}

// awaitContext is await, bounded by ctx too (ctx.Err() when it ends
// first; the future is abandoned, as await's at shutdown).
func (n *Node) awaitContext(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- n.await(f) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Addr is the transport's advertised address.
func (n *Node) Addr() string { return string(n.transport.LocalAddr()) }

// ID is the node's server id.
func (n *Node) ID() string { return n.cfg.ID }

// Config returns the node's configuration.
func (n *Node) Config() Config { return n.cfg }

func closeTransport(t raft.Transport) {
	if c, ok := t.(raft.WithClose); ok {
		c.Close()
	}
}

// Group is the node's group name.
func (n *Node) Group() string { return n.cfg.Group }

// Status is a snapshot of a member's Raft state, for status pages and
// tests. Its fields are read one after another, not atomically.
type Status struct {
	State        raft.RaftState
	Term         uint64
	LastIndex    uint64 // last log entry stored
	CommitIndex  uint64 // last entry known committed
	AppliedIndex uint64 // last entry handed to the FSM
	LastContact  time.Time
}

// Status reports the member's Raft state.
func (n *Node) Status() Status {
	return Status{
		State:        n.raft.State(),
		Term:         n.raft.CurrentTerm(),
		LastIndex:    n.raft.LastIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
		LastContact:  n.raft.LastContact(),
	}
}

// State is the member's Raft state (leader, follower, ..., shutdown).
func (n *Node) State() raft.RaftState { return n.raft.State() }

// AppliedIndex is the last entry handed to the FSM.
func (n *Node) AppliedIndex() uint64 { return n.raft.AppliedIndex() }

// CommitIndex is the last entry this member knows committed.
func (n *Node) CommitIndex() uint64 { return n.raft.CommitIndex() }

// Servers is the group's latest configuration (its voters and their
// addresses).
func (n *Node) Servers() ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

// Shutdown stops Raft and closes the transport and the WAL.
func (n *Node) Shutdown() error {
	select {
	case <-n.done:
		return nil
	default:
	}
	close(n.done)
	var err error
	if n.raft != nil {
		err = n.raft.Shutdown().Error()
	}
	closeTransport(n.transport)
	n.wg.Wait()
	n.mu.Lock()
	if n.stopConfirm != nil {
		close(n.stopConfirm)
		n.stopConfirm = nil
	}
	n.mu.Unlock()
	// WAL.Close closes the meta DB too (since raft-wal v0.4.1); closing
	// it again is a no-op, and keeps a failed WAL close from leaking the
	// meta DB's file lock.
	if cerr := n.wal.Close(); err == nil {
		err = cerr
	}
	if cerr := n.meta.Close(); err == nil {
		err = cerr
	}
	return err
}

// await waits for a raft future, or for the node's shutdown. hashicorp/raft
// never answers a future still queued in its apply channel when it shuts
// down, so a plain Error() can block forever — and Shutdown waits for the
// goroutines that call it. The abandoned waiter finishes if raft ever
// answers, and is otherwise a small leak at shutdown only.
func (n *Node) await(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.done:
		return raft.ErrRaftShutdown
	}
}

// Nudge makes followers learn the commit index soon. A follower applies
// entry N only once an AppendEntries tells it N committed; when the log
// goes idle after N, hashicorp/raft says so only after CommitTimeout. A
// barrier appended right away carries the new commit index in its own
// AppendEntries, one round trip later. At most one nudge is in flight
// (calls meanwhile ask for one more after it), so under load it costs at
// most one barrier per commit round trip; it also renews the leadership
// confirmation. Call it on the leader after an entry
// whose effects followers should show soon (routing).
func (n *Node) Nudge() {
	n.mu.Lock()
	if !n.ready {
		n.mu.Unlock()
		return
	}
	if n.nudging {
		// An entry committed after the barrier in flight was appended:
		// nudge once more when it completes.
		n.nudgeAgain = true
		n.mu.Unlock()
		return
	}
	n.nudging = true
	epoch := n.epoch
	n.mu.Unlock()
	go func() {
		for {
			start := time.Now()
			err := n.await(n.raft.Barrier(n.cfg.ConfirmWindow))
			if err == nil {
				n.NoteCommitted(epoch, start)
			}
			n.mu.Lock()
			again := n.nudgeAgain && err == nil && n.epoch == epoch
			n.nudgeAgain = false
			n.nudging = again
			n.mu.Unlock()
			if !again {
				return
			}
		}
	}()
}

// Leader returns the current leader's id and Raft address as this node
// knows them (empty when unknown). A follower goes on naming a leader that
// died until its own heartbeat timeout makes it a candidate (up to twice
// HeartbeatTimeout); use FreshLeader to point clients somewhere.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// FreshLeader is Leader, but empty unless the answer is recent: this node
// leads, or it is a follower that heard from the leader within
// HeartbeatTimeout (the leader heartbeats every tenth of that). Clients
// sent to a dead leader waste a reconnect each; clients told "unknown"
// ask again shortly.
func (n *Node) FreshLeader() (id, addr string) {
	switch n.raft.State() {
	case raft.Leader:
		return n.cfg.ID, n.Addr()
	case raft.Follower:
		if time.Since(n.raft.LastContact()) > n.cfg.HeartbeatTimeout {
			return "", ""
		}
		return n.Leader()
	}
	return "", ""
}

// TransferLeadership hands leadership to the most up-to-date follower
// (raft's leadership transfer: the follower is caught up, then told to
// start an election at once) and waits until another node is the fresh
// leader, or ctx ends. It returns at once when this node does not lead or
// leads alone.
func (n *Node) TransferLeadership(ctx context.Context) error {
	if n.raft.State() != raft.Leader {
		return nil
	}
	if cfg := n.raft.GetConfiguration(); cfg.Error() != nil || len(cfg.Configuration().Servers) < 2 {
		return nil
	}
	if err := n.awaitContext(ctx, n.raft.LeadershipTransfer()); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err
		}
		return fmt.Errorf("raftnode: leadership transfer: %w", err)
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if id, _ := n.FreshLeader(); id != "" && id != n.cfg.ID {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Ready reports whether this node is the leader and has applied every entry
// of earlier terms, and when it took office.
func (n *Node) Ready() (accession time.Time, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.accession, n.ready
}

// Confirmed reports whether the node may act as leader at now under the
// lease contract: it is the ready leader and a quorum committed an entry it
// proposed less than ConfirmWindow before now.
func (n *Node) Confirmed(now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ready && now.Sub(n.confirmedAt) < n.cfg.ConfirmWindow
}

// ConfirmedAt is the start time of the latest entry this leader proposed
// that committed (zero when not leader).
func (n *Node) ConfirmedAt() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.confirmedAt
}

// NoteCommitted records that an entry this node proposed at start committed
// in the current leadership epoch.
func (n *Node) NoteCommitted(epoch uint64, start time.Time) {
	n.mu.Lock()
	if n.epoch == epoch && n.ready && start.After(n.confirmedAt) {
		n.confirmedAt = start
	}
	n.mu.Unlock()
}

// Epoch identifies the current leadership period of this node.
func (n *Node) Epoch() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.epoch
}

func (n *Node) watchLeadership() {
	defer n.wg.Done()
	for {
		select {
		case <-n.done:
			return
		case leader := <-n.notifyCh:
			n.mu.Lock()
			n.epoch++
			epoch := n.epoch
			n.ready = false
			n.confirmedAt = time.Time{}
			if n.stopConfirm != nil {
				close(n.stopConfirm)
				n.stopConfirm = nil
			}
			if leader {
				n.accession = time.Now()
			}
			n.mu.Unlock()
			if leader {
				n.log.Info("won leadership; catching up", "term", n.raft.CurrentTerm())
				n.wg.Add(1)
				go n.takeOffice(epoch)
			} else {
				n.log.Info("lost leadership")
				n.emit(epoch, Leadership{Leader: false})
			}
		}
	}
}

// takeOffice commits a barrier in the new term — which both applies every
// earlier entry to the FSM and confirms leadership — then reports the node
// ready and keeps the confirmation fresh.
func (n *Node) takeOffice(epoch uint64) {
	defer n.wg.Done()
	for {
		start := time.Now()
		err := n.await(n.raft.Barrier(n.cfg.ConfirmWindow * 4))
		if n.Epoch() != epoch {
			return
		}
		if err == nil {
			n.mu.Lock()
			if n.epoch != epoch {
				n.mu.Unlock()
				return
			}
			n.ready = true
			n.confirmedAt = start
			stop := make(chan struct{})
			n.stopConfirm = stop
			acc := n.accession
			n.mu.Unlock()
			n.emit(epoch, Leadership{Leader: true, Accession: acc, Term: n.raft.CurrentTerm()})
			n.confirmLoop(epoch, stop)
			return
		}
		if errors.Is(err, raft.ErrRaftShutdown) || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return
		}
		select {
		case <-n.done:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// confirmLoop commits a barrier whenever the confirmation is older than a
// quarter of the window and something wants it confirmed (WantConfirmed):
// a leader with sessions to acknowledge stays confirmed, and an idle one
// with nothing to do grows no log (Confirm renews it when needed).
func (n *Node) confirmLoop(epoch uint64, stop chan struct{}) {
	period := n.cfg.ConfirmWindow / 4
	t := time.NewTicker(period / 2)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-stop:
			return
		case <-t.C:
		}
		if time.Since(n.ConfirmedAt()) < period || n.cfg.WantConfirmed != nil && !n.cfg.WantConfirmed() {
			continue
		}
		n.confirmOnce(epoch)
	}
}

// confirmOnce commits a barrier and records the confirmation it gives.
// Concurrent callers share one barrier.
func (n *Node) confirmOnce(epoch uint64) {
	n.mu.Lock()
	if ch := n.confirming; ch != nil {
		n.mu.Unlock()
		select {
		case <-ch:
		case <-n.done:
		}
		return
	}
	ch := make(chan struct{})
	n.confirming = ch
	n.mu.Unlock()
	start := time.Now()
	if err := n.await(n.raft.Barrier(n.cfg.ConfirmWindow)); err == nil {
		n.NoteCommitted(epoch, start)
	}
	n.mu.Lock()
	n.confirming = nil
	n.mu.Unlock()
	close(ch)
}

// Confirm makes sure the leader is confirmed now, committing a barrier if
// its confirmation has lapsed (an idle leader lets it lapse: see
// WantConfirmed). It fails with ErrNotLeader when the node is not the
// ready leader or the barrier did not confirm it.
func (n *Node) Confirm(ctx context.Context) error {
	if n.Confirmed(time.Now()) {
		return nil
	}
	_, ready := n.Ready()
	if !ready {
		return ErrNotLeader
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.confirmOnce(n.Epoch())
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !n.Confirmed(time.Now()) {
		return ErrNotLeader
	}
	return nil
}

func (n *Node) emit(epoch uint64, l Leadership) {
	n.emitMu.Lock()
	defer n.emitMu.Unlock()
	if n.Epoch() != epoch {
		return // superseded by a later change, which will be emitted
	}
	if n.cfg.OnLeadership != nil {
		n.cfg.OnLeadership(l)
	}
}
