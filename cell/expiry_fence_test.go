package cell

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wdsio/wds/internal/logging"
	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// expiryRig is a one-node cell with one raw consumer session "a" holding
// the only shard of domain "d", and the planner loop stopped so a test can
// interleave a balancing round with acks.
type expiryRig struct {
	l    *leader
	cl   *consumerLease
	msgs chan *wdsv1.ServerMessage
}

func newExpiryRig(t *testing.T) *expiryRig {
	t.Helper()
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
	}
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Region, cfg.DataDir = "n1", "local", t.TempDir()
	cfg.Peers = []Peer{{ID: "n1", Raft: addrs[0], GRPC: addrs[1]}}
	cfg.Logger = logging.Discard()
	n, err := startServed(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if _, err := WaitLeader(ctx, n); err != nil {
		t.Fatal(err)
	}
	d := topology.Domain{Name: "d", Kind: topology.KindRegional, Shards: 1, TTL: 3 * time.Second}
	if res, err := n.propose(ctx, &cellv1.Op{Op: &cellv1.Op_CreateDomain{CreateDomain: &cellv1.CreateDomain{Domain: topology.DomainToProto(d)}}}); err != nil || res[0].Err != nil {
		t.Fatal(err, res)
	}
	cc, err := grpc.NewClient(addrs[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	st, err := wdsv1.NewSessionClient(cc).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Hello{Hello: &wdsv1.Hello{
		Role: wdsv1.Role_ROLE_CONSUMER, ConsumerId: "a", Region: "local", Domains: []string{"d"}, Seq: 1}}}); err != nil {
		t.Fatal(err)
	}
	r := &expiryRig{msgs: make(chan *wdsv1.ServerMessage, 100)}
	go func() {
		defer close(r.msgs)
		for {
			m, err := st.Recv()
			if err != nil {
				return
			}
			r.msgs <- m
		}
	}()
	for granted := false; !granted; {
		select {
		case m := <-r.msgs:
			granted = m.GetGrant() != nil
		case <-ctx.Done():
			t.Fatal("no grant")
		}
	}
	r.l = n.currentLeader()
	r.l.cancel() // stop the planner loop: the test plays its rounds
	r.l.wg.Wait()
	r.l.mu.Lock()
	r.cl = r.l.leases["a"]
	r.l.mu.Unlock()
	return r
}

// lastAckedAgo makes the lease look as if the last ack handed to the
// stream was for a heartbeat received ago before now: past the leader's
// deadline for ago > T·(1+ε).
func (r *expiryRig) lastAckedAgo(ago time.Duration) (now time.Time, conn *sessionConn) {
	now = time.Now()
	r.cl.mu.Lock()
	defer r.cl.mu.Unlock()
	r.cl.anchor = now.Add(-ago)
	return now, r.cl.conn
}

// nextAck waits up to d for a heartbeat ack on the session.
func (r *expiryRig) nextAck(d time.Duration) (uint64, bool) {
	timeout := time.After(d)
	for {
		select {
		case m, ok := <-r.msgs:
			if !ok {
				return 0, false
			}
			if a := m.GetHeartbeatAck(); a != nil {
				return a.GetSeq(), true
			}
		case <-timeout:
			return 0, false
		}
	}
}

// TestNoAckAfterPlannedExpiry tries to break contract (3) from the
// leader's side: the planner judges a lease expired from its anchor (the
// last ack was for a heartbeat received 3.5 s ago); an ack queued behind a
// slow write (for a heartbeat received 2.5 s ago) reaches the stream only
// after that decision. If it went out, the client would run its shard
// until 2.5 s ago + T(1−ε), while the expiry hands the shard to another.
func TestNoAckAfterPlannedExpiry(t *testing.T) {
	r := newExpiryRig(t)
	now, conn := r.lastAckedAgo(3500 * time.Millisecond)

	ops, fenced := r.l.fenceExpiries(r.l.plan(time.Now()))
	if len(ops) != 1 || ops[0].GetLeave() == nil || len(fenced) != 1 {
		t.Fatalf("round: ops %v, %d fenced; want the Leave (expired), fenced", ops, len(fenced))
	}
	conn.enqueue(outItem{kind: itemAck, seq: 2, received: now.Add(-2500 * time.Millisecond)})
	if seq, ok := r.nextAck(500 * time.Millisecond); ok {
		t.Fatalf("ack %d sent between the expiry decision and its commit", seq)
	}
	r.cl.mu.Lock()
	anchor := r.cl.anchor
	r.cl.mu.Unlock()
	if !anchor.Equal(now.Add(-3500 * time.Millisecond)) {
		t.Fatalf("the withheld ack moved the anchor to %v", anchor)
	}
	unfence(fenced)
}

// TestStaleExpiryDecisionIsDropped: the other order. An ack goes out
// after the planner read the anchors but before the round is fenced; the
// decision was made on an old anchor and must not be committed (the next
// round judges again, from the new anchor).
func TestStaleExpiryDecisionIsDropped(t *testing.T) {
	r := newExpiryRig(t)
	now, conn := r.lastAckedAgo(3500 * time.Millisecond)

	planned := r.l.plan(time.Now())
	if len(planned) != 1 || planned[0].GetLeave() == nil {
		t.Fatalf("planner: %v, want the Leave (expired)", planned)
	}
	conn.enqueue(outItem{kind: itemAck, seq: 2, received: now.Add(-500 * time.Millisecond)})
	if _, ok := r.nextAck(5 * time.Second); !ok {
		t.Fatal("the ack was not sent")
	}
	ops, fenced := r.l.fenceExpiries(planned)
	if len(ops) != 0 || len(fenced) != 0 {
		t.Fatalf("a decision made before the ack survived: ops %v, %d fenced", ops, len(fenced))
	}
	if again := r.l.plan(time.Now()); len(again) != 0 {
		t.Fatalf("next round, from the new anchor: %v, want nothing", again)
	}
}
