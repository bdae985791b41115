package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wdsio/wds/chaos"
	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// devPortOffsets are the ports, relative to --base-port, that `wds dev`
// of regions regions of nodes nodes binds, in increasing order (the last
// is the highest, as freePortRange wants).
func devPortOffsets(regions, nodes int) []int {
	total := regions * nodes
	var out []int
	for _, off := range []int{0, devRaftOffset, devGlobalOffset, devHTTPOffset} {
		n := total
		if off == devGlobalOffset {
			if regions == 1 {
				continue // a lone cell has no global group
			}
			n = regions
		}
		for k := 0; k < n; k++ {
			out = append(out, off+k)
		}
	}
	return out
}

// startDev starts `wds dev ARGS -o json` and returns it with what it
// printed once its cells (and global group) had leaders.
func startDev(t *testing.T, args ...string) (*proc, devJSON) {
	t.Helper()
	p := start(t, append(append([]string{"dev"}, args...), "-o", "json")...)
	var lines []string
	var info devJSON
	for {
		lines = append(lines, p.next(60*time.Second))
		if json.Unmarshal([]byte(strings.Join(lines, "\n")), &info) == nil {
			return p, info
		}
	}
}

// stopDev stops `wds dev` with SIGINT, as Ctrl-C does, and wants exit 0.
func stopDev(t *testing.T, p *proc) {
	t.Helper()
	p.signal(syscall.SIGINT)
	if _, code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("wds dev: exit %d after SIGINT; stderr:\n%s", code, p.stderr.String())
	}
}

func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// activeOwners counts, in the shard map of the cell at endpoint, the
// ACTIVE shards of domain per owner.
func activeOwners(endpoint, domain string) (map[string]int, error) {
	cc, err := dial(endpoint)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m, err := wdsv1.NewAdminClient(cc).ShardMap(ctx, &wdsv1.ShardMapRequest{Domain: domain})
	if err != nil {
		return nil, err
	}
	// In a federation the map lists every shard federation-wide; count
	// those the endpoint's own cell holds (delegated to its region).
	st, err := wdsv1.NewAdminClient(cc).Status(ctx, &wdsv1.StatusRequest{})
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, s := range m.GetShards() {
		if to := s.GetDelegatedTo(); to != "" && to != st.GetRegion() {
			continue
		}
		if s.GetOwner() != "" && s.GetState() == wdsv1.GrantState_GRANT_STATE_ACTIVE {
			out[s.GetOwner()]++
		}
	}
	return out, nil
}

// devStatus is the part of `wds status -o json` these tests read.
type devStatus struct {
	Node   string            `json:"node"`
	Region string            `json:"region"`
	Nodes  []json.RawMessage `json:"nodes"`
}

func statusOf(t *testing.T, endpoint string) (devStatus, error) {
	r := wds(t, "--endpoint", endpoint, "--timeout", "5s", "status", "-o", "json")
	var st devStatus
	if r.code != 0 {
		return st, fmt.Errorf("status at %s: exit %d: %s", endpoint, r.code, r.stderr)
	}
	return st, json.Unmarshal([]byte(r.stdout), &st)
}

