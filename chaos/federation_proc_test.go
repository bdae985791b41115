package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wdsio/wds/chaos"
	"github.com/wdsio/wds/global"
	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/internal/lease"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
)

// The federation under test: three regions of one `wds server` each, every
// node a global voter, and a GLOBAL, a UNIT and a REGIONAL domain.
const (
	fedGlobal      = "prices" // GLOBAL
	fedGlobalN     = 24
	fedUnit        = "leader" // UNIT
	fedRegional    = "orders" // REGIONAL
	fedRegionalN   = 6
	fedRedelegSlop = 2 * time.Second // the "+ 2 s" of the re-delegation bound
	// fedFailback is the REGIONAL domain's failback_after: a restarted
	// region gets its key space back once it has renewed that long.
	fedFailback = 5 * time.Second
	// fedSettle bounds the time from the last join or leave to a balanced
	// federation ("within a few seconds").
	fedSettle = 10 * time.Second
)

var fedRegionNames = []string{"us-east", "eu-west", "ap-south"}

// fedTTL is the domains' TTL T (WDS_FED_TTL, default 3 s).
var fedTTL = 3 * time.Second

// fedNodes is the number of nodes per region (WDS_FED_NODES: 1, the
// default, or 3); a region's first node is its global voter.
var fedNodes = 1

