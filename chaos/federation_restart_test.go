package chaos_test

import (
	"context"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/wdsio/wds/internal/celltest"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
)

// TestFederationProcessesRollingRestart: a rolling restart of a whole
// federation of real processes costs no lease. Three regions of three
// `wds server`s from one topology file (each region's first node is its
// global voter), a `wds consume` on the GLOBAL and REGIONAL domains in
// every region and a UNIT consumer. Every server in turn gets SIGTERM,
// must exit 0 (a cell leader hands its cell over, a global leader the
// global group), restarts on its data dir, and the next goes once it is
// ready again. Across the nine restarts — every cell leader and the
// global leader among them — no consumer is revoked, loses or releases a
// shard, and none is granted one it did not hold (a resumed grant keeps
// its token); the history checker is clean.
//
// WDS_ROLL_ROUNDS (default 1) restarts the whole federation that many
// times.
func TestFederationProcessesRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes: nine `wds server`s restarted one by one, about 90 s")
	}
	rounds := envInt("WDS_ROLL_ROUNDS", 1)
	f, bl := startSettledFed(t, fedTTL)

	var stops, readies []time.Duration
	for round := 1; round <= rounds; round++ {
		for i := range f.regions {
			for j, m := range f.nodes(i) {
				role := f.roleOf(i, m.node)
				stopped, ready := f.rollOne(i, j, m)
				stops, readies = append(stops, stopped), append(readies, ready)
				t.Logf("round %d: %s (%s) stopped in %v, ready again %v after its restart", round, m.node, role,
					stopped.Round(time.Millisecond), ready.Round(time.Millisecond))
				if t.Failed() {
					return
				}
			}
		}
	}
	// A few heartbeats after the last restart: the same holdings.
	time.Sleep(3 * time.Second)
	if err := f.balanced(""); err != nil {
		t.Errorf("after the rolling restart: %v", err)
	}
	bl.check(f, "after the rolling restart")
	// Every leader that was stopped handed its group over rather than
	// leaving it to an election timeout: each round stops three cell
	// leaders and the global leader.
	cellHandovers, globalHandovers := 0, 0
	for _, r := range f.regions {
		runs := r.runs
		for _, m := range r.more {
			runs = append(runs, m.runs...)
		}
		for _, p := range runs {
			cellHandovers += len(logTimes(p.stderr.String(), "leadership handed over"))
			globalHandovers += len(logTimes(p.stderr.String(), "global leadership handed over"))
		}
	}
	t.Logf("handovers logged: %d of cell leadership, %d of global leadership", cellHandovers, globalHandovers)
	if cellHandovers < 3*rounds || globalHandovers < rounds {
		t.Errorf("stopped leaders handed over %d cells and %d times the global group, want at least %d and %d", cellHandovers, globalHandovers, 3*rounds, rounds)
	}
	t.Logf("after the rolling restart: %s", f.summary())
	celltest.SortDurations(stops)
	celltest.SortDurations(readies)
	t.Logf("SIGTERM to exit over %d restarts: median %v, max %v; restart to ready: median %v, max %v", len(stops),
		celltest.Percentile(stops, 50).Round(time.Millisecond), celltest.Percentile(stops, 100).Round(time.Millisecond),
		celltest.Percentile(readies, 50).Round(time.Millisecond), celltest.Percentile(readies, 100).Round(time.Millisecond))
	f.stopAll()
	f.checkHistories()
}

// baseline is what every consumer held once the federation settled, and
// how much of its output had been read then.
type baseline struct {
	all  []*fedConsumer
	out  map[*fedConsumer]int
	held map[*fedConsumer]map[shardKey]heldShard
}

// check wants zero churn since the baseline: no revoke, lost or release,
// and no grant but a resumed one (same token).
func (b baseline) check(f *procFed, what string) {
	f.t.Helper()
	f.t.Logf("%s:", what)
	f.checkNoChurn(0, b.all, b.out, b.held, func(shardKey) bool { return false })
}

// startSettledFed starts 3 regions × 3 servers with domains of TTL ttl, a
// GLOBAL+REGIONAL consumer in every region and a UNIT consumer in the
// first, waits for balance and takes the zero-churn baseline.
func startSettledFed(t *testing.T, ttl time.Duration) (*procFed, baseline) {
	t.Helper()
	oldNodes, oldTTL := fedNodes, fedTTL
	fedNodes, fedTTL = 3, ttl
	t.Cleanup(func() { fedNodes, fedTTL = oldNodes, oldTTL })
	f := startProcFed(t)
	f.waitGlobalLeader(60 * time.Second)
	f.waitDomains(60 * time.Second)
	for i := range f.regions {
		f.startConsumer(i, "w", fedGlobal, fedRegional)
	}
	f.startConsumer(0, "u", fedUnit)
	f.waitBalanced("start", time.Now(), "", 60*time.Second)
	time.Sleep(1500 * time.Millisecond) // placement's and the balancers' last rounds
	if err := f.balanced(""); err != nil {
		t.Fatalf("balance did not hold: %v", err)
	}
	b := baseline{all: f.live(nil), out: map[*fedConsumer]int{}, held: map[*fedConsumer]map[shardKey]heldShard{}}
	for _, c := range b.all {
		b.out[c] = len(c.p.output())
		b.held[c] = c.held()
	}
	return f, b
}

