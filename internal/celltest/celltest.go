// Package celltest runs real cells for tests: N cell nodes in the test
// process with real Raft (raft-wal on disk, TCP transport on loopback) and
// real gRPC on loopback, plus test consumers that record their ownership
// history for the chaos checker. Modelled on hashicorp/raft's testing.go
// (MakeCluster, Partition) and Consul's retry helpers.
//
// Faults go through one faults.Net per cluster (Cluster.Net): each node's
// Raft transport and each test consumer's gRPC dialer consult it, so a
// test states a partition once — Faults[i].Isolate for Raft alone (the
// node keeps serving clients), Isolate(i) for Raft and client streams,
// Net.Cut / Net.Partition for per-peer and one-way cuts.
package celltest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/chaos"
	"github.com/wdsio/wds/internal/faults"
	"github.com/wdsio/wds/internal/logging"
	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/internal/serve"
	"github.com/wdsio/wds/internal/telemetry"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Region is the region of test cells.
const Region = "local"

// Cluster is a cell of real nodes in this process.
type Cluster struct {
	t       testing.TB
	Configs []cell.Config
	Nodes   []*cell.Node // nil while a node is down
	// Faults[i] is node i's Raft fault hook: its Isolate partitions the
	// node's Raft traffic only (an endpoint of Net, plane faults.Raft).
	Faults []*raftnode.Faults
	// Net is the cluster's network: nodes are named by their ids and
	// registered at their Raft and gRPC addresses; test consumers by
	// their ids.
	Net     *faults.Net
	History *chaos.History

	procs []*serve.Process // node i's network front (internal/serve); nil while down

	mu     sync.Mutex
	admins map[string]*grpc.ClientConn
}

// FreeAddrs returns n distinct free loopback addresses, with ports below
// the kernel's ephemeral range (Linux: 32768-60999). Tests restart nodes
// on their addresses: a port from the ephemeral range, free while its node
// is down, may meanwhile be taken by any outgoing connection or ":0"
// listener of the tests running beside this one, and the restart fails
// with "address already in use". Below the range only other FreeAddrs
// callers compete, and they start at a random port.
//
// The ports stay reserved for t (ReservePort) against other test
// processes, which go test runs in parallel.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	var ls []net.Listener
	port := testPortLow + rand.IntN(testPortHigh-testPortLow)
	for tries := 0; len(out) < n; tries++ {
		if tries > testPortHigh-testPortLow {
			t.Fatalf("no %d free loopback ports in %d-%d", n, testPortLow, testPortHigh)
		}
		port++
		if port >= testPortHigh {
			port = testPortLow
		}
		if !reservePort(t, port) {
			continue // another test process has it
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// ReservePort takes port for the rest of t against every other test
// process that reserves ports (FreeAddrs does), and reports whether it got
// it.
func ReservePort(t testing.TB, port int) bool { return reservePort(t, port) }

// The ports FreeAddrs hands out: below Linux's default ephemeral range.
const (
	testPortLow  = 20000
	testPortHigh = 32700
)

// Option adjusts every node's configuration.
type Option func(*cell.Config)

// New starts an n-node cell and waits for a leader.
func New(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	addrs := FreeAddrs(t, 2*n)
	dir := t.TempDir()
	var peers []cell.Peer
	for i := 0; i < n; i++ {
		peers = append(peers, cell.Peer{ID: fmt.Sprintf("n%d", i+1), Raft: addrs[2*i], GRPC: addrs[2*i+1]})
	}
	c := &Cluster{t: t, Net: faults.New(), History: &chaos.History{}, admins: map[string]*grpc.ClientConn{}}
	for _, p := range peers {
		c.Net.Register(p.ID, p.Raft, p.GRPC)
	}
	for i := 0; i < n; i++ {
		cfg := cell.DefaultConfig()
		cfg.NodeID = peers[i].ID
		cfg.Region = Region
		cfg.DataDir = filepath.Join(dir, peers[i].ID)
		cfg.Peers = peers
		cfg.Faults = c.Net.Endpoint(peers[i].ID, faults.Raft)
		cfg.Logger = logging.Discard()
		for _, o := range opts {
			o(&cfg)
		}
		c.Configs = append(c.Configs, cfg)
		c.Faults = append(c.Faults, cfg.Faults)
		c.Nodes = append(c.Nodes, nil)
		c.procs = append(c.procs, nil)
	}
	for i := range c.Configs {
		c.Start(i)
	}
	t.Cleanup(c.Close)
	c.Leader()
	return c
}

// Start (re)starts node i from its data dir, served the way `wds server`
// serves it (internal/serve): its own gRPC server on its endpoint, and the
// HTTP admin port when Configs[i].HTTPBind is set.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	var n *cell.Node
	var p *serve.Process
	var err error
	// The port may linger in TIME_WAIT after a kill; retry briefly.
	for try := 0; try < 50; try++ {
		n, p, err = startNode(c.Configs[i])
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("start node %d: %v", i, err)
	}
	c.Nodes[i], c.procs[i] = n, p
}

// startNode starts a node of cfg on a process front of its own, with a
// metrics registry of its own (unless cfg has one), which the process
// shuts down when it stops.
func startNode(cfg cell.Config) (*cell.Node, *serve.Process, error) {
	if cfg.Metrics == nil {
		m, err := telemetry.NewMetrics(attribute.String("node", cfg.NodeID), attribute.String("region", cfg.Region))
		if err != nil {
			return nil, nil, err
		}
		cfg.Metrics = m
	}
	var n *cell.Node
	p, err := serve.Start(serve.Config{
		GRPC:           cfg.GRPCListenAddr(),
		HTTP:           cfg.HTTPBind,
		Logger:         cfg.Logger,
		Metrics:        cfg.Metrics,
		TracerProvider: cfg.TracerProvider,
		ServerOptions:  cell.ServerOptions(cfg),
	}, func() ([]serve.Service, error) {
		var err error
		n, err = cell.NewNode(cfg)
		return []serve.Service{n}, err
	})
	return n, p, err
}

// Isolate cuts node i off from every other node and every test consumer,
// both ways, on every plane: its Raft traffic and the consumers' streams
// to it (they are closed, and redials refused) until Heal. Admin clients
// of the test itself are not cut.
func (c *Cluster) Isolate(i int) { c.Net.Isolate(c.Configs[i].NodeID) }

// Heal removes every fault that names node i, on every plane.
func (c *Cluster) Heal(i int) { c.Net.Heal(c.Configs[i].NodeID) }

// Kill stops node i (its data dir stays), and the process front serving
// it (also when a test closed the node itself).
func (c *Cluster) Kill(i int) {
	if n := c.Nodes[i]; n != nil {
		n.Close()
		c.Nodes[i] = nil
	}
	if p := c.procs[i]; p != nil {
		p.Stop()
		c.procs[i] = nil
	}
}

// Close stops every node.
func (c *Cluster) Close() {
	for i := range c.Nodes {
		c.Kill(i)
	}
	c.mu.Lock()
	for _, cc := range c.admins {
		cc.Close()
	}
	c.admins = map[string]*grpc.ClientConn{}
	c.mu.Unlock()
}

// Leader waits (up to 10 s) for a ready, confirmed leader and returns its
// index.
func (c *Cluster) Leader() int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := cell.WaitLeader(ctx, c.Nodes...)
	if err != nil {
		c.t.Fatal(err)
	}
	for i, n := range c.Nodes {
		if n == l {
			return i
		}
	}
	return -1
}

