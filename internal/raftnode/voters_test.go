package raftnode

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestChangingVoters: with ChangingVoters a node starts without
// bootstrapping; Bootstrap forms the group of Peers; a node that did not
// bootstrap joins through AddVoter and catches up; RemoveServer takes a
// voter out, and the removed node keeps running (idle) instead of shutting
// Raft down. A follower cannot change the configuration.
func TestChangingVoters(t *testing.T) {
	g := newEventGroup(t, 3, true, func(c *Config) {
		c.ChangingVoters = true
		if c.ID != "r2" {
			c.Peers = c.Peers[:2] // r0 and r1 form the group; r2 joins later
		}
	})
	ids := func(i int) []string {
		servers, err := g.nodes[i].Servers()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range servers {
			out = append(out, string(s.ID))
		}
		slices.Sort(out)
		return out
	}
	for i := range g.nodes {
		if g.nodes[i].Configured() {
			t.Fatalf("%s has a configuration before any bootstrap", g.ids[i])
		}
	}
	for _, i := range []int{0, 1} {
		if did, err := g.nodes[i].Bootstrap(); err != nil || !did {
			t.Fatalf("bootstrap %s: %v %v", g.ids[i], did, err)
		}
	}
	if did, err := g.nodes[0].Bootstrap(); err != nil || did {
		t.Fatalf("a second bootstrap: did %v, err %v (want neither)", did, err)
	}
	l := g.readyLeader(-1)
	g.propose(l, 5, 3)
	f := 1 - l // the other bootstrapped node
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.nodes[f].AddVoter(ctx, "r2", "r2"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("AddVoter on a follower: %v, want ErrNotLeader", err)
	}
	if g.nodes[2].Configured() {
		t.Fatal("r2 configured before it was added")
	}
	if _, err := g.nodes[l].AddVoter(ctx, "r2", "r2"); err != nil {
		t.Fatal(err)
	}
	g.waitSum(2, 15) // r2 has the log
	if got := ids(2); !slices.Equal(got, []string{"r0", "r1", "r2"}) {
		t.Fatalf("r2's configuration: %v", got)
	}
	if _, err := g.nodes[l].RemoveServer(ctx, g.ids[f]); err != nil {
		t.Fatal(err)
	}
	g.waitFor(10*time.Second, "r2 sees the removal", func() bool {
		return !slices.Contains(ids(2), g.ids[f])
	})
	g.propose(l, 1, 1)
	g.waitSum(2, 16)
	if st := g.nodes[f].State(); st == raft.Shutdown {
		t.Fatalf("the removed node shut Raft down")
	}
}
