package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/wdsio/wds/chaos"
	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// procCell is a cell of real `wds server` processes on loopback, each with
// its own data dir, started and stopped by signal as an operator would.
type procCell struct {
	t     *testing.T
	dir   string
	ids   []string
	grpc  []string
	raft  []string
	http  []string
	procs []*proc // nil while a node is down
	// logs keeps the stderr of every run of every node, for accession
	// times and post-mortems.
	logs  [][]*syncBuffer
	conns []*grpc.ClientConn
}

// startProcCell starts n `wds server` processes forming one cell.
func startProcCell(t *testing.T, n int) *procCell {
	t.Helper()
	addrs := celltest.FreeAddrs(t, 3*n)
	c := &procCell{t: t, dir: t.TempDir()}
	for i := 0; i < n; i++ {
		c.ids = append(c.ids, fmt.Sprintf("n%d", i+1))
		c.grpc = append(c.grpc, addrs[3*i])
		c.raft = append(c.raft, addrs[3*i+1])
		c.http = append(c.http, addrs[3*i+2])
		cc, err := dial(addrs[3*i])
		if err != nil {
			t.Fatal(err)
		}
		c.conns = append(c.conns, cc)
	}
	c.procs = make([]*proc, n)
	c.logs = make([][]*syncBuffer, n)
	for i := range c.ids {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, cc := range c.conns {
			cc.Close()
		}
	})
	return c
}

func (c *procCell) endpoints() string { return strings.Join(c.grpc, ",") }

// start (re)starts node i from its data dir.
func (c *procCell) start(i int) {
	c.t.Helper()
	args := []string{"server", "--node", c.ids[i], "--data-dir", filepath.Join(c.dir, c.ids[i]),
		"--raft", c.raft[i], "--grpc", c.grpc[i], "--http", c.http[i],
		"--log-level", "info", "--log-format", "json"}
	for j := range c.ids {
		args = append(args, "--peer", c.ids[j]+"="+c.raft[j]+"="+c.grpc[j])
	}
	p := start(c.t, args...)
	c.procs[i] = p
	c.logs[i] = append(c.logs[i], p.stderr)
	if l := p.next(20 * time.Second); !strings.Contains(l, "wds server: node "+c.ids[i]) {
		c.t.Fatalf("%s printed %q; stderr:\n%s", c.ids[i], l, p.stderr.String())
	}
}

// signal sends sig to node i.
func (c *procCell) signal(i int, sig syscall.Signal) { c.procs[i].signal(sig) }

// kill9 kills node i with SIGKILL and waits for the process to be gone.
func (c *procCell) kill9(i int) {
	c.t.Helper()
	c.procs[i].signal(syscall.SIGKILL)
	c.procs[i].wait(10 * time.Second)
	c.procs[i] = nil
}

// status asks node i for its status, giving up after a short while (a
// stopped process does not answer).
func (c *procCell) status(i int) (*wdsv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	return wdsv1.NewAdminClient(c.conns[i]).Status(ctx, &wdsv1.StatusRequest{})
}

// leader waits for a node other than those in skip to lead the cell, and
// returns its index and its status.
func (c *procCell) leader(within time.Duration, skip ...int) (int, *wdsv1.StatusResponse) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for i := range c.ids {
			if c.procs[i] == nil || slices.Contains(skip, i) {
				continue
			}
			if st, err := c.status(i); err == nil && st.GetState() == "Leader" && st.GetLeaderId() == c.ids[i] {
				return i, st
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no leader within %v (skipping %v)", within, skip)
	return -1, nil
}

// caughtUp waits, as an operator would in a rolling restart, until node
// i's /readyz says it is ready, and checks that it has then applied
// everything the leader had committed before the probe.
func (c *procCell) caughtUp(i int, within time.Duration) {
	c.t.Helper()
	celltest.Eventually(c.t, within, func() error {
		l, lst := c.leader(within)
		if l == i {
			return nil // the leader is ready by definition
		}
		res, err := http.Get("http://" + c.http[i] + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /readyz: %s", c.ids[i], res.Status)
		}
		if st, err := c.status(i); err == nil && st.GetAppliedIndex() < lst.GetCommitIndex() {
			c.t.Errorf("%s /readyz said ready at applied index %d, below the leader's commit index %d read before", c.ids[i], st.GetAppliedIndex(), lst.GetCommitIndex())
		}
		return nil
	})
}

// accessions returns when each run of node i logged "leading the cell".
func (c *procCell) accessions(i int) []time.Time {
	var out []time.Time
	for _, b := range c.logs[i] {
		for _, line := range strings.Split(b.String(), "\n") {
			if !strings.Contains(line, `"msg":"leading the cell"`) {
				continue
			}
			var rec struct {
				Time time.Time `json:"time"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil {
				out = append(out, rec.Time)
			}
		}
	}
	return out
}

// accessionAfter is the first time any node took office after t.
func (c *procCell) accessionAfter(t time.Time) (time.Time, bool) {
	var first time.Time
	for i := range c.ids {
		for _, a := range c.accessions(i) {
			if a.After(t) && (first.IsZero() || a.Before(first)) {
				first = a
			}
		}
	}
	return first, !first.IsZero()
}

// dumpLogs writes every node's stderr into the test log (on failure).
func (c *procCell) dumpLogs() {
	for i, runs := range c.logs {
		for r, b := range runs {
			c.t.Logf("=== %s run %d stderr:\n%s", c.ids[i], r, b.String())
		}
	}
}

// consumerEvent is the part of a `wds consume` line the tests read.
type consumerEvent struct {
	Event    string    `json:"event"`
	Time     time.Time `json:"time"`
	Endpoint string    `json:"endpoint"`
	From     string    `json:"from"`
	Reason   string    `json:"reason"`
}

func (cp *consumerProc) events() []consumerEvent {
	cp.drain()
	var out []consumerEvent
	for _, l := range cp.lines {
		var e consumerEvent
		if json.Unmarshal([]byte(l), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// welcomedAfter is the consumer's first Welcome after t.
func (cp *consumerProc) welcomedAfter(t time.Time) (time.Time, bool) {
	for _, e := range cp.events() {
		if e.Event == "welcome" && e.Time.After(t) {
			return e.Time, true
		}
	}
	return time.Time{}, false
}

// count is how many events of kind the consumer printed.
func (cp *consumerProc) count(kind string) int {
	n := 0
	for _, e := range cp.events() {
		if e.Event == kind {
			n++
		}
	}
	return n
}

// checkHistories runs the history checker over every consumer's output.
func checkHistories(t *testing.T, procs []*consumerProc) int {
	t.Helper()
	var all []chaos.Interval
	for _, cp := range procs {
		cp.drain()
		ivs, err := chaos.ParseEvents(cp.id, strings.NewReader(strings.Join(cp.lines, "\n")))
		if err != nil {
			t.Fatalf("%s: %v", cp.id, err)
		}
		all = append(all, ivs...)
	}
	for _, v := range chaos.Check(all) {
		t.Errorf("ownership violation: %s", v)
	}
	return len(all)
}

// envInt reads a positive integer knob from the environment.
func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err == nil && v > 0 {
		return v
	}
	return def
}
