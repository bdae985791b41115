//go:build !race

// Built without the race detector, as faketime_test.go is (see there).

package cell_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/internal/lease"
	"github.com/wdsio/wds/internal/rpcerr"
	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// The lease edge cases of contracts (3) and (4) on fake time, on the
// harness of faketime_test.go: the expiry fence, played in both orders
// against an ack really held behind a slow write; and leader changes —
// killed, partitioned, hung — and a whole-cell restart, each with zero
// churn.

// --- the expiry fence ---

// fenceTTL is the TTL of the fence tests' domain; fenceShards makes the
// domain's Grant and routing messages large enough (hundreds of KiB) to
// fill a stream's flow-control window many times over.
const (
	fenceTTL    = 3 * time.Second
	fenceShards = 8192
)

// rawSession is a consumer session the test speaks itself, on a client
// connection with static 64 KiB flow-control windows: while the test does
// not read, the node's writes to the stream stall once the window is full,
// and the session's sender waits in a write, as it does for a slow or
// congested client.
type rawSession struct {
	t  *testing.T
	st wdsv1.Session_ConnectClient

	mu   sync.Mutex
	msgs []*wdsv1.ServerMessage // received since read
	end  error                  // how the stream ended (nil: open)
}

func (fc *fakeCell) rawSession(id string, domains ...string) (*rawSession, *wdsv1.Welcome) {
	fc.t.Helper()
	cc, err := grpc.NewClient(fc.eps[fc.leader()], fc.dial, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		fc.t.Fatal(err)
	}
	fc.t.Cleanup(func() { cc.Close() })
	st, err := wdsv1.NewSessionClient(cc).Connect(context.Background())
	if err != nil {
		fc.t.Fatal(err)
	}
	if err := st.Send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Hello{Hello: &wdsv1.Hello{
		Role: wdsv1.Role_ROLE_CONSUMER, ConsumerId: id, Region: celltest.Region, Domains: domains, Seq: 1}}}); err != nil {
		fc.t.Fatal(err)
	}
	m, err := st.Recv()
	if err != nil {
		fc.t.Fatal(err)
	}
	w := m.GetWelcome()
	if w == nil || !w.GetAcked() {
		fc.t.Fatalf("first message %v, want an acked Welcome", m)
	}
	return &rawSession{t: fc.t, st: st}, w
}

func (s *rawSession) heartbeat(seq uint64) {
	s.t.Helper()
	if err := s.st.Send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Heartbeat{Heartbeat: &wdsv1.Heartbeat{Seq: seq}}}); err != nil {
		s.t.Fatal(err)
	}
}

// read starts reading the stream (until it ends).
func (s *rawSession) read() {
	go func() {
		for {
			m, err := s.st.Recv()
			s.mu.Lock()
			if err != nil {
				s.end = err
				s.mu.Unlock()
				return
			}
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
		}
	}()
}

// received returns the acked heartbeat sequence numbers and the number of
// shards granted, among the messages read so far, and how the stream ended.
func (s *rawSession) received() (acks []uint64, granted int, end error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs {
		if a := m.GetHeartbeatAck(); a != nil {
			acks = append(acks, a.GetSeq())
		}
		granted += len(m.GetGrant().GetShards())
	}
	return acks, granted, s.end
}

