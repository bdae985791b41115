package global

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/internal/wire"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// testVoter is a one-voter global group served over gRPC on loopback.
func testVoter(t *testing.T) (*Node, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NodeID = "g1"
	cfg.DataDir = filepath.Join(t.TempDir(), "g1")
	cfg.Peers = []Peer{{ID: "g1", Region: "r1", Raft: "g1", GRPC: ln.Addr().String()}}
	cfg.Outage = time.Second
	cfg.Settle = 50 * time.Millisecond
	cfg.LiveWindow = 500 * time.Millisecond
	cfg.PlaceInterval = 50 * time.Millisecond
	cfg.Raft = raftnode.DefaultLANConfig()
	cfg.Raft.Transport = raftnode.NewInmemTransports("g1")[0]
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(wire.Codec()))
	n.Register(srv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := WaitLeader(ctx, n); err != nil {
		t.Fatal(err)
	}
	return n, ln.Addr().String()
}

// fakeCell renews for a region over a real Coordinator stream, reporting
// a load and never recording anything (Held and Released empty): a cell
// that never recorded its delegations.
func fakeCell(t *testing.T, ctx context.Context, ep, region string, load uint32) {
	t.Helper()
	cc, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	st, err := globalv1.NewCoordinatorClient(cc).Renew(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := st.Recv(); err != nil {
				return
			}
		}
	}()
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for seq := uint64(1); ; seq++ {
			if err := st.Send(&globalv1.RenewRequest{Seq: seq, Region: region, NodeId: region + "-1",
				Load: []*globalv1.DomainLoad{{Domain: "prices", Consumers: load}}}); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// TestWithdrawnExpiresOnItsOwnClock: a delegation withdrawn from a region
// that goes on renewing but never reports it released (its cell never
// recorded it) is expired D·(1+ε) after the withdrawal, not kept forever,
// and not before: the region's cover of it, from answers sent before the
// withdrawal, ends by then.
func TestWithdrawnExpiresOnItsOwnClock(t *testing.T) {
	n, ep := testVoter(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.ApplyTopology(ctx, []*globalv1.Region{{Name: "r1"}, {Name: "r2"}},
		[]*wdsv1.Domain{{Name: "prices", Kind: wdsv1.DomainKind_DOMAIN_KIND_GLOBAL, Shards: 4, TtlMillis: 1000}}); err != nil {
		t.Fatal(err)
	}
	// r1 alone, with consumers: it is delegated everything.
	r1ctx, stopR1 := context.WithCancel(ctx)
	defer stopR1()
	fakeCell(t, r1ctx, ep, "r1", 1)
	held := func(region string) int {
		k := 0
		for _, dl := range n.State().Delegations(region) {
			for range dl.Ranges {
				k++
			}
		}
		return k
	}
	waitFor(t, 10*time.Second, func() bool {
		return len(n.State().Delegations("r1")) > 0 && !n.State().Delegations("r1")[0].Withdrawing
	})
	// r2 joins with consumers; r1 reports none: r1's shards are withdrawn
	// and, never reported released, must expire on the withdrawal's clock.
	stopR1()
	r1ctx2, stopR1b := context.WithCancel(ctx)
	defer stopR1b()
	fakeCell(t, r1ctx2, ep, "r1", 0)
	fakeCell(t, ctx, ep, "r2", 1)
	var withdrawn time.Time
	waitFor(t, 10*time.Second, func() bool {
		for _, dl := range n.State().Delegations("r1") {
			if dl.Withdrawing {
				withdrawn = time.Now()
				return true
			}
		}
		return false
	})
	d := n.cfg.Duration(time.Second)
	waitFor(t, 20*time.Second, func() bool { return len(n.State().Delegations("r1")) == 0 })
	took := time.Since(withdrawn)
	t.Logf("withdrawn shards of a renewing region that never reported them released expired %v after the withdrawal (D = %v); r2 holds %d ranges", took.Round(time.Millisecond), d, held("r2"))
	if took < d {
		t.Fatalf("expired %v after the withdrawal, before D = %v: the region's cover may still hold", took, d)
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
