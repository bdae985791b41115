//go:build !race

// Built without the race detector: under -race, Go 1.26's runtime crashes
// now and then in a timer of a synctest bubble (SIGSEGV in
// runtime.(*timer).modify, reached from bufconn's time.AfterFunc). `make
// test` runs these tests in a pass of their own without -race.

package cell_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/chaos"
	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/internal/lease"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// The delegation edge cases again, on fake time (testing/synctest): a cell
// of real nodes — real Raft over hashicorp/raft's in-memory transport, real
// gRPC over in-memory connections, the real client library — in one bubble,
// so every wait is exact and nothing sleeps in real time. A test of many
// virtual seconds runs in a fraction of one.

// fakeCell is a cell in a synctest bubble.
type fakeCell struct {
	t       *testing.T
	cfgs    []cell.Config // without the Raft transport: startAll sets it
	nodes   []*cell.Node
	servers []*grpc.Server
	trans   []*raft.InmemTransport
	down    []bool
	eps     []string
	history *chaos.History
	dial    grpc.DialOption

	mu        sync.Mutex
	lis       map[string]*bufconn.Listener // by endpoint; replaced on restart
	consumers []*client.Consumer
	conns     []net.Conn // client connections, for blips
	// cut consumers: their connections are closed and redials refused.
	cut    map[string]bool
	connOf map[string][]net.Conn
	// gates of frozen consumers: their connections stay open, and every
	// read and write waits until the gate closes.
	gate map[string]chan struct{}
	// gates of frozen nodes (freezeTo), by endpoint: every consumer's
	// connections to it stall the same way.
	gateTo map[string]chan struct{}
	// events of each consumer, in order.
	events map[string][]client.Event
}

// gatedConn is a client connection that stalls while its consumer is
// frozen (a process paused with its socket open), or the node it leads to
// is (a hung node, as that consumer sees it).
type gatedConn struct {
	net.Conn
	fc   *fakeCell
	id   string
	addr string
}

func (g gatedConn) wait() {
	for {
		g.fc.mu.Lock()
		ch := g.fc.gate[g.id]
		if ch == nil {
			ch = g.fc.gateTo[g.addr]
		}
		g.fc.mu.Unlock()
		if ch == nil {
			return
		}
		<-ch
	}
}

func (g gatedConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	g.wait() // data arrived, but the paused process does not see it
	return n, err
}

func (g gatedConn) Write(p []byte) (int, error) {
	g.wait()
	return g.Conn.Write(p)
}

func newFakeCell(t *testing.T, n int, dg *celltest.Delegator) *fakeCell {
	t.Helper()
	fc := &fakeCell{t: t, lis: map[string]*bufconn.Listener{}, history: &chaos.History{}, cut: map[string]bool{}, connOf: map[string][]net.Conn{},
		gate: map[string]chan struct{}{}, gateTo: map[string]chan struct{}{}, events: map[string][]client.Event{}}
	var peers []cell.Peer
	for i := range n {
		p := cell.Peer{ID: fmt.Sprintf("n%d", i+1), Raft: fmt.Sprintf("127.0.0.1:%d", 1000+i), GRPC: fmt.Sprintf("127.0.0.1:%d", 2000+i)}
		peers = append(peers, p)
		fc.eps = append(fc.eps, p.GRPC)
	}
	fc.dial = grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		fc.mu.Lock()
		l, ok := fc.lis[addr]
		fc.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("no node at %s", addr)
		}
		c, err := l.DialContext(ctx)
		if err == nil {
			fc.mu.Lock()
			fc.conns = append(fc.conns, c)
			fc.mu.Unlock()
		}
		return c, err
	})
	dir := t.TempDir()
	for _, p := range peers {
		cfg := cell.DefaultConfig()
		cfg.NodeID, cfg.Region, cfg.Peers = p.ID, celltest.Region, peers
		cfg.DataDir = filepath.Join(dir, p.ID)
		if dg != nil { // nil: a lone cell, which delegates to itself
			cfg.Delegator, cfg.RenewInterval = dg, delegRenew
		}
		fc.cfgs = append(fc.cfgs, cfg)
	}
	fc.nodes = make([]*cell.Node, n)
	fc.servers = make([]*grpc.Server, n)
	fc.down = make([]bool, n)
	fc.startAll()
	return fc
}