// fenceRig sets fc, a lone one-node cell, up for the fence tests: domain d
// (fenceShards shards, TTL fenceTTL) and one raw session of consumer a,
// whose Welcome anchored its lease. Consumer a is granted every shard and
// then reads nothing: the session's sender stalls in a write. The leader's
// balancing is taken over. One second after the Welcome a sends heartbeat
// 2, whose ack is queued behind the stalled write; 3.5 s after the Welcome
// — past the leader's deadline of the lease the Welcome gave — the rig
// returns. The ack of heartbeat 2, sent at s = anchor + 1 s, would tell a
// its grants run until s + T·(1−ε) = anchor + 3.97 s.
func fenceRig(fc *fakeCell) (s *rawSession, rounds *cell.BalanceRounds, anchor time.Time) {
	t := fc.t
	t.Helper()
	fc.createDomain("d", topology.KindGlobal, fenceShards, fenceTTL)
	s, _ = fc.rawSession("a", "d")
	celltest.Eventually(t, 10*time.Second, func() error {
		counts, err := fc.ownerCounts("d")
		if err != nil {
			return err
		}
		if counts["a"] != fenceShards {
			return fmt.Errorf("a holds %d of %d shards", counts["a"], fenceShards)
		}
		return nil
	})
	rounds = cell.TakeOverBalancing(fc.nodes[fc.leader()])
	if rounds == nil {
		t.Fatal("no leader to take balancing over from")
	}
	anchor = rounds.Anchor("a")
	if anchor.IsZero() || time.Since(anchor) > time.Second {
		t.Fatalf("a's lease anchored at %v, %v ago", anchor, time.Since(anchor))
	}
	time.Sleep(time.Until(anchor.Add(time.Second)))
	s.heartbeat(2)
	synctest.Wait()
	if n := rounds.QueuedAcks("a"); n != 1 {
		t.Fatalf("%d acks queued after heartbeat 2, want 1 held behind the stalled write", n)
	}
	time.Sleep(time.Until(anchor.Add(3500 * time.Millisecond)))
	return s, rounds, anchor
}

// TestFakeTimeNoAckAfterPlannedExpiry: contract (3) from the leader's
// side. The planner judges a's lease expired from its anchor (the Welcome,
// 3.5 s ago); the ack of heartbeat 2 (received 2.5 s ago), held behind a
// slow write, reaches the front of the stream only after that decision. If
// it went out, a would run its shards until 3.97 s after the anchor while
// the expiry hands them to others; it must be dropped, the anchor must not
// move, and the stream ends with the expiry without ever acking.
func TestFakeTimeNoAckAfterPlannedExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFakeCell(t, 1, nil)
		defer fc.close()
		s, rounds, anchor := fenceRig(fc)
		ops := rounds.Plan(time.Now())
		if len(ops) != 1 || ops[0].GetLeave() == nil {
			t.Fatalf("round: %v, want the Leave (expired)", ops)
		}
		kept, fenced := rounds.Fence(ops)
		if len(kept) != 1 || fenced != 1 {
			t.Fatalf("fenced round: ops %v, %d fenced; want the Leave, fenced", kept, fenced)
		}
		// The client reads again: the stalled write completes, the
		// sender reaches the ack.
		s.read()
		synctest.Wait()
		acks, granted, end := s.received()
		if len(acks) != 0 {
			t.Fatalf("acks %v sent between the expiry decision and its commit", acks)
		}
		if granted != fenceShards || end != nil {
			t.Fatalf("read %d granted shards (stream end: %v), want all %d, stream open", granted, end, fenceShards)
		}
		if n := rounds.QueuedAcks("a"); n != 0 {
			t.Fatalf("%d acks still queued: the sender never reached it", n)
		}
		if got := rounds.Anchor("a"); !got.Equal(anchor) {
			t.Fatalf("the withheld ack moved the anchor by %v", got.Sub(anchor))
		}
		if err := rounds.Commit(context.Background(), kept); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		acks, _, end = s.received()
		if len(acks) != 0 {
			t.Fatalf("acks %v sent after the expiry", acks)
		}
		if status.Code(end) != codes.FailedPrecondition || rpcerr.Reason(end) != rpcerr.ReasonLeaseExpired {
			t.Fatalf("stream ended with %v, want the lease expiry", end)
		}
		if counts, err := fc.ownerCounts("d"); err != nil || len(counts) != 0 {
			t.Fatalf("after the expiry the shard map has owners %v (%v), want none", counts, err)
		}
	})
}

