package cell

import (
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/wdsio/wds/internal/rpcerr"
	"github.com/wdsio/wds/internal/wire"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// itemKind is the kind of a queued outbound message.
type itemKind uint8

const (
	itemWelcome itemKind = iota + 1
	itemAck
	itemGrant
	itemRevoke
	itemPrepare
	itemDrained
)

// outItem is one queued outbound message of a session. Items are sent in
// queue order; that order is what makes "a revocation is sent before any
// later ack" hold.
type outItem struct {
	kind  itemKind
	index uint64 // log index of the effect (0: not an effect)

	// ack / welcome
	seq      uint64
	received time.Time

	// grant / revoke / prepare
	domain string
	region string
	rng    topology.Range
	token  topology.Token
	reason wdsv1.RevokeReason

	// welcome
	welcome *wdsv1.Welcome
	frozen  []grantKey // revoked grants the welcome leaves out

}

// sessionConn is one session stream: two outbound queues drained by the
// stream's handler goroutine, and the receive loop in another.
//
// Lease-critical items (welcome, acks, grants, revokes, prepares, drained)
// go in order on one queue and always go first; routing, informational and
// possibly large (a 20,000-entry table), goes on the other and is written
// one frame at a time, checking for critical items between frames. A
// consumer whose client is slow to read routing thus still gets its acks
// as soon as the stream moves at all, and its lease does not lapse behind
// a table.
type sessionConn struct {
	stream wdsv1.Session_ConnectServer
	owner  connOwner

	mu          sync.Mutex
	queue       []outItem // lease-critical, in order
	routingQ    []wire.RawFrame
	resyncDue   bool // send a fresh snapshot once routingQ drained
	routingMsgs int
	resyncing   bool // routing dropped; a snapshot is due
	watermark   uint64
	closed      bool
	closeErr    error
	redirect    *wdsv1.Redirect
	wake        chan struct{}
	done        chan struct{}
	maxCritical int
	maxRouting  int
	sub         *subscription
	// delegationRevokes counts, per domain, queued revocations of a
	// relinquished delegation not yet sent. Acks withhold those domains
	// until they are out: the leader stops withholding a domain as soon as
	// its relinquish applies, and an ack queued ahead of the revocations
	// must not extend the grants they revoke.
	delegationRevokes map[string]int
}

// connOwner is what the sender consults while sending: the leader for
// consumer sessions (lease bookkeeping), nothing for observers.
type connOwner interface {
	// beforeAck is called just before a heartbeat ack is sent; it returns
	// false to drop the ack (leadership not confirmed), and the domains
	// the ack must not extend (their delegation is unknown or lapsing).
	beforeAck(c *sessionConn, received time.Time) (ok bool, withheld []string)
	// beforeRevoke freezes the deadlines of revoked grants as they are sent.
	beforeRevoke(c *sessionConn, keys []grantKey)
	// resync asks the routing hub for a fresh snapshot.
	resync(c *sessionConn)
}

func newSessionConn(stream wdsv1.Session_ConnectServer, owner connOwner, maxCritical, maxRouting int) *sessionConn {
	return &sessionConn{
		stream:      stream,
		owner:       owner,
		wake:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		maxCritical: maxCritical,
		maxRouting:  maxRouting,
	}
}

func (c *sessionConn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// enqueue adds a lease-critical item. A stream that lets too many pile up
// is closed: the client will reconnect and resume.
func (c *sessionConn) enqueue(it outItem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if len(c.queue) >= c.maxCritical {
		// Unavailable, not ResourceExhausted: the client should reconnect
		// and resume, not give up.
		c.closeLocked(rpcerr.New(codes.Unavailable, rpcerr.ReasonSlowConsumer, "session stream too slow: outbound queue full; reconnect"), nil)
		return
	}
	if it.kind == itemRevoke && it.reason == wdsv1.RevokeReason_REVOKE_REASON_DELEGATION {
		if c.delegationRevokes == nil {
			c.delegationRevokes = map[string]int{}
		}
		c.delegationRevokes[it.domain]++
	}
	c.queue = append(c.queue, it)
	c.signal()
}

// withheld adds to withheld the domains with delegation revocations
// still queued.
func (c *sessionConn) withheld(withheld []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for d, n := range c.delegationRevokes {
		if n > 0 && !slices.Contains(withheld, d) {
			withheld = append(withheld, d)
		}
	}
	slices.Sort(withheld)
	return withheld
}

// sentDelegationRevokes marks delegation revocations as sent.
func (c *sessionConn) sentDelegationRevokes(items []outItem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range items {
		if it.kind == itemRevoke && it.reason == wdsv1.RevokeReason_REVOKE_REASON_DELEGATION && c.delegationRevokes[it.domain] > 0 {
			c.delegationRevokes[it.domain]--
			if c.delegationRevokes[it.domain] == 0 {
				delete(c.delegationRevokes, it.domain)
			}
		}
	}
}

// enqueueFront puts the welcome ahead of effects queued while it was built,
// and sets the watermark below which queued effects are already reflected
// in it.
func (c *sessionConn) enqueueWelcome(it outItem, watermark uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watermark = watermark
	c.queue = append([]outItem{it}, c.queue...)
	c.signal()
}

// deliverRouting is the routing hub's callback (called under the hub lock).
func (c *sessionConn) deliverRouting(b routingBatch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.resyncing && !b.snapshot {
		return // a snapshot is coming; deltas before it are moot
	}
	if b.snapshot {
		c.resyncing = false
	}
	if !b.snapshot && c.routingMsgs+len(b.frames) > c.maxRouting {
		// Slow stream: drop the queued deltas and send a snapshot once the
		// stream catches up.
		c.routingQ = nil
		c.routingMsgs = 0
		c.resyncing = true
		c.resyncDue = true
		c.signal()
		return
	}
	c.routingQ = append(c.routingQ, b.frames...)
	c.routingMsgs += len(b.frames)
	c.signal()
}

// close ends the session: the sender sends redirect (if any) and the
// handler returns err.
func (c *sessionConn) close(err error, redirect *wdsv1.Redirect) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked(err, redirect)
}

func (c *sessionConn) closeLocked(err error, redirect *wdsv1.Redirect) {
	if c.closed {
		return
	}
	c.closed = true
	c.closeErr = err
	c.redirect = redirect
	close(c.done)
}

// run is the sender loop; it returns the error the handler should return.
func (c *sessionConn) run() error {
	for {
		c.mu.Lock()
		if c.closed {
			redirect, err := c.redirect, c.closeErr
			c.mu.Unlock()
			if redirect != nil {
				_ = c.stream.Send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Redirect{Redirect: redirect}})
			}
			return err
		}
		watermark := c.watermark
		if batch := c.queue; len(batch) > 0 {
			c.queue = nil
			c.mu.Unlock()
			if err := c.sendBatch(batch, watermark); err != nil {
				c.close(err, nil)
			}
			continue
		}
		if len(c.routingQ) > 0 {
			f := c.routingQ[0]
			c.routingQ[0] = nil
			c.routingQ = c.routingQ[1:]
			c.routingMsgs--
			c.mu.Unlock()
			// No node-wide bound on concurrent routing writes: a write
			// blocked on a frozen client's flow control would hold a slot
			// and stall routing for everyone.
			if err := c.stream.SendMsg(f); err != nil {
				c.close(err, nil)
			}
			continue
		}
		if c.resyncDue {
			c.resyncDue = false
			c.mu.Unlock()
			c.owner.resync(c) // queues a snapshot
			continue
		}
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-c.done:
		}
	}
}