// startAll starts every node from its data dir, on fresh in-memory Raft
// transports (all connected) and fresh listeners at the nodes' addresses,
// and waits for a leader.
func (fc *fakeCell) startAll() {
	fc.t.Helper()
	fc.trans = make([]*raft.InmemTransport, len(fc.cfgs))
	for i, cfg := range fc.cfgs {
		_, fc.trans[i] = raft.NewInmemTransport(raft.ServerAddress(cfg.Peers[i].Raft))
	}
	for i, a := range fc.trans {
		for j, b := range fc.trans {
			if i != j {
				a.Connect(b.LocalAddr(), b)
			}
		}
	}
	for i, cfg := range fc.cfgs {
		cfg.Raft.Transport = fc.trans[i]
		node, err := cell.NewNode(cfg)
		if err != nil {
			fc.t.Fatal(err)
		}
		srv := grpc.NewServer(cell.ServerOptions(cfg)...)
		node.Register(srv)
		l := bufconn.Listen(1 << 20)
		fc.mu.Lock()
		fc.lis[fc.eps[i]] = l
		fc.mu.Unlock()
		go srv.Serve(l)
		fc.nodes[i], fc.servers[i], fc.down[i] = node, srv, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cell.WaitLeader(ctx, fc.nodes...); err != nil {
		fc.t.Fatal(err)
	}
}

// stopAll stops every node as a crash of the whole cell does, keeping the
// data dirs: the gRPC servers stop (every client connection drops and
// redials fail), then, once the last proposals had time to commit (see
// close), the nodes close.
func (fc *fakeCell) stopAll() {
	for _, srv := range fc.servers {
		srv.Stop()
	}
	time.Sleep(time.Second)
	for i, n := range fc.nodes {
		_ = n.Close()
		fc.down[i] = true
	}
}

// close stops every consumer and node; the bubble must end with no
// goroutine left.
func (fc *fakeCell) close() {
	fc.mu.Lock()
	cs := fc.consumers
	fc.mu.Unlock()
	fc.mu.Lock()
	for id, ch := range fc.gate {
		close(ch)
		delete(fc.gate, id)
	}
	for ep, ch := range fc.gateTo {
		close(ch)
		delete(fc.gateTo, ep)
	}
	fc.mu.Unlock()
	for _, c := range cs {
		// Long enough for lingering handlers to return (fake time: free):
		// the bubble may end only once every goroutine has.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_ = c.Close(ctx)
		cancel()
	}
	// Let the last proposals commit: hashicorp/raft never answers an
	// apply still queued when it shuts down, and its waiter would outlive
	// the bubble.
	time.Sleep(time.Second)
	for i, n := range fc.nodes {
		fc.servers[i].Stop()
		_ = n.Close()
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, l := range fc.lis {
		l.Close()
	}
}

// partitionRaft cuts node i's Raft traffic both ways; its gRPC server
// stays up, so clients attached to it stay connected.
func (fc *fakeCell) partitionRaft(i int) {
	fc.trans[i].DisconnectAll()
	for j, t := range fc.trans {
		if j != i {
			t.Disconnect(fc.trans[i].LocalAddr())
		}
	}
}

// kill takes node i out as a crash does, from the cell's and the clients'
// view: its gRPC server stops and its Raft transport is cut both ways. The
// node itself runs on (cut off, it loses its leadership) until close: a
// Close now could strand raft's queued applies (see close).
func (fc *fakeCell) kill(i int) {
	fc.servers[i].Stop()
	fc.partitionRaft(i)
	fc.down[i] = true
}

// cutConsumer takes a consumer off the network for good, as a crash does:
// no drain, no release; its library still ends its shards at its lease
// deadline.
func (fc *fakeCell) cutConsumer(id string) {
	fc.mu.Lock()
	fc.cut[id] = true
	cs := fc.connOf[id]
	fc.connOf[id] = nil
	fc.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// freeze pauses a consumer's network with its connections open; thaw
// resumes it.
func (fc *fakeCell) freeze(id string) {
	fc.mu.Lock()
	fc.gate[id] = make(chan struct{})
	fc.mu.Unlock()
}

func (fc *fakeCell) thaw(id string) {
	fc.mu.Lock()
	if ch := fc.gate[id]; ch != nil {
		close(ch)
		delete(fc.gate, id)
	}
	fc.mu.Unlock()
}

// freezeTo hangs node i as its consumers see it (a SIGSTOPped process, a
// black-holed host): their connections to it stay open, and every read and
// write on them, and on new ones, stalls (until close).
func (fc *fakeCell) freezeTo(i int) {
	fc.mu.Lock()
	if fc.gateTo[fc.eps[i]] == nil {
		fc.gateTo[fc.eps[i]] = make(chan struct{})
	}
	fc.mu.Unlock()
}

// healRaft undoes partitionRaft.
func (fc *fakeCell) healRaft(i int) {
	for j, t := range fc.trans {
		if j != i {
			t.Connect(fc.trans[i].LocalAddr(), fc.trans[i])
			fc.trans[i].Connect(t.LocalAddr(), t)
		}
	}
}

// eventsOf returns a copy of a consumer's events.
func (fc *fakeCell) eventsOf(id string) []client.Event {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return append([]client.Event(nil), fc.events[id]...)
}

// counts returns how many of a consumer's grants were revoked and how many
// leases it lost (its library gave the shard up at its lease deadline).
func (fc *fakeCell) counts(id string) (revokes, losts int) {
	for _, e := range fc.eventsOf(id) {
		switch e.Kind {
		case client.EventRevoke:
			revokes++
		case client.EventLost:
			losts++
		}
	}
	return revokes, losts
}

// blip closes every client connection: sessions resume on new streams
// (a Hello with the session token, answered by a Welcome).
func (fc *fakeCell) blip() {
	fc.mu.Lock()
	cs := fc.conns
	fc.conns = nil
	fc.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

func (fc *fakeCell) leader() int {
	for i, n := range fc.nodes {
		if !fc.down[i] && n.IsLeader() {
			return i
		}
	}
	return -1
}

func (fc *fakeCell) createDomain(name string, kind topology.Kind, shards int, ttl time.Duration) {
	fc.t.Helper()
	// The leader itself: nodes forward admin calls over real TCP, which
	// the bubble does not have.
	cc, err := grpc.NewClient(fc.eps[fc.leader()], fc.dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fc.t.Fatal(err)
	}
	defer cc.Close()
	d := topology.Domain{Name: name, Kind: kind, Shards: shards, TTL: ttl}
	if kind == topology.KindUnit {
		d.Shards = 1
	}
	if _, err := wdsv1.NewAdminClient(cc).CreateDomain(context.Background(), &wdsv1.CreateDomainRequest{Domain: topology.DomainToProto(d)}); err != nil {
		fc.t.Fatal(err)
	}
}

// consumer starts a consumer whose ownership periods go to the history
// and whose events to fc.events; linger keeps the handler running after
// its context ends; opts adjust its configuration.
func (fc *fakeCell) consumer(id string, linger time.Duration, opts ...func(*client.Config)) *client.Consumer {
	fc.t.Helper()
	var mu sync.Mutex
	open := map[string]*chaos.Ownership{}
	dial := grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		fc.mu.Lock()
		cut, l := fc.cut[id], fc.lis[addr]
		fc.mu.Unlock()
		if cut || l == nil {
			return nil, fmt.Errorf("%s: network cut", id)
		}
		conn, err := l.DialContext(ctx)
		if err != nil {
			return nil, err
		}
		fc.mu.Lock()
		fc.conns = append(fc.conns, conn)
		fc.connOf[id] = append(fc.connOf[id], conn)
		fc.mu.Unlock()
		return gatedConn{Conn: conn, fc: fc, id: id, addr: addr}, nil
	})
	cfg := client.Config{
		DialOptions: []grpc.DialOption{dial},
		Endpoints:   fc.eps,
		ID:          id,
		Region:      celltest.Region,
		Endpoint:    id + ".test:8080",
		Domains:     []string{"jobs"},
		Handler: func(ctx context.Context, _ client.Shard) {
			<-ctx.Done()
			time.Sleep(linger)
		},
		OnEvent: func(e client.Event) {
			fc.mu.Lock()
			fc.events[id] = append(fc.events[id], e)
			fc.mu.Unlock()
			mu.Lock()
			defer mu.Unlock()
			key := e.Shard.String()
			switch e.Kind {
			case client.EventGrant:
				open[key] = fc.history.Begin(id, e.Shard.Domain, e.Shard.Region, e.Shard.Range, e.Shard.Token, e.Time)
			case client.EventRevoke, client.EventLost:
				if o := open[key]; o != nil {
					o.End(e.Time)
					delete(open, key)
				}
			}
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := client.NewConsumer(cfg)
	if err != nil {
		fc.t.Fatal(err)
	}
	fc.mu.Lock()
	fc.consumers = append(fc.consumers, c)
	fc.mu.Unlock()
	return c
}

// jobsCell is a fake cell of n nodes with domain jobs (GLOBAL, 4 shards,
// TTL delegTTL) delegated to it whole at generation 1.
func jobsCell(t *testing.T, n int) (*fakeCell, *celltest.Delegator) {
	t.Helper()
	dg := celltest.NewDelegator(delegD, lease.DefaultDrift)
	dg.Delegate("jobs", "", 1)
	fc := newFakeCell(t, n, dg)
	fc.createDomain("jobs", topology.KindGlobal, 4, delegTTL)
	return fc, dg
}

// balancedPair starts consumers a and b and waits until each holds two
// shards of jobs.
func (fc *fakeCell) balancedPair() (a, b *client.Consumer) {
	fc.t.Helper()
	a, b = fc.consumer("a", 0), fc.consumer("b", 0)
	celltest.Eventually(fc.t, 10*time.Second, func() error {
		if na, nb := heldIn(a), heldIn(b); na != 2 || nb != 2 {
			return fmt.Errorf("a holds %d, b %d", na, nb)
		}
		return nil
	})
	return a, b
}

func heldIn(c *client.Consumer) int { return len(c.Held()) }

// checkBound fails for every ownership interval not ended by bound.
func checkBound(t *testing.T, h *chaos.History, bound time.Time) {
	t.Helper()
	ivs := h.Intervals()
	if len(ivs) == 0 {
		t.Fatal("no ownership recorded")
	}
	for _, iv := range ivs {
		switch {
		case iv.End.IsZero():
			t.Errorf("%s still believes it owns %s %s (token %s) after the delegation's end", iv.Consumer, iv.Domain, iv.Range, iv.Token)
		case iv.End.After(bound):
			t.Errorf("%s owned %s %s (token %s) until %v past the delegation's end", iv.Consumer, iv.Domain, iv.Range, iv.Token, iv.End.Sub(bound))
		}
	}
	for _, v := range h.Check() {
		t.Errorf("ownership violation: %s", v)
	}
}

// TestFakeTimeDelegationLapseHandover: the handover probe on fake time,
// both promotion paths (a's Release lands during the lapse; a never
// releases and its grant expires).
func TestFakeTimeDelegationLapseHandover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		linger time.Duration
	}{
		{"release", 2 * time.Second},
		{"expiry", 2*delegTTL + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc, dg := jobsCell(t, 1)
				defer fc.close()
				a := fc.consumer("a", tc.linger)
				celltest.Eventually(t, 10*time.Second, func() error {
					if n := heldIn(a); n != 4 {
						return fmt.Errorf("a holds %d, want 4", n)
					}
					return nil
				})
				b := fc.consumer("b", 0)
				celltest.Eventually(t, 10*time.Second, func() error {
					for _, e := range fc.history.Intervals() {
						if e.Consumer == "a" && !e.End.IsZero() {
							return nil // the handover started: a was revoked
						}
					}
					return fmt.Errorf("no revocation of a yet")
				})
				bound := dg.Stop()
				time.Sleep(time.Until(bound) + 2*time.Second)
				checkBound(t, fc.history, bound)
				if heldIn(a)+heldIn(b) != 0 {
					t.Errorf("after the lapse a holds %d and b %d", heldIn(a), heldIn(b))
				}
			})
		})
	}
}

