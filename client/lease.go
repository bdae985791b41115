package client

import (
	"time"

	"github.com/wdsio/wds/topology"
)

// The lease book is the consumer's side of the lease contract
// (docs/DESIGN.md, clauses (1), (3) and (5)) as a pure state machine: what
// the consumer holds, until when each domain's lease is valid, and what to
// do about it. It reads no clock (every call is given now), starts no
// goroutine and sends nothing: each call returns the actions the Consumer
// carries out — start a handler, cancel a handler's context, send a
// Release — in order. That keeps the contract testable with plain tables.
//
// Validity is per domain: one heartbeat covers every grant of the session,
// and an ack may withhold some domains (their delegation to the cell is
// lapsing). A shard is (domain, key-space region, range start).

// shardKey names a shard: a shard is (domain, key-space region, range
// start); the region is empty for GLOBAL and UNIT domains.
type shardKey struct {
	domain string
	region string
	from   topology.Bound
}

type heldState uint8

const (
	heldPending heldState = iota // granted, waiting for a valid lease to start
	heldRunning
	heldRevoked // cancelled by the cell (or returned by the handler)
	heldLost    // cancelled at the lease deadline
)

func (s heldState) String() string {
	return [...]string{"pending", "running", "revoked", "lost"}[s]
}

// held is one shard the consumer was granted.
type held struct {
	shard   Shard
	state   heldState
	run     uint64 // the handler run, once started (see leaseBook.runs)
	regrant *Shard // a newer grant that arrived while the handler was stopping
}

// actionOp is what the Consumer must do for one action.
type actionOp uint8

const (
	// opStart: run a handler for shard, as run; report EventGrant.
	opStart actionOp = iota + 1
	// opStop: cancel the context of handler run; report event (EventRevoke
	// or EventLost) at time, with reason.
	opStop
	// opRelease: send a Release of shard (with its token); report event
	// if set (EventRelease, once a handler returned).
	opRelease
)

// action is one step the Consumer carries out for the lease book.
type action struct {
	op     actionOp
	shard  Shard
	run    uint64
	event  EventKind
	time   time.Time
	reason string
}

// leaseBook is the consumer's lease state. Not safe for concurrent use: the
// Consumer calls it under its mutex.
type leaseBook struct {
	ttls     map[string]time.Duration // per domain: the lease TTL
	drift    float64                  // ε
	valid    map[string]time.Time     // per domain: lease valid until (local monotonic)
	withheld map[string]bool          // per domain: the last ack did not extend it
	shards   map[shardKey]*held
	runs     map[uint64]*held            // handlers running or stopping, by run
	ended    map[shardKey]topology.Token // newest token given up, per shard
	seq      uint64                      // last heartbeat sequence number
	sent     map[uint64]time.Time        // heartbeat send times, by seq
	lastRun  uint64
	closed   bool // nothing starts any more
}

func newLeaseBook() *leaseBook {
	return &leaseBook{
		ttls: map[string]time.Duration{}, valid: map[string]time.Time{}, withheld: map[string]bool{},
		shards: map[shardKey]*held{}, runs: map[uint64]*held{}, ended: map[shardKey]topology.Token{},
		sent: map[uint64]time.Time{},
	}
}

// heartbeat records a heartbeat (or a Hello, which counts as one) sent at
// now and returns its sequence number. Only the latest 64 are remembered:
// an ack of an older one extends nothing.
func (b *leaseBook) heartbeat(now time.Time) uint64 {
	b.seq++
	b.sent[b.seq] = now
	for s := range b.sent {
		if b.seq-s > 64 {
			delete(b.sent, s)
		}
	}
	return b.seq
}

// setLeases records the drift and the TTLs a Welcome announced.
func (b *leaseBook) setLeases(drift float64, ttls map[string]time.Duration) {
	b.drift = drift
	for d, ttl := range ttls {
		b.ttls[d] = ttl
	}
}

// minTTL is the shortest lease TTL of the session's domains (0 if none).
func (b *leaseBook) minTTL() time.Duration {
	var m time.Duration
	for _, ttl := range b.ttls {
		if m == 0 || ttl < m {
			m = ttl
		}
	}
	return m
}

