package celltest

// Helpers for the cell's benchmarks (cell/bench_test.go): reading a node's
// metrics, shared client connections, CPU and heap accounting, percentiles,
// and a load generator that runs consumers in a child process so that the
// benchmark process holds only the cell.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/client"
)

// Metric returns the value of a Prometheus metric family of node n, summed
// over its series: counters, gauges and untyped values, and the sample count
// of histograms and summaries. name is the exported name, e.g.
// "wds_cell_renewals_total". A missing family is 0.
func Metric(n *cell.Node, name string) float64 {
	return MetricWith(n, name)
}

// MetricWith is Metric over only the series whose labels include every
// name/value pair of labels, e.g. MetricWith(n,
// "wds_cell_domain_shards_unowned", "domain", "orders"). No such series is 0.
func MetricWith(n *cell.Node, name string, labels ...string) float64 {
	if len(labels)%2 != 0 {
		panic("celltest.MetricWith: labels must be name/value pairs")
	}
	if n == nil {
		return 0
	}
	mfs, err := n.Metrics().Registry.Gather()
	if err != nil && len(mfs) == 0 {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
						break
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Untyped != nil:
				sum += m.GetUntyped().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			case m.Summary != nil:
				sum += float64(m.GetSummary().GetSampleCount())
			}
		}
	}
	return sum
}

// MetricNames lists node n's metric family names (to find a name).
func MetricNames(n *cell.Node) []string {
	mfs, _ := n.Metrics().Registry.Gather()
	var out []string
	for _, mf := range mfs {
		out = append(out, mf.GetName())
	}
	sort.Strings(out)
	return out
}

// DialConns opens n plaintext gRPC client connections to endpoint, with the
// receive limit the client library uses, for many consumers or observers
// to share (client.Config.Conn, client.ObserverConfig.Conn). They are
// closed at the end of the test.
func DialConns(t testing.TB, endpoint string, n int) []*grpc.ClientConn {
	t.Helper()
	out := make([]*grpc.ClientConn, 0, n)
	for i := 0; i < n; i++ {
		cc, err := dialShared(endpoint)
		if err != nil {
			t.Fatal(err)
		}
		cc.Connect()
		out = append(out, cc)
	}
	t.Cleanup(func() {
		for _, cc := range out {
			cc.Close()
		}
	})
	return out
}

func dialShared(endpoint string) (*grpc.ClientConn, error) {
	return grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
}

// CPUTime is the user and system CPU time this process has used.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Mem is a heap measurement taken after garbage collection.
type Mem struct {
	HeapInuse  uint64 // bytes in in-use spans
	StackInuse uint64 // bytes of goroutine stacks
	HeapAlloc  uint64 // bytes of live heap objects
	Goroutines int
}

// InUse is HeapInuse + StackInuse.
func (m Mem) InUse() uint64 { return m.HeapInuse + m.StackInuse }

// MeasureMem collects garbage (twice, so finalizers' objects go too) and
// reads the runtime's memory statistics.
func MeasureMem() Mem {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Mem{HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, HeapAlloc: ms.HeapAlloc, Goroutines: runtime.NumGoroutine()}
}

// Percentile returns the p-th percentile (0..100, nearest rank) of sorted
// durations.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// SortDurations sorts ds in place and returns it.
func SortDurations(ds []time.Duration) []time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds
}

// --- load generator in a child process ---

// LoadGenEnv carries a LoadSpec (JSON) to the child process.
const LoadGenEnv = "WDS_BENCH_LOADGEN"

const loadGenPrefix = "WDSBENCH "

var quoted = regexp.MustCompile(`"[^"]*"`)

// LoadSpec is what a load generator runs: consumers of the cell, each
// holding every shard it is granted until it is told to quit.
type LoadSpec struct {
	// Endpoint is the node the consumers connect to (the leader).
	Endpoint string
	// Endpoints, if set, are every node of the cell (leader first): the
	// consumers share Conns connections through a client.Pool and follow
	// the leader if it moves. Otherwise they share Conns connections to
	// Endpoint and cannot follow a redirect.
	Endpoints []string
	// Consumers is the number of consumer sessions.
	Consumers int
	// IDPrefix prefixes the consumer ids (IDPrefix + index).
	IDPrefix string
	// Domains the consumers serve: all of them, or with Spread consumer i
	// serves only Domains[i % len(Domains)].
	Domains []string
	Spread  bool
	// Conns is the number of gRPC connections the sessions share; 0 gives
	// every consumer a connection of its own (as separate processes have).
	Conns int
	// Wave is how many consumers connect at once (default 500).
	Wave int
}

