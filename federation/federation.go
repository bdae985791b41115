// Package federation is one node of a WDS federation: a member of its
// region's cell and, optionally, a voter of the global group, served on
// one gRPC server (internal/serve). The cell reaches the global group
// only through the Coordinator client (cell.GlobalClient), whether the
// global voter runs in the same process or in another region; the two
// never import each other, and this package is where they meet.
//
// Nodes find each other from the topology file (gossip comes later).
package federation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/global"
	"github.com/wdsio/wds/internal/logging"
	"github.com/wdsio/wds/internal/serve"
	"github.com/wdsio/wds/internal/telemetry"
)

// Config is one federation node.
type Config struct {
	// Cell configures the node's cell member. Its Delegator is set by
	// Start (a GlobalClient of GlobalEndpoints).
	Cell cell.Config
	// Global, if set, makes the node a global voter too.
	Global *global.Config
	// GlobalEndpoints are the gRPC endpoints of the global voters.
	GlobalEndpoints []string
	// DialOptions are added to the client connections the node opens to
	// global voters (tests put their fault dialer here).
	DialOptions []grpc.DialOption
}

// Node is a running federation node.
type Node struct {
	Cell   *cell.Node
	Global *global.Node // nil unless a voter

	client *cell.GlobalClient
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
	// stopApart ends keepLeadersApart.
	stopApart context.CancelFunc
	apartDone chan struct{}
}

// Start starts the node's members and serves them on one process front.
func Start(cfg Config) (*Node, *serve.Process, error) {
	if len(cfg.GlobalEndpoints) == 0 {
		return nil, nil, errors.New("federation: no global voter endpoints")
	}
	n := &Node{conns: map[string]*grpc.ClientConn{}}
	n.client = cell.NewGlobalClient(cfg.GlobalEndpoints, n.dial(cfg.DialOptions))
	cc := cfg.Cell
	cc.Delegator = n.client
	cc.Catalog = n.client // the cell's Admin creates and deletes domains in the global catalog
	if cc.FederationDialOptions == nil {
		cc.FederationDialOptions = cfg.DialOptions // tests' fault dialer
	}
	if cc.Metrics == nil {
		m, err := telemetry.NewMetrics(attribute.String("node", cc.NodeID), attribute.String("region", cc.Region))
		if err != nil {
			return nil, nil, err
		}
		cc.Metrics = m
	}
	p, err := serve.Start(serve.Config{
		GRPC:           cc.GRPCListenAddr(),
		HTTP:           cc.HTTPBind,
		Logger:         cc.Logger,
		Metrics:        cc.Metrics,
		TracerProvider: cc.TracerProvider,
		ServerOptions:  cell.ServerOptions(cc),
	}, func() ([]serve.Service, error) {
		var svcs []serve.Service
		if cfg.Global != nil {
			gc := *cfg.Global
			if gc.Metrics == nil {
				gc.Metrics = cc.Metrics
			}
			g, err := global.NewNode(gc)
			if err != nil {
				return nil, err
			}
			n.Global = g
			// The cell's renewals go straight to the leader this voter knows.
			n.client.SetLeaderHint(g.LeaderEndpoint)
			svcs = append(svcs, g)
		}
		c, err := cell.NewNode(cc)
		if err != nil {
			if n.Global != nil {
				n.Global.Close()
			}
			return nil, err
		}
		n.Cell = c
		// The cell first: the process is done once it is (Done).
		return append([]serve.Service{c}, svcs...), nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("federation node %s: %w", cc.NodeID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stopApart, n.apartDone = cancel, make(chan struct{})
	if n.Global != nil && len(cc.Peers) > 1 {
		go n.keepLeadersApart(ctx, cc.Logger)
	} else {
		close(n.apartDone)
	}
	return n, p, nil
}

// apartInterval is how often a node that is a global voter checks that it
// does not lead both its cell and the global group; apartBackoff is how
// long it waits after handing its cell over before it would again.
const (
	apartInterval = 500 * time.Millisecond
	apartBackoff  = 5 * time.Second
)

// keepLeadersApart hands the cell's leadership to another member whenever
// this node leads both its cell and the global group. Both leaders in one
// process would make one crash cost leases: the cell's new leader holds
// its delegations as unknown (and withholds acks) until its first renewal
// is answered, which would wait for the global group's election too —
// about as long as a short TTL. Apart, either crash alone is ridden out.
// A handover costs the cell's consumers a reconnect and no lease (as a
// graceful stop does).
func (n *Node) keepLeadersApart(ctx context.Context, log *slog.Logger) {
	defer close(n.apartDone)
	if log == nil {
		log = logging.Discard()
	}
	t := time.NewTicker(apartInterval)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !n.Global.IsLeader() || !n.Cell.IsLeader() || time.Since(last) < apartBackoff {
			continue
		}
		last = time.Now()
		log.Info("this node leads both its cell and the global group: handing the cell's leadership to another member")
		tctx, cancel := context.WithTimeout(ctx, apartBackoff)
		if err := n.Cell.TransferLeadership(tctx); err != nil && ctx.Err() == nil {
			log.Warn("cell leadership not handed over", "err", err)
		}
		cancel()
	}
}

// dial returns the GlobalClient's dialer: one cached connection per
// endpoint.
func (n *Node) dial(opts []grpc.DialOption) func(string) (grpc.ClientConnInterface, error) {
	return func(ep string) (grpc.ClientConnInterface, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.closed {
			return nil, errors.New("federation: node closed")
		}
		if cc := n.conns[ep]; cc != nil {
			return cc, nil
		}
		cc, err := grpc.NewClient(ep, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
		if err != nil {
			return nil, err
		}
		n.conns[ep] = cc
		return cc, nil
	}
}

// GlobalEndpoints are the global voters' endpoints the node's cell tries:
// its configuration's, and those the global group's answers named.
func (n *Node) GlobalEndpoints() []string { return n.client.Endpoints() }

// Shutdown stops the node gracefully: a leader of its cell, then a leader
// of the global group, hands leadership over first (each bounded by ctx),
// so that neither group waits out an election timeout; then Close.
func (n *Node) Shutdown(ctx context.Context) error {
	var errs []error
	if n.Cell != nil {
		errs = append(errs, n.Cell.Shutdown(ctx))
	}
	if n.Global != nil {
		errs = append(errs, n.Global.Shutdown(ctx))
	}
	return errors.Join(append(errs, n.Close())...)
}

// Close stops the node's members (data dirs stay).
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	conns := n.conns
	n.conns = nil
	n.mu.Unlock()
	if n.stopApart != nil {
		n.stopApart()
		<-n.apartDone
	}
	var errs []error
	if n.Cell != nil {
		errs = append(errs, n.Cell.Close())
	}
	n.client.Close()
	if n.Global != nil {
		errs = append(errs, n.Global.Close())
	}
	for _, cc := range conns {
		cc.Close()
	}
	return errors.Join(errs...)
}