// ack applies contract (1) to the ack of heartbeat seq, arriving at now:
// the grants not revoked before it are valid until the heartbeat's send
// time + TTL·(1−ε) — except in the withheld domains (contract (5): the
// cell's delegation would not cover the extension), which keep their old
// validity and start no new grant until an ack extends them again. A lease
// that lapsed before now stays lapsed. ok is false for an unknown (or
// repeated) seq, which changes nothing.
func (b *leaseBook) ack(seq uint64, withheld []string, now time.Time) (acts []action, ok bool) {
	sent, ok := b.sent[seq]
	if !ok {
		return nil, false
	}
	delete(b.sent, seq)
	// A lease that lapsed before this ack arrived stays lapsed: the shard
	// must not run on across the gap just because the lease timer has not
	// fired yet (the leader may have given it away meanwhile).
	acts, _ = b.expire(now)
	clear(b.withheld)
	for _, d := range withheld {
		b.withheld[d] = true
	}
	for d, ttl := range b.ttls {
		if b.withheld[d] {
			continue
		}
		until := sent.Add(time.Duration(float64(ttl) * (1 - b.drift)))
		if until.After(b.valid[d]) {
			b.valid[d] = until
		}
	}
	return b.startPending(now, acts), true
}

// reconcile applies a Welcome's authoritative list of grants: a running
// shard it does not list (or lists with another token) is revoked, a
// pending one dropped, and a newer grant waiting for an old handler that it
// does not list is dropped and released (a handover waiting on it may go
// ahead now rather than at its frozen deadline). The grants themselves are
// then given to grant.
func (b *leaseBook) reconcile(grants []Shard, now time.Time) (acts []action) {
	auth := map[shardKey]topology.Token{}
	for _, s := range grants {
		auth[s.key()] = s.Token
	}
	for k, h := range b.shards {
		tok, ok := auth[k]
		if h.regrant != nil && (!ok || tok != h.regrant.Token) {
			// Moved away while we were gone: it must never start.
			b.end(k, h.regrant.Token)
			acts = append(acts, action{op: opRelease, shard: *h.regrant})
			h.regrant = nil
		}
		if ok && tok == h.shard.Token {
			continue
		}
		switch h.state {
		case heldRunning:
			h.state = heldRevoked
			acts = append(acts, action{op: opStop, shard: h.shard, run: h.run, event: EventRevoke, time: now, reason: "the cell no longer lists this grant"})
		case heldPending:
			delete(b.shards, k)
		}
	}
	return acts
}

// grant records new grants and starts those whose domain lease is valid.
// A grant of a token already given up (revoked, lost or returned: the cell
// has not seen our release yet) is released again, never started.
func (b *leaseBook) grant(grants []Shard, now time.Time) (acts []action) {
	for _, s := range grants {
		k := s.key()
		if end, ok := b.ended[k]; ok && !end.Less(s.Token) {
			acts = append(acts, action{op: opRelease, shard: s})
			continue
		}
		if h, ok := b.shards[k]; ok {
			if h.shard.Token == s.Token {
				continue // duplicate
			}
			if h.state == heldRevoked || h.state == heldLost {
				s := s
				h.regrant = &s // start once the old handler returned
				continue
			}
			if h.state == heldRunning {
				// A newer token for a shard we run: only possible if our
				// release was applied and the shard re-granted to us. Keep
				// running under the newer token.
				h.shard.Token = s.Token
				continue
			}
		}
		b.shards[k] = &held{shard: s, state: heldPending}
	}
	return b.startPending(now, acts)
}

// startPending starts the pending shards whose domain lease is valid at
// now and was not withheld by the last ack: a grant must not start under
// validity the cell no longer vouches for.
func (b *leaseBook) startPending(now time.Time, acts []action) []action {
	if b.closed {
		return acts
	}
	for _, h := range b.shards {
		d := h.shard.Domain
		if h.state != heldPending || b.withheld[d] || !now.Before(b.valid[d]) {
			continue
		}
		b.lastRun++
		h.state, h.run = heldRunning, b.lastRun
		b.runs[h.run] = h
		acts = append(acts, action{op: opStart, shard: h.shard, run: h.run, time: now})
	}
	return acts
}