// LoadStats is the load generator's report.
type LoadStats struct {
	Connected   int    // consumers welcomed at least once
	Welcomes    int64  // Welcome events (above Connected: reconnects)
	Grants      int64  // shard handlers started
	Revokes     int64  // shards revoked by the cell
	Losts       int64  // shards cancelled at the client's lease deadline
	Disconnects int64  // sessions that ended with an error
	Held        int64  // shard handlers running
	CPU         int64  // process CPU time, ns
	HeapInuse   uint64 // after GC
	StackInuse  uint64
	Goroutines  int
	// DisconnectErrors counts the disconnects' errors (first 100 bytes).
	DisconnectErrors map[string]int64 `json:",omitempty"`
	Err              string           `json:",omitempty"`
}

// LoadGen is the parent's handle on a load generator child process.
type LoadGen struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
	once  sync.Once
}

// StartLoadGen re-executes the test binary, running only the test named
// testName, which must call RunLoadGen when LoadGenEnv is set. Wait for it
// with WaitReady; Stop ends it (also at the end of the test).
func StartLoadGen(t testing.TB, testName string, spec LoadSpec) *LoadGen {
	t.Helper()
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+testName+"$", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(os.Environ(), LoadGenEnv+"="+string(js))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &LoadGen{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), loadGenPrefix); ok {
				g.lines <- l
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(g.Stop)
	return g
}

func (g *LoadGen) read(timeout time.Duration) (LoadStats, error) {
	var st LoadStats
	select {
	case l := <-g.lines:
		if err := json.Unmarshal([]byte(l), &st); err != nil {
			return st, err
		}
		if st.Err != "" {
			return st, fmt.Errorf("load generator: %s", st.Err)
		}
		return st, nil
	case <-g.done:
		return st, fmt.Errorf("load generator exited")
	case <-time.After(timeout):
		return st, fmt.Errorf("load generator: no answer within %v", timeout)
	}
}

// WaitReady waits until every consumer of the child was welcomed.
func (g *LoadGen) WaitReady(timeout time.Duration) LoadStats {
	g.t.Helper()
	st, err := g.read(timeout)
	if err != nil {
		g.t.Fatal(err)
	}
	return st
}

// Stats asks the child for its counters (its memory figures without a
// collection first).
func (g *LoadGen) Stats() LoadStats { return g.ask("stats") }

// Mem asks the child for its counters after a garbage collection.
func (g *LoadGen) Mem() LoadStats { return g.ask("mem") }

func (g *LoadGen) ask(cmd string) LoadStats {
	g.t.Helper()
	if _, err := io.WriteString(g.stdin, cmd+"\n"); err != nil {
		g.t.Fatal(err)
	}
	st, err := g.read(30 * time.Second)
	if err != nil {
		g.t.Fatal(err)
	}
	return st
}

// Stop tells the child to exit (its sessions end as if it crashed) and
// waits for it (killing it after 20 s).
func (g *LoadGen) Stop() {
	g.once.Do(func() {
		_, _ = io.WriteString(g.stdin, "quit\n")
		_ = g.stdin.Close()
		select {
		case <-g.done:
		case <-time.After(20 * time.Second):
			_ = g.cmd.Process.Kill()
			<-g.done
		}
	})
}

// ChildProfileEnv names a file for a CPU profile of the load generator
// child (set it in the benchmark's environment; the child inherits it).
const ChildProfileEnv = "WDS_BENCH_CHILD_PROFILE"

// ChildGoroutinesEnv names a file prefix for goroutine profiles of the load
// generator child, written every 2 s (path.01, path.02, ...).
const ChildGoroutinesEnv = "WDS_BENCH_CHILD_GOROUTINES"