// TestDevFederationConsumers: `wds dev` runs 3 regions of one node each on
// the ports it prints (region i's gRPC at base+i, Raft base+100+i, global
// Raft base+150+i, HTTP base+200+i), every node a global voter and every
// region failing over to the others. Five `wds consume` processes at
// 127.0.0.1:base join us-east and share a GLOBAL domain of 64 shards, 12 or
// 13 each (the global group delegates all of it to us-east, the only
// region with consumers); one is killed with SIGKILL and its shards are
// held by the others within TTL·(1+ε) + 1 s; the history checker finds no
// overlap. SIGINT stops the federation and removes its data.
func TestDevFederationConsumers(t *testing.T) {
	t.Parallel()
	base := freePortRange(t, devPortOffsets(3, 1)...)
	launched := time.Now()
	p, info := startDev(t, "--base-port", fmt.Sprint(base))
	t.Logf("wds dev printed the federation %v after it was started", time.Since(launched).Round(time.Millisecond))

	regions := []string{"us-east", "eu-west", "ap-south"}
	if !info.Federation || len(info.Regions) != 3 || info.Region != "us-east" || info.Endpoints != loopback(base) ||
		!info.Temporary || len(info.Nodes) != 1 || info.Nodes[0].ID != "us-east-1" || info.Leader != "us-east-1" {
		t.Fatalf("dev info %+v", info)
	}
	var voters []string
	for i, r := range info.Regions {
		others := slices.DeleteFunc(slices.Clone(regions), func(s string) bool { return s == regions[i] })
		if r.Name != regions[i] || len(r.Nodes) != 1 || r.Endpoints != loopback(base+i) || r.Leader != r.Nodes[0].ID || !slices.Equal(r.Failover, others) {
			t.Errorf("region %d: %+v", i, r)
			continue
		}
		n := r.Nodes[0]
		if n.ID != regions[i]+"-1" || n.Region != regions[i] || n.GRPC != loopback(base+i) || n.Raft != loopback(base+devRaftOffset+i) ||
			n.Global != loopback(base+devGlobalOffset+i) || n.HTTP != loopback(base+devHTTPOffset+i) {
			t.Errorf("region %s node %+v", regions[i], n)
		}
		voters = append(voters, n.ID)
	}
	if !slices.Contains(voters, info.GlobalLeader) {
		t.Errorf("global leader %q is none of the voters %v", info.GlobalLeader, voters)
	}
	st, err := statusOf(t, loopback(base+1))
	if err != nil || st.Node != "eu-west-1" || st.Region != "eu-west" || len(st.Nodes) != 1 {
		t.Fatalf("status at eu-west: %+v, %v", st, err)
	}

	const ttl = 2 * time.Second
	ep := loopback(base)
	mustWDS(t, "--endpoint", ep, "domain", "create", "work", "--kind", "global", "--shards", "64", "--ttl", ttl.String())
	joined := time.Now()
	var procs []*consumerProc
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("c%d", i)
		procs = append(procs, &consumerProc{id: id, p: start(t, "--endpoint", ep, "consume", "--domain", "work", "--id", id)})
	}
	// balanced: every consumer of ids holds (as the cell says, and as it
	// believes) between lo and hi shards, 64 in all, and the other regions
	// hold none.
	balanced := func(ids []string, lo, hi int) func() error {
		return func() error {
			owners, err := activeOwners(ep, "work")
			if err != nil {
				return err
			}
			total := 0
			for id, n := range owners {
				if !slices.Contains(ids, id) || n < lo || n > hi {
					return fmt.Errorf("us-east owners %v, want %v holding %d..%d each", owners, ids, lo, hi)
				}
				total += n
			}
			if total != 64 || len(owners) != len(ids) {
				return fmt.Errorf("us-east owners %v: %d of 64 shards held", owners, total)
			}
			for _, cp := range procs {
				if slices.Contains(ids, cp.id) && cp.grants() != owners[cp.id] {
					return fmt.Errorf("%s believes it holds %d shards, the cell says %d", cp.id, cp.grants(), owners[cp.id])
				}
			}
			for i := 1; i < 3; i++ {
				if o, err := activeOwners(loopback(base+i), "work"); err != nil || len(o) != 0 {
					return fmt.Errorf("%s owners %v (%v), want none", regions[i], o, err)
				}
			}
			return nil
		}
	}
	celltest.Eventually(t, 30*time.Second, balanced([]string{"c0", "c1", "c2", "c3", "c4"}, 12, 13))
	t.Logf("5 consumers hold 12 or 13 of 64 shards each %v after they were started", time.Since(joined).Round(time.Millisecond))

	// SIGKILL c0: no drain, its connection gone.
	bound := time.Duration(float64(ttl)*1.01) + time.Second
	killed := time.Now()
	procs[0].p.signal(syscall.SIGKILL)
	celltest.Eventually(t, bound, balanced([]string{"c1", "c2", "c3", "c4"}, 16, 16))
	t.Logf("the killed consumer's shards were held by the others after %v (bound %v)", time.Since(killed).Round(time.Millisecond), bound)
	rest, _ := procs[0].p.wait(10 * time.Second)
	procs[0].lines = append(procs[0].lines, rest...)

	for _, cp := range procs[1:] {
		cp.p.signal(syscall.SIGTERM)
	}
	for _, cp := range procs[1:] {
		rest, code := cp.p.wait(30 * time.Second)
		if code != 0 {
			t.Errorf("%s exited %d after SIGTERM; stderr:\n%s", cp.id, code, cp.p.stderr.String())
		}
		cp.lines = append(cp.lines, rest...)
	}
	var all []chaos.Interval
	for _, cp := range procs {
		cp.drain()
		ivs, err := chaos.ParseEvents(cp.id, strings.NewReader(strings.Join(cp.lines, "\n")))
		if err != nil {
			t.Fatalf("%s: %v", cp.id, err)
		}
		for i := range ivs {
			if ivs[i].Open() && cp.id == "c0" {
				ivs[i].End = killed // a dead process believes nothing
			}
		}
		all = append(all, ivs...)
	}
	if len(all) < 64 {
		t.Errorf("only %d ownership intervals recorded", len(all))
	}
	for _, v := range chaos.Check(all) {
		t.Errorf("ownership violation: %s", v)
	}

	stopDev(t, p)
	if _, err := statusOf(t, ep); err == nil {
		t.Errorf("us-east still answers after wds dev exited")
	}
}

