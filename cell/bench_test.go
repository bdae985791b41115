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
//   - Grants: 50 (and 5) consumers are connected, serving a domain that is
//     then created with 20,000 shards; the balancer grants them all; timed
//     from the CreateDomain call until every consumer handler started. And
//     churn: handlers that return at once, so grant, release and re-grant
//     run continuously for 10 s.
//   - Heartbeats10k: 10,000 consumers (in a child process) with one shard
//     each at TTL 3 s, in 100 domains, held for 15 s: renewals/s at the
//     leader, spurious expiries, CPU of the cell process and of the clients.
//   - RoutingDelivery1000: 1,000 observers on all three nodes; one shard
//     changes owner at a time; latency from the owner's grant to each
//     observer's Watch channel.
//   - Memory: heap of the benchmark process (which holds only the cell: the
//     consumers run in a child process) before and after 5,000 sessions and
//     before and after 100,000 granted shards.

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
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
	metricExpiries      = "wds_cell_expiries_total"
	metricCommittedOps  = "wds_cell_committed_ops_total"
	metricCommitLatency = "wds_cell_commit_latency_seconds" // histogram: count = entries
	metricAccessions    = "wds_cell_leader_accessions_total"
	metricAcksWithheld  = "wds_cell_acks_withheld_total"
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