// TestFederationProcessesRegionLoss is issue 8's must-show with real
// processes: three `wds server --topology FILE --node ID` processes (one
// per region, each a global voter) and `wds consume -o json` processes in
// every region, joining late and leaving gracefully (SIGTERM) in several
// regions. Once they settle, every GLOBAL consumer federation-wide holds
// ⌊n/c⌋ or ⌈n/c⌉ shards, a region's REGIONAL key space is held by its own
// consumers only, and the UNIT domain has exactly one holder (placed in the
// region about to die). Then one region's server and consumers are killed
// with SIGKILL: the other regions' consumers keep every shard they held
// (no revoke, no lost, no grant but of the dead region's ranges), and the
// dead region's GLOBAL ranges and UNIT domain are held by survivors within
// D·(1+ε) + 2 s of the kill, D = T·(1+ε) + S (S = global.DefaultConfig().
// Outage) — plus the global election and the new leader's accession grace
// when the dead region hosted the global leader; so is its REGIONAL key
// space (failover: auto), by the consumers of the first region of its
// failover list (regional failover). The dead region then restarts on its
// data dir with new consumers: it gets its GLOBAL share back and, once it
// has renewed for failback_after, its key space (fail-back), each shard's
// gap a graceful handover's (far below D). The history checker finds no
// overlap and no token going backwards over every region's consumers.
//
// Knobs: WDS_FED_KILLS (default 1) rounds of kill, restart of the dead
// region and rebalancing in one federation; WDS_FED_KILL picks the region
// killed: non-leader, leader (the global leader's region) or alternate
// (the default: non-leader first, then leader, ...); WDS_FED_SEED fixes
// the random choices (regions' roles); WDS_FED_TTL sets T (default 3s);
// WDS_FED_NODES=3 makes each region a 3-node cell (its first node the
// region's global voter), a kill taking all three.
// `make chaos-federation` runs several kills over several seeds.
func TestFederationProcessesRegionLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes: a federation of three `wds server`s and their consumers, about 25 s")
	}
	kills := envInt("WDS_FED_KILLS", 1)
	switch fedNodes = envInt("WDS_FED_NODES", 1); fedNodes {
	case 1, 3:
	default:
		t.Fatalf("WDS_FED_NODES=%d: want 1 or 3", fedNodes)
	}
	if v := os.Getenv("WDS_FED_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			t.Fatalf("WDS_FED_TTL=%q: want a duration of at least 1s", v)
		}
		fedTTL = d
	}
	mode := os.Getenv("WDS_FED_KILL")
	switch mode {
	case "":
		mode = "alternate"
	case "alternate", "leader", "non-leader":
	default:
		t.Fatalf("WDS_FED_KILL=%q: want non-leader, leader or alternate", mode)
	}
	seed := uint64(envInt("WDS_FED_SEED", int(time.Now().UnixNano()%1_000_000_000)))
	t.Logf("WDS_FED_SEED=%d WDS_FED_KILLS=%d WDS_FED_KILL=%s WDS_FED_NODES=%d", seed, kills, mode, fedNodes)
	rnd := rand.New(rand.NewPCG(seed, 0x6665640a))

	gc := global.DefaultConfig()
	eps := gc.Drift
	d := gc.Duration(fedTTL) // D = T·(1+ε) + S
	dHold := lease.Params{TTL: d, Drift: eps}.LeaderHold()
	grace := lease.AccessionSlack(gc.Raft.ConfirmWindow, eps)
	t.Logf("T = %v, ε = %v, S = %v: D = %v, D·(1+ε) = %v; accession grace W·(1+ε) = %v", fedTTL, eps, gc.Outage, d, dHold, grace)

	f := startProcFed(t)
	f.waitGlobalLeader(30 * time.Second)
	f.waitDomains(30 * time.Second)

	var results []killResult
	for k := 0; k < kills; k++ {
		leaderKill := mode == "leader" || (mode == "alternate" && k%2 == 1)
		if k > 0 {
			results[k-1].failback = f.restartDead()
		}
		r := f.round(k+1, leaderKill, rnd, dHold, grace)
		results = append(results, r)
		if t.Failed() {
			break
		}
	}
	if !t.Failed() {
		// The last kill's region comes back too: fail-back.
		results[len(results)-1].failback = f.restartDead()
	}
	f.stopAll()
	f.checkHistories()

	var gaps []time.Duration
	for _, r := range results {
		gaps = append(gaps, r.failback...)
	}
	slices.Sort(gaps)
	for _, leader := range []bool{false, true} {
		var failovers []time.Duration
		for _, r := range results {
			if r.leader == leader {
				failovers = append(failovers, r.failover)
			}
		}
		if len(failovers) == 0 {
			continue
		}
		slices.Sort(failovers)
		name := "a non-leader region"
		if leader {
			name = "the global leader's region"
		}
		t.Logf("regional failover after kill -9 of %s (T = %v, %d node(s) per region), %d kill(s): min %v, median %v, max %v", name, fedTTL, fedNodes, len(failovers),
			failovers[0].Round(time.Millisecond), failovers[len(failovers)/2].Round(time.Millisecond), failovers[len(failovers)-1].Round(time.Millisecond))
	}
	if len(gaps) > 0 {
		t.Logf("fail-back per-shard gap over %d shards: p50 %v, p99 %v, max %v", len(gaps),
			gaps[len(gaps)/2].Round(time.Millisecond), gaps[(len(gaps)*99)/100].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
	}

	for _, kind := range []bool{false, true} {
		var took, elections []time.Duration
		for _, r := range results {
			if r.leader == kind {
				took = append(took, r.took)
				elections = append(elections, r.election)
			}
		}
		if len(took) == 0 {
			continue
		}
		name := "a non-leader region"
		if kind {
			name = "the global leader's region"
		}
		slices.Sort(took)
		t.Logf("kill -9 of %s, %d kill(s): the dead region's GLOBAL ranges and UNIT domain held by survivors after min %v, median %v, max %v",
			name, len(took), took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
		if kind {
			slices.Sort(elections)
			t.Logf("global election after a leader kill: min %v, median %v, max %v",
				elections[0].Round(time.Millisecond), elections[len(elections)/2].Round(time.Millisecond), elections[len(elections)-1].Round(time.Millisecond))
		}
	}
}

// killResult is what one kill measured.
type killResult struct {
	leader   bool
	took     time.Duration
	election time.Duration // leader kills: kill to the new global leader's accession
	failover time.Duration // kill to the dead region's REGIONAL key space held by its failover region
	// failback are the per-shard gaps of the fail-back after the restart
	// that followed this kill (none for the last kill).
	failback []time.Duration
}

// fedRegion is one region: its first node, a cell member and the region's
// global voter, and (WDS_FED_NODES=3) more cell members.
type fedRegion struct {
	name, node                string
	grpc, raft, http, globalA string
	dataDir                   string
	server                    *proc   // nil while down
	runs                      []*proc // every run, for logs
	conn                      *grpc.ClientConn
	more                      []*cellMember
}

// cellMember is a further node of a region's cell (no global voter).
type cellMember struct {
	node, grpc, raft, http, dataDir string
	server                          *proc
	runs                            []*proc
}

// endpoints are the region's nodes' gRPC endpoints, comma-separated.
func (r *fedRegion) endpoints() string {
	eps := []string{r.grpc}
	for _, m := range r.more {
		eps = append(eps, m.grpc)
	}
	return strings.Join(eps, ",")
}

// fedConsumer is one `wds consume` process.
type fedConsumer struct {
	id, region string
	domains    []string
	p          *proc
	state      string    // live, stopped (SIGTERM, exited), killed
	diedAt     time.Time // killed: when it was reaped
}

func (c *fedConsumer) serves(domain string) bool { return slices.Contains(c.domains, domain) }

// procFed is a federation of real processes on loopback.
type procFed struct {
	t         *testing.T
	dir       string
	topo      string
	regions   []*fedRegion
	consumers []*fedConsumer
	seq       map[string]int // per region: consumers started
	dead      int            // index of the region down, or -1
}

func startProcFed(t *testing.T) *procFed {
	t.Helper()
	f := &procFed{t: t, dir: t.TempDir(), seq: map[string]int{}, dead: -1}
	per := fedNodes - 1 // further cell members per region
	addrs := celltest.FreeAddrs(t, (4+3*per)*len(fedRegionNames))
	var b strings.Builder
	b.WriteString("regions:\n")
	for i, name := range fedRegionNames {
		a := addrs[(4+3*per)*i:]
		r := &fedRegion{
			name: name, node: name + "-1",
			raft: a[0], grpc: a[1], http: a[2], globalA: a[3],
		}
		r.dataDir = filepath.Join(f.dir, r.node)
		cc, err := grpc.NewClient(r.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		r.conn = cc
		f.regions = append(f.regions, r)
		fmt.Fprintf(&b, "  - name: %s\n    nodes:\n      - {id: %s, raft: %q, grpc: %q, http: %q, global: %q}\n",
			r.name, r.node, r.raft, r.grpc, r.http, r.globalA)
		for j := range per {
			m := &cellMember{node: fmt.Sprintf("%s-%d", name, j+2), raft: a[4+3*j], grpc: a[5+3*j], http: a[6+3*j]}
			m.dataDir = filepath.Join(f.dir, m.node)
			r.more = append(r.more, m)
			fmt.Fprintf(&b, "      - {id: %s, raft: %q, grpc: %q, http: %q}\n", m.node, m.raft, m.grpc, m.http)
		}
	}
	fmt.Fprintf(&b, "domains:\n")
	fmt.Fprintf(&b, "  - {name: %s, kind: global, shards: %d, ttl: %s}\n", fedGlobal, fedGlobalN, fedTTL)
	fmt.Fprintf(&b, "  - {name: %s, kind: unit, ttl: %s}\n", fedUnit, fedTTL)
	fmt.Fprintf(&b, "  - {name: %s, kind: regional, shards: %d, ttl: %s, failback_after: %s}\n", fedRegional, fedRegionalN, fedTTL, fedFailback)
	f.topo = filepath.Join(f.dir, "topology.yaml")
	if err := os.WriteFile(f.topo, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			f.dump()
		}
		for _, r := range f.regions {
			r.conn.Close()
		}
	})
	for i := range f.regions {
		f.startServer(i)
	}
	return f
}

