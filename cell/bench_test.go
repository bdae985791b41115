package cell_test

// Benchmarks of a 3-node cell (real Raft on disk, gRPC on loopback, all in
// one machine) for the figures DESIGN.md's "Scale and cost" asks about:
// grants/s, heartbeats/s, routing delivery latency to 1,000 watchers, and
// bytes per session and per shard. They report figures (b.ReportMetric);
// they assert no timing. Run each alone, e.g.
//
//	go test ./cell -run '^$' -bench BenchmarkGrants -benchtime 1x -count 3 -timeout 20m
//
// Methods, in short (details at each benchmark):
//   - Grants: 50 consumers are connected, serving a domain that is then
//     created with 20,000 shards; the balancer grants them all; timed from
//     the CreateDomain call until every consumer handler started.
//   - Heartbeats10k: 10,000 consumers (in a child process) with one shard
//     each at TTL 3 s, held for 15 s: renewals/s at the leader, spurious
//     expiries, CPU of the cell process and of the clients.
//   - RoutingDelivery1000: 1,000 observers on all three nodes; one shard
//     changes owner at a time; latency from the owner's grant to each
//     observer's Watch channel.
//   - Memory: heap of the benchmark process (which holds only the cell: the
//     consumers run in a child process) before and after 5,000 sessions and
//     before and after 100,000 granted shards.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Metric family names as exported at /metrics.
const (
	metricRenewals      = "wds_cell_renewals_total"
	metricGrants        = "wds_cell_grants_total"
	metricRevokes       = "wds_cell_revokes_total"
	metricExpiries      = "wds_cell_expiries_total"
	metricCommittedOps  = "wds_cell_committed_ops_total"
	metricCommitLatency = "wds_cell_commit_latency_seconds" // histogram: count = entries
	metricAccessions    = "wds_cell_leader_accessions_total"
)

// TestBenchLoadGen is the child process of the benchmarks' load generator
// (celltest.StartLoadGen); run on its own it does nothing.
func TestBenchLoadGen(t *testing.T) {
	if os.Getenv(celltest.LoadGenEnv) == "" {
		t.Skip("load generator for the benchmarks; runs only in their child process")
	}
	celltest.RunLoadGen(t)
}

// --- helpers ---

func createDomain(ctx context.Context, adm wdsv1.AdminClient, name string, shards int, ttl time.Duration) error {
	d := topology.Domain{Name: name, Kind: topology.KindGlobal, Shards: shards, TTL: ttl}
	_, err := adm.CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: topology.DomainToProto(d)})
	return err
}

// cellGrants is the number of grants (holders and successors) in the
// leader's state.
func cellGrants(b *testing.B, adm wdsv1.AdminClient) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := adm.Status(ctx, &wdsv1.StatusRequest{})
	if err != nil {
		b.Fatal(err)
	}
	return int(st.GetGrants())
}

// deleteDomain deletes a domain and waits until every grant of it ended
// (the purge follows within a balance round: see createAfterPurge).
func deleteDomain(b *testing.B, c *celltest.Cluster, adm wdsv1.AdminClient, name string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := adm.DeleteDomain(ctx, &wdsv1.DeleteDomainRequest{Name: name}); err != nil && status.Code(err) != codes.NotFound {
		b.Fatal(err)
	}
	celltest.Eventually(b, 60*time.Second, func() error {
		if n := cellGrants(b, adm); n != 0 {
			return fmt.Errorf("%d grants left after deleting %s", n, name)
		}
		return nil
	})
	// The purge op is proposed by the next balance round (100 ms).
	time.Sleep(300 * time.Millisecond)
}

