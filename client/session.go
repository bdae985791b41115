package client

import (
	"context"
	"fmt"
	"time"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// A consumer's session protocol: one stream to the cell leader, opened by
// the transport. Hello (resuming the held grants), Welcome, then heartbeats
// out and grants, revocations, routing and acks in. What the messages mean
// for the leases is the lease book's; this file moves them.

// handshakeLimit bounds the wait for a Welcome (see session).
const handshakeLimit = 5 * time.Second

// session runs one stream to endpoint, until it ends.
func (c *Consumer) session(endpoint string) (end sessionEnd) {
	cc, err := c.tr.conns.get(endpoint)
	if err != nil {
		return sessionEnd{err: err}
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	// A node that accepts the connection but never answers (frozen, its
	// socket open) must not hold the session forever. The limit is
	// generous: a busy but healthy leader (a Join to commit, thousands of
	// sessions resuming at once) must be let finish, or the retries only
	// add to its queue. A hung node is avoided on the next attempt (run).
	handshake := time.AfterFunc(handshakeLimit, cancel)
	defer handshake.Stop()
	hsErr := func(err error) sessionEnd {
		if !handshake.Stop() {
			return sessionEnd{err: fmt.Errorf("%w: no Welcome from %s within %v", ErrUnavailable, endpoint, handshakeLimit)}
		}
		return sessionEnd{err: fromStatus(err)}
	}
	stream, err := wdsv1.NewSessionClient(cc).Connect(ctx)
	if err != nil {
		return hsErr(err)
	}
	as := &activeStream{stream: stream}

	c.mu.Lock()
	helloSeq := c.book.heartbeat(time.Now())
	hello := &wdsv1.Hello{
		Role: wdsv1.Role_ROLE_CONSUMER, ConsumerId: c.cfg.ID, Region: c.cfg.Region, Endpoint: c.cfg.Endpoint,
		Domains: c.cfg.Domains, Watch: c.cfg.Watch, SessionToken: c.token, Seq: helloSeq,
	}
	for _, s := range c.book.resumable() {
		hello.Held = append(hello.Held, s.grant())
	}
	c.mu.Unlock()
	if err := as.send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Hello{Hello: hello}}); err != nil {
		return hsErr(err)
	}
	first, err := stream.Recv()
	if err != nil {
		return hsErr(err)
	}
	if !handshake.Stop() {
		return hsErr(nil) // answered just as the limit passed
	}
	if rd := first.GetRedirect(); rd != nil {
		return sessionEnd{next: rd.GetLeaderEndpoint(), redirected: true, err: fmt.Errorf("%w: redirected: %s", ErrUnavailable, rd.GetReason())}
	}
	w := first.GetWelcome()
	if w == nil {
		return sessionEnd{err: fmt.Errorf("%w: expected Welcome, got %s", ErrUnavailable, messageName(first))}
	}
	end = sessionEnd{welcomed: true, nodeID: w.GetNodeId()}
	c.welcome(w, helloSeq, endpoint, as)
	defer func() {
		c.mu.Lock()
		if c.stream == as {
			c.stream = nil
		}
		c.mu.Unlock()
		_ = as.closeSend()
	}()

	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		c.heartbeat(ctx, cancel, as, endpoint, w.GetNodeId())
	}()
	defer func() {
		cancel()
		<-hbDone
		if end.next == "" {
			end.next = as.movedTo()
		}
	}()

	for {
		m, err := stream.Recv()
		if err != nil {
			end.err = fromStatus(err)
			return end
		}
		as.touch()
		switch msg := m.GetMsg().(type) {
		case *wdsv1.ServerMessage_HeartbeatAck:
			c.ack(msg.HeartbeatAck.GetSeq(), msg.HeartbeatAck.GetWithheld())
		case *wdsv1.ServerMessage_Grant:
			c.grant(msg.Grant.GetShards(), as)
		case *wdsv1.ServerMessage_Revoke:
			c.revoke(msg.Revoke)
		case *wdsv1.ServerMessage_Prepare:
			c.prepare(msg.Prepare)
		case *wdsv1.ServerMessage_Routing:
			if err := c.routing.apply(msg.Routing); err != nil {
				end.err = err
				return end
			}
		case *wdsv1.ServerMessage_Drained:
			c.events.push(Event{Kind: EventDrained, Time: time.Now()})
			c.drainOnce.Do(func() { close(c.drained) })
		case *wdsv1.ServerMessage_Redirect:
			end.next, end.redirected = msg.Redirect.GetLeaderEndpoint(), true
			end.err = fmt.Errorf("%w: redirected: %s", ErrUnavailable, msg.Redirect.GetReason())
			return end
		}
	}
}

