package raftnode

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wdsio/wds/internal/faults"
)

// eventGroup is a group whose tests wait on events (leadership changes,
// entries applied), never on fixed sleeps: every wait is bounded.
type eventGroup struct {
	t     *testing.T
	ids   []string
	nodes []*Node
	fsms  []*sumFSM
	net   *faults.Net

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every event
	lost    map[string]int
}

// newEventGroup starts n nodes r0..r(n-1) on one faults.Net, over
// in-memory transports or loopback TCP.
func newEventGroup(t *testing.T, n int, inmem bool, mut func(*Config)) *eventGroup {
	g := &eventGroup{t: t, net: faults.New(), changed: make(chan struct{}), lost: map[string]int{}}
	for i := 0; i < n; i++ {
		g.ids = append(g.ids, fmt.Sprintf("r%d", i))
	}
	var peers []Peer
	var addrs []string
	if inmem {
		addrs = g.ids
	} else {
		addrs = freeAddrs(t, n)
	}
	for i, id := range g.ids {
		peers = append(peers, Peer{ID: id, Address: addrs[i]})
	}
	var ts []*raft.InmemTransport
	if inmem {
		ts = NewInmemTransports(g.ids...)
	}
	dir := t.TempDir()
	for i, id := range g.ids {
		cfg := DefaultLANConfig()
		cfg.ID, cfg.Dir, cfg.Bind, cfg.Peers = id, filepath.Join(dir, id), addrs[i], peers
		if inmem {
			cfg.Bind, cfg.Transport = "", ts[i]
		}
		cfg.Faults = g.net.Endpoint(id, faults.Raft)
		cfg.OnLeadership = func(l Leadership) {
			g.mu.Lock()
			if !l.Leader {
				g.lost[id]++
			}
			g.mu.Unlock()
			g.notify()
		}
		if mut != nil {
			mut(&cfg)
		}
		fsm := &sumFSM{onApply: g.notify}
		nd, err := Start(cfg, fsm)
		if err != nil {
			t.Fatal(err)
		}
		g.nodes = append(g.nodes, nd)
		g.fsms = append(g.fsms, fsm)
	}
	t.Cleanup(func() {
		for _, nd := range g.nodes {
			nd.Shutdown()
		}
	})
	return g
}

func (g *eventGroup) notify() {
	g.mu.Lock()
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// waitFor waits up to timeout for cond, re-checking it on every event
// (and every 10 ms, for conditions on time or raft state).
func (g *eventGroup) waitFor(timeout time.Duration, what string, cond func() bool) {
	g.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		g.mu.Lock()
		ch := g.changed
		g.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-deadline.C:
			g.t.Fatalf("%s: not after %v", what, timeout)
		}
	}
}

// readyLeader waits for a ready leader other than skip and returns it.
func (g *eventGroup) readyLeader(skip int) int {
	g.t.Helper()
	l := -1
	g.waitFor(10*time.Second, "a ready leader", func() bool {
		for i, nd := range g.nodes {
			if _, ok := nd.Ready(); ok && i != skip {
				l = i
				return true
			}
		}
		return false
	})
	return l
}

func (g *eventGroup) lostCount(i int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lost[g.ids[i]]
}

// propose adds v through node i, n times.
func (g *eventGroup) propose(i int, v uint64, n int) {
	g.t.Helper()
	b := NewBatcher[uint64, uint64](g.nodes[i], BatcherConfig{}, encodeSum)
	defer b.Close()
	for k := 0; k < n; k++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := b.Propose(ctx, v)
		cancel()
		if err != nil {
			g.t.Fatal(err)
		}
	}
}

func (g *eventGroup) waitSum(i int, want uint64) {
	g.t.Helper()
	g.waitFor(10*time.Second, fmt.Sprintf("node %s at sum %d", g.ids[i], want), func() bool {
		sum, _ := g.fsms[i].get()
		return sum == want
	})
}

