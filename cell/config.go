package cell

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/wdsio/wds/internal/lease"
	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/internal/telemetry"
	"github.com/wdsio/wds/topology"
)

// Peer is one voter of the cell.
type Peer struct {
	// ID is the node id.
	ID string
	// Raft is the node's Raft transport address (host:port).
	Raft string
	// GRPC is the node's client endpoint (host:port): sessions are
	// redirected and admin calls forwarded there.
	GRPC string
}

// Config configures one cell node. Start from DefaultConfig.
type Config struct {
	// NodeID is this node's id; it must be one of Peers.
	NodeID string
	// Region is the cell's region: consumers must say they are in it.
	Region string
	// DataDir holds the Raft log and snapshots; it survives restarts.
	DataDir string
	// Peers are the cell's voters (1 or 3; 5 and 7 work too), this node
	// included.
	Peers []Peer
	// Resolver finds the other nodes' client endpoints (sessions are
	// redirected, admin calls forwarded and Status reports there); nil
	// means StaticPeers(Peers). Gossip membership will resolve them later.
	Resolver PeerResolver
	// RaftBind is the Raft listen address; empty means this node's
	// Peers[].Raft.
	RaftBind string
	// GRPCBind is the gRPC listen address; empty means this node's
	// Peers[].GRPC (see GRPCListenAddr). The node does not listen: the
	// process serving it (internal/serve) binds it.
	GRPCBind string
	// HTTPBind is the admin HTTP address (/metrics, /healthz, /readyz);
	// empty disables it. Read by the process serving the node, like
	// GRPCBind.
	HTTPBind string

	// Drift is ε, the allowed clock-rate drift between machines (0.01 = 1%).
	Drift float64
	// MaxMovesInFlight caps, per domain, the shards being handed over at
	// once (revoked, not yet released).
	MaxMovesInFlight int
	// RoutingCoalesce is how long routing changes are gathered before a
	// delta is sent.
	RoutingCoalesce time.Duration
	// BalanceInterval is how often the leader re-plans without a trigger
	// (lease expiries are found at this granularity).
	BalanceInterval time.Duration
	// HelloTimeout bounds the wait for a session's first message.
	HelloTimeout time.Duration
	// MaxSessionQueue is the number of lease-critical messages (grants,
	// revocations, acks) that may wait for a slow stream before the cell
	// closes it; routing deltas beyond MaxRoutingQueue are dropped and
	// replaced by a fresh snapshot.
	MaxSessionQueue int
	MaxRoutingQueue int
	// MaxRecvMsgBytes bounds a client message.
	MaxRecvMsgBytes int

	// Raft tunes the Raft member (timings, compaction). ID, Dir, Bind and
	// Peers are filled in from the fields above.
	Raft raftnode.Config
	// PeerRegions are, in a federation, the other regions' cells' client
	// endpoints: the node follows their routing and serves it beside its
	// own (federation-wide routing). FederationDialOptions are added to
	// those connections (tests put their fault dialer here).
	PeerRegions           map[string][]string
	FederationDialOptions []grpc.DialOption
	// Catalog, with a Delegator, keeps the federation's domain catalog (the
	// global group): Admin's CreateDomain and DeleteDomain go there, and the
	// cell learns the result with its renewals. GlobalClient is both.
	Catalog CatalogKeeper
	// Delegator delegates key space to the cell (contract (5)): the global
	// group in a federation. Nil means a lone cell, which delegates every
	// key space of its domains to itself without expiry.
	Delegator Delegator
	// RenewInterval is how often the leader renews its delegations (with a
	// Delegator); D must exceed it by far (seconds).
	RenewInterval time.Duration
	// Faults lets tests partition the node's Raft transport.
	Faults *raftnode.Faults
	// Logger is the node's logger (component attributes are added).
	Logger *slog.Logger
	// Metrics, if set, receives the node's metrics; otherwise the node
	// creates its own registry.
	Metrics *telemetry.Metrics
	// TracerProvider traces the gRPC server of the process serving the
	// node (otelgrpc, set up by internal/serve); nil means no tracing. See telemetry.NewTracing (OTEL_EXPORTER_OTLP_ENDPOINT).
	TracerProvider trace.TracerProvider
}

