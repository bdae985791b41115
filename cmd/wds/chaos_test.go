package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wdsio/wds/chaos"
	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/topology"
)

// consumerProc is a `wds consume` process whose every stdout line is kept
// for the history checker.
type consumerProc struct {
	id    string
	p     *proc
	lines []string
}

// drain moves the process's available output into lines.
func (cp *consumerProc) drain() {
	for {
		select {
		case l, ok := <-cp.p.lines:
			if !ok {
				return
			}
			cp.lines = append(cp.lines, l)
		default:
			return
		}
	}
}

func (cp *consumerProc) grants() int {
	cp.drain()
	held := map[string]bool{}
	for _, l := range cp.lines {
		// A shard is (domain, region, from).
		shard := fieldOf(l, "domain") + "/" + fieldOf(l, "region") + "/" + fieldOf(l, "from")
		switch {
		case strings.Contains(l, `"event":"grant"`):
			held[shard] = true
		case strings.Contains(l, `"event":"revoke"`), strings.Contains(l, `"event":"lost"`):
			delete(held, shard)
		}
	}
	return len(held)
}

func fieldOf(line, name string) string {
	_, rest, ok := strings.Cut(line, `"`+name+`":"`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// TestProcessChaos runs consumers as real processes and checks the
// recorded histories: one is SIGKILLed (no drain, connection gone), one is
// SIGSTOPped (frozen with its socket open) and later continued. Their
// shards move to the others within TTL·(1+ε) + 1 s, and the checker finds
// no two processes owning a key at once and no token going backwards.
func TestProcessChaos(t *testing.T) {
	t.Parallel()
	c := celltest.New(t, 3)
	ep := "--endpoint=" + strings.Join(c.Endpoints(), ",")
	const ttl = 2 * time.Second
	c.CreateDomain("work", topology.KindGlobal, 12, ttl)
	bound := time.Duration(float64(ttl)*1.01) + time.Second

	var procs []*consumerProc
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("p%d", i)
		procs = append(procs, &consumerProc{id: id, p: start(t, ep, "consume", "--domain", "work", "--id", id)})
	}
	waitCounts := func(want map[string]int, within time.Duration) {
		t.Helper()
		celltest.Eventually(t, within, func() error {
			counts, err := c.OwnerCounts("work")
			if err != nil {
				return err
			}
			for id, n := range want {
				if counts[id] != n {
					return fmt.Errorf("owners %v, want %v", counts, want)
				}
			}
			return nil
		})
	}
	waitCounts(map[string]int{"p0": 4, "p1": 4, "p2": 4}, 15*time.Second)

	// SIGKILL p0: it dies holding 4 shards; its beliefs end with it.
	killed := time.Now()
	procs[0].p.signal(syscall.SIGKILL)
	waitCounts(map[string]int{"p1": 6, "p2": 6}, bound)
	t.Logf("killed process's shards moved after %v (bound %v)", time.Since(killed), bound)

	// SIGSTOP p1: frozen with its socket open.
	frozen := time.Now()
	procs[1].p.signal(syscall.SIGSTOP)
	waitCounts(map[string]int{"p2": 12}, bound)
	t.Logf("frozen process's shards moved after %v (bound %v)", time.Since(frozen), bound)
	procs[1].p.signal(syscall.SIGCONT)
	// Thawed, it notices its lease lapsed and rejoins; balance returns.
	waitCounts(map[string]int{"p1": 6, "p2": 6}, 15*time.Second)

	for _, cp := range procs[1:] {
		cp.p.signal(syscall.SIGTERM)
		rest, code := cp.p.wait(30 * time.Second)
		if code != 0 {
			t.Errorf("%s exited %d after SIGTERM; stderr:\n%s", cp.id, code, cp.p.stderr.String())
		}
		cp.lines = append(cp.lines, rest...)
	}
	procs[0].drain()

	var all []chaos.Interval
	for _, cp := range procs {
		ivs, err := chaos.ParseEvents(cp.id, strings.NewReader(strings.Join(cp.lines, "\n")))
		if err != nil {
			t.Fatalf("%s: %v", cp.id, err)
		}
		for i := range ivs {
			if ivs[i].Open() && cp.id == "p0" {
				ivs[i].End = killed // a dead process believes nothing
			}
		}
		all = append(all, ivs...)
	}
	if len(all) < 12 {
		t.Fatalf("only %d ownership intervals recorded", len(all))
	}
	for _, v := range chaos.Check(all) {
		t.Errorf("ownership violation: %s", v)
	}
	lost := 0
	for _, l := range procs[1].lines {
		if strings.Contains(l, `"event":"lost"`) {
			lost++
		}
	}
	if lost == 0 {
		t.Errorf("the frozen process reported no lost lease after it was continued")
	}
}