// TestFakeTimeDelegationLapseLeaderKill: the leader dies as the delegation
// lapses; the new leader cannot renew and must not extend what it cannot
// vouch for — neither by heartbeat acks nor by the Welcome of a resuming
// session. Killed at once, the sessions resume on a leader that never
// renewed; killed late (just before the old leader would sweep), they
// resume with leases still valid, where an unguarded Welcome would carry
// them past the delegation's end.
func TestFakeTimeDelegationLapseLeaderKill(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration
	}{{"at once", 0}, {"late", 2500 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc, dg := jobsCell(t, 3)
				defer fc.close()
				fc.balancedPair()
				bound := dg.Stop()
				time.Sleep(tc.after)
				fc.kill(fc.leader())
				time.Sleep(time.Until(bound) + 2*time.Second)
				checkBound(t, fc.history, bound)
			})
		})
	}
}

// TestFakeTimeDelegationLeaderChangeNoChurn: with the delegator renewing,
// killing the leader costs no grant.
func TestFakeTimeDelegationLeaderChangeNoChurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc, _ := jobsCell(t, 3)
		defer fc.close()
		fc.balancedPair()
		before := len(fc.history.Intervals())
		fc.kill(fc.leader())
		time.Sleep(2 * delegTTL)
		if l := fc.leader(); l < 0 {
			t.Fatal("no new leader")
		}
		for _, iv := range fc.history.Intervals() {
			if !iv.End.IsZero() {
				t.Errorf("%s lost %s %s at the leader change", iv.Consumer, iv.Domain, iv.Range)
			}
		}
		if n := len(fc.history.Intervals()); n != before {
			t.Errorf("%d grants after the leader change, want none", n-before)
		}
	})
}