// TestDevLoneCell: `wds dev --regions local --nodes 3` still runs the lone
// 3-node cell of before the federation (node ids n1..n3, no global group,
// the old port layout), and it serves consumers.
func TestDevLoneCell(t *testing.T) {
	t.Parallel()
	base := freePortRange(t, devPortOffsets(1, 3)...)
	p, info := startDev(t, "--regions", "local", "--nodes", "3", "--base-port", fmt.Sprint(base))
	if info.Federation || info.GlobalLeader != "" || info.Region != "local" || len(info.Nodes) != 3 || len(info.Regions) != 1 ||
		info.Regions[0].Name != "local" || info.Regions[0].Endpoints != info.Endpoints || info.Regions[0].Leader != info.Leader {
		t.Fatalf("dev info %+v", info)
	}
	var eps []string
	for i, n := range info.Nodes {
		if n.ID != fmt.Sprintf("n%d", i+1) || n.GRPC != loopback(base+i) || n.Raft != loopback(base+devRaftOffset+i) ||
			n.HTTP != loopback(base+devHTTPOffset+i) || n.Global != "" {
			t.Errorf("node %d: %+v", i, n)
		}
		eps = append(eps, n.GRPC)
	}
	if info.Endpoints != strings.Join(eps, ",") {
		t.Errorf("endpoints %q, want %q", info.Endpoints, strings.Join(eps, ","))
	}
	celltest.Eventually(t, 10*time.Second, func() error {
		st, err := statusOf(t, loopback(base+2))
		if err != nil {
			return err
		}
		if st.Node != "n3" || st.Region != "local" || len(st.Nodes) != 3 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})

	ep := "--endpoint=" + loopback(base+1) // a node that may not lead
	mustWDS(t, ep, "domain", "create", "jobs", "--kind", "global", "--shards", "8", "--ttl", "2s")
	var procs []*consumerProc
	for _, id := range []string{"w1", "w2"} {
		procs = append(procs, &consumerProc{id: id, p: start(t, ep, "consume", "--domain", "jobs", "--id", id)})
	}
	celltest.Eventually(t, 20*time.Second, func() error {
		owners, err := activeOwners(loopback(base), "jobs")
		if err != nil {
			return err
		}
		if owners["w1"] != 4 || owners["w2"] != 4 {
			return fmt.Errorf("owners %v, want w1 and w2 with 4 each", owners)
		}
		return nil
	})
	for _, cp := range procs {
		cp.p.signal(syscall.SIGTERM)
		if _, code := cp.p.wait(30 * time.Second); code != 0 {
			t.Errorf("%s exited %d after SIGTERM", cp.id, code)
		}
	}
	stopDev(t, p)
}