// TestFakeTimeStaleExpiryDecisionIsDropped: the other order. The ack goes
// out after the planner read the anchors but before the round is fenced:
// the decision was made on an old anchor and is dropped. The next round
// judges from the new anchor: nothing until the leader's deadline of the
// ack, past the deadline the ack gave a, then the expiry.
func TestFakeTimeStaleExpiryDecisionIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFakeCell(t, 1, nil)
		defer fc.close()
		s, rounds, anchor := fenceRig(fc)
		planned := rounds.Plan(time.Now())
		if len(planned) != 1 || planned[0].GetLeave() == nil {
			t.Fatalf("planner: %v, want the Leave (expired)", planned)
		}
		s.read()
		synctest.Wait()
		acks, _, end := s.received()
		if fmt.Sprint(acks) != "[2]" || end != nil {
			t.Fatalf("acks %v (stream end: %v), want heartbeat 2's", acks, end)
		}
		acked := anchor.Add(time.Second) // heartbeat 2's receive (and send) time
		if got := rounds.Anchor("a"); !got.Equal(acked) {
			t.Fatalf("anchor %v after the ack, want heartbeat 2's receive time %v", got.Sub(anchor), acked.Sub(anchor))
		}
		kept, fenced := rounds.Fence(planned)
		if len(kept) != 0 || fenced != 0 {
			t.Fatalf("a decision made before the ack survived: ops %v, %d fenced", kept, fenced)
		}
		if again := rounds.Plan(time.Now()); len(again) != 0 {
			t.Fatalf("next round, from the new anchor: %v, want nothing", again)
		}
		p := lease.Params{TTL: fenceTTL, Drift: lease.DefaultDrift}
		time.Sleep(time.Until(p.LeaderDeadline(acked)) - time.Millisecond)
		if again := rounds.Plan(time.Now()); expiries(again) != 0 {
			t.Fatalf("round just before the ack's leader deadline: %v, want no expiry", again)
		}
		time.Sleep(2 * time.Millisecond)
		ops := rounds.Plan(time.Now())
		if len(ops) != 1 || ops[0].GetLeave() == nil {
			t.Fatalf("round past the ack's leader deadline: %v, want the Leave (expired)", ops)
		}
		if !time.Now().After(p.ClientDeadline(acked)) {
			t.Fatalf("expiry decided %v before the deadline the ack gave a", p.ClientDeadline(acked).Sub(time.Now()))
		}
		kept, fenced = rounds.Fence(ops)
		if len(kept) != 1 || fenced != 1 {
			t.Fatalf("fenced round: ops %v, %d fenced; want the Leave, fenced", kept, fenced)
		}
		if err := rounds.Commit(context.Background(), kept); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if acks, _, end := s.received(); len(acks) != 1 || status.Code(end) != codes.FailedPrecondition {
			t.Fatalf("after the expiry: acks %v, stream end %v; want only heartbeat 2's, the lease expiry", acks, end)
		}
	})
}

// expiries counts the Leave and Release ops of a round (a round can also
// mark a consumer unconfirmed, which expires nothing).
func expiries(ops []*cellv1.Op) int {
	n := 0
	for _, op := range ops {
		if op.GetLeave() != nil || op.GetRelease() != nil {
			n++
		}
	}
	return n
}

// --- helpers for the leader-change tests ---

// ownerCounts counts ACTIVE shards per owner in a domain (the leader's
// shard map).
func (fc *fakeCell) ownerCounts(domain string) (map[string]int, error) {
	m, err := fc.shardMap(domain)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, s := range m.GetShards() {
		if s.GetOwner() != "" && s.GetState() == wdsv1.GrantState_GRANT_STATE_ACTIVE {
			out[s.GetOwner()]++
		}
	}
	return out, nil
}

// shardMap asks the current leader for a domain's shard map.
func (fc *fakeCell) shardMap(domain string) (*wdsv1.ShardMapResponse, error) {
	var out *wdsv1.ShardMapResponse
	err := fc.onLeader(func(a wdsv1.AdminClient) error {
		var err error
		out, err = a.ShardMap(context.Background(), &wdsv1.ShardMapRequest{Domain: domain})
		return err
	})
	return out, err
}