// TestFakeTimeDelegationLapseWelcome: sessions that resume (new streams,
// Welcomes) again and again through the lapse are not told their grants run
// on.
func TestFakeTimeDelegationLapseWelcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc, dg := jobsCell(t, 1)
		defer fc.close()
		a := fc.consumer("a", 0)
		celltest.Eventually(t, 10*time.Second, func() error {
			if n := heldIn(a); n != 4 {
				return fmt.Errorf("a holds %d, want 4", n)
			}
			return nil
		})
		bound := dg.Stop()
		welcomes := 0
		for time.Now().Before(bound.Add(-300 * time.Millisecond)) {
			fc.blip()
			welcomes++
			time.Sleep(250 * time.Millisecond)
		}
		time.Sleep(time.Until(bound) + 2*time.Second)
		checkBound(t, fc.history, bound)
		if welcomes < 10 {
			t.Fatalf("only %d resumes during the lapse", welcomes)
		}
	})
}

// TestFakeTimeConsumerKilled: contract (3) on fake time. A consumer that
// vanishes (connection cut, no release) keeps its shards until the leader's
// deadline, r + T·(1+ε) from its last heartbeat; then they go to the
// survivor — not before the dead consumer's own library gave them up, and
// within one balancing round of the deadline.
func TestFakeTimeConsumerKilled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc, _ := jobsCell(t, 3)
		defer fc.close()
		_, b := fc.balancedPair()
		killed := time.Now()
		fc.cutConsumer("a")
		celltest.Eventually(t, 2*delegTTL, func() error {
			if nb := heldIn(b); nb != 4 {
				return fmt.Errorf("b holds %d, want 4", nb)
			}
			return nil
		})
		took := time.Since(killed)
		// a's last heartbeat was at most one interval (T/3) before the cut.
		hold := time.Duration(float64(delegTTL) * (1 + lease.DefaultDrift))
		if took < hold-delegTTL/3 || took > hold+time.Second {
			t.Errorf("a's shards moved %v after the cut, want within [T·(1+ε) − T/3, T·(1+ε) + 1 s]", took)
		}
		for _, v := range fc.history.Check() {
			t.Errorf("ownership violation: %s", v)
		}
	})
}

