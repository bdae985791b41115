package chaos_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

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
	old := fedNodes
	fedNodes = 3
	defer func() { fedNodes = old }()

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
	all := f.live(nil)
	base := map[*fedConsumer]int{}
	baseHeld := map[*fedConsumer]map[shardKey]heldShard{}
	for _, c := range all {
		base[c] = len(c.p.output())
		baseHeld[c] = c.held()
	}

	var stops, readies []time.Duration
	for round := 1; round <= rounds; round++ {
		for i, r := range f.regions {
			nodes := []*cellMember{{node: r.node, grpc: r.grpc, raft: r.raft, http: r.http, dataDir: r.dataDir, server: r.server}}
			nodes = append(nodes, r.more...)
			for j, m := range nodes {
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
	f.checkNoChurn(rounds, all, base, baseHeld, func(shardKey) bool { return false })
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
	t.Logf("SIGTERM to exit over %d restarts: median %v, max %v; restart to ready: median %v, max %v", len(stops),
		median(stops).Round(time.Millisecond), maxOf(stops).Round(time.Millisecond), median(readies).Round(time.Millisecond), maxOf(readies).Round(time.Millisecond))
	f.stopAll()
	f.checkHistories()
}

// roleOf says whether node (of region i) leads its cell or the global
// group, as the global leader's status says.
func (f *procFed) roleOf(i int, node string) string {
	l, err := f.globalLeader()
	if err != nil {
		return "roles unknown: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := globalv1.NewGlobalAdminClient(f.regions[l].conn).GlobalStatus(ctx, &globalv1.GlobalStatusRequest{})
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

// rollOne restarts node j of region i (j = 0: the region's first node,
// its global voter) with SIGTERM, and waits until it is ready again: its
// /readyz answers 200 and, for a global voter, it knows the global leader.
// It returns how long the stop and the return took.
func (f *procFed) rollOne(i, j int, m *cellMember) (stopped, ready time.Duration) {
	t := f.t
	t.Helper()
	r := f.regions[i]
	p := m.server
	start := time.Now()
	p.signal(syscall.SIGTERM)
	if code, at := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("%s exited %d after SIGTERM; stderr:\n%s", m.node, code, p.stderr.String())
	} else {
		stopped = at.Sub(start)
	}
	restarted := time.Now()
	np := startProc(t, "server "+m.node, "server", "--topology", f.topo, "--node", m.node, "--data-dir", m.dataDir,
		"--log-level", "info", "--log-format", "json")
	if j == 0 {
		r.server = np
		r.runs = append(r.runs, np)
	} else {
		m.server = np
		m.runs = append(m.runs, np)
	}
	if l, ok := np.waitLine("wds server: node "+m.node, 20*time.Second); !ok {
		t.Fatalf("%s did not start again (stdout %q); stderr:\n%s", m.node, l, np.stderr.String())
	}
	_, err := waitFor(30*time.Second, func() error {
		if err := readyz(m.http); err != nil {
			return err
		}
		if j != 0 {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := globalv1.NewGlobalAdminClient(r.conn).GlobalStatus(ctx, &globalv1.GlobalStatusRequest{})
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
	return stopped, time.Since(restarted)
}

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

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func maxOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds)
}
