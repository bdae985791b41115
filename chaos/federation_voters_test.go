package chaos_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wdsio/wds/chaos"
	"github.com/wdsio/wds/internal/celltest"
)

// TestFederationProcessesVoterChange is the operator's workflow for the
// global group's voters, with real processes: three `wds server`s, one
// per region, of which ap-south's is not a global voter. An operator gives
// ap-south's node a global address in the topology file, plans and
// applies it (`wds status` shows the voter joining), and restarts the
// node with the file: it joins the group. Then the file takes eu-west's
// global address away: once applied, the global leader removes that
// voter, and eu-west's node, restarted with the file, runs as a cell
// member only. Consumers in every region keep a GLOBAL domain balanced
// throughout; the history checker is clean.
func TestFederationProcessesVoterChange(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes: three `wds server`s whose global voters change, about 30 s")
	}
	dir := t.TempDir()
	addrs := celltest.FreeAddrs(t, 4*len(fedRegionNames)+1) // the last: a voter's new address
	var oldGlobal string
	type node struct{ region, id, raft, grpc, http, global string }
	var nodes []node
	for i, r := range fedRegionNames {
		a := addrs[4*i:]
		nodes = append(nodes, node{region: r, id: r + "-1", raft: a[0], grpc: a[1], http: a[2], global: a[3]})
	}
	// file writes a topology whose global voters are the nodes of voters.
	file := func(name string, voters ...string) string {
		var b strings.Builder
		b.WriteString("regions:\n")
		for _, n := range nodes {
			g := ""
			if slices.Contains(voters, n.region) {
				g = fmt.Sprintf(", global: %q", n.global)
			}
			fmt.Fprintf(&b, "  - name: %s\n    nodes:\n      - {id: %s, raft: %q, grpc: %q, http: %q%s}\n", n.region, n.id, n.raft, n.grpc, n.http, g)
		}
		fmt.Fprintf(&b, "domains:\n  - {name: %s, kind: global, shards: 12, ttl: 3s}\n", fedGlobal)
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	servers := make([]*proc, len(nodes))
	start := func(i int, topo string) {
		n := nodes[i]
		servers[i] = startProc(t, "server "+n.id, "server", "--topology", topo, "--node", n.id,
			"--data-dir", filepath.Join(dir, n.id), "--log-level", "info", "--log-format", "json")
		if l, ok := servers[i].waitLine("wds server: node "+n.id, 20*time.Second); !ok {
			t.Fatalf("%s did not start (stdout %q); stderr:\n%s", n.id, l, servers[i].stderr.String())
		}
	}
	stop := func(i int) {
		sent := time.Now()
		servers[i].signal(syscall.SIGTERM)
		code, at := servers[i].wait(20 * time.Second)
		if code != 0 {
			t.Fatalf("%s exited %d after SIGTERM; stderr:\n%s", nodes[i].id, code, servers[i].stderr.String())
		}
		t.Logf("%s exited %v after SIGTERM", nodes[i].id, at.Sub(sent).Round(time.Millisecond))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range servers {
				t.Logf("=== %s stderr:\n%s", nodes[i].id, p.stderr.String())
			}
		}
	})
	// voters reads `wds status -o json` at a voter: the voters in the
	// group, and those the topology lists that have not joined.
	type voterJSON struct {
		ID      string `json:"id"`
		Joining bool   `json:"joining"`
	}
	voters := func(ep string) (in, joining []string, err error) {
		out, stderr, code := runWDS(t, "--endpoint", ep, "--timeout", "2s", "-o", "json", "status")
		if code != 0 {
			return nil, nil, fmt.Errorf("status at %s: exit %d: %s", ep, code, stderr)
		}
		var st struct {
			Global *struct {
				Voters []voterJSON `json:"voters"`
			} `json:"global"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return nil, nil, err
		}
		if st.Global == nil {
			return nil, nil, fmt.Errorf("status at %s has no global section", ep)
		}
		for _, v := range st.Global.Voters {
			if v.Joining {
				joining = append(joining, v.ID)
			} else {
				in = append(in, v.ID)
			}
		}
		slices.Sort(in)
		slices.Sort(joining)
		return in, joining, nil
	}
	wantVoters := func(what, ep string, in, joining []string) {
		t.Helper()
		took, err := waitFor(30*time.Second, func() error {
			gotIn, gotJoining, err := voters(ep)
			if err != nil {
				return err
			}
			if !slices.Equal(gotIn, in) || !slices.Equal(gotJoining, joining) {
				return fmt.Errorf("voters %v joining %v, want %v joining %v", gotIn, gotJoining, in, joining)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: voters %v (joining %v) after %v", what, in, joining, took.Round(time.Millisecond))
	}

	two := file("two.yaml", "us-east", "eu-west")
	for i := range nodes {
		start(i, two)
	}
	wantVoters("start", nodes[0].grpc, []string{"eu-west-1", "us-east-1"}, nil)
	var consumers []*fedConsumer
	for _, n := range nodes {
		consumers = append(consumers, &fedConsumer{id: n.region + "-c", region: n.region, p: startProc(t, "consumer "+n.region, "--endpoint", n.grpc, "-o", "json",
			"consume", "--domain", fedGlobal, "--id", n.region+"-c")})
	}
	balanced := func(what string) {
		t.Helper()
		if _, err := waitFor(30*time.Second, func() error {
			for i, c := range consumers {
				if held := len(c.held()); held != 4 {
					return fmt.Errorf("%s's consumer holds %d of 12 shards, want 4", nodes[i].region, held)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	balanced("start")

	// Add ap-south's voter: plan, apply, and the node restarted with the file.
	three := file("three.yaml", "us-east", "eu-west", "ap-south")
	if out, stderr, code := runWDS(t, "topology", "plan", three); code != 0 || !strings.Contains(out, "+ ap-south-1 (global "+nodes[2].global) {
		t.Fatalf("plan adding ap-south's voter: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := runWDS(t, "topology", "apply", "--yes", three); code != 0 {
		t.Fatalf("apply adding ap-south's voter: exit %d\n%s%s", code, out, stderr)
	}
	wantVoters("applied", nodes[0].grpc, []string{"eu-west-1", "us-east-1"}, []string{"ap-south-1"})
	stop(2)
	added := time.Now()
	start(2, three)
	wantVoters("ap-south-1 restarted with the file", nodes[2].grpc, []string{"ap-south-1", "eu-west-1", "us-east-1"}, nil)
	t.Logf("ap-south-1 in the global group %v after its restart", time.Since(added).Round(time.Millisecond))
	balanced("after adding ap-south's voter")

	// Remove eu-west's voter: applied, then its node restarted without it.
	two = file("us-ap.yaml", "us-east", "ap-south")
	if out, stderr, code := runWDS(t, "topology", "plan", two); code != 0 || !strings.Contains(out, "- eu-west-1 (global "+nodes[1].global) {
		t.Fatalf("plan removing eu-west's voter: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := runWDS(t, "topology", "apply", "--yes", two); code != 0 {
		t.Fatalf("apply removing eu-west's voter: exit %d\n%s%s", code, out, stderr)
	}
	wantVoters("eu-west's voter removed", nodes[0].grpc, []string{"ap-south-1", "us-east-1"}, nil)
	// Until it restarts, the removed node still runs its old voter, and
	// says it is no longer one.
	if _, err := waitFor(10*time.Second, func() error {
		out, stderr, code := runWDS(t, "--endpoint", nodes[1].grpc, "--timeout", "2s", "status")
		if code != 0 || !strings.Contains(out, "eu-west-1 is not a voter of the group (removed, or not joined yet)") {
			return fmt.Errorf("status at the removed voter: exit %d\n%s%s", code, out, stderr)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// A file that swaps every voter out is refused: applied, its one voter
	// would have bootstrapped a second group.
	nodes[1].global, oldGlobal = addrs[len(addrs)-1], nodes[1].global
	swapped := file("swapped.yaml", "eu-west")
	nodes[1].global = oldGlobal
	if out, stderr, code := runWDS(t, "--endpoint", nodes[0].grpc, "topology", "apply", "--yes", swapped); code != 1 ||
		!strings.Contains(stderr, "keeps none of the voters in the global group's configuration") {
		t.Errorf("apply of a file that swaps every voter out: exit %d\n%s%s", code, out, stderr)
	}
	stop(1)
	start(1, two)
	wantVoters("seen from ap-south", nodes[2].grpc, []string{"ap-south-1", "us-east-1"}, nil)
	balanced("after removing eu-west's voter")
	// eu-west's node is a cell member only now: it serves no global group.
	if out, _, code := runWDS(t, "--endpoint", nodes[1].grpc, "--timeout", "2s", "-o", "json", "status"); code != 0 || strings.Contains(out, `"global":{`) {
		t.Errorf("eu-west-1's status after it left the global group: exit %d: %s", code, out)
	}

	for _, c := range consumers {
		c.p.signal(syscall.SIGTERM)
	}
	var all []chaos.Interval
	for i, c := range consumers {
		if code, _ := c.p.wait(30 * time.Second); code != 0 {
			t.Errorf("%s's consumer exited %d", nodes[i].region, code)
		}
		ivs, err := chaos.ParseEvents(c.id, strings.NewReader(strings.Join(c.p.output(), "\n")))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ivs...)
	}
	for i := range servers {
		stop(i)
	}
	for _, v := range chaos.Check(all) {
		t.Errorf("ownership violation: %s", v)
	}
	t.Logf("history checker: %d ownership intervals", len(all))
}