// TestFakeTimeConsumerFrozen: a consumer paused with its socket open (no
// heartbeats, nothing read) gives its shards up by its own deadline, before
// the leader hands them to anyone else; once thawed it rejoins the balance.
func TestFakeTimeConsumerFrozen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc, _ := jobsCell(t, 3)
		defer fc.close()
		a, b := fc.consumer("a", 0), fc.consumer("b", 0)
		balanced := func() error {
			if na, nb := heldIn(a), heldIn(b); na != 2 || nb != 2 {
				return fmt.Errorf("a holds %d, b %d", na, nb)
			}
			return nil
		}
		celltest.Eventually(t, 10*time.Second, balanced)
		frozen := time.Now()
		fc.freeze("a")
		celltest.Eventually(t, 2*delegTTL, func() error {
			if nb := heldIn(b); nb != 4 {
				return fmt.Errorf("b holds %d, want 4", nb)
			}
			return nil
		})
		if took := time.Since(frozen); took > time.Duration(float64(delegTTL)*(1+lease.DefaultDrift))+time.Second {
			t.Errorf("a's shards moved %v after the freeze, want within T·(1+ε) + 1 s", took)
		}
		for _, iv := range fc.history.Intervals() {
			if iv.Consumer == "a" && (iv.End.IsZero() || iv.End.After(frozen.Add(delegTTL))) {
				t.Errorf("frozen a believed it owned %s until %v after the freeze, past T", iv.Range, iv.End.Sub(frozen))
			}
		}
		// Its own library gave them up, at its lease deadline: it heard
		// nothing, so no revocation could have.
		if revokes, lost := fc.counts("a"); revokes != 0 || lost != 2 {
			t.Errorf("frozen a: %d revocations and %d lost leases, want 0 and 2", revokes, lost)
		}
		fc.thaw("a")
		celltest.Eventually(t, 4*delegTTL, balanced)
		for _, v := range fc.history.Check() {
			t.Errorf("ownership violation: %s", v)
		}
	})
}

// TestFakeTimeLeaderPartitionNoChurn: the leader is cut off from its
// followers while its clients stay connected to it. It stops acking within
// its confirmation window; the sessions find the new leader and resume;
// nobody loses or is granted anything.
func TestFakeTimeLeaderPartitionNoChurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc, _ := jobsCell(t, 3)
		defer fc.close()
		fc.balancedPair()
		before := len(fc.history.Intervals())
		old := fc.leader()
		fc.partitionRaft(old)
		fc.down[old] = true // not a candidate for leader() any more
		time.Sleep(3 * delegTTL)
		if l := fc.leader(); l < 0 {
			t.Fatal("no new leader")
		}
		for _, iv := range fc.history.Intervals() {
			if !iv.End.IsZero() {
				t.Errorf("%s lost %s %s when the leader was partitioned", iv.Consumer, iv.Domain, iv.Range)
			}
		}
		if n := len(fc.history.Intervals()); n != before {
			t.Errorf("%d grants after the partition, want none", n-before)
		}
	})
}