// createAfterPurge creates a domain, retrying while the deletion of its
// predecessor is still being purged; it returns when the create was
// accepted and how many attempts it took.
func createAfterPurge(b *testing.B, adm wdsv1.AdminClient, name string, shards int, ttl time.Duration) (time.Time, int) {
	b.Helper()
	for try := 1; ; try++ {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := createDomain(ctx, adm, name, shards, ttl)
		cancel()
		if err == nil {
			return start, try
		}
		if status.Code(err) != codes.FailedPrecondition || try > 100 {
			b.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor polls cond every millisecond until it holds, or fails the
// benchmark after timeout.
func waitFor(b *testing.B, timeout time.Duration, what string, cond func() bool) time.Time {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("not after %v: %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Now()
}

// closeConsumers closes consumers concurrently, bounded by timeout.
func closeConsumers(cons []*client.Consumer, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range cons {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Close(ctx)
		}()
	}
	wg.Wait()
}

// indexSampler records the leader's applied index every millisecond.
type indexSampler struct {
	n    *cell.Node
	stop chan struct{}
	done chan struct{}
	ts   []time.Time
	idx  []uint64
}

func startIndexSampler(n *cell.Node) *indexSampler {
	s := &indexSampler{n: n, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			s.ts = append(s.ts, time.Now())
			s.idx = append(s.idx, n.AppliedIndex())
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *indexSampler) finish() {
	close(s.stop)
	<-s.done
}

// reached is the first sample time at which the applied index was >= idx.
func (s *indexSampler) reached(idx uint64) (time.Time, bool) {
	for i, v := range s.idx {
		if v >= idx {
			return s.ts[i], true
		}
	}
	return time.Time{}, false
}

type stat struct{ vals []float64 }

func (s *stat) add(v float64) { s.vals = append(s.vals, v) }
func (s *stat) median() float64 {
	if len(s.vals) == 0 {
		return 0
	}
	v := append([]float64(nil), s.vals...)
	sort.Float64s(v)
	return v[len(v)/2]
}

// --- 1. grants/s ---

// grantRecorder counts consumer grant events and, per activating log index
// (a token's Index), how many grants that entry carried.
type grantRecorder struct {
	mu      sync.Mutex
	n       int
	byIndex map[uint64]int
	first   time.Time
	last    time.Time
}

func (r *grantRecorder) onEvent(e client.Event) {
	if e.Kind != client.EventGrant {
		return
	}
	r.mu.Lock()
	r.n++
	r.byIndex[e.Shard.Token.Index]++
	if r.first.IsZero() || e.Time.Before(r.first) {
		r.first = e.Time
	}
	if e.Time.After(r.last) {
		r.last = e.Time
	}
	r.mu.Unlock()
}

func (r *grantRecorder) reset() {
	r.mu.Lock()
	r.n, r.byIndex, r.first, r.last = 0, map[uint64]int{}, time.Time{}, time.Time{}
	r.mu.Unlock()
}

func (r *grantRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// grantSetup is a cell with consumers connected to the leader, serving
// domain dom.
type grantSetup struct {
	c      *celltest.Cluster
	leader *cell.Node
	adm    wdsv1.AdminClient
	rec    *grantRecorder
	cons   []*client.Consumer
}

// newGrantSetup starts a 3-node cell and n consumers sharing nconns
// connections to the leader, serving dom (created with 1 shard, which one
// of them is granted).
func newGrantSetup(b *testing.B, dom string, ttl time.Duration, n, nconns int, handler client.Handler) *grantSetup {
	b.Helper()
	c := celltest.New(b, 3)
	li := c.Leader()
	s := &grantSetup{c: c, leader: c.Nodes[li], adm: c.Admin(li), rec: &grantRecorder{byIndex: map[uint64]int{}}}
	conns := celltest.DialConns(b, s.leader.Endpoint(), nconns)
	c.CreateDomain(dom, topology.KindGlobal, 1, ttl)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("g%02d", i)
		cn, err := client.NewConsumer(client.Config{
			Conn: conns[i%nconns], ID: id, Region: celltest.Region, Endpoint: id + ".bench:8080",
			Domains: []string{dom}, Handler: handler, OnEvent: s.rec.onEvent,
		})
		if err != nil {
			b.Fatal(err)
		}
		s.cons = append(s.cons, cn)
	}
	b.Cleanup(func() {
		// Clean shutdown: delete the domain (every grant revoked and
		// released at once), then close the consumers with nothing held.
		deleteDomain(b, c, s.adm, dom)
		closeConsumers(s.cons, 5*time.Second)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, cn := range s.cons {
		if err := cn.WaitConnected(ctx); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, 10*time.Second, "the 1-shard domain granted", func() bool { return s.rec.count() >= 1 })
	return s
}

func holdShard(ctx context.Context, _ client.Shard) { <-ctx.Done() }

// BenchmarkGrants measures grants/s committed by a 3-node cell and
// delivered to consumers.
//
// create: consumers (50, and 5 for comparison) share 5 gRPC connections to
// the leader and serve domain "grants". The domain must exist when they
// say Hello, so it is first created with 1 shard, then deleted (the
// consumers stay registered: a consumer's domains are names); once its
// grant ended and it was purged, each iteration re-creates it with 20,000
// shards. The balancer then assigns every shard in one planning round,
// committed as one log entry; each applied Assign becomes a Grant on the
// owner's stream and the client starts a handler (EventGrant). Timed: from
// the CreateDomain call to the 20,000th EventGrant.
//
// churn: 50 consumers, 2,000 shards, and handlers that return at once: each
// grant is followed by a Release (one per shard, proposed concurrently and
// packed by the batcher) and a new grant from the next balancing round.
// Timed: a 10 s window; grants/s counts EventGrant.
//
// Reported: grants/s (to handlers started); for create also
// grants/s-applied (to the moment the leader applied the last entry
// carrying a grant: its applied index sampled every ms), grant-entries
// (distinct token indexes, i.e. log entries that carried grants),
// first-grant-ms; ops/entry (committed_ops over committed entries, as the
// batcher counted them) and cpu-ms/kgrant (CPU of the whole process —
// cell and in-process clients — per 1,000 grants).
func BenchmarkGrants(b *testing.B) {
	for _, n := range []int{50, 5} {
		b.Run(fmt.Sprintf("create/consumers=%d", n), func(b *testing.B) { benchGrantsCreate(b, n, 20000) })
	}
	b.Run("churn/consumers=50", func(b *testing.B) { benchGrantsChurn(b, 50, 2000, 10*time.Second) })
}

func benchGrantsCreate(b *testing.B, consumers, shards int) {
	const dom, ttl = "grants", 10 * time.Second
	s := newGrantSetup(b, dom, ttl, consumers, 5, holdShard)
	var rate, rateApplied, entries, opsPerEntry, firstGrant, cpu stat
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		deleteDomain(b, s.c, s.adm, dom)
		s.rec.reset()
		ops0, ent0 := celltest.Metric(s.leader, metricCommittedOps), celltest.Metric(s.leader, metricCommitLatency)
		sampler := startIndexSampler(s.leader)
		cpu0 := celltest.CPUTime()
		b.StartTimer()

		t0, tries := createAfterPurge(b, s.adm, dom, shards, ttl)
		t1 := waitFor(b, 60*time.Second, "every shard granted", func() bool { return s.rec.count() >= shards })

		b.StopTimer()
		cpu1 := celltest.CPUTime()
		sampler.finish()
		if tries > 1 {
			b.Logf("create retried %d times while the old domain was purged (timed from the accepted attempt)", tries)
		}
		ops1, ent1 := celltest.Metric(s.leader, metricCommittedOps), celltest.Metric(s.leader, metricCommitLatency)
		s.rec.mu.Lock()
		var maxIdx uint64
		for idx := range s.rec.byIndex {
			maxIdx = max(maxIdx, idx)
		}
		nEntries, first := len(s.rec.byIndex), s.rec.first
		s.rec.mu.Unlock()
		ta, _ := sampler.reached(maxIdx)
		rate.add(float64(shards) / t1.Sub(t0).Seconds())
		rateApplied.add(float64(shards) / ta.Sub(t0).Seconds())
		entries.add(float64(nEntries))
		if ent1 > ent0 {
			opsPerEntry.add((ops1 - ops0) / (ent1 - ent0))
		}
		firstGrant.add(float64(first.Sub(t0).Microseconds()) / 1000)
		cpu.add(float64((cpu1 - cpu0).Milliseconds()) / (float64(shards) / 1000))
		b.Logf("%d grants to %d consumers in %v: leader applied the last grant entry after %v, first handler after %v; %d entries carried grants; batcher: %.0f ops in %.0f entries; process CPU %v",
			shards, consumers, t1.Sub(t0).Round(time.Millisecond), ta.Sub(t0).Round(time.Millisecond), first.Sub(t0).Round(time.Millisecond),
			nEntries, ops1-ops0, ent1-ent0, (cpu1 - cpu0).Round(time.Millisecond))
	}
	b.ReportMetric(rate.median(), "grants/s")
	b.ReportMetric(rateApplied.median(), "grants/s-applied")
	b.ReportMetric(entries.median(), "grant-entries")
	b.ReportMetric(opsPerEntry.median(), "ops/entry")
	b.ReportMetric(firstGrant.median(), "first-grant-ms")
	b.ReportMetric(cpu.median(), "cpu-ms/kgrant")
}

func benchGrantsChurn(b *testing.B, consumers, shards int, window time.Duration) {
	const dom, ttl = "churn", 10 * time.Second
	// While holding, a handler waits for its context or for the gate to
	// open; once the gate is open, handlers return at once.
	var gateMu sync.Mutex
	gate := make(chan struct{})
	hold := func() {
		gateMu.Lock()
		select {
		case <-gate:
			gate = make(chan struct{})
		default:
		}
		gateMu.Unlock()
	}
	churn := func() {
		gateMu.Lock()
		select {
		case <-gate:
		default:
			close(gate)
		}
		gateMu.Unlock()
	}
	handler := func(ctx context.Context, _ client.Shard) {
		gateMu.Lock()
		g := gate
		gateMu.Unlock()
		select {
		case <-ctx.Done():
		case <-g:
		}
	}
	s := newGrantSetup(b, dom, ttl, consumers, 5, handler)
	b.Cleanup(hold)
	var rate, opsPerEntry, cpu stat
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		hold()
		deleteDomain(b, s.c, s.adm, dom)
		createAfterPurge(b, s.adm, dom, shards, ttl)
		waitFor(b, 60*time.Second, "every shard granted", func() bool { return s.rec.count() >= shards })
		s.rec.reset()
		ops0, ent0 := celltest.Metric(s.leader, metricCommittedOps), celltest.Metric(s.leader, metricCommitLatency)
		cpu0 := celltest.CPUTime()
		b.StartTimer()
		t0 := time.Now()
		churn() // every handler returns at once from now on
		time.Sleep(window)
		n := s.rec.count()
		t1 := time.Now()
		b.StopTimer()
		hold()
		cpu1 := celltest.CPUTime()
		ops1, ent1 := celltest.Metric(s.leader, metricCommittedOps), celltest.Metric(s.leader, metricCommitLatency)
		rate.add(float64(n) / t1.Sub(t0).Seconds())
		if ent1 > ent0 {
			opsPerEntry.add((ops1 - ops0) / (ent1 - ent0))
		}
		if n > 0 {
			cpu.add(float64((cpu1 - cpu0).Milliseconds()) / (float64(n) / 1000))
		}
		b.Logf("churn: %d grants in %v; batcher: %.0f ops in %.0f entries; process CPU %v", n, t1.Sub(t0).Round(time.Millisecond), ops1-ops0, ent1-ent0, (cpu1 - cpu0).Round(time.Millisecond))
	}
	b.ReportMetric(rate.median(), "grants/s")
	b.ReportMetric(opsPerEntry.median(), "ops/entry")
	b.ReportMetric(cpu.median(), "cpu-ms/kgrant")
}

// --- 2. heartbeats/s ---

// BenchmarkHeartbeats10k holds 10,000 consumer sessions at TTL 3 s
// (heartbeat every 1 s), each with one shard, for 15 s.
//
// Method: the consumers run in a child process (the test binary re-executed
// as a load generator, celltest.StartLoadGen) sharing 100 gRPC connections
// to the leader, so this process holds only the 3-node cell and its CPU
// time and profiles are the cell's. The domain is created with 1 shard,
// the consumers connect in waves of 500, then it is deleted and re-created
// with 10,000 shards (one per consumer, granted in one round, without
// moves). After a settling period of 2 TTLs the window starts.
//
// Reported over the window: heartbeats/s received by the leader
// (wds.cell.renewals); spurious expiries = shards the clients lost at their
// lease deadline (EventLost) or had revoked (EventRevoke), which must be 0;
// expired-server (wds.cell.expiries, grants the leader dropped), the
// session disconnects and leader changes; cell-cpu-% (this process) and
// client-cpu-% (the child), in % of one core (the machine has 2).
func BenchmarkHeartbeats10k(b *testing.B) {
	const (
		sessions = 10000
		nconns   = 100
		dom      = "hb"
		ttl      = 3 * time.Second
		window   = 15 * time.Second
	)
	c := celltest.New(b, 3)
	li := c.Leader()
	leader, adm := c.Nodes[li], c.Admin(li)
	c.CreateDomain(dom, topology.KindGlobal, 1, ttl)
	t0 := time.Now()
	g := celltest.StartLoadGen(b, "TestBenchLoadGen", celltest.LoadSpec{
		Endpoint: leader.Endpoint(), Consumers: sessions, IDPrefix: "h", Domains: []string{dom}, Conns: nconns,
	})
	g.WaitReady(120 * time.Second)
	connected := time.Since(t0)
	deleteDomain(b, c, adm, dom)
	t1, _ := createAfterPurge(b, adm, dom, sessions, ttl)
	var st celltest.LoadStats
	for st = g.Stats(); st.Held < sessions; st = g.Stats() {
		if time.Since(t1) > 60*time.Second {
			b.Fatalf("%d of %d shards held after 60 s (clients: %+v; cell: %d grants)", st.Held, sessions, st, cellGrants(b, adm))
		}
		if os.Getenv("WDS_BENCH_DEBUG") != "" {
			b.Logf("%v: clients %+v; cell grants %d", time.Since(t1).Round(time.Millisecond), st, cellGrants(b, adm))
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Logf("%d sessions connected in %v; %d shards granted in %v", sessions, connected.Round(time.Millisecond), sessions, time.Since(t1).Round(time.Millisecond))
	time.Sleep(2 * ttl)

	var hbRate, spurious, lost, revoked, expired, disc, accessions, cellCPU, clientCPU stat
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		type snap struct {
			renewals, expiries, accessions float64
			cpu                            time.Duration
			child                          celltest.LoadStats
			at                             time.Time
		}
		take := func() snap {
			var s snap
			for _, n := range c.Nodes {
				s.accessions += celltest.Metric(n, metricAccessions)
			}
			s.renewals = celltest.Metric(leader, metricRenewals)
			s.expiries = celltest.Metric(leader, metricExpiries)
			s.cpu = celltest.CPUTime()
			s.child = g.Stats()
			s.at = time.Now()
			return s
		}
		s0 := take()
		b.StartTimer()
		time.Sleep(window)
		b.StopTimer()
		s1 := take()
		wall := s1.at.Sub(s0.at).Seconds()
		l, r := s1.child.Losts-s0.child.Losts, s1.child.Revokes-s0.child.Revokes
		hbRate.add((s1.renewals - s0.renewals) / wall)
		lost.add(float64(l))
		revoked.add(float64(r))
		spurious.add(float64(l + r))
		expired.add(s1.expiries - s0.expiries)
		disc.add(float64(s1.child.Disconnects - s0.child.Disconnects))
		accessions.add(s1.accessions - s0.accessions)
		cellCPU.add(100 * (s1.cpu - s0.cpu).Seconds() / wall)
		clientCPU.add(100 * time.Duration(s1.child.CPU-s0.child.CPU).Seconds() / wall)
		b.Logf("window %v: %.0f heartbeats/s at the leader; clients: %d held, %d lost, %d revoked, %d disconnects; leader: %.0f expiries; %.0f leader changes; CPU: cell %.0f%%, clients %.0f%% (of one core)",
			time.Duration(wall*float64(time.Second)).Round(time.Millisecond), (s1.renewals-s0.renewals)/wall, s1.child.Held, l, r,
			s1.child.Disconnects-s0.child.Disconnects, s1.expiries-s0.expiries, s1.accessions-s0.accessions,
			100*(s1.cpu-s0.cpu).Seconds()/wall, 100*time.Duration(s1.child.CPU-s0.child.CPU).Seconds()/wall)
	}
	b.ReportMetric(hbRate.median(), "heartbeats/s")
	b.ReportMetric(spurious.median(), "spurious-expiries")
	b.ReportMetric(lost.median(), "lost")
	b.ReportMetric(revoked.median(), "revoked")
	b.ReportMetric(expired.median(), "expired-server")
	b.ReportMetric(disc.median(), "disconnects")
	b.ReportMetric(accessions.median(), "leader-changes")
	b.ReportMetric(cellCPU.median(), "cell-cpu-%")
	b.ReportMetric(clientCPU.median(), "client-cpu-%")
}

var (
	_ = errors.New
	_ = atomic.Int64{}
	_ grpc.ClientConn
)
