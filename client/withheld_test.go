package client

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// scriptCell is a fake cell leader over real gRPC loopback whose sessions
// the test scripts: welcome builds the Welcome of each Hello, acks decides
// what each heartbeat's ack withholds, and push sends any message on the
// current stream. Hellos, heartbeats and releases are recorded.
type scriptCell struct {
	wdsv1.UnimplementedSessionServer
	welcome func(h *wdsv1.Hello) *wdsv1.Welcome

	mu       sync.Mutex
	withhold []string // what acks withhold now
	hellos   []*wdsv1.Hello
	released []*wdsv1.ShardRef
	stream   grpc.BidiStreamingServer[wdsv1.ClientMessage, wdsv1.ServerMessage]
	end      chan error // ends the current session with this error
	beats    chan uint64
}

func (s *scriptCell) Locate(context.Context, *wdsv1.LocateRequest) (*wdsv1.LocateResponse, error) {
	return &wdsv1.LocateResponse{NodeId: "n1", Leader: true, Region: "r"}, nil
}

func (s *scriptCell) Connect(st grpc.BidiStreamingServer[wdsv1.ClientMessage, wdsv1.ServerMessage]) error {
	m, err := st.Recv()
	if err != nil {
		return err
	}
	h := m.GetHello()
	w := s.welcome(h)
	w.AckSeq = h.GetSeq()
	s.mu.Lock()
	s.hellos = append(s.hellos, h)
	s.stream = st
	end := make(chan error, 1)
	s.end = end
	err = st.Send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Welcome{Welcome: w}})
	s.mu.Unlock()
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			s.mu.Lock()
			if hb := m.GetHeartbeat(); hb != nil {
				_ = st.Send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_HeartbeatAck{HeartbeatAck: &wdsv1.HeartbeatAck{
					Seq: hb.GetSeq(), Withheld: append([]string(nil), s.withhold...)}}})
				if s.beats != nil {
					select {
					case s.beats <- hb.GetSeq():
					default:
					}
				}
			}
			s.released = append(s.released, m.GetRelease().GetShards()...)
			s.mu.Unlock()
		}
	}()
	select {
	case err := <-end:
		return err
	case err := <-errc:
		return err
	}
}

func (s *scriptCell) setWithhold(ds ...string) {
	s.mu.Lock()
	s.withhold = ds
	s.mu.Unlock()
}

func (s *scriptCell) push(m *wdsv1.ServerMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.stream.Send(m)
}

func (s *scriptCell) releasedRefs() []*wdsv1.ShardRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*wdsv1.ShardRef(nil), s.released...)
}

func startScriptCell(t *testing.T, s *scriptCell) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	wdsv1.RegisterSessionServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// shardRunner is a handler that records each running shard's context.
type shardRunner struct {
	mu   sync.Mutex
	ctxs map[string]context.Context // by Shard.String()
	runs chan Shard
}

func newShardRunner() *shardRunner {
	return &shardRunner{ctxs: map[string]context.Context{}, runs: make(chan Shard, 16)}
}

func (r *shardRunner) handle(ctx context.Context, s Shard) {
	r.mu.Lock()
	r.ctxs[s.String()] = ctx
	r.mu.Unlock()
	r.runs <- s
	<-ctx.Done()
}

func (r *shardRunner) ctx(s Shard) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctxs[s.String()]
}

