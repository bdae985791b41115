package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wdsio/wds/internal/celltest"
)

// TestDev: `wds dev --regions local` serves a 3-node cell on the ports it
// prints, answers `wds status`, and stops cleanly on SIGINT, removing its
// data.
func TestDev(t *testing.T) {
	t.Parallel()
	base := freePortRange(t, 0, 1, 2, devRaftOffset, devRaftOffset+1, devRaftOffset+2, devHTTPOffset, devHTTPOffset+1, devHTTPOffset+2)
	p := start(t, "dev", "--regions", "local", "--base-port", fmt.Sprint(base), "-o", "json")
	var lines []string
	var info devJSON
	for {
		lines = append(lines, p.next(30*time.Second))
		if err := json.Unmarshal([]byte(strings.Join(lines, "\n")), &info); err == nil {
			break
		}
	}
	if len(info.Nodes) != 3 || info.Nodes[0].GRPC != fmt.Sprintf("127.0.0.1:%d", base) ||
		info.Nodes[2].Raft != fmt.Sprintf("127.0.0.1:%d", base+devRaftOffset+2) ||
		info.Nodes[1].HTTP != fmt.Sprintf("127.0.0.1:%d", base+devHTTPOffset+1) || !info.Temporary || info.Leader == "" {
		t.Errorf("dev info %+v", info)
	}
	if _, err := os.Stat(info.DataDir); err != nil {
		t.Errorf("data dir: %v", err)
	}

	ep := fmt.Sprintf("--endpoint=127.0.0.1:%d", base+1)
	celltest.Eventually(t, 10*time.Second, func() error {
		r := wds(t, ep, "status", "-o", "json")
		if r.code != 0 {
			return fmt.Errorf("status: %s", r.stderr)
		}
		var st statusJSON
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			return err
		}
		if st.Node != "n2" || st.Leader == "" || len(st.Nodes) != 3 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	mustWDS(t, ep, "domain", "create", "devtest", "--kind", "global", "--shards", "4")

	p.signal(syscall.SIGINT)
	if _, code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGINT; stderr:\n%s", code, p.stderr.String())
	}
	if _, err := os.Stat(info.DataDir); !os.IsNotExist(err) {
		t.Errorf("data dir %s still there after exit: %v", info.DataDir, err)
	}
}

// TestServerTopology: `wds server --topology` forms a single-node cell,
// creates the file's domains, and keeps them in its data dir across a
// restart.
func TestServerTopology(t *testing.T) {
	t.Parallel()
	addrs := celltest.FreeAddrs(t, 3)
	dir := t.TempDir()
	topo := filepath.Join(dir, "wds.yaml")
	body := fmt.Sprintf(`regions:
  - name: us-east
    nodes:
      - id: a1
        raft: %s
        grpc: %s
        http: %s
domains:
  - name: orders
    kind: global
    shards: 4
    ttl: 3s
  - name: sched
    kind: unit
`, addrs[0], addrs[1], addrs[2])
	if err := os.WriteFile(topo, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	ep := "--endpoint=" + addrs[1]
	listDomains := func() error {
		r := wds(t, ep, "--timeout", "2s", "domain", "list", "-o", "json")
		if r.code != 0 {
			return fmt.Errorf("list: %s", r.stderr)
		}
		var list []domainJSON
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			return err
		}
		if len(list) != 2 || list[0].Name != "orders" || list[0].Shards != 4 || list[0].TTLMillis != 3000 || list[1].Name != "sched" || list[1].Kind != "unit" {
			return fmt.Errorf("domains %+v", list)
		}
		return nil
	}
	for run := 0; run < 2; run++ {
		p := start(t, "server", "--topology", topo, "--node", "a1", "--data-dir", data, "--log-level", "warn")
		line := p.next(15 * time.Second)
		if !strings.Contains(line, "node a1 of region us-east") {
			t.Errorf("server printed %q", line)
		}
		celltest.Eventually(t, 15*time.Second, listDomains)
		if !strings.Contains(p.stderr.String(), "PLAINTEXT") {
			t.Errorf("no plaintext warning on stderr:\n%s", p.stderr.String())
		}
		p.signal(syscall.SIGTERM)
		if _, code := p.wait(15 * time.Second); code != 0 {
			t.Fatalf("run %d: exit %d after SIGTERM; stderr:\n%s", run, code, p.stderr.String())
		}
	}
}

// TestDevDataDirOfAnotherCell: a data dir made by `wds dev --regions local
// --nodes 1` is refused by `wds dev --regions local --nodes 3` (which would
// otherwise form a new cell and overwrite n1's log) with an error naming the
// dir, and still starts as a 1-node cell with its domain.
func TestDevDataDirOfAnotherCell(t *testing.T) {
	t.Parallel()
	base := freePortRange(t, 0, 1, 2, devRaftOffset, devRaftOffset+1, devRaftOffset+2, devHTTPOffset, devHTTPOffset+1, devHTTPOffset+2)
	dir := t.TempDir()
	ep := fmt.Sprintf("--endpoint=127.0.0.1:%d", base)
	devOnce := func(nodes string, then func()) {
		t.Helper()
		p := start(t, "dev", "--regions", "local", "--nodes", nodes, "--base-port", fmt.Sprint(base), "--data-dir", dir, "-o", "json")
		var lines []string
		for {
			lines = append(lines, p.next(30*time.Second))
			var info devJSON
			if json.Unmarshal([]byte(strings.Join(lines, "\n")), &info) == nil {
				break
			}
		}
		then()
		p.signal(syscall.SIGINT)
		if _, code := p.wait(20 * time.Second); code != 0 {
			t.Fatalf("exit %d after SIGINT; stderr:\n%s", code, p.stderr.String())
		}
	}
	devOnce("1", func() { mustWDS(t, ep, "domain", "create", "keep", "--kind", "global", "--shards", "4") })

	r := wds(t, "dev", "--regions", "local", "--nodes", "3", "--base-port", fmt.Sprint(base), "--data-dir", dir)
	n1 := filepath.Join(dir, "n1")
	if r.code != 1 || !strings.Contains(r.stderr, "data dir "+n1+" was created for the voters n1=") || !strings.Contains(r.stderr, "--nodes") {
		t.Fatalf("wds dev --nodes 3 on a 1-node data dir: exit %d, stderr %q", r.code, r.stderr)
	}
	devOnce("1", func() {
		if out := mustWDS(t, ep, "domain", "list"); !strings.Contains(out, "keep") {
			t.Errorf("domain keep lost: %s", out)
		}
	})
}