// deleteDomains deletes domains (one after the other) and waits until the
// cell holds no grant at all (the purge follows within a balance round:
// see createAfterPurge).
func deleteDomains(b *testing.B, adm wdsv1.AdminClient, names ...string) {
	b.Helper()
	for _, name := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := adm.DeleteDomain(ctx, &wdsv1.DeleteDomainRequest{Name: name})
		cancel()
		if err != nil && status.Code(err) != codes.NotFound {
			b.Fatal(err)
		}
	}
	celltest.Eventually(b, 60*time.Second, func() error {
		if n := cellGrants(b, adm); n != 0 {
			return fmt.Errorf("%d grants left after deleting %v", n, names)
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

// createDomains creates domains one after the other (see
// createAfterPurge).
func createDomains(b *testing.B, adm wdsv1.AdminClient, names []string, shards int, ttl time.Duration) {
	b.Helper()
	for _, name := range names {
		createAfterPurge(b, adm, name, shards, ttl)
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

// windowProfile writes a CPU profile of the measured window to
// $WDS_BENCH_WINDOW_PROFILE.<name>.<n> when that variable is set (go test
// -cpuprofile would also cover the set-up). It returns the stop function.
func windowProfile(b *testing.B, name string) func() {
	base := os.Getenv("WDS_BENCH_WINDOW_PROFILE")
	if base == "" {
		return func() {}
	}
	windowProfiles++
	path := fmt.Sprintf("%s.%s.%d", base, name, windowProfiles)
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Logf("window profile not taken: %v", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		b.Logf("CPU profile of the window: %s", path)
	}
}

var windowProfiles int

// heapProfile writes a heap profile (after the collection MeasureMem did)
// to $WDS_BENCH_HEAP_PROFILE.<name>.<n> when that variable is set: go test
// -memprofile is written at the end, when the cell is gone.
func heapProfile(b *testing.B, name string) {
	base := os.Getenv("WDS_BENCH_HEAP_PROFILE")
	if base == "" {
		return
	}
	windowProfiles++
	path := fmt.Sprintf("%s.%s.%d", base, name, windowProfiles)
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
	b.Logf("heap profile: %s", path)
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
		deleteDomains(b, s.adm, dom)
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
		deleteDomains(b, s.adm, dom)
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
		deleteDomains(b, s.adm, dom)
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
// time and profiles are the cell's. The shards are in 100 domains of 100
// (consumer i serves domain i%100), so each session's routing table has
// 100 entries. The domains are created with 1 shard, the consumers connect
// in waves of 500, then the domains are deleted and re-created with 100
// shards each (one per consumer, granted in one round, without moves), ten
// domains at a time (heartbeatSetupBatch). After a settling period of 2
// TTLs the window starts.
//
// domains=1 (run only with WDS_BENCH_ONE_DOMAIN=1) puts all 10,000 shards
// in one domain, as the simplest reading of the aim: every session then
// receives the whole 10,000-entry table, i.e. 10^8 route entries per full
// table change (several GB), which this machine does not survive; see the
// benchmark report.
//
// Reported over the window: heartbeats/s received by the leader
// (wds.cell.renewals); spurious expiries = shards the clients lost at their
// lease deadline (EventLost) or had revoked (EventRevoke), which must be 0;
// expired-server (wds.cell.expiries, grants the leader dropped), the
// session disconnects and leader changes; cell-cpu-% (this process) and
// client-cpu-% (the child), in % of one core (the machine has 2).
func BenchmarkHeartbeats10k(b *testing.B) {
	b.Run("domains=100", func(b *testing.B) { benchHeartbeats(b, 100) })
	b.Run("domains=1", func(b *testing.B) {
		if os.Getenv("WDS_BENCH_ONE_DOMAIN") == "" {
			b.Skip("needs WDS_BENCH_ONE_DOMAIN=1: 10^8 route entries per table change (several GB)")
		}
		benchHeartbeats(b, 1)
	})
}

// heartbeatSetupBatch is how many domains the heartbeat benchmark's set-up
// re-creates at once before waiting for their shards to be held: 10 by
// default (1,000 grants, each fanned out as routing to the domain's 100
// sessions). WDS_BENCH_HB_BATCH=100 re-creates all at once — a grant storm
// that, with the 10,000 client sessions in one process on the same two
// cores, saturates the machine (see the closing note of issue 2).
func heartbeatSetupBatch(ndomains int) int {
	if n, err := strconv.Atoi(os.Getenv("WDS_BENCH_HB_BATCH")); err == nil && n > 0 {
		return n
	}
	return min(10, ndomains)
}

func benchHeartbeats(b *testing.B, ndomains int) {
	const (
		sessions = 10000
		nconns   = 100
		ttl      = 3 * time.Second
		window   = 15 * time.Second
	)
	c := celltest.New(b, 3)
	li := c.Leader()
	leader, adm := c.Nodes[li], c.Admin(li)
	var doms []string
	for i := 0; i < ndomains; i++ {
		doms = append(doms, fmt.Sprintf("hb%03d", i))
		c.CreateDomain(doms[i], topology.KindGlobal, 1, ttl)
	}
	t0 := time.Now()
	g := celltest.StartLoadGen(b, "TestBenchLoadGen", celltest.LoadSpec{
		Endpoint: leader.Endpoint(), Endpoints: leaderFirst(c, li), Consumers: sessions, IDPrefix: "h", Domains: doms, Spread: true, Conns: nconns,
	})
	g.WaitReady(120 * time.Second)
	connected := time.Since(t0)
	afterConnect := g.Stats().Disconnects
	deleteDomains(b, adm, doms...)
	afterDelete := g.Stats().Disconnects
	t1, cpu1, child1 := time.Now(), celltest.CPUTime(), g.Stats().CPU
	stopProfile := windowProfile(b, "heartbeats-setup")
	batch := heartbeatSetupBatch(ndomains)
	var st celltest.LoadStats
	for done := 0; done < ndomains; {
		next := min(done+batch, ndomains)
		createDomains(b, adm, doms[done:next], sessions/ndomains, ttl)
		done = next
		want := int64(done * (sessions / ndomains))
		for st = g.Stats(); st.Held < want; st = g.Stats() {
			if time.Since(t1) > 90*time.Second {
				stopProfile()
				b.Fatalf("%d of %d shards held after 90 s (clients: %+v; cell: %d grants)", st.Held, want, st, cellGrants(b, adm))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	stopProfile()
	setupWall := time.Since(t1).Seconds()
	b.Logf("set-up CPU: cell %.0f%%, clients %.0f%% (of one core)", 100*(celltest.CPUTime()-cpu1).Seconds()/setupWall, 100*time.Duration(st.CPU-child1).Seconds()/setupWall)
	var setupAccessions float64
	for _, n := range c.Nodes {
		setupAccessions += celltest.Metric(n, metricAccessions)
	}
	b.Logf("%d sessions connected in %v; %d shards in %d domains (re-created %d at a time) granted in %v; leader accessions so far: %.0f, leader expiries %.0f, acks withheld %.0f; set-up disconnects: %d after connecting, %d after deleting the domains, %d once re-granted (%v)",
		sessions, connected.Round(time.Millisecond), sessions, ndomains, batch, time.Since(t1).Round(time.Millisecond), setupAccessions,
		celltest.Metric(leader, metricExpiries), celltest.Metric(leader, metricAcksWithheld),
		afterConnect, afterDelete, st.Disconnects, st.DisconnectErrors)
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
		stopProfile := windowProfile(b, "heartbeats")
		b.StartTimer()
		time.Sleep(window)
		b.StopTimer()
		stopProfile()
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
		if len(s1.child.DisconnectErrors) > 0 {
			b.Logf("disconnect errors so far: %v", s1.child.DisconnectErrors)
		}
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

// --- 3. routing delivery to 1,000 watchers ---

// routeWatcher is one observer's record: when each grant (by token index)
// first reached its Watch channel.
type routeWatcher struct {
	obs    *client.Observer
	leader bool // attached to the leader (else a follower)
	mu     sync.Mutex
	seen   map[uint64]time.Time
}

// BenchmarkRoutingDelivery1000 measures how long a routing change takes to
// reach 1,000 watchers.
//
// Method: one consumer ("owner", connected to the leader) holds the 64
// shards of domain "route"; 1,000 observers share 12 gRPC connections, 4
// to each node (a third attached to the leader, two thirds to followers:
// every node serves routing from its own applied log), and each reads its
// Routing().Watch(1024) channel in its own goroutine. One change at a
// time: the owner's handler of one shard returns (a voluntary release);
// the cell commits the Release, the balancer grants the shard again (to
// the owner, the only consumer) under a new token, and every node
// publishes the new owner and token in a coalesced delta (window 2 ms).
// Delivery latency = the instant a watcher's channel yielded the route
// with the new token minus the instant the owner's library received the
// Grant (its EventGrant time, which the leader sends as it applies the
// entry: the closest in-process stand-in for "committed"). Same process,
// same monotonic clock. 30 changes per iteration, 20 ms apart, each
// awaited at all 1,000 watchers (bounded by 10 s).
//
// Reported: p50, p99 and max over every (change, watcher) pair, and p99
// separately for watchers on the leader and on followers; missed = pairs
// that never arrived.
func BenchmarkRoutingDelivery1000(b *testing.B) {
	const (
		watchers = 1000
		perNode  = 4
		shards   = 64
		changes  = 30
		dom      = "route"
	)
	var opts []celltest.Option
	if d, err := time.ParseDuration(os.Getenv("WDS_BENCH_COMMIT_TIMEOUT")); err == nil {
		opts = append(opts, func(cfg *cell.Config) { cfg.Raft.CommitTimeout = d }) // diagnostic
	}
	c := celltest.New(b, 3, opts...)
	li := c.Leader()
	c.CreateDomain(dom, topology.KindGlobal, shards, 10*time.Second)

	type grantEv struct {
		from topology.Bound
		tok  topology.Token
		at   time.Time
	}
	grants := make(chan grantEv, 4*shards)
	var trigMu sync.Mutex
	triggers := map[topology.Bound]chan struct{}{}
	owner, err := client.NewConsumer(client.Config{
		Endpoints: c.Endpoints(), ID: "owner", Region: celltest.Region, Endpoint: "owner.bench:8080",
		Domains: []string{dom},
		Handler: func(ctx context.Context, s client.Shard) {
			ch := make(chan struct{})
			trigMu.Lock()
			triggers[s.Range.From] = ch
			trigMu.Unlock()
			select {
			case <-ctx.Done():
			case <-ch:
			}
		},
		OnEvent: func(e client.Event) {
			if e.Kind == client.EventGrant {
				select {
				case grants <- grantEv{from: e.Shard.Range.From, tok: e.Shard.Token, at: e.Time}:
				default:
				}
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer closeConsumers([]*client.Consumer{owner}, 5*time.Second)
	waitFor(b, 20*time.Second, "the owner runs every shard", func() bool {
		trigMu.Lock()
		defer trigMu.Unlock()
		return len(triggers) == shards
	})
	for len(grants) > 0 {
		<-grants
	}

	var conns []*grpc.ClientConn
	var connLeader []bool
	for i, n := range c.Nodes {
		for _, cc := range celltest.DialConns(b, n.Endpoint(), perNode) {
			conns = append(conns, cc)
			connLeader = append(connLeader, i == li)
		}
	}
	var countMu sync.Mutex
	counts := map[uint64]int{}
	ws := make([]*routeWatcher, watchers)
	var wg sync.WaitGroup
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
		wg.Wait()
	}()
	for i := range ws {
		o, err := client.NewObserver(client.ObserverConfig{Conn: conns[i%len(conns)], Watch: []string{dom}})
		if err != nil {
			b.Fatal(err)
		}
		w := &routeWatcher{obs: o, leader: connLeader[i%len(conns)], seen: map[uint64]time.Time{}}
		ws[i] = w
		ch, cancel := o.Routing().Watch(1024)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for chg := range ch {
				now := time.Now()
				for _, r := range chg.Routes {
					if r.Owner == "" {
						continue
					}
					w.mu.Lock()
					_, dup := w.seen[r.Token.Index]
					if !dup {
						w.seen[r.Token.Index] = now
					}
					w.mu.Unlock()
					if !dup {
						countMu.Lock()
						counts[r.Token.Index]++
						countMu.Unlock()
					}
				}
			}
		}()
		stops = append(stops, func() {
			cancel()
			o.Close()
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	for _, w := range ws {
		if err := w.obs.WaitConnected(ctx); err != nil {
			b.Fatal(err)
		}
	}
	cancel()

	var all, onLeader, onFollower []time.Duration
	missed := 0
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		type change struct {
			idx uint64
			at  time.Time
		}
		var done []change
		trigMu.Lock()
		var froms []topology.Bound
		for f := range triggers {
			froms = append(froms, f)
		}
		trigMu.Unlock()
		sort.Slice(froms, func(i, j int) bool { return froms[i].Less(froms[j]) })
		for k := 0; k < changes; k++ {
			from := froms[k%len(froms)]
			trigMu.Lock()
			ch := triggers[from]
			delete(triggers, from)
			trigMu.Unlock()
			if ch == nil {
				b.Fatalf("shard %v not running", from)
			}
			close(ch) // the handler returns: release, then a new grant
			var g grantEv
			timeout := time.After(10 * time.Second)
			for got := false; !got; got = g.from == from {
				select {
				case g = <-grants:
				case <-timeout:
					b.Fatalf("shard %v not granted again within 10 s", from)
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				countMu.Lock()
				n := counts[g.tok.Index]
				countMu.Unlock()
				if n >= watchers {
					break
				}
				if time.Now().After(deadline) {
					b.Logf("change %d (shard %v, token %v): %d of %d watchers saw it within 10 s", k, from, g.tok, n, watchers)
					break
				}
				time.Sleep(time.Millisecond)
			}
			done = append(done, change{idx: g.tok.Index, at: g.at})
			time.Sleep(20 * time.Millisecond)
		}
		b.StopTimer()
		for ci, chg := range done {
			if os.Getenv("WDS_BENCH_PER_CHANGE") != "" {
				var lf, ff []time.Duration
				for _, w := range ws {
					w.mu.Lock()
					t, ok := w.seen[chg.idx]
					w.mu.Unlock()
					if ok && w.leader {
						lf = append(lf, t.Sub(chg.at))
					} else if ok {
						ff = append(ff, t.Sub(chg.at))
					}
				}
				celltest.SortDurations(lf)
				celltest.SortDurations(ff)
				b.Logf("change %d: leader min/p50/max %v/%v/%v follower %v/%v/%v", ci, celltest.Percentile(lf, 0), celltest.Percentile(lf, 50), celltest.Percentile(lf, 100), celltest.Percentile(ff, 0), celltest.Percentile(ff, 50), celltest.Percentile(ff, 100))
			}
			for _, w := range ws {
				w.mu.Lock()
				t, ok := w.seen[chg.idx]
				w.mu.Unlock()
				if !ok {
					missed++
					continue
				}
				d := t.Sub(chg.at)
				all = append(all, d)
				if w.leader {
					onLeader = append(onLeader, d)
				} else {
					onFollower = append(onFollower, d)
				}
			}
		}
		b.StartTimer()
	}
	b.StopTimer()
	celltest.SortDurations(all)
	celltest.SortDurations(onLeader)
	celltest.SortDurations(onFollower)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(celltest.Percentile(all, 50)), "p50-ms")
	b.ReportMetric(ms(celltest.Percentile(all, 99)), "p99-ms")
	b.ReportMetric(ms(celltest.Percentile(all, 100)), "max-ms")
	b.ReportMetric(ms(celltest.Percentile(onLeader, 99)), "p99-leader-ms")
	b.ReportMetric(ms(celltest.Percentile(onFollower, 99)), "p99-follower-ms")
	b.ReportMetric(float64(missed), "missed")
	b.Logf("%d deliveries (%d changes x %d watchers): min %v p50 %v p90 %v p99 %v max %v; leader-attached p50 %v p99 %v; follower-attached p50 %v p99 %v; missed %d",
		len(all), len(all)/max(1, watchers), watchers, celltest.Percentile(all, 0), celltest.Percentile(all, 50), celltest.Percentile(all, 90),
		celltest.Percentile(all, 99), celltest.Percentile(all, 100), celltest.Percentile(onLeader, 50), celltest.Percentile(onLeader, 99),
		celltest.Percentile(onFollower, 50), celltest.Percentile(onFollower, 99), missed)
}

// --- 4. memory per session and per shard ---

// BenchmarkMemory measures the cell's memory per session and per shard.
//
// Method: this process runs only the 3-node cell; the consumers run in a
// child process (the test binary re-executed as a load generator), so the
// heap measured here is the servers' alone. A measurement is
// runtime.GC() twice, then runtime.ReadMemStats: "in-use" is HeapInuse +
// StackInuse (spans and stacks the cell occupies), "live" is HeapAlloc
// (bytes of reachable objects). The figures are for the whole cell — three
// nodes in one process: the leader holds the session (gRPC stream, lease,
// outbound queue, routing subscription, goroutines), every node holds the
// consumer's and the grant's records in its FSM — so they bound what one
// node of a real deployment holds from above.
//
//   - session/shared-conns: 5,000 consumer sessions multiplexed on 50 gRPC
//     connections (as one process hosting many instances would).
//   - session/conn-each: 5,000 sessions with a connection each (as 5,000
//     separate processes would: this adds the server's per-connection
//     HTTP/2 transport).
//     Both: a domain of 1 shard; measured before the child starts and once
//     every session was welcomed and 2 s passed; delta / 5,000.
//   - shard: 10 consumers serve a domain that is re-created with 100,000
//     shards (see BenchmarkGrants for the delete/re-create); measured
//     before the creation and once every shard was granted and 2 s passed;
//     delta / 100,000. The client side's handler goroutine per shard is in
//     the child, not here.
//
// client-B/session and client-B/shard are the child's own in-use delta over
// the same steps, for scale (the client library's cost).
func BenchmarkMemory(b *testing.B) {
	b.Run("session/shared-conns", func(b *testing.B) { benchSessionMemory(b, 5000, 50) })
	b.Run("session/conn-each", func(b *testing.B) { benchSessionMemory(b, 5000, 0) })
	b.Run("shard", func(b *testing.B) { benchShardMemory(b, 100000, 10) })
}

func benchSessionMemory(b *testing.B, sessions, nconns int) {
	const dom = "mem"
	var inuse, live, gor, client stat
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		func() {
			c := celltest.New(b, 3)
			li := c.Leader()
			c.CreateDomain(dom, topology.KindGlobal, 1, 10*time.Second)
			time.Sleep(time.Second)
			m0 := celltest.MeasureMem()
			heapProfile(b, fmt.Sprintf("sessions-%d-before", nconns))
			b.StartTimer()
			g := celltest.StartLoadGen(b, "TestBenchLoadGen", celltest.LoadSpec{
				Endpoint: c.Nodes[li].Endpoint(), Consumers: sessions, IDPrefix: "m", Domains: []string{dom}, Conns: nconns,
			})
			g.WaitReady(120 * time.Second)
			b.StopTimer()
			time.Sleep(2 * time.Second)
			m1 := celltest.MeasureMem()
			heapProfile(b, fmt.Sprintf("sessions-%d", nconns))
			c1 := g.Mem()
			if st, err := c.Admin(li).Status(context.Background(), &wdsv1.StatusRequest{}); err == nil && int(st.GetSessions()) != sessions {
				b.Logf("leader reports %d sessions, want %d", st.GetSessions(), sessions)
			}
			g.Stop()
			per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(sessions) }
			inuse.add(per(m1.InUse(), m0.InUse()))
			live.add(per(m1.HeapAlloc, m0.HeapAlloc))
			gor.add(float64(m1.Goroutines-m0.Goroutines) / float64(sessions))
			client.add(float64(c1.HeapInuse+c1.StackInuse) / float64(sessions))
			b.Logf("%d sessions on %d connections: cell in-use %.1f MiB -> %.1f MiB (heap %.1f -> %.1f, stacks %.1f -> %.1f), live %.1f -> %.1f MiB, goroutines %d -> %d; client process in-use %.1f MiB",
				sessions, max(nconns, sessions*btoi(nconns == 0)), mib(m0.InUse()), mib(m1.InUse()), mib(m0.HeapInuse), mib(m1.HeapInuse), mib(m0.StackInuse), mib(m1.StackInuse),
				mib(m0.HeapAlloc), mib(m1.HeapAlloc), m0.Goroutines, m1.Goroutines, mib(c1.HeapInuse+c1.StackInuse))
		}()
	}
	b.ReportMetric(inuse.median(), "B/session")
	b.ReportMetric(live.median(), "live-B/session")
	b.ReportMetric(gor.median(), "goroutines/session")
	b.ReportMetric(client.median(), "client-B/session")
}

func benchShardMemory(b *testing.B, shards, consumers int) {
	const dom, ttl = "mem", 10 * time.Second
	var inuse, live, client stat
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		func() {
			c := celltest.New(b, 3)
			li := c.Leader()
			adm := c.Admin(li)
			c.CreateDomain(dom, topology.KindGlobal, 1, ttl)
			g := celltest.StartLoadGen(b, "TestBenchLoadGen", celltest.LoadSpec{
				Endpoint: c.Nodes[li].Endpoint(), Consumers: consumers, IDPrefix: "s", Domains: []string{dom}, Conns: consumers,
			})
			g.WaitReady(60 * time.Second)
			deleteDomains(b, adm, dom)
			time.Sleep(time.Second)
			m0 := celltest.MeasureMem()
			heapProfile(b, "shards-before")
			c0 := g.Mem()
			b.StartTimer()
			t0, _ := createAfterPurge(b, adm, dom, shards, ttl)
			for st := g.Stats(); st.Held < int64(shards); st = g.Stats() {
				if time.Since(t0) > 60*time.Second {
					b.Fatalf("%d of %d shards held after 60 s", st.Held, shards)
				}
				time.Sleep(100 * time.Millisecond)
			}
			b.StopTimer()
			time.Sleep(2 * time.Second)
			m1 := celltest.MeasureMem()
			heapProfile(b, "shards")
			c1 := g.Mem()
			g.Stop()
			per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(shards) }
			inuse.add(per(m1.InUse(), m0.InUse()))
			live.add(per(m1.HeapAlloc, m0.HeapAlloc))
			client.add(per(c1.HeapInuse+c1.StackInuse, c0.HeapInuse+c0.StackInuse))
			b.Logf("%d shards held by %d consumers: cell in-use %.1f MiB -> %.1f MiB (heap %.1f -> %.1f, stacks %.1f -> %.1f), live %.1f -> %.1f MiB; client process in-use %.1f -> %.1f MiB",
				shards, consumers, mib(m0.InUse()), mib(m1.InUse()), mib(m0.HeapInuse), mib(m1.HeapInuse), mib(m0.StackInuse), mib(m1.StackInuse),
				mib(m0.HeapAlloc), mib(m1.HeapAlloc), mib(c0.HeapInuse+c0.StackInuse), mib(c1.HeapInuse+c1.StackInuse))
		}()
	}
	b.ReportMetric(inuse.median(), "B/shard")
	b.ReportMetric(live.median(), "live-B/shard")
	b.ReportMetric(client.median(), "client-B/shard")
}

func mib(v uint64) float64 { return float64(v) / (1 << 20) }

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// leaderFirst lists the cell's endpoints with the leader's first, so load
// generators connect there directly but can follow it if it moves.
func leaderFirst(c *celltest.Cluster, li int) []string {
	eps := c.Endpoints()
	return append([]string{eps[li]}, append(append([]string{}, eps[:li]...), eps[li+1:]...)...)
}