func startTestConsumer(t *testing.T, ep string, domains []string, h Handler) *Consumer {
	t.Helper()
	c, err := NewConsumer(Config{Endpoints: []string{ep}, ID: "c1", Region: "r", Domains: domains, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func grantOf(domain, region string, rng topology.Range, index uint64) *wdsv1.ShardGrant {
	return &wdsv1.ShardGrant{Domain: domain, Region: region, Range: topology.RangeToProto(rng), Token: &wdsv1.Token{Generation: 1, Index: index}}
}

func shardOf(g *wdsv1.ShardGrant) Shard {
	rng, _ := topology.RangeFromProto("range", g.GetRange())
	return Shard{Domain: g.GetDomain(), Region: g.GetRegion(), Range: rng, Token: topology.TokenFromProto(g.GetToken())}
}

func twoDomainWelcome(grants ...*wdsv1.ShardGrant) func(*wdsv1.Hello) *wdsv1.Welcome {
	return func(*wdsv1.Hello) *wdsv1.Welcome {
		return &wdsv1.Welcome{NodeId: "n1", Region: "r", Drift: 0.01, HeartbeatIntervalMillis: 300, Acked: true,
			Leases: []*wdsv1.DomainLease{{Domain: "d", TtlMillis: 900}, {Domain: "e", TtlMillis: 900}}, Grants: grants}
	}
}

func waitRun(t *testing.T, r *shardRunner, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-r.runs:
		case <-time.After(3 * time.Second):
			t.Fatalf("%d of %d shards started", i, n)
		}
	}
}

// TestWithheldAckLetsDomainLapse: contract (5) on the client. From some
// point every ack withholds domain d (the cell's delegation for it is
// lapsing): d's shard must end at its old deadline (lease 900 ms), while
// e's shard, extended by the same acks, runs on. A client that ignored
// withheld would keep d's shard running.
func TestWithheldAckLetsDomainLapse(t *testing.T) {
	gd, ge := grantOf("d", "", testRanges[0], 7), grantOf("e", "", testRanges[0], 8)
	cell := &scriptCell{welcome: twoDomainWelcome(gd, ge)}
	ep := startScriptCell(t, cell)
	r := newShardRunner()
	c := startTestConsumer(t, ep, []string{"d", "e"}, r.handle)
	waitRun(t, r, 2)
	cell.setWithhold("d")
	withheldAt := time.Now()
	select {
	case <-r.ctx(shardOf(gd)).Done():
		// Its last extension came from a heartbeat sent before the
		// withholding began: it lapses within one lease of it.
		if waited := time.Since(withheldAt); waited > 1200*time.Millisecond {
			t.Errorf("d's shard ended %v after acks began withholding it, want within its 900 ms lease", waited)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("d's shard still running 3 s after every ack began withholding d: withheld ignored")
	}
	time.Sleep(time.Second) // more than e's lease: only acks keep it
	if err := r.ctx(shardOf(ge)).Err(); err != nil {
		t.Fatalf("e's shard ended (%v) although every ack extended e", err)
	}
	held := c.Held()
	if len(held) != 1 || held[0].Domain != "e" {
		t.Fatalf("held %v, want only e's shard", held)
	}
	// Once acks extend d again, a new grant of d starts.
	cell.setWithhold()
	g2 := grantOf("d", "", testRanges[1], 9)
	time.Sleep(700 * time.Millisecond)
	cell.push(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Grant{Grant: &wdsv1.Grant{Shards: []*wdsv1.ShardGrant{g2}}}})
	waitRun(t, r, 1)
}

// TestGrantInWithheldDomainWaits: a grant that arrives after an ack that
// withheld its domain must not start under the old validity, which the
// cell no longer vouches for; it starts with the next ack that extends the
// domain. A client that ignored withheld would start it at once.
func TestGrantInWithheldDomainWaits(t *testing.T) {
	ge := grantOf("e", "", testRanges[0], 8)
	cell := &scriptCell{welcome: twoDomainWelcome(ge), beats: make(chan uint64, 1)}
	ep := startScriptCell(t, cell)
	r := newShardRunner()
	c := startTestConsumer(t, ep, []string{"d", "e"}, r.handle)
	waitRun(t, r, 1)
	cell.setWithhold("d")
	// Wait for a heartbeat acked with d withheld (the old validity of d,
	// from the Welcome and earlier acks, still runs).
	<-cell.beats
	<-cell.beats
	gd := grantOf("d", "", testRanges[1], 9)
	cell.push(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Grant{Grant: &wdsv1.Grant{Shards: []*wdsv1.ShardGrant{gd}}}})
	select {
	case s := <-r.runs:
		t.Fatalf("%v started in a withheld domain", s)
	case <-time.After(400 * time.Millisecond):
	}
	if len(c.Held()) != 1 {
		t.Fatalf("held %v, want only e's shard", c.Held())
	}
	cell.setWithhold()
	select {
	case s := <-r.runs:
		if s.Domain != "d" {
			t.Fatalf("started %v, want d's shard", s)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("d's grant not started after an ack extended d")
	}
}

// TestWelcomeWithheldDomain: a Welcome that withholds d acknowledges the
// Hello for e only: a new grant of d listed in it waits for an ack that
// extends d.
func TestWelcomeWithheldDomain(t *testing.T) {
	gd, ge := grantOf("d", "", testRanges[0], 7), grantOf("e", "", testRanges[0], 8)
	welcome := twoDomainWelcome(gd, ge)
	cell := &scriptCell{welcome: func(h *wdsv1.Hello) *wdsv1.Welcome {
		w := welcome(h)
		w.Withheld = []string{"d"}
		return w
	}}
	cell.setWithhold("d")
	ep := startScriptCell(t, cell)
	r := newShardRunner()
	c := startTestConsumer(t, ep, []string{"d", "e"}, r.handle)
	waitRun(t, r, 1)
	time.Sleep(700 * time.Millisecond)
	if held := c.Held(); len(held) != 1 || held[0].Domain != "e" {
		t.Fatalf("held %v, want only e's shard while d is withheld", held)
	}
	cell.setWithhold()
	waitRun(t, r, 1)
	if len(c.Held()) != 2 {
		t.Fatalf("held %v, want both shards", c.Held())
	}
}

// TestKeySpacesKeptApart: two shards of one REGIONAL domain with the same
// range in two key spaces (regions a and b, as after a regional failover)
// are two shards: both run; a revoke of b's ends b's only and its Release
// names region b; a resuming Hello lists a's with its region.
func TestKeySpacesKeptApart(t *testing.T) {
	ga, gb := grantOf("d", "a", testRanges[0], 7), grantOf("d", "b", testRanges[0], 8)
	var mu sync.Mutex
	sessions := 0
	cell := &scriptCell{welcome: func(h *wdsv1.Hello) *wdsv1.Welcome {
		mu.Lock()
		defer mu.Unlock()
		sessions++
		w := &wdsv1.Welcome{NodeId: "n1", Region: "r", Drift: 0.01, HeartbeatIntervalMillis: 300, Acked: true,
			Leases: []*wdsv1.DomainLease{{Domain: "d", TtlMillis: 900}}}
		if sessions == 1 {
			w.Grants = []*wdsv1.ShardGrant{ga, gb}
		} else {
			w.Grants = h.GetHeld()
		}
		return w
	}}
	ep := startScriptCell(t, cell)
	r := newShardRunner()
	c := startTestConsumer(t, ep, []string{"d"}, r.handle)
	waitRun(t, r, 2)
	regions := map[string]bool{}
	for _, s := range c.Held() {
		regions[s.Region] = true
	}
	if len(regions) != 2 || !regions["a"] || !regions["b"] {
		t.Fatalf("held %v, want d's shard in key spaces a and b", c.Held())
	}
	cell.push(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Revoke{Revoke: &wdsv1.Revoke{Shards: []*wdsv1.ShardRef{
		{Domain: "d", Region: "b", Range: gb.GetRange(), Token: gb.GetToken()}}}}})
	deadline := time.Now().Add(3 * time.Second)
	for len(cell.releasedRefs()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	rel := cell.releasedRefs()
	if len(rel) != 1 || rel[0].GetRegion() != "b" || rel[0].GetToken().GetIndex() != 8 {
		t.Fatalf("released %v, want b's shard (token 8) with region b", rel)
	}
	if r.ctx(shardOf(ga)).Err() != nil {
		t.Fatal("a's shard ended by a revoke of b's")
	}
	// Reconnect: the resuming Hello names a's shard with its key space.
	cell.mu.Lock()
	cell.end <- context.Canceled
	cell.mu.Unlock()
	for time.Now().Before(deadline.Add(2 * time.Second)) {
		cell.mu.Lock()
		n := len(cell.hellos)
		cell.mu.Unlock()
		if n >= 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cell.mu.Lock()
	hellos := cell.hellos
	cell.mu.Unlock()
	if len(hellos) < 2 {
		t.Fatal("no resuming Hello")
	}
	held := hellos[1].GetHeld()
	if len(held) != 1 || held[0].GetRegion() != "a" || held[0].GetToken().GetIndex() != 7 {
		t.Fatalf("resuming Hello held %v, want a's shard with region a", held)
	}
	time.Sleep(300 * time.Millisecond)
	if hs := c.Held(); len(hs) != 1 || hs[0].Region != "a" {
		t.Fatalf("held %v after resuming, want a's shard", hs)
	}
}

// TestObserverLooksUpInWelcomeRegion: an observer that names no region
// looks REGIONAL domains up in the key space of the region its Welcome
// names, and in any with LookupIn.
func TestObserverLooksUpInWelcomeRegion(t *testing.T) {
	cell := &scriptCell{welcome: func(*wdsv1.Hello) *wdsv1.Welcome { return &wdsv1.Welcome{NodeId: "n1", Region: "b"} }}
	ep := startScriptCell(t, cell)
	o, err := NewObserver(ObserverConfig{Endpoints: []string{ep}, Watch: []string{"d"}})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	regional := wdsv1.DomainKind_DOMAIN_KIND_REGIONAL
	for {
		cell.mu.Lock()
		up := cell.stream != nil
		cell.mu.Unlock()
		if up {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cell.push(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Routing{Routing: &wdsv1.Routing{Version: 1, Snapshot: true, Domains: []*wdsv1.DomainRouting{
		{Domain: "d", Region: "a", Kind: regional, Replace: true, Entries: entries(testRanges, "in-a")},
		{Domain: "d", Region: "b", Kind: regional, Replace: true, Entries: entries(testRanges, "in-b")},
	}}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	var key [16]byte
	if rt, ok := o.Routing().Lookup("d", key); !ok || rt.Owner != "in-b" || o.Routing().Region() != "b" {
		t.Errorf("Lookup = %+v %v (region %q), want b's key space", rt, ok, o.Routing().Region())
	}
	if rt, ok := o.Routing().LookupIn("d", "a", key); !ok || rt.Owner != "in-a" {
		t.Errorf("LookupIn a = %+v %v", rt, ok)
	}
}
