package federation_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// TestFederationRoutingAcrossRegions: every endpoint serves the routing of
// every region's cell. An observer at eu-west's endpoint finds the owners
// of keys held in us-east and ap-south, the GLOBAL table is whole there
// (per-source versions for every region), REGIONAL key spaces of other
// regions are visible with LookupIn, and a move across regions shows up.
func TestFederationRoutingAcrossRegions(t *testing.T) {
	f := newFed(t, threeRegions)
	f.applyTopology(dom("prices", kGlobal, 12), dom("orders", kRegional, 4))
	a1 := f.consumer("us-east", "a1", "prices", "orders")
	c1 := f.consumer("ap-south", "c1", "prices", "orders")
	waitHeld(t, "us-east and ap-south hold prices", balanced("prices/", map[string]int{"a1": 6, "c1": 6}), a1, c1)

	var eps []string
	for _, p := range f.cfgs[f.index("eu-west")].Cell.Peers {
		eps = append(eps, p.GRPC)
	}
	obs, err := client.NewObserver(client.ObserverConfig{Endpoints: eps, Watch: []string{"prices", "orders"}, DialOptions: nil})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := obs.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	ranges, _ := topology.SplitEven(12)
	owners := func() (map[string]int, error) {
		got := map[string]int{}
		for _, r := range ranges {
			k, _ := r.From.Key()
			rt, ok := obs.Routing().Lookup("prices", k)
			if !ok || rt.Owner == "" {
				return nil, fmt.Errorf("no owner of %s at eu-west's endpoint (table %v)", k, obs.Routing().Table("prices"))
			}
			got[rt.Owner]++
		}
		return got, nil
	}
	start := time.Now()
	celltest.Eventually(t, 10*time.Second, func() error {
		got, err := owners()
		if err != nil {
			return err
		}
		if got["a1"] != 6 || got["c1"] != 6 {
			return fmt.Errorf("owners at eu-west %v", got)
		}
		if k, _ := uuid.Parse("00000000-0000-0000-0000-000000000001"); true {
			if rt, ok := obs.Routing().LookupIn("orders", "us-east", k); !ok || rt.Owner != "a1" {
				return fmt.Errorf("orders/us-east at eu-west: %+v %v", rt, ok)
			}
		}
		return nil
	})
	t.Logf("eu-west's endpoint serves the owners held in us-east and ap-south (%v); versions %v", time.Since(start).Round(time.Millisecond), obs.Routing().Versions())
	if v := obs.Routing().Versions(); v["us-east"] == 0 || v["ap-south"] == 0 {
		t.Fatalf("per-source versions %v: want us-east and ap-south", v)
	}

	// The shard map from eu-west's endpoint lists every shard, with the
	// region holding its delegation.
	cc, err := grpc.NewClient(eps[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	celltest.Eventually(t, 10*time.Second, func() error {
		sm, err := wdsv1.NewAdminClient(cc).ShardMap(ctx, &wdsv1.ShardMapRequest{Domain: "prices"})
		if err != nil {
			return err
		}
		by := map[string]int{}
		for _, s := range sm.GetShards() {
			by[s.GetDelegatedTo()+"/"+s.GetOwner()]++
		}
		if len(sm.GetShards()) != 12 || by["us-east/a1"] != 6 || by["ap-south/c1"] != 6 {
			return fmt.Errorf("eu-west's shard map: %d shards, %v", len(sm.GetShards()), by)
		}
		return nil
	})

	// A consumer joins in eu-west: a third of prices moves there; the
	// observer's table follows, across sources.
	b1 := f.consumer("eu-west", "b1", "prices")
	waitHeld(t, "three regions", balanced("prices/", map[string]int{"a1": 4, "b1": 4, "c1": 4}), a1, b1, c1)
	celltest.Eventually(t, 10*time.Second, func() error {
		got, err := owners()
		if err != nil {
			return err
		}
		if got["a1"] != 4 || got["b1"] != 4 || got["c1"] != 4 {
			return fmt.Errorf("owners at eu-west %v", got)
		}
		return nil
	})
	checkHistory(t, f.History)
}

// TestFederationCreateDomainAnywhere: a domain created through any
// region's cell Admin goes into the global catalog: every cell has it,
// consumers in two regions share it, and deleting it through a third
// region's endpoint removes it everywhere.
func TestFederationCreateDomainAnywhere(t *testing.T) {
	f := newFed(t, threeRegions)
	f.applyTopology()
	celltest.Eventually(t, 10*time.Second, func() error {
		for _, n := range f.nodes {
			if !n.Cell.IsLeader() {
				return fmt.Errorf("%s does not lead its cell yet", n.Cell.ID())
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	admin := func(region string) wdsv1.AdminClient {
		cc, err := grpc.NewClient(f.cfgs[f.index(region)].Cell.Peers[0].GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return wdsv1.NewAdminClient(cc)
	}
	resp, err := admin("ap-south").CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: dom("jobs", kGlobal, 8)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDomain().GetCreatedIndex() == 0 {
		t.Fatalf("created %v: want the global incarnation", resp.GetDomain())
	}
	for _, r := range threeRegions {
		celltest.Eventually(t, 5*time.Second, func() error {
			l, err := admin(r).ListDomains(ctx, &wdsv1.ListDomainsRequest{})
			if err != nil || len(l.GetDomains()) != 1 || l.GetDomains()[0].GetCreatedIndex() != resp.GetDomain().GetCreatedIndex() {
				return fmt.Errorf("%s lists %v (%v)", r, l.GetDomains(), err)
			}
			return nil
		})
	}
	a := f.consumer("us-east", "a", "jobs")
	e := f.consumer("eu-west", "e", "jobs")
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range f.nodes {
				if n != nil && n.Global != nil && n.Global.IsLeader() {
					t.Logf("global delegations: %+v", n.Global.State().Delegations(""))
				}
			}
		}
	})
	waitHeld(t, "jobs shared", balanced("jobs/", map[string]int{"a": 4, "e": 4}), a, e)
	if _, err := admin("us-east").CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: dom("jobs", kGlobal, 8)}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("creating it again: %v, want AlreadyExists", err)
	}
	if _, err := admin("ap-south").DeleteDomain(ctx, &wdsv1.DeleteDomainRequest{Name: "jobs"}); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, "jobs deleted", func(h map[string]map[string]int) error {
		if len(h["jobs/"]) != 0 {
			return fmt.Errorf("jobs still held: %v", h["jobs/"])
		}
		return nil
	}, a, e)
	celltest.Eventually(t, 10*time.Second, func() error {
		if _, _, ok := f.globalLeader().State().Domain("jobs"); ok {
			return fmt.Errorf("jobs not purged from the global catalog yet")
		}
		return nil
	})
	checkHistory(t, f.History)
}

// TestFederationRoutingResync: a routing stream that falls behind is
// resynced — its queued changes dropped, a fresh snapshot of every source
// sent — and ends up with the same table as the consumers hold; no
// per-source version the observer serves ever goes backwards, across the
// resync and across a reconnect to another node of the region.
//
// The stream falls behind for real: the observer reaches eu-west through
// a proxy the test pauses, on a connection with static 64 KiB flow-control
// windows, so the node's writes stall once the window is full while
// consumers in us-east and ap-south move a 2048-shard domain back and
// forth (deltas of tens of KiB) and the node's routing queue (4 frames
// here) overflows.
func TestFederationRoutingResync(t *testing.T) {
	f := newFed(t, threeRegions, withCellNodes("eu-west", 2), withCellConfig(func(c *cell.Config) { c.MaxRoutingQueue = 4 }))
	const shards = 2048
	f.applyTopology(dom("prices", kGlobal, shards))
	a1 := f.consumer("us-east", "a1", "prices")
	c1 := f.consumer("ap-south", "c1", "prices")
	waitHeld(t, "us-east and ap-south hold prices", balanced("prices/", map[string]int{"a1": shards / 2, "c1": shards / 2}), a1, c1)

	eu := f.cfgs[f.index("eu-west")].Cell.Peers
	px := startPauseProxy(t, eu[0].GRPC)
	obs, err := client.NewObserver(client.ObserverConfig{
		Endpoints: []string{px.addr()}, Watch: []string{"prices"},
		DialOptions: []grpc.DialOption{grpc.WithInitialWindowSize(1 << 16), grpc.WithInitialConnWindowSize(1 << 16)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()

	// Every 2 ms, the per-source versions the observer serves: none may go
	// backwards.
	stop := make(chan struct{})
	regressed := make(chan string, 1)
	var monitor sync.WaitGroup
	monitor.Add(1)
	go func() {
		defer monitor.Done()
		last := map[string]uint64{}
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			for src, v := range obs.Routing().Versions() {
				if v < last[src] {
					select {
					case regressed <- fmt.Sprintf("source %s: version %d after %d", src, v, last[src]):
					default:
					}
				}
				last[src] = v
			}
		}
	}()

	ranges, _ := topology.SplitEven(shards)
	// matches: the observer's owner of every shard is the consumer that
	// holds it.
	matches := func(cs ...*celltest.Consumer) func() error {
		return func() error {
			truth := map[topology.Range]string{}
			for _, c := range cs {
				for _, s := range c.Owned() {
					truth[s.Range] = c.ID
				}
			}
			wrong := 0
			var first string
			for _, r := range ranges {
				k, _ := r.From.Key()
				rt, ok := obs.Routing().Lookup("prices", k)
				if !ok || rt.Owner != truth[r] {
					if wrong == 0 {
						first = fmt.Sprintf("%s: observer says %q (%v), held by %q", r, rt.Owner, ok, truth[r])
					}
					wrong++
				}
			}
			if wrong > 0 {
				return fmt.Errorf("%d of %d shards routed wrong; first %s", wrong, shards, first)
			}
			return nil
		}
	}
	celltest.Eventually(t, 10*time.Second, matches(a1, c1))

	euNode := f.nodes[f.index("eu-west")].Cell
	const resyncs = "wds_cell_routing_resyncs_total"
	before := celltest.Metric(euNode, resyncs)

	// Paused: ranges move between regions — a consumer joins us-east, then
	// leaves, and so on — while the observer reads nothing, for well under
	// the 15 s after which an observer gives up on a silent stream and
	// reconnects (a reconnect gets a fresh snapshot too, but is not the
	// resync under test).
	px.pause()
	paused := time.Now()
	var a2 *celltest.Consumer
	halves := balanced("prices/", map[string]int{"a1": shards / 2, "c1": shards / 2})
	leave := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a2.Close(ctx); err != nil {
			t.Fatal(err)
		}
		waitHeld(t, a2.ID+" left", halves, a1, c1)
		a2 = nil
	}
	for step := 0; step < 6 && time.Since(paused) < 4*time.Second; step++ {
		if a2 != nil {
			leave()
			continue
		}
		a2 = f.consumer("us-east", fmt.Sprintf("a2-%d", step), "prices")
		third := map[string]int{"a1": shards / 3, a2.ID: shards / 3, "c1": shards / 3}
		waitHeld(t, a2.ID+" joined", balancedWithin("prices/", shards, third, 1), a1, a2, c1)
	}
	t.Logf("paused for %v", time.Since(paused).Round(time.Millisecond))
	px.resume()
	celltest.Eventually(t, 10*time.Second, func() error {
		if got := celltest.Metric(euNode, resyncs); got <= before {
			return fmt.Errorf("%s = %v at %s: the stream never fell behind", resyncs, got, euNode.ID())
		}
		return nil
	})
	if a2 != nil {
		leave()
	}
	celltest.Eventually(t, 10*time.Second, matches(a1, c1))
	t.Logf("resynced %v times; versions %v", celltest.Metric(euNode, resyncs)-before, obs.Routing().Versions())

	// Reconnect: the proxy drops its connections and forwards new ones to
	// eu-west's other node, whose views of the other regions' cells need
	// not be at the same versions.
	px.redirect(eu[1].GRPC)
	b := f.consumer("ap-south", "c2", "prices")
	waitHeld(t, "c2 joined", balancedWithin("prices/", shards, map[string]int{"a1": shards / 3, "c1": shards / 3, "c2": shards / 3}, 1), a1, c1, b)
	celltest.Eventually(t, 10*time.Second, matches(a1, c1, b))

	close(stop)
	monitor.Wait()
	select {
	case r := <-regressed:
		t.Fatalf("a per-source version went backwards: %s", r)
	default:
	}
	checkHistory(t, f.History)
}

// pauseProxy forwards TCP connections to a target; while paused it stops
// forwarding what the target sends (what the client sends still goes).
type pauseProxy struct {
	ln net.Listener

	mu     sync.Mutex
	target string
	cond   *sync.Cond
	paused bool
	closed bool
	conns  []net.Conn
}

func startPauseProxy(t *testing.T, target string) *pauseProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pauseProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *pauseProxy) addr() string { return p.ln.Addr().String() }

func (p *pauseProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		s, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(s, c); s.Close() }()
		go p.down(c, s)
	}
}

// down copies from the target to the client, holding while paused.
func (p *pauseProxy) down(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.paused && !p.closed {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *pauseProxy) pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
}

func (p *pauseProxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// redirect drops every connection and forwards new ones to target.
func (p *pauseProxy) redirect(target string) {
	p.mu.Lock()
	p.target = target
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// close drops every connection and refuses new ones.
func (p *pauseProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
}
