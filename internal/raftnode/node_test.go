package raftnode

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// sumFSM adds the 8-byte numbers of each op; an entry answers []uint64 with
// the running sum after each op.
type sumFSM struct {
	mu      sync.Mutex
	sum     uint64
	entries int
	onApply func() // if set, called after each entry applied
}

func (f *sumFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries++
	var out []uint64
	for p := l.Data; len(p) >= 8; p = p[8:] {
		f.sum += binary.BigEndian.Uint64(p)
		out = append(out, f.sum)
	}
	if f.onApply != nil {
		defer f.onApply()
	}
	return out
}

func (f *sumFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sumSnap(f.sum), nil
}

func (f *sumFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [8]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return err
	}
	f.mu.Lock()
	f.sum = binary.BigEndian.Uint64(b[:])
	f.mu.Unlock()
	return nil
}

func (f *sumFSM) get() (uint64, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sum, f.entries
}

type sumSnap uint64

func (s sumSnap) Persist(sink raft.SnapshotSink) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(s))
	if _, err := sink.Write(b[:]); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}
func (sumSnap) Release() {}

func encodeSum(ops []uint64) ([]byte, error) {
	out := make([]byte, 0, 8*len(ops))
	for _, o := range ops {
		out = binary.BigEndian.AppendUint64(out, o)
	}
	return out, nil
}

type testGroup struct {
	cfgs   []Config
	nodes  []*Node
	fsms   []*sumFSM
	faults []*Faults
	mu     sync.Mutex
	events map[string][]Leadership
}

func freeAddrs(t *testing.T, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.Addr().String())
		defer l.Close()
	}
	return out
}

func newGroup(t *testing.T, n int) *testGroup {
	g := &testGroup{events: map[string][]Leadership{}}
	addrs := freeAddrs(t, n)
	dir := t.TempDir()
	var peers []Peer
	for i := 0; i < n; i++ {
		peers = append(peers, Peer{ID: fmt.Sprintf("r%d", i), Address: addrs[i]})
	}
	for i := 0; i < n; i++ {
		cfg := DefaultLANConfig()
		cfg.ID, cfg.Dir, cfg.Bind, cfg.Peers = peers[i].ID, filepath.Join(dir, peers[i].ID), addrs[i], peers
		cfg.Faults = &Faults{}
		id := cfg.ID
		cfg.OnLeadership = func(l Leadership) {
			g.mu.Lock()
			g.events[id] = append(g.events[id], l)
			g.mu.Unlock()
		}
		g.cfgs = append(g.cfgs, cfg)
		g.faults = append(g.faults, cfg.Faults)
		g.fsms = append(g.fsms, nil)
		g.nodes = append(g.nodes, nil)
		g.start(t, i)
	}
	t.Cleanup(func() {
		for _, nd := range g.nodes {
			if nd != nil {
				nd.Shutdown()
			}
		}
	})
	return g
}

func (g *testGroup) start(t *testing.T, i int) {
	g.fsms[i] = &sumFSM{}
	nd, err := Start(g.cfgs[i], g.fsms[i])
	if err != nil {
		t.Fatal(err)
	}
	g.nodes[i] = nd
}