// revoke applies a Revoke: each shard (its token zero: whichever grant we
// hold) is stopped if it runs, dropped and released if it had not started.
// A newer grant waiting for the old handler, revoked before it ever ran, is
// dropped and released at once.
func (b *leaseBook) revoke(shards []Shard, reason string, now time.Time) (acts []action) {
	for _, s := range shards {
		k := s.key()
		h, ok := b.shards[k]
		if !ok {
			continue
		}
		if !s.Token.IsZero() && s.Token != h.shard.Token {
			if h.regrant != nil && h.regrant.Token == s.Token {
				b.end(k, s.Token)
				h.regrant = nil
				acts = append(acts, action{op: opRelease, shard: s})
			}
			continue
		}
		switch h.state {
		case heldRunning:
			h.state = heldRevoked
			acts = append(acts, action{op: opStop, shard: h.shard, run: h.run, event: EventRevoke, time: now, reason: reason})
		case heldPending:
			delete(b.shards, k)
			acts = append(acts, action{op: opRelease, shard: s})
		}
	}
	return acts
}

// returned records that the handler of run returned at now: on its own (a
// voluntary release) or after its context was cancelled. The shard is
// released; a newer grant that waited for it is granted now.
func (b *leaseBook) returned(run uint64, now time.Time) (acts []action) {
	h, ok := b.runs[run]
	if !ok {
		return nil
	}
	delete(b.runs, run)
	k := h.shard.key()
	if h.state == heldRunning {
		h.state = heldRevoked
		acts = append(acts, action{op: opStop, shard: h.shard, run: run, event: EventRevoke, time: now, reason: "handler returned"})
	}
	if b.shards[k] == h {
		delete(b.shards, k)
	}
	b.end(k, h.shard.Token)
	acts = append(acts, action{op: opRelease, shard: h.shard, event: EventRelease, time: now})
	if h.regrant != nil && !b.closed {
		acts = append(acts, b.grant([]Shard{*h.regrant}, now)...)
	}
	return acts
}

// end records that every grant of shard k up to tok is given up, so a late
// or repeated Grant of one of them is released, never started.
func (b *leaseBook) end(k shardKey, tok topology.Token) {
	if end, ok := b.ended[k]; !ok || end.Less(tok) {
		b.ended[k] = tok
	}
}

// expire ends every running shard whose lease has lapsed at now (contract
// (1)), reporting the loss at the deadline itself, and returns the earliest
// deadline still ahead (zero if none).
func (b *leaseBook) expire(now time.Time) (acts []action, next time.Time) {
	for _, h := range b.shards {
		if h.state != heldRunning {
			continue
		}
		until := b.valid[h.shard.Domain]
		if !now.Before(until) {
			h.state = heldLost
			// The belief ended at the deadline, even if we noticed late.
			acts = append(acts, action{op: opStop, shard: h.shard, run: h.run, event: EventLost, time: until, reason: "lease expired"})
			continue
		}
		if next.IsZero() || until.Before(next) {
			next = until
		}
	}
	return acts, next
}

// close stops every running shard (the consumer is closing); nothing
// starts afterwards.
func (b *leaseBook) close(reason string, now time.Time) (acts []action) {
	b.closed = true
	for _, h := range b.shards {
		if h.state == heldRunning {
			h.state = heldRevoked
			acts = append(acts, action{op: opStop, shard: h.shard, run: h.run, event: EventRevoke, time: now, reason: reason})
		}
	}
	return acts
}

// running lists the shards whose handlers run.
func (b *leaseBook) running() []Shard {
	var out []Shard
	for _, h := range b.shards {
		if h.state == heldRunning {
			out = append(out, h.shard)
		}
	}
	return out
}

// resumable lists the grants a resuming Hello names: running or waiting
// to start.
func (b *leaseBook) resumable() []Shard {
	var out []Shard
	for _, h := range b.shards {
		if h.state == heldRunning || h.state == heldPending {
			out = append(out, h.shard)
		}
	}
	return out
}
