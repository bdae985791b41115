package global

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/internal/wire"
)

// startPair starts voters g1 and g2 (in-memory Raft, gRPC on loopback),
// each bootstrapping, if it does, with the voters its raft2 list names
// (g2's Raft address as g1's and g2's files give it).
func startPair(t *testing.T, g2As1, g2As2 string) (*Node, *Node) {
	t.Helper()
	lns := make([]net.Listener, 2)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	ts := raftnode.NewInmemTransports("g1", "g2")
	dir := t.TempDir()
	var nodes []*Node
	for i, g2 := range []string{g2As1, g2As2} {
		cfg := DefaultConfig()
		cfg.NodeID = []string{"g1", "g2"}[i]
		cfg.DataDir = filepath.Join(dir, cfg.NodeID)
		cfg.Peers = []Peer{
			{ID: "g1", Region: "r1", Raft: "g1", GRPC: lns[0].Addr().String()},
			{ID: "g2", Region: "r2", Raft: g2, GRPC: lns[1].Addr().String()},
		}
		cfg.Raft = raftnode.DefaultLANConfig()
		cfg.Raft.Transport = ts[i]
		n, err := NewNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer(grpc.ForceServerCodecV2(wire.Codec()))
		n.Register(srv)
		go func() { _ = srv.Serve(lns[i]) }()
		t.Cleanup(func() { srv.Stop(); n.Close() })
		nodes = append(nodes, n)
	}
	return nodes[0], nodes[1]
}

// TestBootstrapNeedsTheSameVoters: the initial voters bootstrap the group
// only when every one of them would bootstrap with the same voters; with
// two different files (here: g2's Raft address), none does, since two
// different first configurations at index 1 would break Raft.
func TestBootstrapNeedsTheSameVoters(t *testing.T) {
	t.Run("same", func(t *testing.T) {
		g1, g2 := startPair(t, "g2", "g2")
		deadline := time.Now().Add(10 * time.Second)
		for !(g1.raft.Configured() && g2.raft.Configured()) {
			if time.Now().After(deadline) {
				t.Fatalf("not bootstrapped: g1 %v, g2 %v", g1.raft.Configured(), g2.raft.Configured())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("different", func(t *testing.T) {
		g1, g2 := startPair(t, "g2-elsewhere", "g2")
		// Several probe rounds: neither may bootstrap.
		time.Sleep(8 * probeInterval)
		if g1.raft.Configured() || g2.raft.Configured() {
			t.Fatalf("bootstrapped with different voter lists: g1 %v, g2 %v", g1.raft.Configured(), g2.raft.Configured())
		}
	})
}