// startServer starts every node of region i (from their data dirs).
func (f *procFed) startServer(i int) {
	f.t.Helper()
	r := f.regions[i]
	r.server = f.launch(r.node, r.dataDir)
	r.runs = append(r.runs, r.server)
	for _, m := range r.more {
		m.server = f.launch(m.node, m.dataDir)
		m.runs = append(m.runs, m.server)
	}
	f.waitStarted(r.node, r.server)
	for _, m := range r.more {
		f.waitStarted(m.node, m.server)
	}
}

// launch starts node's `wds server` from the topology file on dataDir.
func (f *procFed) launch(node, dataDir string) *proc {
	return startProc(f.t, "server "+node, "server", "--topology", f.topo, "--node", node, "--data-dir", dataDir,
		"--log-level", "info", "--log-format", "json")
}

// waitStarted waits for a launched server's start-up line.
func (f *procFed) waitStarted(node string, p *proc) {
	f.t.Helper()
	if l, ok := p.waitLine("wds server: node "+node, 20*time.Second); !ok {
		f.t.Fatalf("%s did not start (stdout %q); stderr:\n%s", node, l, p.stderr.String())
	}
}

// killRegion kills every node of region i with SIGKILL.
func (f *procFed) killRegion(i int) {
	r := f.regions[i]
	r.server.kill9()
	r.server = nil
	for _, m := range r.more {
		m.server.kill9()
		m.server = nil
	}
}