// messageName names a server message's kind for errors ("welcome").
func messageName(m *wdsv1.ServerMessage) string {
	if m.GetMsg() == nil {
		return "an empty message"
	}
	return string(m.ProtoReflect().WhichOneof(m.ProtoReflect().Descriptor().Oneofs().ByName("msg")).Name())
}

// heartbeat sends a heartbeat at once and then every interval, and
// abandons a stream that went silent (a frozen or black-holed node): a new
// stream to another node must be set up while the lease still runs.
//
// Silence, not a missing ack, is the trigger, and it is watched by its own
// timer, not at heartbeat ticks: the stream is left 2.5 intervals after the
// last message of any kind. That tolerates one withheld ack (a leader whose
// confirmation is briefly stale answers the next heartbeat), and as the
// last ack arrives a round trip after its heartbeat's send time s, the
// switch comes near s + 2.5·interval, with about T/6 of the lease (valid
// until s + T·(1−ε), interval = T/3) left to resume on the new leader.
// Checked only at ticks, the switch came at s + 3·interval, after the
// lease had lapsed.
//
// Sooner when there is evidence: after 1.5 intervals of silence the
// locator asks every endpoint whether another node leads now (a hung
// leader is replaced by an election within about a second). If one does,
// the session moves there at once, with about half the lease to spare; if
// the other nodes still follow this one, nothing changes.
//
// A stream that keeps delivering while its acks are late (acks queued
// behind routing, or behind the library's own backlog under CPU load) is
// kept: only the leader serves consumers, so leaving would stop the
// heartbeats it does receive and add a reconnect — Hello, resume, routing
// snapshot — to an overloaded cell. A deposed leader ends its sessions with
// a Redirect. As a backstop, a stream that delivers but acks nothing for
// two TTLs is left too (a wedged node).
//
// The first heartbeat goes out at once: a Welcome that came late (a busy
// leader) leaves little of the lease its Hello started, and waiting an
// interval for the first renewal could let it lapse.
func (c *Consumer) heartbeat(ctx context.Context, cancel context.CancelFunc, as *activeStream, endpoint, nodeID string) {
	c.mu.Lock()
	interval := c.interval
	suspectAfter := interval + interval/2
	silentAfter := 2*interval + interval/2
	backstop := max(silentAfter, 2*c.book.minTTL())
	c.lastAck = time.Now()
	c.mu.Unlock()
	as.touch()
	beat := time.NewTicker(interval)
	defer beat.Stop()
	watch := time.NewTimer(suspectAfter)
	defer watch.Stop()
	suspecting := false
	send := func() bool {
		c.mu.Lock()
		seq := c.book.heartbeat(time.Now())
		c.mu.Unlock()
		return as.send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Heartbeat{Heartbeat: &wdsv1.Heartbeat{Seq: seq}}}) == nil
	}
	if !send() {
		cancel()
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-watch.C:
			now := time.Now()
			quiet := as.quiet(now)
			c.mu.Lock()
			unacked := now.Sub(c.lastAck)
			c.mu.Unlock()
			if quiet >= silentAfter || unacked >= backstop {
				c.log.Warn("session stream stalled; switching endpoint", "silent", quiet.Round(time.Millisecond), "unacked", unacked.Round(time.Millisecond))
				cancel()
				return
			}
			if quiet >= suspectAfter && !suspecting && !c.tr.pinned() {
				suspecting = true
				go c.lookElsewhere(ctx, cancel, as, endpoint, nodeID, silentAfter-quiet)
			}
			if quiet < suspectAfter {
				suspecting = false
				watch.Reset(min(suspectAfter-quiet, backstop-unacked))
			} else {
				watch.Reset(min(silentAfter-quiet, backstop-unacked))
			}
		case <-beat.C:
			if !send() {
				cancel()
				return
			}
		}
	}
}

// lookElsewhere asks every endpoint, for up to within, whether a node other
// than the silent one serving this session leads the cell now; if one
// does, the session ends and moves there.
func (c *Consumer) lookElsewhere(ctx context.Context, cancel context.CancelFunc, as *activeStream, endpoint, nodeID string, within time.Duration) {
	lctx, lcancel := context.WithTimeout(ctx, within)
	defer lcancel()
	other := func(id, ep string) bool { return id == nodeID || ep == endpoint }
	ep, err := c.tr.loc.find(lctx, time.Now(), pickLeader(other))
	if err != nil || as.quiet(time.Now()) < within {
		return // nothing found, or the stream spoke again meanwhile
	}
	c.log.Warn("session stream silent and another node leads; switching", "from", endpoint, "to", ep)
	as.moved.Store(&ep)
	cancel()
}