// sendBatch sends queued items in order, merging runs of grants, revokes
// (of one reason) and prepares into single messages.
func (c *sessionConn) sendBatch(batch []outItem, watermark uint64) error {
	for i := 0; i < len(batch); {
		it := batch[i]
		if it.index != 0 && it.index <= watermark {
			i++ // already reflected in the welcome
			continue
		}
		switch it.kind {
		case itemWelcome:
			c.owner.beforeRevoke(c, it.frozen)
			if it.welcome.GetAcked() {
				ok, withheld := c.owner.beforeAck(c, it.received)
				it.welcome.Acked = ok
				it.welcome.Withheld = c.withheld(withheld)
			}
			if err := c.send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Welcome{Welcome: it.welcome}}); err != nil {
				return err
			}
			i++
		case itemAck:
			ok, withheld := c.owner.beforeAck(c, it.received)
			if ok {
				withheld = c.withheld(withheld)
				if err := c.send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_HeartbeatAck{HeartbeatAck: &wdsv1.HeartbeatAck{Seq: it.seq, Withheld: withheld}}}); err != nil {
					return err
				}
			}
			i++
		case itemGrant:
			g := &wdsv1.Grant{}
			for ; i < len(batch) && batch[i].kind == itemGrant; i++ {
				if b := batch[i]; b.index == 0 || b.index > watermark {
					g.Shards = append(g.Shards, &wdsv1.ShardGrant{Domain: b.domain, Region: b.region, Range: topology.RangeToProto(b.rng), Token: topology.TokenToProto(b.token)})
				}
			}
			if len(g.Shards) == 0 {
				continue
			}
			if err := c.send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Grant{Grant: g}}); err != nil {
				return err
			}
		case itemRevoke:
			r := &wdsv1.Revoke{Reason: it.reason}
			var keys []grantKey
			first := i
			for ; i < len(batch) && batch[i].kind == itemRevoke && batch[i].reason == it.reason; i++ {
				if b := batch[i]; b.index == 0 || b.index > watermark {
					r.Shards = append(r.Shards, &wdsv1.ShardRef{Domain: b.domain, Region: b.region, Range: topology.RangeToProto(b.rng), Token: topology.TokenToProto(b.token)})
					keys = append(keys, grantKey{Domain: b.domain, Region: b.region, From: b.rng.From, Token: b.token})
				}
			}
			// Freeze before sending: acks sent from here on do not extend
			// these grants in the client's view.
			c.owner.beforeRevoke(c, keys)
			if len(r.Shards) > 0 {
				if err := c.send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Revoke{Revoke: r}}); err != nil {
					return err
				}
			}
			// Sent (or already reflected in the welcome): later acks may
			// extend the domain's other grants again.
			c.sentDelegationRevokes(batch[first:i])
		case itemPrepare:
			p := &wdsv1.Prepare{}
			for ; i < len(batch) && batch[i].kind == itemPrepare; i++ {
				if b := batch[i]; b.index == 0 || b.index > watermark {
					p.Shards = append(p.Shards, &wdsv1.ShardRef{Domain: b.domain, Region: b.region, Range: topology.RangeToProto(b.rng)})
				}
			}
			if len(p.Shards) == 0 {
				continue
			}
			if err := c.send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Prepare{Prepare: p}}); err != nil {
				return err
			}
		case itemDrained:
			if err := c.send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Drained{Drained: &wdsv1.Drained{}}}); err != nil {
				return err
			}
			i++
		default:
			i++
		}
	}
	return nil
}

func (c *sessionConn) send(m *wdsv1.ServerMessage) error {
	return c.stream.Send(m)
}