// waitFor polls f until it returns nil or within has passed, and returns
// how long that took and the last error.
func waitFor(within time.Duration, fn func() error) (time.Duration, error) {
	start := time.Now()
	for {
		err := fn()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Since(start) > within {
			return time.Since(start), err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// globalLeader asks every running node who leads the global group and
// returns the index of the region whose node says it does.
func (f *procFed) globalLeader() (int, error) {
	var errs []string
	for i, r := range f.regions {
		if r.server == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := globalv1.NewGlobalAdminClient(r.conn).GlobalStatus(ctx, &globalv1.GlobalStatusRequest{})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", r.node, err))
			continue
		}
		if st.GetState() == "Leader" && st.GetLeaderId() == r.node {
			return i, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %s, leader %q", r.node, st.GetState(), st.GetLeaderId()))
	}
	return -1, fmt.Errorf("no global leader: %s", strings.Join(errs, "; "))
}

func (f *procFed) waitGlobalLeader(within time.Duration) int {
	f.t.Helper()
	l := -1
	took, err := waitFor(within, func() (err error) { l, err = f.globalLeader(); return err })
	if err != nil {
		f.t.Fatalf("after %v: %v", within, err)
	}
	f.t.Logf("global leader: %s (%s), found after %v", f.regions[l].node, f.regions[l].name, took.Round(time.Millisecond))
	return l
}

// waitDomains waits until every running cell knows the three domains.
func (f *procFed) waitDomains(within time.Duration) {
	f.t.Helper()
	_, err := waitFor(within, func() error {
		for _, r := range f.regions {
			if r.server == nil {
				continue
			}
			out, stderr, code := runWDS(f.t, "--endpoint", r.grpc, "--timeout", "2s", "-o", "json", "domain", "list")
			if code != 0 {
				return fmt.Errorf("%s: domain list: exit %d: %s", r.name, code, stderr)
			}
			for _, name := range []string{fedGlobal, fedUnit, fedRegional} {
				if !strings.Contains(out, `"`+name+`"`) {
					return fmt.Errorf("%s knows no domain %s yet: %s", r.name, name, out)
				}
			}
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// startConsumer starts a `wds consume -o json` in region i.
func (f *procFed) startConsumer(i int, kind string, domains ...string) *fedConsumer {
	f.t.Helper()
	r := f.regions[i]
	f.seq[r.name]++
	id := fmt.Sprintf("%s-%s%d", r.name, kind, f.seq[r.name])
	c := &fedConsumer{id: id, region: r.name, domains: domains, state: "live"}
	c.p = startProc(f.t, "consumer "+id, "--endpoint", r.endpoints(), "-o", "json",
		"consume", "--domain", strings.Join(domains, ","), "--id", id)
	f.consumers = append(f.consumers, c)
	return c
}

// stopConsumer stops a consumer gracefully (SIGTERM: it drains, then exits 0).
func (f *procFed) stopConsumer(c *fedConsumer) {
	f.t.Helper()
	c.p.signal(syscall.SIGTERM)
	if code, _ := c.p.wait(30 * time.Second); code != 0 {
		f.t.Errorf("%s exited %d after SIGTERM; stderr:\n%s", c.id, code, c.p.stderr.String())
	}
	c.state = "stopped"
}

func (f *procFed) live(filter func(*fedConsumer) bool) []*fedConsumer {
	var out []*fedConsumer
	for _, c := range f.consumers {
		if c.state == "live" && (filter == nil || filter(c)) {
			out = append(out, c)
		}
	}
	return out
}

// shardEvent is the part of a `wds consume -o json` line read here.
type shardEvent struct {
	Event  string  `json:"event"`
	Domain string  `json:"domain"`
	Region *string `json:"region"`
	From   string  `json:"from"`
	Token  string  `json:"token"`
	Time   string  `json:"time"`
	Reason string  `json:"reason"`
}

// shardKey names a shard: key space ("domain/region") and from.
type shardKey struct{ space, from string }

// fedUnitKey is the UNIT domain's one shard.
var fedUnitKey = shardKey{fedUnit + "/", "00000000-0000-0000-0000-000000000000"}

func (e shardEvent) key() shardKey {
	reg := ""
	if e.Region != nil {
		reg = *e.Region
	}
	return shardKey{e.Domain + "/" + reg, e.From}
}

type heldShard struct {
	token string
	at    time.Time
}

func parseShardEvents(lines []string) []shardEvent {
	var out []shardEvent
	for _, l := range lines {
		var e shardEvent
		if json.Unmarshal([]byte(l), &e) == nil && e.Event != "" {
			out = append(out, e)
		}
	}
	return out
}

// held is what the consumer's event stream says it owns now.
func (c *fedConsumer) held() map[shardKey]heldShard {
	out := map[shardKey]heldShard{}
	for _, e := range parseShardEvents(c.p.output()) {
		if e.Domain == "" {
			continue
		}
		switch e.Event {
		case "grant":
			at, _ := time.Parse(time.RFC3339Nano, e.Time)
			if h, ok := out[e.key()]; !ok || h.token != e.Token {
				out[e.key()] = heldShard{token: e.Token, at: at}
			}
		case "revoke", "lost", "release":
			delete(out, e.key())
		}
	}
	return out
}

// view is the federation's ownership from the live consumers' streams:
// key space → consumer → shards, and shard → holders.
type fedView struct {
	count   map[string]map[string]int
	holders map[shardKey][]*fedConsumer
	grants  map[shardKey]heldShard // of the (last listed) holder
}

func (f *procFed) view() fedView {
	v := fedView{count: map[string]map[string]int{}, holders: map[shardKey][]*fedConsumer{}, grants: map[shardKey]heldShard{}}
	for _, c := range f.live(nil) {
		for k, h := range c.held() {
			if v.count[k.space] == nil {
				v.count[k.space] = map[string]int{}
			}
			v.count[k.space][c.id]++
			v.holders[k] = append(v.holders[k], c)
			v.grants[k] = h
		}
	}
	return v
}

// balanced checks the settled placement: GLOBAL ⌊n/c⌋ or ⌈n/c⌉ per live
// consumer federation-wide, every shard held once; each live region's
// REGIONAL key space held whole by its own consumers, balanced among
// them; the UNIT domain held by exactly one consumer (in unitRegion if
// set). Dead regions' key spaces are not judged here.
func (f *procFed) balanced(unitRegion string) error {
	v := f.view()
	for k, hs := range v.holders {
		if len(hs) > 1 {
			return fmt.Errorf("%s %s held by %d consumers at once (in flight?)", k.space, k.from, len(hs))
		}
	}
	spread := func(space string, cs []*fedConsumer, n int) error {
		got := v.count[space]
		total := 0
		for _, x := range got {
			total += x
		}
		if total != n {
			return fmt.Errorf("%s: %d of %d shards held: %v", space, total, n, got)
		}
		ids := map[string]bool{}
		for _, c := range cs {
			ids[c.id] = true
			if x := got[c.id]; x < n/len(cs) || x > (n+len(cs)-1)/len(cs) {
				return fmt.Errorf("%s: %s holds %d, want ⌊%d/%d⌋ or ⌈%d/%d⌉: %v", space, c.id, x, n, len(cs), n, len(cs), got)
			}
		}
		for id := range got {
			if !ids[id] {
				return fmt.Errorf("%s held by %s, not one of its consumers: %v", space, id, got)
			}
		}
		return nil
	}
	if err := spread(fedGlobal+"/", f.live(func(c *fedConsumer) bool { return c.serves(fedGlobal) }), fedGlobalN); err != nil {
		return err
	}
	for i, r := range f.regions {
		if i == f.dead {
			continue
		}
		cs := f.live(func(c *fedConsumer) bool { return c.region == r.name && c.serves(fedRegional) })
		if err := spread(fedRegional+"/"+r.name, cs, fedRegionalN); err != nil {
			return err
		}
	}
	unit := v.count[fedUnit+"/"]
	if len(unit) != 1 {
		return fmt.Errorf("UNIT %s held by %v, want exactly one holder", fedUnit, unit)
	}
	for _, c := range v.holders[fedUnitKey] {
		if unitRegion != "" && c.region != unitRegion {
			return fmt.Errorf("UNIT %s held by %s of %s, want a consumer of %s", fedUnit, c.id, c.region, unitRegion)
		}
	}
	return nil
}

// waitBalanced waits until the placement is balanced and returns how long
// it took since since.
func (f *procFed) waitBalanced(what string, since time.Time, unitRegion string, within time.Duration) time.Duration {
	f.t.Helper()
	if _, err := waitFor(within, func() error { return f.balanced(unitRegion) }); err != nil {
		f.t.Fatalf("%s: not balanced %v after the last change: %v", what, time.Since(since).Round(time.Millisecond), err)
	}
	took := time.Since(since)
	f.t.Logf("%s: balanced %v after the last join: %s", what, took.Round(time.Millisecond), f.summary())
	return took
}

// summary formats the live consumers' holdings.
func (f *procFed) summary() string {
	v := f.view()
	var spaces []string
	for s := range v.count {
		spaces = append(spaces, s)
	}
	sort.Strings(spaces)
	var b strings.Builder
	for _, s := range spaces {
		fmt.Fprintf(&b, "%s %v; ", s, v.count[s])
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// accessionAfter is the first "leading the global group" a node logged
// after t.
func (f *procFed) accessionAfter(t time.Time) (time.Time, string, bool) {
	var first time.Time
	who := ""
	for _, r := range f.regions {
		for _, p := range r.runs {
			for _, at := range logTimes(p.stderr.String(), "leading the global group") {
				if at.After(t) && (first.IsZero() || at.Before(first)) {
					first, who = at, r.node
				}
			}
		}
	}
	return first, who, !first.IsZero()
}

// logTimes returns the times of the JSON log records whose msg is msg.
func logTimes(log, msg string) []time.Time {
	var out []time.Time
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `"msg":"`+msg+`"`) {
			continue
		}
		var rec struct {
			Time time.Time `json:"time"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil {
			out = append(out, rec.Time)
		}
	}
	return out
}

// round is one kill: arrange the UNIT domain in the region to kill, wait
// for balance, kill -9 the region's server and consumers, measure the
// re-delegation and check the survivors' zero churn.
func (f *procFed) round(n int, leaderKill bool, rnd *rand.Rand, dHold, grace time.Duration) killResult {
	t := f.t
	l := f.waitGlobalLeader(20 * time.Second)
	var k int
	if leaderKill {
		k = l
	} else {
		others := []int{}
		for i := range f.regions {
			if i != l {
				others = append(others, i)
			}
		}
		k = others[rnd.IntN(len(others))]
	}
	var surv []int
	for i := range f.regions {
		if i != k {
			surv = append(surv, i)
		}
	}
	rnd.Shuffle(len(surv), func(a, b int) { surv[a], surv[b] = surv[b], surv[a] })
	kr := f.regions[k]
	role := "a non-leader region"
	if leaderKill {
		role = "the global leader's region"
	}
	t.Logf("round %d: will kill %s (%s), %s; survivors %s, %s", n, kr.name, kr.node, role, f.regions[surv[0]].name, f.regions[surv[1]].name)

	var transient *fedConsumer
	if n == 1 {
		// Every region gets one GLOBAL+REGIONAL consumer, a survivor one
		// more that will leave.
		for i := range f.regions {
			f.startConsumer(i, "w", fedGlobal, fedRegional)
		}
		transient = f.startConsumer(surv[0], "w", fedGlobal, fedRegional)
	}
	// The UNIT domain: held in the region to kill, with a second consumer
	// waiting in a survivor (below). Other UNIT consumers leave gracefully,
	// and the UNIT domain follows its consumer.
	if len(f.live(func(c *fedConsumer) bool { return c.serves(fedUnit) && c.region == kr.name })) == 0 {
		f.startConsumer(k, "u", fedUnit)
	}
	for _, c := range f.live(func(c *fedConsumer) bool { return c.serves(fedUnit) && c.region != kr.name }) {
		t.Logf("round %d: SIGTERM %s (UNIT consumer outside %s, holding %d)", n, c.id, kr.name, len(c.held()))
		f.stopConsumer(c)
	}
	if took, err := waitFor(30*time.Second, func() error {
		for _, c := range f.view().holders[fedUnitKey] {
			if c.region == kr.name {
				return nil
			}
		}
		return fmt.Errorf("UNIT not held in %s: %s", kr.name, f.summary())
	}); err != nil {
		t.Fatalf("round %d: %v", n, err)
	} else {
		t.Logf("round %d: UNIT %s held in %s after %v", n, fedUnit, kr.name, took.Round(time.Millisecond))
	}
	if transient != nil {
		// A graceful leave of a consumer holding GLOBAL and REGIONAL shards.
		if _, err := waitFor(20*time.Second, func() error {
			if len(transient.held()) == 0 {
				return fmt.Errorf("%s holds nothing yet: %s", transient.id, f.summary())
			}
			return nil
		}); err != nil {
			t.Fatalf("round %d: %v", n, err)
		}
		t.Logf("round %d: SIGTERM %s (holding %d shards)", n, transient.id, len(transient.held()))
		f.stopConsumer(transient)
	}
	// Late joins in several regions.
	if n == 1 {
		for i := range f.regions {
			f.startConsumer(i, "w", fedGlobal, fedRegional)
		}
	}
	us := f.startConsumer(surv[1], "u", fedUnit)
	lastJoin := time.Now()
	if took := f.waitBalanced(fmt.Sprintf("round %d", n), lastJoin, kr.name, 30*time.Second); took > fedSettle {
		t.Errorf("round %d: balanced only %v after the last join, want within %v", n, took.Round(time.Millisecond), fedSettle)
	}
	// Let placement and the cells' balancers finish their last rounds,
	// then take the baseline.
	time.Sleep(1500 * time.Millisecond)
	if err := f.balanced(kr.name); err != nil {
		t.Fatalf("round %d: balance did not hold: %v", n, err)
	}
	survivors := f.live(func(c *fedConsumer) bool { return c.region != kr.name })
	base := map[*fedConsumer]int{}
	baseHeld := map[*fedConsumer]map[shardKey]heldShard{}
	for _, c := range survivors {
		base[c] = len(c.p.output())
		baseHeld[c] = c.held()
	}
	// What the dead region holds: its GLOBAL ranges, the UNIT domain, its
	// REGIONAL key space.
	deadGlobal := map[shardKey]bool{}
	victims := f.live(func(c *fedConsumer) bool { return c.region == kr.name })
	for _, c := range victims {
		for sk := range c.held() {
			if sk.space == fedGlobal+"/" {
				deadGlobal[sk] = true
			}
		}
	}
	mayArrive := func(sk shardKey) bool {
		return deadGlobal[sk] || sk.space == fedUnit+"/" || sk.space == fedRegional+"/"+kr.name
	}

	// kill -9 of the region: its consumers, then its server.
	for _, c := range victims {
		c.diedAt = c.p.kill9()
		c.state = "killed"
	}
	killed := time.Now()
	f.killRegion(k)
	f.dead = k
	t.Logf("round %d: killed %s and its %d consumers (%d GLOBAL shards and the UNIT domain held there)", n, kr.node, len(victims), len(deadGlobal))

	bound := dHold + fedRedelegSlop
	boundText := fmt.Sprintf("D·(1+ε) + 2 s = %v", bound)
	var election time.Duration
	if leaderKill {
		// The new leader's Raft state says Leader a little before it logs
		// its accession (after its barrier): wait for the log line.
		var acc time.Time
		var who string
		if _, err := waitFor(30*time.Second, func() error {
			var ok bool
			if acc, who, ok = f.accessionAfter(killed); !ok {
				return fmt.Errorf("no node logged leading the global group since the kill")
			}
			return nil
		}); err != nil {
			t.Fatalf("round %d: %v", n, err)
		}
		f.waitGlobalLeader(10 * time.Second)
		election = acc.Sub(killed)
		bound += election + grace
		boundText = fmt.Sprintf("election %v + W·(1+ε) %v + D·(1+ε) %v + 2 s = %v", election.Round(time.Millisecond), grace, dHold, bound.Round(time.Millisecond))
		t.Logf("round %d: %s leads the global group %v after the kill", n, who, election.Round(time.Millisecond))
	}

	// The dead region's GLOBAL ranges and UNIT domain held by survivors.
	var took time.Duration
	_, err := waitFor(bound+15*time.Second, func() error {
		v := f.view()
		took = 0
		var missing []string
		for sk := range deadGlobal {
			if len(v.holders[sk]) == 0 {
				missing = append(missing, sk.from[:8])
				continue
			}
			took = max(took, v.grants[sk].at.Sub(killed))
		}
		if len(v.holders[fedUnitKey]) == 0 {
			missing = append(missing, "UNIT")
		} else {
			took = max(took, v.grants[fedUnitKey].at.Sub(killed))
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of the dead region's %d GLOBAL shards and UNIT not held by survivors: %v", len(missing), len(deadGlobal)+1, missing)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("round %d: %v after the kill (bound %s): %v", n, time.Since(killed).Round(time.Millisecond), boundText, err)
	}
	exp := ""
	if l, _ := f.globalLeader(); l >= 0 {
		for _, p := range f.regions[l].runs {
			for _, at := range logTimes(p.stderr.String(), "delegation expired") {
				if at.After(killed) {
					exp = fmt.Sprintf(" (first delegation expiry logged %v after the kill)", at.Sub(killed).Round(time.Millisecond))
					break
				}
			}
		}
	}
	t.Logf("round %d: MEASURED the dead region's %d GLOBAL shards and UNIT domain held by survivors %v after the kill%s; bound %s",
		n, len(deadGlobal), took.Round(time.Millisecond), exp, boundText)
	if took > bound {
		t.Errorf("round %d: re-delegation took %v, more than %s", n, took.Round(time.Millisecond), boundText)
	}
	if took < dHold-3*time.Second {
		t.Errorf("round %d: re-delegated only %v after the kill, well before D·(1+ε) = %v after the region's last renewal", n, took.Round(time.Millisecond), dHold)
	}
	if h := us.held(); len(h) != 1 {
		t.Errorf("round %d: survivor UNIT consumer %s holds %v", n, us.id, h)
	}

	// Regional failover: the dead region's REGIONAL key space (failover:
	// auto) held whole by consumers of the first region of its failover
	// list with consumers of the domain. The topology gives no list, so
	// that is every other region in file order, and every region has
	// consumers of it: the first survivor in file order.
	var want string
	for i, r := range f.regions {
		if i != k {
			want = r.name
			break
		}
	}
	deadSpace := fedRegional + "/" + kr.name
	var failover time.Duration
	if _, err := waitFor(bound+15*time.Second, func() error {
		v := f.view()
		n := 0
		failover = 0
		for sk, hs := range v.holders {
			if sk.space != deadSpace {
				continue
			}
			for _, c := range hs {
				if c.region != want {
					return fmt.Errorf("%s %s held by %s of %s, want a consumer of %s", sk.space, sk.from[:8], c.id, c.region, want)
				}
			}
			n++
			failover = max(failover, v.grants[sk].at.Sub(killed))
		}
		if n != fedRegionalN {
			return fmt.Errorf("%d of the %d shards of %s held by survivors: %s", n, fedRegionalN, deadSpace, f.summary())
		}
		return nil
	}); err != nil {
		t.Fatalf("round %d: regional failover: %v after the kill (bound %s): %v", n, time.Since(killed).Round(time.Millisecond), boundText, err)
	}
	t.Logf("round %d: MEASURED regional failover: %s served by %s %v after the kill; bound %s", n, deadSpace, want, failover.Round(time.Millisecond), boundText)
	if failover > bound {
		t.Errorf("round %d: regional failover took %v, more than %s", n, failover.Round(time.Millisecond), boundText)
	}

	// A few heartbeats later: balanced over the survivors, and no churn.
	time.Sleep(2 * time.Second)
	if _, err := waitFor(10*time.Second, func() error { return f.balanced("") }); err != nil {
		t.Errorf("round %d: survivors not balanced after the re-delegation: %v", n, err)
	}
	f.checkNoChurn(n, survivors, base, baseHeld, mayArrive)
	t.Logf("round %d: after the kill: %s", n, f.summary())
	return killResult{leader: leaderKill, took: took, election: election, failover: failover}
}

// checkNoChurn wants no revoke, lost or release since the baseline, and no
// grant but of the dead region's ranges.
func (f *procFed) checkNoChurn(n int, survivors []*fedConsumer, base map[*fedConsumer]int, baseHeld map[*fedConsumer]map[shardKey]heldShard, mayArrive func(shardKey) bool) {
	t := f.t
	arrived := 0
	for _, c := range survivors {
		for _, e := range parseShardEvents(c.p.output()[base[c]:]) {
			switch e.Event {
			case "grant":
				sk := e.key()
				if h, ok := baseHeld[c][sk]; ok && h.token == e.Token {
					continue // resumed: nothing moved
				}
				if !mayArrive(sk) {
					t.Errorf("round %d: survivor %s got %s %s (token %s) after the kill: not one of the dead region's ranges", n, c.id, sk.space, sk.from, e.Token)
				}
				arrived++
			case "revoke", "lost", "release":
				t.Errorf("round %d: survivor %s: %s of %s %s (reason %q) after the kill", n, c.id, e.Event, e.key().space, e.key().from, e.Reason)
			case "disconnected", "welcome":
				t.Logf("round %d: survivor %s: %s at %s", n, c.id, e.Event, e.Time)
			}
		}
	}
	t.Logf("round %d: survivors: %d grants of the dead region's ranges arrived; no other grant, revoke, release or lost unless reported above", n, arrived)
}

// restartDead restarts the dead region's server from its data dir with two
// new consumers, and waits for the federation to balance again: its GLOBAL
// share and, after failback_after, its REGIONAL key space back. It returns
// the fail-back's per-shard gaps.
func (f *procFed) restartDead() []time.Duration {
	t := f.t
	k := f.dead
	started := time.Now()
	f.startServer(k)
	f.dead = -1
	f.startConsumer(k, "w", fedGlobal, fedRegional)
	f.startConsumer(k, "w", fedGlobal, fedRegional)
	took := f.waitBalanced("restart of "+f.regions[k].name, started, "", 60*time.Second)
	t.Logf("restart of %s: its ranges back, its REGIONAL key space failed back (failback_after %v), federation balanced %v after the restart",
		f.regions[k].name, fedFailback, took.Round(time.Millisecond))
	gaps := f.failbackGaps(k, started)
	if len(gaps) != fedRegionalN {
		t.Errorf("restart of %s: fail-back gaps of %d shards, want %d: %v", f.regions[k].name, len(gaps), fedRegionalN, gaps)
		return nil
	}
	d := global.DefaultConfig().Duration(fedTTL)
	t.Logf("restart of %s: MEASURED fail-back per-shard gap p50 %v, max %v", f.regions[k].name,
		gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
	if m := gaps[len(gaps)-1]; m >= d {
		t.Errorf("restart of %s: a shard of its key space was unserved for %v during fail-back: not graceful (D = %v)", f.regions[k].name, m.Round(time.Millisecond), d)
	}
	return gaps
}

// failbackGaps returns, per shard of region k's REGIONAL key space, the
// gap between the end of its ownership by a consumer of another region
// since since and the start of its ownership by a consumer of k, sorted.
func (f *procFed) failbackGaps(k int, since time.Time) []time.Duration {
	home := f.regions[k].name
	region := map[string]string{}
	for _, c := range f.consumers {
		region[c.id] = c.region
	}
	var recent []chaos.Interval
	for _, iv := range f.intervals() {
		if iv.Open() || iv.End.After(since) {
			recent = append(recent, iv)
		}
	}
	return chaos.HandoverGaps(recent, fedRegional, home,
		func(c string) bool { return region[c] != home }, func(c string) bool { return region[c] == home })
}

// stopAll stops every live consumer (SIGTERM, drain), then the servers.
func (f *procFed) stopAll() {
	f.t.Helper()
	for _, c := range f.live(nil) {
		c.p.signal(syscall.SIGTERM)
	}
	for _, c := range f.live(nil) {
		if code, _ := c.p.wait(30 * time.Second); code != 0 {
			f.t.Errorf("%s exited %d after SIGTERM; stderr:\n%s", c.id, code, c.p.stderr.String())
		}
		c.state = "stopped"
	}
	for _, r := range f.regions {
		if r.server != nil {
			r.server.signal(syscall.SIGTERM)
		}
		for _, m := range r.more {
			if m.server != nil {
				m.server.signal(syscall.SIGTERM)
			}
		}
	}
	for _, r := range f.regions {
		if r.server != nil {
			if code, _ := r.server.wait(20 * time.Second); code != 0 {
				f.t.Errorf("%s exited %d after SIGTERM", r.node, code)
			}
			r.server = nil
		}
		for _, m := range r.more {
			if m.server != nil {
				if code, _ := m.server.wait(20 * time.Second); code != 0 {
					f.t.Errorf("%s exited %d after SIGTERM", m.node, code)
				}
				m.server = nil
			}
		}
	}
}

// intervals are every consumer's ownership periods from its event stream;
// a killed consumer's beliefs end when it was reaped.
func (f *procFed) intervals() []chaos.Interval {
	f.t.Helper()
	var all []chaos.Interval
	for _, c := range f.consumers {
		ivs, err := chaos.ParseEvents(c.id, strings.NewReader(strings.Join(c.p.output(), "\n")))
		if err != nil {
			f.t.Fatalf("%s: %v", c.id, err)
		}
		for i := range ivs {
			if ivs[i].Open() && c.state == "killed" {
				ivs[i].End = c.diedAt
			}
		}
		all = append(all, ivs...)
	}
	return all
}

// checkHistories runs the history checker over every consumer of every
// region; a killed consumer's beliefs end when it was reaped.
func (f *procFed) checkHistories() {
	t := f.t
	t.Helper()
	all := f.intervals()
	gens := map[string]map[uint64]bool{}
	for _, iv := range all {
		if gens[iv.Domain] == nil {
			gens[iv.Domain] = map[uint64]bool{}
		}
		gens[iv.Domain][iv.Token.Generation] = true
	}
	vs := chaos.Check(all)
	for i, v := range vs {
		if i == 20 {
			t.Errorf("... and %d more violations", len(vs)-20)
			break
		}
		t.Errorf("ownership violation: %s", v)
	}
	var gl []string
	for dom, g := range gens {
		var ns []string
		for x := range g {
			ns = append(ns, strconv.FormatUint(x, 10))
		}
		sort.Strings(ns)
		gl = append(gl, dom+": "+strings.Join(ns, ","))
	}
	sort.Strings(gl)
	t.Logf("history checker: %d ownership intervals of %d consumers in %d regions, %d violations; generations %s",
		len(all), len(f.consumers), len(f.regions), len(vs), strings.Join(gl, "; "))
	if len(all) < fedGlobalN {
		t.Errorf("only %d ownership intervals recorded", len(all))
	}
}

// dump writes every process's output into the test log (on failure).
func (f *procFed) dump() {
	for _, r := range f.regions {
		if r.server == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := globalv1.NewGlobalAdminClient(r.conn).GlobalStatus(ctx, &globalv1.GlobalStatusRequest{})
		cancel()
		if err == nil {
			b, _ := json.Marshal(st)
			f.t.Logf("=== %s GlobalStatus: %s", r.node, b)
		}
	}
	for _, r := range f.regions {
		for i, p := range r.runs {
			f.t.Logf("=== server %s run %d stderr:\n%s", r.node, i+1, p.stderr.String())
		}
		for _, m := range r.more {
			for i, p := range m.runs {
				f.t.Logf("=== server %s run %d stderr:\n%s", m.node, i+1, p.stderr.String())
			}
		}
	}
	for _, c := range f.consumers {
		f.t.Logf("=== consumer %s (%s, %s):\n%s\nstderr: %s", c.id, c.region, c.state, strings.Join(c.p.output(), "\n"), c.p.stderr.String())
	}
}