// onLeader runs f against the current leader's Admin service (followers
// forward over real TCP, which the bubble does not have).
func (fc *fakeCell) onLeader(f func(wdsv1.AdminClient) error) error {
	l := fc.leader()
	if l < 0 {
		return fmt.Errorf("no leader")
	}
	cc, err := grpc.NewClient(fc.eps[l], fc.dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	return f(wdsv1.NewAdminClient(cc))
}

// --- leader changes ---

// The leader-change tests' cell, as the TCP tests had it: a lone 3-node
// cell (no delegator), domain jobs (GLOBAL, 32 shards, TTL 5 s), 4
// consumers of 8 shards each.
const (
	changeTTL       = 5 * time.Second
	changeShards    = 32
	changeConsumers = 4
)

// leaderChangeConsumers creates jobs in fc (a lone 3-node cell), starts
// the consumers c0..c3 and waits until each runs 8 shards and the shard map
// agrees.
func (fc *fakeCell) leaderChangeConsumers() []*client.Consumer {
	fc.t.Helper()
	fc.createDomain("jobs", topology.KindGlobal, changeShards, changeTTL)
	var cons []*client.Consumer
	for i := range changeConsumers {
		cons = append(cons, fc.consumer(fmt.Sprintf("c%d", i), 0))
	}
	fc.waitBalanced(cons)
	return cons
}

// waitBalanced waits until every consumer runs its share of jobs and the
// shard map agrees.
func (fc *fakeCell) waitBalanced(cons []*client.Consumer) {
	fc.t.Helper()
	want := changeShards / len(cons)
	celltest.Eventually(fc.t, 10*time.Second, func() error {
		counts, err := fc.ownerCounts("jobs")
		if err != nil {
			return err
		}
		for i, c := range cons {
			id := fmt.Sprintf("c%d", i)
			if counts[id] != want || heldIn(c) != want {
				return fmt.Errorf("%s runs %d shards, the shard map says %d, want %d", id, heldIn(c), counts[id], want)
			}
		}
		return nil
	})
}

func tokensHeld(c *client.Consumer) []string {
	var out []string
	for _, s := range c.Held() {
		out = append(out, s.String())
	}
	slices.Sort(out)
	return out
}

// churnBase is what the consumers held, and had been revoked and lost,
// before a fault.
type churnBase struct {
	held           map[string][]string
	revokes, losts int
	intervals      int
}

func (fc *fakeCell) baseline(cons []*client.Consumer) churnBase {
	b := churnBase{held: map[string][]string{}, intervals: len(fc.history.Intervals())}
	for i, c := range cons {
		id := fmt.Sprintf("c%d", i)
		b.held[id] = tokensHeld(c)
		r, l := fc.counts(id)
		b.revokes += r
		b.losts += l
	}
	return b
}

// assertOpsResume checks that an admin write succeeds within 3 s of the
// fault.
func (fc *fakeCell) assertOpsResume(fault time.Time) {
	fc.t.Helper()
	celltest.Eventually(fc.t, time.Until(fault.Add(3*time.Second)), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		err := fc.onLeader(func(a wdsv1.AdminClient) error {
			_, err := a.CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: topology.DomainToProto(
				topology.Domain{Name: "after-fault", Kind: topology.KindUnit, Shards: 1, TTL: changeTTL})})
			return err
		})
		if err != nil && status.Code(err) != codes.AlreadyExists {
			return err
		}
		return nil
	})
	took := time.Since(fault)
	if took > 3*time.Second {
		fc.t.Errorf("operations resumed %v after the fault, want within 3 s", took)
	}
	fc.t.Logf("operations resumed %v after the fault", took)
}

// assertResumed checks that every consumer was welcomed again after the
// fault, on a node other than old (-1: any node).
func (fc *fakeCell) assertResumed(cons []*client.Consumer, fault time.Time, old int) {
	fc.t.Helper()
	celltest.Eventually(fc.t, 10*time.Second, func() error {
		for i := range cons {
			id := fmt.Sprintf("c%d", i)
			moved := false
			for _, e := range fc.eventsOf(id) {
				moved = moved || (e.Kind == client.EventWelcome && e.Time.After(fault) && (old < 0 || e.Endpoint != fc.eps[old]))
			}
			if !moved {
				return fmt.Errorf("%s has not resumed since the fault (old leader %d)", id, old)
			}
		}
		return nil
	})
	fc.t.Logf("every consumer resumed %v after the fault", time.Since(fault))
}

