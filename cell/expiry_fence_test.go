package cell

// Hooks for the expiry-fence tests (TestFakeTimeNoAckAfterPlannedExpiry and
// TestFakeTimeStaleExpiryDecisionIsDropped in faketime_lease_test.go, which
// play both orders of an ack and an expiry decision on fake time).
// Package cell_test cannot reach the leader; these exported names, compiled
// only into the test binary, let a test take the leader's balancing over
// and play a round step by step — plan, fence, commit — putting an ack
// between the steps.

import (
	"context"
	"time"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
)

// BalanceRounds is a ready leader's balancing, played by a test.
type BalanceRounds struct {
	l      *leader
	fenced []*consumerLease
}

// TakeOverBalancing stops the balancing loop (and the delegation renewal
// loop) of n, which must be the ready leader; the leader serves its
// sessions on, and the test plays its rounds. Nil when n does not lead.
func TakeOverBalancing(n *Node) *BalanceRounds {
	l := n.currentLeader()
	if l == nil {
		return nil
	}
	l.cancel()
	l.wg.Wait()
	return &BalanceRounds{l: l}
}

// Plan plans a round at now, from the lease book as it is now.
func (b *BalanceRounds) Plan(now time.Time) []*cellv1.Op { return b.l.plan(now) }

// Fence fences the last planned round's expiries (fenceExpiries): it
// returns the ops still to propose and how many leases it fenced. The
// fences stay until Commit.
func (b *BalanceRounds) Fence(ops []*cellv1.Op) ([]*cellv1.Op, int) {
	kept, fenced := b.l.fenceExpiries(ops)
	b.fenced = append(b.fenced, fenced...)
	return kept, len(fenced)
}

// Commit proposes ops and, once they are committed and dispatched, lifts
// the fences, as balanceLoop does.
func (b *BalanceRounds) Commit(ctx context.Context, ops []*cellv1.Op) error {
	if len(ops) > 0 {
		if _, err := b.l.n.propose(ctx, ops...); err != nil {
			return err
		}
	}
	unfence(b.fenced)
	b.fenced = nil
	return nil
}

// Anchor is the consumer's lease anchor (zero without a lease record).
func (b *BalanceRounds) Anchor(consumer string) time.Time {
	b.l.mu.Lock()
	cl := b.l.leases[consumer]
	b.l.mu.Unlock()
	if cl == nil {
		return time.Time{}
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.anchor
}

// QueuedAcks counts the heartbeat acks queued on the consumer's current
// stream that the sender has not yet taken up.
func (b *BalanceRounds) QueuedAcks(consumer string) int {
	b.l.mu.Lock()
	cl := b.l.leases[consumer]
	b.l.mu.Unlock()
	if cl == nil {
		return 0
	}
	cl.mu.Lock()
	conn := cl.conn
	cl.mu.Unlock()
	if conn == nil {
		return 0
	}
	conn.mu.Lock()
	defer conn.mu.Unlock()
	n := 0
	for _, it := range conn.queue {
		if it.kind == itemAck {
			n++
		}
	}
	return n
}
