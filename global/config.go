package global

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/wdsio/wds/internal/lease"
	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/internal/telemetry"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	"github.com/wdsio/wds/topology"
)

// Peer is one voter of the global group.
type Peer struct {
	// ID is the node id (the same as the node's cell id in a federation).
	ID string
	// Region is the voter's region.
	Region string
	// Raft is the global Raft transport address (host:port).
	Raft string
	// GRPC is the node's gRPC endpoint: cells' coordinator streams and
	// forwarded calls go there.
	GRPC string
}

// Config configures one voter of the global group. Start from
// DefaultConfig.
type Config struct {
	// NodeID is this voter's id; it must be one of Peers.
	NodeID string
	// DataDir holds the global Raft log and snapshots (not the cell's).
	DataDir string
	// Peers are the voters, this node included (one per region, typically).
	Peers []Peer
	// RaftBind is the global Raft listen address; empty means this node's
	// Peers[].Raft.
	RaftBind string

	// Drift is ε (0.01 = 1%).
	Drift float64
	// Outage is S, the global outage a cell rides out with zero churn: a
	// domain's delegation duration is D = T·(1+ε) + S. It must exceed a
	// global election plus the confirmation window.
	Outage time.Duration
	// LiveWindow: a region that renewed within it counts as live for
	// placement (it is given delegations). A region that has not is given
	// nothing new, but keeps what it holds until its deadline.
	LiveWindow time.Duration
	// PlaceInterval is how often the leader re-plans without a trigger
	// (expiries are found at this granularity).
	PlaceInterval time.Duration
	// Settle is how long a region's load report must stay the same before
	// placement acts on it (hysteresis: consumers joining one by one move
	// shards once, not at every join).
	Settle time.Duration
	// MaxMovesInFlight caps, per key space, the shards being withdrawn at
	// once.
	MaxMovesInFlight int

	// Bootstrap, if set, is the topology the first leader of a group whose
	// state knows no region applies (what `wds server --topology` starts
	// with); later changes go through `wds topology apply`.
	Bootstrap *globalv1.ApplyTopology

	// FixedVoters: the voters are Peers for good (wds dev, whose regions
	// are its flags). A data dir whose stored voters differ is refused
	// (raftnode.ErrVoterMismatch) instead of taken as the group's later
	// configuration.
	FixedVoters bool

	// Raft tunes the Raft member (WAN timings by default). ID, Dir, Bind
	// and Peers are filled in from the fields above.
	Raft raftnode.Config
	// Faults, if set, lets tests cut the global Raft transport.
	Faults *raftnode.Faults
	Logger *slog.Logger
	// Metrics, if set, receives the global group's metrics (the process's
	// registry, shared with the cell member).
	Metrics *telemetry.Metrics
}

// DefaultConfig returns WAN Raft timings and the contract's defaults.
func DefaultConfig() Config {
	rc := raftnode.DefaultWANConfig()
	rc.Group = "global"
	return Config{
		Drift:            0.01,
		Outage:           10 * time.Second,
		LiveWindow:       3 * time.Second,
		PlaceInterval:    250 * time.Millisecond,
		Settle:           500 * time.Millisecond,
		MaxMovesInFlight: 64,
		Raft:             rc,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if err := topology.ValidateConsumerID("node_id", c.NodeID); err != nil {
		return err
	}
	if c.DataDir == "" {
		return topology.Invalid("data_dir", "", "required")
	}
	if _, ok := c.self(); !ok {
		return topology.Invalid("node_id", c.NodeID, "not one of the global voters")
	}
	if err := (lease.Params{TTL: time.Second, Drift: c.Drift}).Validate(); err != nil {
		return fmt.Errorf("drift: %w", err)
	}
	if c.Outage < time.Second {
		return topology.Invalid("outage", c.Outage.String(), "must be at least 1s")
	}
	if c.LiveWindow <= 0 || c.PlaceInterval <= 0 || c.Settle < 0 || c.MaxMovesInFlight <= 0 {
		return topology.Invalid("live_window", c.LiveWindow.String(), "live window, place interval and max moves must be positive")
	}
	return nil
}

func (c Config) self() (Peer, bool) {
	for _, p := range c.Peers {
		if p.ID == c.NodeID {
			return p, true
		}
	}
	return Peer{}, false
}

// Duration is D for a domain of TTL ttl: T·(1+ε) + S.
func (c Config) Duration(ttl time.Duration) time.Duration {
	return lease.Params{TTL: ttl, Drift: c.Drift}.LeaderHold() + c.Outage
}