// DefaultConfig returns a configuration with every tunable at its default;
// NodeID, Region, DataDir and Peers remain to be set.
func DefaultConfig() Config {
	return Config{
		Drift:            lease.DefaultDrift,
		MaxMovesInFlight: 64,
		RoutingCoalesce:  2 * time.Millisecond,
		BalanceInterval:  100 * time.Millisecond,
		RenewInterval:    time.Second,
		HelloTimeout:     10 * time.Second,
		MaxSessionQueue:  1 << 16,
		MaxRoutingQueue:  256,
		MaxRecvMsgBytes:  8 << 20,
		Raft:             raftnode.DefaultLANConfig(),
	}
}

// Validate reports the first invalid field, by name.
func (c Config) Validate() error {
	if err := topology.ValidateConsumerID("node_id", c.NodeID); err != nil {
		return err
	}
	if err := topology.ValidateName("region", c.Region); err != nil {
		return err
	}
	if c.DataDir == "" {
		return topology.Invalid("data_dir", "", "required")
	}
	if len(c.Peers) == 0 {
		return topology.Invalid("peers", "", "at least one voter is required")
	}
	self := false
	seen := map[string]bool{}
	for i, p := range c.Peers {
		f := fmt.Sprintf("peers[%d]", i)
		if err := topology.ValidateConsumerID(f+".id", p.ID); err != nil {
			return err
		}
		if seen[p.ID] {
			return topology.Invalid(f+".id", p.ID, "duplicate node id")
		}
		seen[p.ID] = true
		for _, a := range []struct{ name, v string }{{"raft", p.Raft}, {"grpc", p.GRPC}} {
			if _, _, err := net.SplitHostPort(a.v); err != nil {
				return topology.Invalid(f+"."+a.name, a.v, "must be host:port")
			}
		}
		if p.ID == c.NodeID {
			self = true
		}
	}
	if !self {
		return topology.Invalid("node_id", c.NodeID, "must be one of the peers")
	}
	if c.Drift < 0 || c.Drift > lease.MaxDrift {
		return topology.Invalid("drift", fmt.Sprint(c.Drift), "must be between 0 and %v", lease.MaxDrift)
	}
	if c.MaxMovesInFlight < 1 {
		return topology.Invalid("max_moves_in_flight", fmt.Sprint(c.MaxMovesInFlight), "must be at least 1")
	}
	if c.Delegator != nil && c.RenewInterval <= 0 {
		return topology.Invalid("renew_interval", c.RenewInterval.String(), "must be positive with a delegator")
	}
	if c.RoutingCoalesce <= 0 || c.BalanceInterval <= 0 || c.HelloTimeout <= 0 {
		return topology.Invalid("routing_coalesce/balance_interval/hello_timeout", "", "must be positive")
	}
	if c.MaxSessionQueue < 1024 || c.MaxRoutingQueue < 4 {
		return topology.Invalid("max_session_queue/max_routing_queue", "", "too small (at least 1024 and 4)")
	}
	if c.MaxRecvMsgBytes < 64<<10 {
		return topology.Invalid("max_recv_msg_bytes", fmt.Sprint(c.MaxRecvMsgBytes), "must be at least 65536")
	}
	return nil
}

func (c Config) self() Peer {
	for _, p := range c.Peers {
		if p.ID == c.NodeID {
			return p
		}
	}
	return Peer{}
}

func (c Config) peer(id string) (Peer, bool) {
	for _, p := range c.Peers {
		if p.ID == id {
			return p, true
		}
	}
	return Peer{}, false
}