// assertKept checks, once a whole lease has passed since the fault (had a
// consumer not resumed in time, its leases would have lapsed by then),
// that the consumers hold what they held at base (same tokens; the shard
// map agrees), that nothing was revoked, lost or granted since, and that
// the history has no overlap.
func (fc *fakeCell) assertKept(cons []*client.Consumer, base churnBase, fault time.Time) {
	fc.t.Helper()
	time.Sleep(time.Until(fault.Add(lease.Params{TTL: changeTTL, Drift: lease.DefaultDrift}.LeaderHold() + 500*time.Millisecond)))
	want := changeShards / len(cons)
	celltest.Eventually(fc.t, 10*time.Second, func() error {
		for i, c := range cons {
			id := fmt.Sprintf("c%d", i)
			if got := tokensHeld(c); !slices.Equal(got, base.held[id]) {
				gone := 0
				for _, g := range base.held[id] {
					if !slices.Contains(got, g) {
						gone++
					}
				}
				return fmt.Errorf("%s holds %d grants, %d of the %d it held before are gone (now %v)", id, len(got), gone, len(base.held[id]), got)
			}
		}
		counts, err := fc.ownerCounts("jobs")
		if err != nil {
			return err
		}
		for i := range cons {
			if counts[fmt.Sprintf("c%d", i)] != want {
				return fmt.Errorf("shard map: %v", counts)
			}
		}
		return nil
	})
	now := fc.baseline(cons)
	if now.revokes != base.revokes || now.losts != base.losts {
		fc.t.Errorf("the fault caused %d revocations and %d lease losses, want 0", now.revokes-base.revokes, now.losts-base.losts)
	}
	if now.intervals != base.intervals {
		fc.t.Errorf("%d grants since the fault, want none", now.intervals-base.intervals)
	}
	for _, v := range fc.history.Check() {
		fc.t.Errorf("ownership violation: %s", v)
	}
}

// TestFakeTimeLeaderKillNoChurn: the leader dies; the consumers resume on
// the new leader and keep every grant, and operations resume within 3 s.
func TestFakeTimeLeaderKillNoChurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFakeCell(t, 3, nil)
		defer fc.close()
		cons := fc.leaderChangeConsumers()
		base := fc.baseline(cons)
		old := fc.leader()
		fault := time.Now()
		fc.kill(old)
		fc.assertOpsResume(fault)
		fc.assertResumed(cons, fault, old)
		fc.assertKept(cons, base, fault)
	})
}

// TestFakeTimeLeaderPartitionHealNoChurn: the leader's Raft is cut off
// from its followers while its clients stay connected to it. It stops
// acknowledging, the others elect a leader, the consumers move there and
// keep their grants; healed, the old leader rejoins, and still nothing
// moves.
func TestFakeTimeLeaderPartitionHealNoChurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFakeCell(t, 3, nil)
		defer fc.close()
		cons := fc.leaderChangeConsumers()
		base := fc.baseline(cons)
		old := fc.leader()
		fault := time.Now()
		fc.partitionRaft(old)
		fc.down[old] = true // not a candidate for leader() while cut off
		fc.assertOpsResume(fault)
		fc.assertResumed(cons, fault, old)
		fc.assertKept(cons, base, fault)
		fc.healRaft(old)
		fc.down[old] = false
		healed := time.Now()
		time.Sleep(time.Second) // let it rejoin; the assertions below poll
		fc.assertOpsResume(time.Now())
		fc.assertKept(cons, base, healed)
	})
}

// TestFakeTimeLeaderFreezeNoChurn: the leader hangs with its sockets open
// (a SIGSTOPped process, a black-holed host): its Raft is cut from the
// followers and every consumer's connection to it stalls. No Redirect or
// connection error tells the consumers anything; they must notice the
// silence, find the new leader and resume before their leases lapse: no
// revocation, no lost lease, same tokens, no overlap, operations resumed
// within 3 s.
func TestFakeTimeLeaderFreezeNoChurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFakeCell(t, 3, nil)
		defer fc.close()
		cons := fc.leaderChangeConsumers()
		// Let the consumers settle into heartbeats (each at its own
		// phase), so their last messages before the freeze are acks, not
		// the Welcome.
		time.Sleep(2 * time.Second)
		base := fc.baseline(cons)
		old := fc.leader()
		fault := time.Now()
		fc.partitionRaft(old)
		fc.down[old] = true
		fc.freezeTo(old)
		fc.assertOpsResume(fault)
		// Every consumer must have moved: welcomed again, elsewhere.
		fc.assertResumed(cons, fault, old)
		fc.assertKept(cons, base, fault)
	})
}