// TestDevFederationThreeNodes: `wds dev --regions us-east,eu-west --nodes
// 3` runs two 3-node cells, numbered across the regions (eu-west's nodes
// are base+3..base+5), with the first node of each region its global
// voter; a GLOBAL domain created in one region is served in both.
func TestDevFederationThreeNodes(t *testing.T) {
	t.Parallel()
	base := freePortRange(t, devPortOffsets(2, 3)...)
	p, info := startDev(t, "--regions", "us-east,eu-west", "--nodes", "3", "--base-port", fmt.Sprint(base))
	if !info.Federation || len(info.Regions) != 2 || len(info.Nodes) != 3 || info.Region != "us-east" {
		t.Fatalf("dev info %+v", info)
	}
	for i, r := range info.Regions {
		var ids, eps []string
		for j, n := range r.Nodes {
			k := 3*i + j
			global := ""
			if j == 0 {
				global = loopback(base + devGlobalOffset + i)
			}
			if n.ID != fmt.Sprintf("%s-%d", r.Name, j+1) || n.GRPC != loopback(base+k) || n.Raft != loopback(base+devRaftOffset+k) ||
				n.HTTP != loopback(base+devHTTPOffset+k) || n.Global != global {
				t.Errorf("region %s node %d: %+v", r.Name, j, n)
			}
			ids, eps = append(ids, n.ID), append(eps, n.GRPC)
		}
		if len(r.Nodes) != 3 || !slices.Contains(ids, r.Leader) || r.Endpoints != strings.Join(eps, ",") {
			t.Errorf("region %+v", r)
		}
	}
	if info.GlobalLeader != "us-east-1" && info.GlobalLeader != "eu-west-1" {
		t.Errorf("global leader %q", info.GlobalLeader)
	}
	celltest.Eventually(t, 10*time.Second, func() error {
		st, err := statusOf(t, loopback(base+4))
		if err != nil {
			return err
		}
		if st.Node != "eu-west-2" || st.Region != "eu-west" || len(st.Nodes) != 3 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})

	mustWDS(t, "--endpoint", loopback(base+5), "domain", "create", "prices", "--kind", "global", "--shards", "8", "--ttl", "2s")
	a := start(t, "--endpoint", loopback(base+1), "consume", "--domain", "prices", "--id", "a")
	b := start(t, "--endpoint", loopback(base+4), "consume", "--domain", "prices", "--id", "b")
	celltest.Eventually(t, 30*time.Second, func() error {
		us, err := activeOwners(loopback(base), "prices")
		if err != nil {
			return err
		}
		eu, err := activeOwners(loopback(base+3), "prices")
		if err != nil {
			return err
		}
		if us["a"] != 4 || len(us) != 1 || eu["b"] != 4 || len(eu) != 1 {
			return fmt.Errorf("us-east owners %v, eu-west owners %v; want a and b with 4 each", us, eu)
		}
		return nil
	})
	for _, c := range []*proc{a, b} {
		c.signal(syscall.SIGTERM)
		if _, code := c.wait(30 * time.Second); code != 0 {
			t.Errorf("%v exited %d after SIGTERM", c.cmd.Args, code)
		}
	}
	stopDev(t, p)
}

// TestDevBadRegions: --regions, --nodes and --base-port mistakes are one
// line naming the flag, with the real port bound of the layout asked for.
func TestDevBadRegions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"empty", []string{"--regions", ""}, []string{"wds: --regions: required"}},
		{"bad name", []string{"--regions", "us-east,Bad!"}, []string{"wds: --regions", `"Bad!"`}},
		{"twice", []string{"--regions", "a,b,a"}, []string{"wds: --regions", "region a is listed twice"}},
		{"too many", []string{"--regions", "a,b,c,d,e,f,g,h,i,j"}, []string{"wds: --regions", "at most 9 regions"}},
		{"nodes", []string{"--regions", "a,b", "--nodes", "2"}, []string{"invalid value 2 for --nodes: want 1 or 3"}},
		{"region and regions", []string{"--region", "x", "--regions", "y"}, []string{"--region cannot be combined with --regions"}},
		{"base port default", []string{"--base-port", "65334"}, []string{"wds: --base-port: must be between 1 and 65333 (HTTP uses base+200..base+202); got 65334"}},
		{"base port 2x3", []string{"--regions", "a,b", "--nodes", "3", "--base-port", "65331"}, []string{"must be between 1 and 65330 (HTTP uses base+200..base+205); got 65331"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := wds(t, append([]string{"dev"}, tc.args...)...)
			if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "(see 'wds dev --help')\n") || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and one line ending in the help hint", r.code, r.stdout, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q does not contain %q", r.stderr, w)
				}
			}
		})
	}
}

