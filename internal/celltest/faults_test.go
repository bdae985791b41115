package celltest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/topology"
)

// TestIsolateCutsRaftAndStreams: one call (Cluster.Isolate) partitions a
// leader for Raft and for its consumers' streams: the others elect a
// leader and the consumer moves there. Faults[i].Isolate, by contrast,
// leaves the node's client endpoint reachable.
func TestIsolateCutsRaftAndStreams(t *testing.T) {
	c := New(t, 3)
	c.CreateDomain("orders", topology.KindGlobal, 4, 3*time.Second)
	tc := c.NewConsumer("c1", []string{"orders"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tc.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	l := c.Leader()
	ep := c.Endpoints()[l]

	c.Faults[l].Isolate() // Raft only
	conn, err := tc.Net.Dial(ctx, ep)
	if err != nil {
		t.Fatalf("a Raft-only isolation cut the client endpoint: %v", err)
	}
	conn.Close()
	c.Faults[l].Heal()
	l = c.Leader()
	ep = c.Endpoints()[l]

	fault := time.Now()
	c.Isolate(l)
	if conn, err := tc.Net.Dial(ctx, ep); err == nil {
		conn.Close()
		t.Fatal("the consumer can dial an isolated node")
	}
	var others []*cell.Node
	for i, n := range c.Nodes {
		if i != l {
			others = append(others, n)
		}
	}
	if _, err := cell.WaitLeader(ctx, others...); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, func() error {
		for _, e := range tc.Events() {
			if e.Kind == client.EventWelcome && e.Time.After(fault) && e.Endpoint != ep {
				return nil
			}
		}
		return fmt.Errorf("consumer not welcomed away from the isolated %s", ep)
	})
	c.Heal(l)
	conn, err = tc.Net.Dial(ctx, ep)
	if err != nil {
		t.Fatalf("healed node unreachable: %v", err)
	}
	conn.Close()
}
