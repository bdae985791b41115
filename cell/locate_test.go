package cell_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// locate asks node i of c which node leads.
func locate(t *testing.T, c *celltest.Cluster, i int) (*wdsv1.LocateResponse, error) {
	t.Helper()
	cc := celltest.DialConns(t, c.Configs[i].Peers[i].GRPC, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return wdsv1.NewSessionClient(cc).Locate(ctx, &wdsv1.LocateRequest{})
}

// TestFollowersStopNamingALostLeader: once the leader is cut off, its
// followers stop pointing clients at it within their heartbeat timeout
// (they do not wait for the election that follows), so no client is sent
// to a dead node; once a new leader is in office, they name it.
func TestFollowersStopNamingALostLeader(t *testing.T) {
	c := celltest.New(t, 3)
	l := c.Leader()
	lost := c.Configs[l].NodeID
	for i := range c.Nodes {
		r, err := locate(t, c, i)
		if err != nil {
			t.Fatal(err)
		}
		if r.GetLeaderId() != lost || r.GetLeader() != (i == l) || r.GetRegion() != celltest.Region {
			t.Fatalf("node %d before the cut: %v", i, r)
		}
	}
	c.Faults[l].Isolate()
	cut := time.Now()
	hb := c.Configs[l].Raft.HeartbeatTimeout
	for {
		elapsed := time.Since(cut)
		for i := range c.Nodes {
			if i == l {
				continue
			}
			r, err := locate(t, c, i)
			if err != nil {
				t.Fatal(err)
			}
			// Leeway for the time the answer took to be built and read.
			if r.GetLeaderId() == lost && elapsed > hb+100*time.Millisecond {
				t.Fatalf("node %d still names the cut-off leader %s %v after the cut", i, lost, elapsed)
			}
			if r.GetLeaderId() != "" && r.GetLeaderId() != lost {
				if !r.GetLeader() && r.GetLeaderEndpoint() == "" {
					t.Fatalf("node %d names leader %s without its endpoint", i, r.GetLeaderId())
				}
				t.Logf("node %d names the new leader %s %v after the cut", i, r.GetLeaderId(), elapsed.Round(time.Millisecond))
				return
			}
		}
		if elapsed > 10*time.Second {
			t.Fatal("no new leader named within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHungEndpointFirst: a node that accepts connections but never answers
// (SIGSTOPped) first in a consumer's and an observer's endpoint list does
// not hold them: they ask every endpoint at once and are served by the
// others at once, where the handshake limit (5 s) used to hold them first.
func TestHungEndpointFirst(t *testing.T) {
	c := celltest.New(t, 3)
	c.CreateDomain("orders", topology.KindGlobal, 4, 3*time.Second)
	eps := append([]string{celltest.HungEndpoint(t)}, c.Endpoints()...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	tc := c.NewConsumer("c1", []string{"orders"}, func(cfg *client.Config) { cfg.Endpoints = eps })
	if err := tc.WaitConnected(ctx); err != nil {
		t.Fatalf("consumer with a hung first endpoint: %v", err)
	}
	o, err := client.NewObserver(client.ObserverConfig{Endpoints: eps, Watch: []string{"orders"}})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.WaitConnected(ctx); err != nil {
		t.Fatalf("observer with a hung first endpoint: %v", err)
	}
	loc, err := client.NewLocator(eps)
	if err != nil {
		t.Fatal(err)
	}
	defer loc.Close()
	ep, err := loc.Leader(ctx)
	if err != nil || ep != c.Endpoints()[c.Leader()] {
		t.Fatalf("Locator.Leader = %q, %v; want %s", ep, err, c.Endpoints()[c.Leader()])
	}
}

// TestShutdownHandsLeadershipOver: Shutdown of the leader (what `wds
// server` does on SIGTERM) hands leadership to a follower before the node
// stops — a plain Close leaves the cell leaderless until the election
// timeout — and its consumers resume on the new leader with nothing
// revoked or lost.
func TestShutdownHandsLeadershipOver(t *testing.T) {
	c := celltest.New(t, 3)
	c.CreateDomain("orders", topology.KindGlobal, 8, 3*time.Second)
	tc := c.NewConsumer("c1", []string{"orders"})
	celltest.Eventually(t, 10*time.Second, func() error {
		if n := len(tc.Held()); n != 8 {
			return fmt.Errorf("holds %d shards", n)
		}
		return nil
	})
	l := c.Leader()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Nodes[l].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.Nodes[l] = nil
	led := false
	for i, n := range c.Nodes {
		if n != nil && n.RaftStatus().State == raft.Leader {
			led = true
			t.Logf("node %d leads as the old leader's Shutdown returns", i)
		}
	}
	if !led {
		t.Fatal("no node leads as the old leader's Shutdown returns: leadership was not handed over")
	}
	c.Leader()
	celltest.Eventually(t, 10*time.Second, func() error {
		ws := 0
		for _, e := range tc.Events() {
			if e.Kind == client.EventWelcome {
				ws++
			}
		}
		if ws < 2 {
			return fmt.Errorf("%d welcomes", ws)
		}
		return nil
	})
	if _, revokes, losts := tc.Counts(); revokes != 0 || losts != 0 || len(tc.Held()) != 8 {
		t.Fatalf("after the handover: %d revoked, %d lost, %d held", revokes, losts, len(tc.Held()))
	}
}

// TestIdleCellAppendsNothing: a cell with no consumers does not grow its
// log to keep leadership confirmed (it used to append ~4 barriers a
// second); the first consumer to join is welcomed and acked at once.
func TestIdleCellAppendsNothing(t *testing.T) {
	c := celltest.New(t, 3)
	c.CreateDomain("orders", topology.KindGlobal, 4, 3*time.Second)
	l := c.Leader()
	time.Sleep(200 * time.Millisecond) // the creation's nudge
	before := c.Nodes[l].RaftStatus().LastIndex
	time.Sleep(1500 * time.Millisecond)
	if after := c.Nodes[l].RaftStatus().LastIndex; after != before {
		t.Fatalf("an idle cell appended %d entries in 1.5 s", after-before)
	}
	tc := c.NewConsumer("c1", []string{"orders"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tc.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	celltest.Eventually(t, 5*time.Second, func() error {
		if n := len(tc.Held()); n != 4 {
			return fmt.Errorf("holds %d", n)
		}
		return nil
	})
}
