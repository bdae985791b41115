package raftnode

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestWALReopensAfterSuffixTruncation is the regression test of
// hashicorp/raft-wal#31: raft truncates a log suffix whenever a deposed
// leader had unreplicated entries ("clearing log suffix"), and with
// raft-wal v0.4.0 every later open of that data dir panicked ("sealed
// segment has no index block"). Write, truncate the tail, write a new
// tail, reopen twice, and read the whole log back.
func TestWALReopensAfterSuffixTruncation(t *testing.T) {
	dir := t.TempDir()
	logs := func(from, to, term uint64) []*raft.Log {
		var out []*raft.Log
		for i := from; i <= to; i++ {
			out = append(out, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: fmt.Appendf(nil, "%d@%d", i, term)})
		}
		return out
	}
	w, meta, err := openLogStore(dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs(logs(1, 20, 1)); err != nil {
		t.Fatal(err)
	}
	// The deposed leader's entries 12..20 were never replicated: the new
	// leader's log replaces them.
	if err := w.DeleteRange(12, 20); err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs(logs(12, 15, 2)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	meta.Close()

	for open := 1; open <= 2; open++ {
		w, meta, err := openLogStore(dir, hclog.NewNullLogger())
		if err != nil {
			t.Fatalf("open %d after the truncation: %v", open, err)
		}
		last, err := w.LastIndex()
		if err != nil || last != 15 {
			t.Fatalf("open %d: last index %d, %v; want 15", open, last, err)
		}
		for i := uint64(1); i <= 15; i++ {
			var l raft.Log
			if err := w.GetLog(i, &l); err != nil {
				t.Fatalf("open %d: log %d: %v", open, i, err)
			}
			term := uint64(1)
			if i >= 12 {
				term = 2
			}
			if want := fmt.Sprintf("%d@%d", i, term); l.Term != term || string(l.Data) != want {
				t.Fatalf("open %d: log %d is term %d %q, want %q", open, i, l.Term, l.Data, want)
			}
		}
		w.Close()
		meta.Close()
	}
}

// TestDeposedLeaderRestartsAfterTruncation plays the way a real cell
// truncates a suffix: the leader is cut off, accepts proposals it can never
// commit, a new leader is elected, and on healing the old leader's
// uncommitted tail is replaced. The old leader must restart from its data
// dir and agree with the others.
func TestDeposedLeaderRestartsAfterTruncation(t *testing.T) {
	g := newGroup(t, 3)
	old := g.leader(t, -1)
	b := NewBatcher[uint64, uint64](g.nodes[old], BatcherConfig{}, encodeSum)
	for i := 0; i < 5; i++ {
		if _, err := b.Propose(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
	}
	g.faults[old].Isolate()
	// Appended to the isolated leader's log only.
	for i := 0; i < 5; i++ {
		g.nodes[old].raft.Apply([]byte{0, 0, 0, 0, 0, 0, 0, 100}, 0)
	}
	b.Close()
	next := g.leader(t, old)
	nb := NewBatcher[uint64, uint64](g.nodes[next], BatcherConfig{}, encodeSum)
	for i := 0; i < 3; i++ {
		if _, err := nb.Propose(context.Background(), 10); err != nil {
			t.Fatal(err)
		}
	}
	nb.Close()
	g.faults[old].Heal()
	waitSum := func(i int, want uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if sum, _ := g.fsms[i].get(); sum == want {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		sum, _ := g.fsms[i].get()
		t.Fatalf("node %d: sum %d, want %d", i, sum, want)
	}
	waitSum(old, 35)
	if err := g.nodes[old].Shutdown(); err != nil && !errors.Is(err, raft.ErrRaftShutdown) {
		t.Fatal(err)
	}
	g.nodes[old] = nil
	for restart := 0; restart < 2; restart++ {
		g.start(t, old)
		waitSum(old, 35)
		if err := g.nodes[old].Shutdown(); err != nil {
			t.Fatal(err)
		}
		g.nodes[old] = nil
	}
}

// TestStoredVotersMustMatch: a data dir remembers its group's voters; a
// node started with other voters (a dir of a 1-node cell started as part of
// a 3-node one, or with other addresses) is refused with an error naming
// the dir, instead of forming a new group that overwrites its log.
func TestStoredVotersMustMatch(t *testing.T) {
	g := newGroup(t, 1)
	g.leader(t, -1)
	if err := g.nodes[0].Shutdown(); err != nil {
		t.Fatal(err)
	}
	g.nodes[0] = nil
	cfg := g.cfgs[0]
	addrs := freeAddrs(t, 2)
	three := cfg
	three.Peers = append(append([]Peer{}, cfg.Peers...), Peer{ID: "r1", Address: addrs[0]}, Peer{ID: "r2", Address: addrs[1]})
	moved := cfg
	moved.Peers = []Peer{{ID: cfg.ID, Address: cfg.Peers[0].Address}}
	moved.Advertise = addrs[0]
	for name, c := range map[string]Config{"more voters": three, "other address": moved} {
		_, err := Start(c, &sumFSM{})
		if !errors.Is(err, ErrVoterMismatch) || !strings.Contains(err.Error(), cfg.Dir) {
			t.Errorf("%s: Start = %v; want ErrVoterMismatch naming %s", name, err, cfg.Dir)
		}
	}
	// The same voters start as before.
	g.start(t, 0)
	g.leader(t, -1)
}

// TestIdleLeaderAppendsNothing: with nothing wanting confirmation the
// leader lets it lapse and grows no log; Confirm renews it on demand with
// one barrier.
func TestIdleLeaderAppendsNothing(t *testing.T) {
	g := newGroup(t, 1)
	cfg := g.cfgs[0]
	g.nodes[0].Shutdown()
	cfg.WantConfirmed = func() bool { return false }
	g.cfgs[0] = cfg
	g.start(t, 0)
	n := g.nodes[0]
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := n.Ready(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := n.raft.LastIndex()
	time.Sleep(cfg.ConfirmWindow + cfg.ConfirmWindow/2)
	if after := n.raft.LastIndex(); after != before {
		t.Fatalf("idle leader appended %d entries in %v", after-before, cfg.ConfirmWindow*3/2)
	}
	if n.Confirmed(time.Now()) {
		t.Fatal("confirmation kept fresh although nothing wanted it")
	}
	if err := n.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !n.Confirmed(time.Now()) || n.raft.LastIndex() != before+1 {
		t.Fatalf("Confirm: confirmed %v, %d entries appended", n.Confirmed(time.Now()), n.raft.LastIndex()-before)
	}
}