// roleOf says whether node (of region i) leads its cell or the global
// group, as the global leader's status says.
func (f *procFed) roleOf(i int, node string) string {
	st, err := f.leaderStatus()
	if err != nil {
		return "roles unknown: " + err.Error()
	}
	role := "cell follower"
	for _, rs := range st.GetRegions() {
		if rs.GetName() == f.regions[i].name && rs.GetCellLeader() == node {
			role = "cell leader"
		}
	}
	if st.GetLeaderId() == node {
		role += ", global leader"
	} else if node == f.regions[i].node {
		role += ", global voter"
	}
	return role
}

// nodes are region i's nodes, its first (its global voter) first; the
// first's entry is a copy whose server is the region's.
func (f *procFed) nodes(i int) []*cellMember {
	r := f.regions[i]
	out := []*cellMember{{node: r.node, grpc: r.grpc, raft: r.raft, http: r.http, dataDir: r.dataDir, server: r.server}}
	return append(out, r.more...)
}

// nodeByID is region i's node id: its index and entry.
func (f *procFed) nodeByID(i int, id string) (int, *cellMember) {
	for j, m := range f.nodes(i) {
		if m.node == id {
			return j, m
		}
	}
	f.t.Fatalf("region %s has no node %q", f.regions[i].name, id)
	return 0, nil
}

// setServer records p as node j of region i's running process (nil: down).
func (f *procFed) setServer(i, j int, m *cellMember, p *proc) {
	r := f.regions[i]
	if j == 0 {
		r.server = p
		if p != nil {
			r.runs = append(r.runs, p)
		}
		return
	}
	m.server = p
	if p != nil {
		m.runs = append(m.runs, p)
	}
}

// rollOne restarts node j of region i with SIGTERM and waits until it is
// ready again. It returns how long the stop and the return took.
func (f *procFed) rollOne(i, j int, m *cellMember) (stopped, ready time.Duration) {
	t := f.t
	t.Helper()
	p := m.server
	start := time.Now()
	p.signal(syscall.SIGTERM)
	code, at := p.wait(30 * time.Second)
	if code != 0 {
		t.Fatalf("%s exited %d after SIGTERM; stderr:\n%s", m.node, code, p.stderr.String())
	}
	f.setServer(i, j, m, nil)
	return at.Sub(start), f.restartNode(i, j, m)
}

// restartNode starts node j of region i on its data dir and waits until
// it is ready: its /readyz answers 200 and, for a global voter, it has a
// configuration and knows the global leader. It returns how long that
// took.
func (f *procFed) restartNode(i, j int, m *cellMember) time.Duration {
	t := f.t
	t.Helper()
	r := f.regions[i]
	restarted := time.Now()
	np := f.launch(m.node, m.dataDir)
	f.setServer(i, j, m, np)
	f.waitStarted(m.node, np)
	_, err := waitFor(30*time.Second, func() error {
		if err := readyz(m.http); err != nil {
			return err
		}
		if j != 0 {
			return nil
		}
		st, err := f.globalStatus(r)
		if err != nil {
			return err
		}
		if st.GetLeaderId() == "" || !st.GetConfigured() {
			return fmt.Errorf("global voter %s: configured %v, leader %q", m.node, st.GetConfigured(), st.GetLeaderId())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s not ready 30 s after its restart: %v", m.node, err)
	}
	return time.Since(restarted)
}

// globalStatus asks region r's first node for the global group's status.
func (f *procFed) globalStatus(r *fedRegion) (*globalv1.GlobalStatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return globalv1.NewGlobalAdminClient(r.conn).GlobalStatus(ctx, &globalv1.GlobalStatusRequest{})
}

// leaderStatus is the global leader's status ("" region status when no
// leader answers).
func (f *procFed) leaderStatus() (*globalv1.GlobalStatusResponse, error) {
	l, err := f.globalLeader()
	if err != nil {
		return nil, err
	}
	return f.globalStatus(f.regions[l])
}

// cellLeader is region i's cell leader as the global leader last heard
// from it.
func (f *procFed) cellLeader(i int) (string, error) {
	st, err := f.leaderStatus()
	if err != nil {
		return "", err
	}
	for _, rs := range st.GetRegions() {
		if rs.GetName() == f.regions[i].name && rs.GetRenewing() && rs.GetCellLeader() != "" {
			return rs.GetCellLeader(), nil
		}
	}
	return "", fmt.Errorf("region %s: no renewing cell leader in the global leader's status", f.regions[i].name)
}

// allRenewing reports whether the global leader answered every region's
// renewal within the last second.
func (f *procFed) allRenewing() error {
	st, err := f.leaderStatus()
	if err != nil {
		return err
	}
	for _, rs := range st.GetRegions() {
		if ago := rs.GetLastRenewalAgoMillis(); !rs.GetRenewing() || ago < 0 || ago > 1000 {
			return fmt.Errorf("region %s: renewing %v, last renewal %d ms ago", rs.GetName(), rs.GetRenewing(), ago)
		}
	}
	return nil
}

// apartMsg is what a federation node logs when it hands over its cell
// because it leads the global group too.
const apartMsg = "this node leads both its cell and the global group: handing the cell's leadership to another member"

// readyz asks a node's /readyz.
func readyz(addr string) error {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/readyz: %s", addr, resp.Status)
	}
	return nil
}
