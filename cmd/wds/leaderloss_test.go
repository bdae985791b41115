package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/wdsio/wds/internal/celltest"
)

// TestServerProcessesLeaderLoss is the cell's promise of zero churn on
// leader loss, shown with real processes: three `wds server` processes,
// five `wds consume` processes holding a 64-shard domain with a 3 s lease,
// and the leader lost again and again — kill -9 (WDS_PROC_KILLS times,
// default 3; `make chaos-cell` runs 20), a rolling restart by SIGTERM of
// every node, and a SIGSTOP of the leader. After each loss every consumer
// must be welcomed by the new leader with its grants intact: no `lost`, no
// `revoke`, and the history checker finds no overlap and no token going
// backwards. The timings (time to the new leader's accession, to the last
// consumer's Welcome, SIGTERM to exit) are logged, not asserted.
func TestServerProcessesLeaderLoss(t *testing.T) {
	t.Parallel()
	kills := envInt("WDS_PROC_KILLS", 3)
	c := startProcCell(t, 3)
	c.leader(20 * time.Second)
	ep := "--endpoint=" + c.endpoints()
	mustWDS(t, ep, "domain", "create", "work", "--kind", "global", "--shards", "64", "--ttl", "3s")

	var procs []*consumerProc
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("c%d", i)
		procs = append(procs, &consumerProc{id: id, p: start(t, ep, "consume", "--domain", "work", "--id", id)})
	}
	defer func() {
		if t.Failed() {
			c.dumpLogs()
			for _, cp := range procs {
				cp.drain()
				t.Logf("=== consumer %s:\n%s", cp.id, joinLines(cp.lines))
			}
		}
	}()
	// Balanced (12 or 13 each), and every consumer runs what the cell
	// says it holds.
	celltest.Eventually(t, 30*time.Second, func() error {
		var shards []shardJSON
		r := wds(t, ep, "--timeout", "2s", "shards", "work", "-o", "json")
		if r.code != 0 {
			return fmt.Errorf("shards: %s", r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), &shards); err != nil {
			return err
		}
		counts := map[string]int{}
		for _, s := range shards {
			if s.State == "active" {
				counts[s.Owner]++
			}
		}
		for _, cp := range procs {
			if n := counts[cp.id]; n < 12 || n > 13 || cp.grants() != n {
				return fmt.Errorf("owners %v; %s runs %d", counts, cp.id, cp.grants())
			}
		}
		return nil
	})
	base := map[string][2]int{}
	for _, cp := range procs {
		base[cp.id] = [2]int{cp.count("revoke"), cp.count("grant")}
	}

	var elections, rewelcomes, afterAccession []time.Duration
	// waitRewelcomed waits for every consumer's Welcome after since and
	// returns the latest.
	waitRewelcomed := func(since time.Time, what string) time.Duration {
		t.Helper()
		var last time.Duration
		celltest.Eventually(t, 20*time.Second, func() error {
			last = 0
			for _, cp := range procs {
				w, ok := cp.welcomedAfter(since)
				if !ok {
					return fmt.Errorf("%s: %s not welcomed again", what, cp.id)
				}
				last = max(last, w.Sub(since))
			}
			return nil
		})
		return last
	}
	electedAfter := func(since time.Time) time.Duration {
		if a, ok := c.accessionAfter(since); ok {
			return a.Sub(since)
		}
		return -1
	}

	// 1. kill -9 of the leader, then restart it.
	for k := 0; k < kills; k++ {
		l, _ := c.leader(20 * time.Second)
		killed := time.Now()
		c.kill9(l)
		c.leader(20*time.Second, l)
		re := waitRewelcomed(killed, fmt.Sprintf("kill %d", k+1))
		el := electedAfter(killed)
		elections, rewelcomes = append(elections, el), append(rewelcomes, re)
		afterAccession = append(afterAccession, re-el)
		t.Logf("kill -9 %d of %s: new leader in office after %v, every consumer welcomed after %v", k+1, c.ids[l], el.Round(time.Millisecond), re.Round(time.Millisecond))
		c.start(l)
		c.caughtUp(l, 20*time.Second)
		// Let a heartbeat or two pass on the restored cell.
		time.Sleep(1500 * time.Millisecond)
	}

	// 2. A rolling restart: SIGTERM every node in turn, restart it, wait
	// for it to catch up, go on.
	for i := range c.ids {
		l, _ := c.leader(20 * time.Second)
		stopped := time.Now()
		c.signal(i, syscall.SIGTERM)
		if _, code := c.procs[i].wait(15 * time.Second); code != 0 {
			t.Errorf("%s exited %d after SIGTERM", c.ids[i], code)
		}
		exited := time.Since(stopped)
		c.procs[i] = nil
		if i == l {
			c.leader(20*time.Second, i)
			re := waitRewelcomed(stopped, "SIGTERM of the leader")
			t.Logf("SIGTERM of leader %s: exited after %v, new leader in office after %v, every consumer welcomed after %v",
				c.ids[i], exited.Round(time.Millisecond), electedAfter(stopped).Round(time.Millisecond), re.Round(time.Millisecond))
		} else {
			t.Logf("SIGTERM of follower %s: exited after %v", c.ids[i], exited.Round(time.Millisecond))
		}
		c.start(i)
		c.caughtUp(i, 20*time.Second)
		time.Sleep(1500 * time.Millisecond)
	}

	// 3. SIGSTOP of the leader: hung with its sockets open.
	{
		l, _ := c.leader(20 * time.Second)
		frozen := time.Now()
		c.signal(l, syscall.SIGSTOP)
		c.leader(20*time.Second, l)
		re := waitRewelcomed(frozen, "SIGSTOP of the leader")
		t.Logf("SIGSTOP of leader %s: new leader in office after %v, every consumer welcomed after %v",
			c.ids[l], electedAfter(frozen).Round(time.Millisecond), re.Round(time.Millisecond))
		c.signal(l, syscall.SIGCONT)
		c.caughtUp(l, 20*time.Second)
		time.Sleep(1500 * time.Millisecond)
	}

	if len(elections) > 0 {
		t.Logf("kill -9 over %d kills: accession median %v max %v; last Welcome median %v max %v; last Welcome after the accession median %v max %v",
			len(elections), median(elections), slices.Max(elections), median(rewelcomes), slices.Max(rewelcomes),
			median(afterAccession), slices.Max(afterAccession))
	}
	for _, cp := range procs {
		if n := cp.count("lost"); n != 0 {
			t.Errorf("%s lost %d leases", cp.id, n)
		}
		if d := cp.count("revoke") - base[cp.id][0]; d != 0 {
			t.Errorf("%s had %d grants revoked after the cell was balanced", cp.id, d)
		}
		if d := cp.count("grant") - base[cp.id][1]; d != 0 {
			t.Errorf("%s got %d new grants after the cell was balanced", cp.id, d)
		}
	}
	for _, cp := range procs {
		cp.p.signal(syscall.SIGTERM)
	}
	for _, cp := range procs {
		rest, code := cp.p.wait(30 * time.Second)
		if code != 0 {
			t.Errorf("%s exited %d after SIGTERM; stderr:\n%s", cp.id, code, cp.p.stderr.String())
		}
		cp.lines = append(cp.lines, rest...)
	}
	if n := checkHistories(t, procs); n < 64 {
		t.Errorf("only %d ownership intervals recorded", n)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}

func joinLines(lines []string) string {
	out := ""
	for _, l := range lines {
		out += l + "\n"
	}
	return out
}