// TestFakeTimePartitionedLeaderStopsAcking tries to break contract (4): a
// consumer that can reach only the old leader keeps heartbeating it after
// the leader is cut off from its followers. The old leader must stop
// acknowledging within its confirmation window W, so the consumer's own
// library gives its shards up — at most W + T·(1−ε) after the cut — before
// the new leader, which holds inherited grants until
// accession + T·(1+ε) + L, hands them to the other consumer.
func TestFakeTimePartitionedLeaderStopsAcking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 3 * time.Second
		fc := newFakeCell(t, 3, nil)
		defer fc.close()
		fc.createDomain("jobs", topology.KindGlobal, 16, ttl)
		old := fc.leader()
		stuck := fc.consumer("stuck", 0, func(cfg *client.Config) { cfg.Endpoints = []string{fc.eps[old]} })
		fc.consumer("free", 0)
		celltest.Eventually(t, 10*time.Second, func() error {
			counts, err := fc.ownerCounts("jobs")
			if err != nil {
				return err
			}
			if counts["stuck"] != 8 || counts["free"] != 8 {
				return fmt.Errorf("shard map: %v", counts)
			}
			if n := heldIn(stuck); n != 8 {
				return fmt.Errorf("stuck runs %d shards", n) // the library runs a grant once acked
			}
			return nil
		})
		fault := time.Now()
		fc.partitionRaft(old)
		fc.down[old] = true
		celltest.Eventually(t, 20*time.Second, func() error {
			counts, err := fc.ownerCounts("jobs")
			if err != nil {
				return err
			}
			if counts["free"] != 16 {
				return fmt.Errorf("free holds %d of 16", counts["free"])
			}
			return nil
		})
		if _, lost := fc.counts("stuck"); lost != 8 {
			t.Errorf("the consumer stuck on the old leader lost %d leases, want 8", lost)
		}
		w := cell.DefaultConfig().Raft.ConfirmWindow
		bound := fault.Add(w + lease.Params{TTL: ttl, Drift: lease.DefaultDrift}.ClientHold())
		for _, e := range fc.eventsOf("stuck") {
			if e.Kind == client.EventLost && e.Time.After(bound) {
				t.Errorf("stuck lost %s %v after the cut, past W + T·(1−ε): the old leader acked past its window", e.Shard, e.Time.Sub(fault))
			}
		}
		for _, v := range fc.history.Check() {
			t.Errorf("ownership violation: %s", v)
		}
		fc.healRaft(old) // so that stuck, closing, finds the leader
	})
}

// TestFakeTimeCellRestartKeepsState: the whole cell stops and restarts from
// its data dirs; domains and grants are still there, and the consumers,
// reconnecting, keep their grants.
func TestFakeTimeCellRestartKeepsState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFakeCell(t, 3, nil)
		defer fc.close()
		cons := fc.leaderChangeConsumers()
		fc.createDomain("other", topology.KindUnit, 1, 10*time.Second)
		before, err := fc.shardMap("jobs")
		if err != nil {
			t.Fatal(err)
		}
		base := fc.baseline(cons)
		fault := time.Now()
		fc.stopAll()
		fc.startAll()
		after, err := fc.shardMap("jobs")
		if err != nil {
			t.Fatal(err)
		}
		if len(after.Shards) != len(before.Shards) {
			t.Fatalf("restarted cell has %d shards, had %d", len(after.Shards), len(before.Shards))
		}
		for i := range before.Shards {
			b, a := before.Shards[i], after.Shards[i]
			if a.Owner != b.Owner || a.Token.GetIndex() != b.Token.GetIndex() || a.State != b.State {
				t.Fatalf("shard %d: before %v, after restart %v", i, b, a)
			}
		}
		err = fc.onLeader(func(a wdsv1.AdminClient) error {
			l, err := a.ListDomains(context.Background(), &wdsv1.ListDomainsRequest{})
			if err == nil && len(l.Domains) != 2 {
				err = fmt.Errorf("domains after restart: %v", l.Domains)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// The consumers were disconnected for less than their lease: they
		// resume with the same grants.
		fc.assertOpsResume(time.Now())
		fc.assertResumed(cons, fault, -1)
		fc.assertKept(cons, base, fault)
	})
}