// TestDevFederationDemo: `wds dev --demo` (what `make run` runs) prints
// the federation's endpoints and the consumer hint, then runs a consumer
// in each region on a GLOBAL and a REGIONAL domain; when a fourth joins,
// global shards move between regions (revoked for a delegation) and each
// region's regional shards stay with its own consumers.
func TestDevFederationDemo(t *testing.T) {
	t.Parallel()
	base := freePortRange(t, devPortOffsets(3, 1)...)
	p := start(t, "dev", "--demo", "--base-port", fmt.Sprint(base))
	var out []string
	seen := func(sub string) bool {
		return slices.ContainsFunc(out, func(l string) bool { return strings.Contains(l, sub) })
	}
	want := []string{
		"WDS dev federation: 3 regions of 1 node",
		fmt.Sprintf("us-east   us-east-1   %s", loopback(base)),
		fmt.Sprintf("wds consume --endpoint %s --domain", loopback(base)),
		"+ demo-1 joins us-east", "+ demo-2 joins eu-west", "+ demo-3 joins ap-south",
		"grant   demo-regional ap-south [",
		"(held 12 of 12)",
		"+ demo-4 joins us-east",
		"(delegation)",
	}
	// The revoke for a delegation that counts is one after demo-4 joins:
	// the first placement may move global shards between regions too.
	movedAfterJoin := func() bool {
		i := slices.IndexFunc(out, func(l string) bool { return strings.Contains(l, "+ demo-4 joins us-east") })
		return i >= 0 && slices.ContainsFunc(out[i:], func(l string) bool { return strings.Contains(l, "(delegation)") })
	}
	deadline := time.Now().Add(45 * time.Second)
	for !movedAfterJoin() {
		if time.Now().After(deadline) {
			t.Fatalf("no line %q after demo-4 joined within 45s; output:\n%s", want[len(want)-1], strings.Join(out, "\n"))
		}
		out = append(out, p.next(time.Until(deadline)))
	}
	for _, w := range want {
		if !seen(w) {
			t.Errorf("no line %q in:\n%s", w, strings.Join(out, "\n"))
		}
	}
	for _, l := range out {
		// A regional key space is held only in its own region.
		f := strings.Fields(l)
		if len(f) >= 6 && f[3] == "grant" && f[4] == devDemoRegional && f[2] != f[5] {
			t.Errorf("region %s's consumer was granted a shard of %s's key space: %s", f[2], f[5], l)
		}
	}
	stopDev(t, p)
	if !strings.Contains(p.stderr.String(), "wds dev: stopping") {
		t.Errorf("stderr:\n%s", p.stderr.String())
	}
}

// TestDevFederationDataDir: a federation's --data-dir (a subdirectory per
// node, the global voter's inside it) keeps its domains across a restart,
// and a data dir made with other --regions is refused, naming the flag.
func TestDevFederationDataDir(t *testing.T) {
	t.Parallel()
	base := freePortRange(t, devPortOffsets(3, 1)...)
	dir := t.TempDir()
	args := []string{"--regions", "a,b", "--base-port", fmt.Sprint(base), "--data-dir", dir}
	p, info := startDev(t, args...)
	if info.Temporary || info.DataDir != dir {
		t.Errorf("data dir %q (temporary %v), want %q kept", info.DataDir, info.Temporary, dir)
	}
	mustWDS(t, "--endpoint", loopback(base), "domain", "create", "keep", "--kind", "global", "--shards", "4")
	stopDev(t, p)

	p, _ = startDev(t, args...)
	celltest.Eventually(t, 10*time.Second, func() error {
		r := wds(t, "--endpoint", loopback(base+1), "domain", "list")
		if r.code != 0 || !strings.Contains(r.stdout, "keep") {
			return fmt.Errorf("region b's domains after a restart: exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	stopDev(t, p)

	r := wds(t, "dev", "--regions", "a,b,c", "--base-port", fmt.Sprint(base), "--data-dir", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "was created for the voters") || !strings.Contains(r.stderr, "--regions") || !strings.Contains(r.stderr, dir) {
		t.Fatalf("wds dev --regions a,b,c on an a,b data dir: exit %d, stderr %q", r.code, r.stderr)
	}
}