// leader waits for a ready, confirmed leader, skipping node skip.
func (g *testGroup) leader(t *testing.T, skip int) int {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, nd := range g.nodes {
			if i != skip && nd != nil && nd.Confirmed(time.Now()) {
				return i
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no confirmed leader")
	return -1
}

// TestConfirmationPrecedesSuccessor checks the inequality contract (4)
// rests on: once a leader is cut off, its last confirmation instant is
// earlier than its successor's accession, and it stops being confirmed
// within the window.
func TestConfirmationPrecedesSuccessor(t *testing.T) {
	g := newGroup(t, 3)
	old := g.leader(t, -1)
	// Keep proposing so confirmations come from commits as well as from
	// the idle barrier loop.
	b := NewBatcher[uint64, uint64](g.nodes[old], BatcherConfig{}, encodeSum)
	defer b.Close()
	for i := 0; i < 20; i++ {
		if _, err := b.Propose(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
	}
	g.faults[old].Isolate()
	isolated := time.Now()
	next := g.leader(t, old)
	acc, ok := g.nodes[next].Ready()
	if !ok {
		t.Fatal("new leader not ready")
	}
	// Let the old leader run on for a while: it must not confirm again.
	time.Sleep(g.cfgs[old].ConfirmWindow + 500*time.Millisecond)
	last := g.nodes[old].ConfirmedAt()
	if !last.IsZero() && !last.Before(acc) {
		t.Fatalf("old leader confirmed at %v, not before the successor's accession %v", last, acc)
	}
	if !last.IsZero() && last.After(isolated) {
		t.Fatalf("old leader confirmed at %v, after it was isolated at %v", last, isolated)
	}
	if g.nodes[old].Confirmed(time.Now()) {
		t.Fatal("isolated old leader still confirmed after the window")
	}
}

// TestBatcherPacksProposals: concurrent proposals share log entries and
// each gets its own results.
func TestBatcherPacksProposals(t *testing.T) {
	g := newGroup(t, 3)
	l := g.leader(t, -1)
	b := NewBatcher[uint64, uint64](g.nodes[l], BatcherConfig{MaxInflight: 1}, encodeSum)
	defer b.Close()
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := b.Propose(context.Background(), 1, 2)
			if err == nil && (len(res) != 2 || res[1] != res[0]+2) {
				err = fmt.Errorf("results %v", res)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sum, entries := g.fsms[l].get()
	if sum != 3*n {
		t.Fatalf("sum %d, want %d", sum, 3*n)
	}
	if entries >= n {
		t.Fatalf("%d proposals took %d entries: no batching", n, entries)
	}
	t.Logf("%d proposals in %d entries", n, entries)
}

// TestFollowerProposalFails: proposing on a follower fails with
// ErrNotLeader instead of hanging.
func TestFollowerProposalFails(t *testing.T) {
	g := newGroup(t, 3)
	l := g.leader(t, -1)
	f := (l + 1) % 3
	b := NewBatcher[uint64, uint64](g.nodes[f], BatcherConfig{}, encodeSum)
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.Propose(ctx, 1); err == nil || ctx.Err() != nil {
		t.Fatalf("proposal on a follower: %v (ctx %v)", err, ctx.Err())
	}
}

// TestRestartReplaysLog: a restarted node comes back with its state.
func TestRestartReplaysLog(t *testing.T) {
	g := newGroup(t, 1)
	b := NewBatcher[uint64, uint64](g.nodes[0], BatcherConfig{}, encodeSum)
	g.leader(t, -1)
	for i := 0; i < 10; i++ {
		if _, err := b.Propose(context.Background(), 5); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	if err := g.nodes[0].Shutdown(); err != nil {
		t.Fatal(err)
	}
	g.start(t, 0)
	g.leader(t, -1)
	if sum, _ := g.fsms[0].get(); sum != 50 {
		t.Fatalf("sum after restart %d, want 50", sum)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultLANConfig()
	ok.ID, ok.Dir, ok.Bind, ok.Peers = "a", "/tmp/x", "127.0.0.1:0", []Peer{{ID: "a", Address: "127.0.0.1:1"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	inmem := ok
	inmem.Bind, inmem.Transport = "", NewInmemTransports("a")[0]
	if err := inmem.Validate(); err != nil {
		t.Fatalf("an injected transport needs no bind address: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"id":     func(c *Config) { c.ID = "" },
		"dir":    func(c *Config) { c.Dir = "" },
		"bind":   func(c *Config) { c.Bind = "" },
		"peers":  func(c *Config) { c.Peers = nil },
		"self":   func(c *Config) { c.ID = "b" },
		"window": func(c *Config) { c.ConfirmWindow = 0 },
		"dup":    func(c *Config) { c.Peers = append(c.Peers, c.Peers[0]) },
		"lease":  func(c *Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout },
	} {
		c := ok
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("%s: invalid config accepted", name)
		}
	}
}