// RunLoadGen is the child side: it runs the LoadSpec from the environment,
// reports once every consumer was welcomed, then answers "stats" and "mem"
// on stdin, and exits on "quit" (or end of input) without closing its
// consumers.
func RunLoadGen(t *testing.T) {
	var spec LoadSpec
	if err := json.Unmarshal([]byte(os.Getenv(LoadGenEnv)), &spec); err != nil {
		t.Fatal(err)
	}
	if path := os.Getenv(ChildProfileEnv); path != "" {
		// A CPU profile of the whole child, for finding the client
		// library's costs under load; written on "quit".
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if base := os.Getenv(ChildGoroutinesEnv); base != "" {
		// Goroutine profiles (aggregated stacks) every 2 s, to see where
		// 10,000 sessions wait during a burst.
		go func() {
			for i := 1; i <= 60; i++ {
				time.Sleep(2 * time.Second)
				if f, err := os.Create(fmt.Sprintf("%s.%02d", base, i)); err == nil {
					_ = pprof.Lookup("goroutine").WriteTo(f, 1)
					f.Close()
				}
			}
		}()
	}
	out := bufio.NewWriter(os.Stdout)
	report := func(st LoadStats) {
		js, _ := json.Marshal(st)
		fmt.Fprintf(out, "%s%s\n", loadGenPrefix, js)
		out.Flush()
	}
	var welcomes, grants, revokes, losts, disconnects atomic.Int64
	var errMu sync.Mutex
	errs := map[string]int64{}
	onEvent := func(e client.Event) {
		switch e.Kind {
		case client.EventWelcome:
			welcomes.Add(1)
		case client.EventGrant:
			grants.Add(1)
		case client.EventRevoke:
			revokes.Add(1)
		case client.EventLost:
			losts.Add(1)
		case client.EventDisconnected:
			disconnects.Add(1)
			// Ids vary: count by the message with quoted values elided.
			msg := quoted.ReplaceAllString(fmt.Sprint(e.Err), `"…"`)
			if len(msg) > 100 {
				msg = msg[:100]
			}
			errMu.Lock()
			errs[msg]++
			errMu.Unlock()
		}
	}
	var conns []*grpc.ClientConn
	var pool *client.Pool
	if len(spec.Endpoints) > 0 && spec.Conns > 0 {
		pool = client.NewPool(spec.Conns)
		defer pool.Close()
	}
	for i := 0; pool == nil && i < spec.Conns; i++ {
		cc, err := dialShared(spec.Endpoint)
		if err != nil {
			report(LoadStats{Err: err.Error()})
			return
		}
		conns = append(conns, cc)
	}
	wave := spec.Wave
	if wave <= 0 {
		wave = 500
	}
	cons := make([]*client.Consumer, 0, spec.Consumers)
	var connected int
	var startErr error
	for start := 0; start < spec.Consumers && startErr == nil; start += wave {
		end := min(start+wave, spec.Consumers)
		batch := make([]*client.Consumer, 0, end-start)
		for i := start; i < end; i++ {
			id := fmt.Sprintf("%s%d", spec.IDPrefix, i)
			cfg := client.Config{
				Endpoints: []string{spec.Endpoint},
				ID:        id,
				Region:    Region,
				Endpoint:  id + ".bench:8080",
				Domains:   spec.Domains,
				Handler:   func(ctx context.Context, _ client.Shard) { <-ctx.Done() },
				OnEvent:   onEvent,
			}
			if spec.Spread {
				cfg.Domains = []string{spec.Domains[i%len(spec.Domains)]}
			}
			if pool != nil {
				cfg.Endpoints, cfg.Pool = spec.Endpoints, pool
			} else if len(conns) > 0 {
				cfg.Conn = conns[i%len(conns)]
			}
			c, err := client.NewConsumer(cfg)
			if err != nil {
				startErr = err
				break
			}
			batch = append(batch, c)
		}
		cons = append(cons, batch...)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		for _, c := range batch {
			if err := c.WaitConnected(ctx); err != nil {
				startErr = fmt.Errorf("consumer %s: %w", c.ID(), err)
				break
			}
			connected++
		}
		cancel()
	}
	stats := func(gc bool) LoadStats {
		var ms runtime.MemStats
		if gc {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		g, r, l := grants.Load(), revokes.Load(), losts.Load()
		errMu.Lock()
		em := make(map[string]int64, len(errs))
		for k, v := range errs {
			em[k] = v
		}
		errMu.Unlock()
		return LoadStats{DisconnectErrors: em,
			Connected: connected, Welcomes: welcomes.Load(), Grants: g, Revokes: r, Losts: l,
			Disconnects: disconnects.Load(), Held: g - r - l, CPU: int64(CPUTime()),
			HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, Goroutines: runtime.NumGoroutine(),
		}
	}
	st := stats(false)
	if startErr != nil {
		st.Err = startErr.Error()
	}
	report(st)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "quit" {
			break
		}
		report(stats(in.Text() == "mem"))
	}
	// Exit at once, as a crashed process would: closing 10,000 consumers
	// gracefully would make them all drain, a burst of proposals the
	// benchmark does not measure; the parent closes the cell right after,
	// before any lease could lapse.
	out.Flush()
	pprof.StopCPUProfile()
	os.Exit(0)
}