// Endpoints lists the client endpoints of all nodes.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, p := range c.Configs[0].Peers {
		out = append(out, p.GRPC)
	}
	return out
}

// Admin returns an Admin client for node i.
func (c *Cluster) Admin(i int) wdsv1.AdminClient {
	ep := c.Configs[0].Peers[i].GRPC
	c.mu.Lock()
	defer c.mu.Unlock()
	cc, ok := c.admins[ep]
	if !ok {
		var err error
		cc, err = grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.t.Fatal(err)
		}
		c.admins[ep] = cc
	}
	return wdsv1.NewAdminClient(cc)
}

// AnyAdmin returns an Admin client for some running node.
func (c *Cluster) AnyAdmin() wdsv1.AdminClient {
	for i, n := range c.Nodes {
		if n != nil {
			return c.Admin(i)
		}
	}
	c.t.Fatal("no node running")
	return nil
}

// OnAny runs f against each running node's Admin service in turn until one
// succeeds, as a CLI or client with every endpoint would; it returns the
// last error.
func (c *Cluster) OnAny(f func(wdsv1.AdminClient) error) error {
	var err error
	for i, n := range c.Nodes {
		if n == nil {
			continue
		}
		if err = f(c.Admin(i)); err == nil {
			return nil
		}
	}
	return err
}

// CreateDomain creates a domain through any node (retrying while the cell
// has no leader).
func (c *Cluster) CreateDomain(name string, kind topology.Kind, shards int, ttl time.Duration) {
	c.t.Helper()
	d := topology.Domain{Name: name, Kind: kind, Shards: shards, TTL: ttl}
	Eventually(c.t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return c.OnAny(func(a wdsv1.AdminClient) error {
			_, err := a.CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: topology.DomainToProto(d)})
			return err
		})
	})
}

// ShardMap returns a domain's shard map from the leader.
func (c *Cluster) ShardMap(domain string) (*wdsv1.ShardMapResponse, error) {
	var out *wdsv1.ShardMapResponse
	err := c.OnAny(func(a wdsv1.AdminClient) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var err error
		out, err = a.ShardMap(ctx, &wdsv1.ShardMapRequest{Domain: domain})
		return err
	})
	return out, err
}

// OwnerCounts counts ACTIVE shards per owner in a domain.
func (c *Cluster) OwnerCounts(domain string) (map[string]int, error) {
	m, err := c.ShardMap(domain)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, s := range m.GetShards() {
		if s.GetOwner() != "" && s.GetState() == wdsv1.GrantState_GRANT_STATE_ACTIVE {
			out[s.GetOwner()]++
		}
	}
	return out, nil
}

// Eventually retries f until it returns nil or timeout passes (then fails
// the test with f's last error). It polls; it asserts no timing.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