func (g *eventGroup) others(i int) []int {
	var out []int
	for j := range g.nodes {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestInmemGroupElectsAndApplies: a group over hashicorp/raft's in-memory
// transport elects a leader and replicates entries to every member, and
// every log line of its nodes names the group.
func TestInmemGroupElectsAndApplies(t *testing.T) {
	var logs syncBuffer
	g := newEventGroup(t, 3, true, func(c *Config) {
		c.Group = "global"
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	l := g.readyLeader(-1)
	g.propose(l, 3, 20)
	for i := range g.nodes {
		g.waitSum(i, 60)
	}
	if st := g.nodes[l].Status(); st.State != raft.Leader || st.AppliedIndex < 20 || st.LastIndex < st.CommitIndex {
		t.Fatalf("leader status %+v", st)
	}
	for _, nd := range g.nodes {
		if nd.Group() != "global" {
			t.Fatalf("group %q", nd.Group())
		}
		if srv, err := nd.Servers(); err != nil || len(srv) != 3 {
			t.Fatalf("servers %v %v", srv, err)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) < 3 {
		t.Fatalf("only %d log lines", len(lines))
	}
	for _, line := range lines {
		if !strings.Contains(line, "group=global") {
			t.Fatalf("log line without the group: %s", line)
		}
	}
}

// TestGroupDefaultsToCell: an unnamed group is the cell group.
func TestGroupDefaultsToCell(t *testing.T) {
	g := newEventGroup(t, 1, true, nil)
	g.readyLeader(-1)
	if got := g.nodes[0].Group(); got != "cell" {
		t.Fatalf("group %q", got)
	}
}

func transports(t *testing.T, f func(t *testing.T, inmem bool)) {
	t.Run("inmem", func(t *testing.T) { f(t, true) })
	t.Run("tcp", func(t *testing.T) { f(t, false) })
}

// TestOneWayCutDeposesLeader: a leader that can no longer reach its
// followers (while they can still reach it) loses leadership: the
// followers time out and elect one of themselves, whose term deposes it
// through their vote requests, and whose entries still reach it.
func TestOneWayCutDeposesLeader(t *testing.T) {
	transports(t, func(t *testing.T, inmem bool) {
		g := newEventGroup(t, 3, inmem, nil)
		old := g.readyLeader(-1)
		g.propose(old, 1, 5)
		for _, j := range g.others(old) {
			g.net.Cut(g.ids[old], g.ids[j], faults.Raft)
		}
		g.waitFor(10*time.Second, "the cut-off leader steps down", func() bool {
			_, ok := g.nodes[old].Ready()
			return !ok && g.lostCount(old) > 0
		})
		next := g.readyLeader(old)
		g.propose(next, 10, 3)
		// The successor reaches the old leader: it catches up.
		for i := range g.nodes {
			g.waitSum(i, 35)
		}
		if _, ok := g.nodes[old].Ready(); ok {
			t.Fatal("the old leader, which cannot reach anyone, leads again")
		}
		// Healed, the group goes on with all three.
		g.net.Heal(g.ids[old])
		l := g.readyLeader(-1)
		g.propose(l, 100, 1)
		for i := range g.nodes {
			g.waitSum(i, 135)
		}
	})
}

// TestOneWayCutToLeaderKeepsIt: followers that cannot start calls to the
// leader still answer its appends: the leader keeps leading.
func TestOneWayCutToLeaderKeepsIt(t *testing.T) {
	transports(t, func(t *testing.T, inmem bool) {
		g := newEventGroup(t, 3, inmem, nil)
		l := g.readyLeader(-1)
		for _, j := range g.others(l) {
			g.net.Cut(g.ids[j], g.ids[l], faults.Raft)
		}
		g.propose(l, 2, 10)
		for i := range g.nodes {
			g.waitSum(i, 20)
		}
		if _, ok := g.nodes[l].Ready(); !ok || g.lostCount(l) != 0 {
			t.Fatalf("leader lost leadership (ready %v, %d losses)", ok, g.lostCount(l))
		}
	})
}

// TestPerPeerCutLeavesRestConnected: cutting the leader and one follower
// apart (both ways) leaves the leader leading with the other follower; the
// cut follower misses entries until healed, then catches up.
func TestPerPeerCutLeavesRestConnected(t *testing.T) {
	transports(t, func(t *testing.T, inmem bool) {
		g := newEventGroup(t, 3, inmem, nil)
		l := g.readyLeader(-1)
		o := g.others(l)
		cut, kept := o[0], o[1]
		g.propose(l, 1, 3)
		g.waitSum(cut, 3)
		g.nodes[l].cfg.Faults.CutBoth(g.ids[cut])
		if !g.net.Blocked(g.ids[l], g.ids[cut], faults.Raft) || !g.net.Blocked(g.ids[cut], g.ids[l], faults.Raft) ||
			g.net.Blocked(g.ids[cut], g.ids[kept], faults.Raft) || g.net.Blocked(g.ids[l], g.ids[cut], faults.GRPC) {
			t.Fatal("the cut is not per peer and per plane")
		}
		g.propose(l, 10, 5)
		g.waitSum(kept, 53)
		if sum, _ := g.fsms[cut].get(); sum != 3 {
			t.Fatalf("the cut follower applied up to sum %d", sum)
		}
		// Let the cut follower time out (pre-vote keeps it from deposing
		// the leader through the follower it still reaches), then heal.
		g.waitFor(10*time.Second, "the cut follower to notice", func() bool {
			return g.nodes[cut].State() != raft.Follower ||
				time.Since(g.nodes[cut].Status().LastContact) > g.nodes[cut].cfg.HeartbeatTimeout
		})
		if _, ok := g.nodes[l].Ready(); !ok || g.lostCount(l) != 0 {
			t.Fatalf("leader lost leadership over a per-peer cut (ready %v, %d losses)", ok, g.lostCount(l))
		}
		g.nodes[cut].cfg.Faults.Heal()
		g.waitSum(cut, 53)
	})
}
