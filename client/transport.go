package client

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// transport keeps one session stream open at a time, for a consumer or an
// observer: it finds a node to talk to (the locator asks every endpoint at
// once), opens a session there, and when the session ends decides where
// and when to open the next one. What a session does is the caller's
// (open); how sessions follow each other is the transport's.
//
// A consumer's sessions need the cell's leader (leader: true): a session
// that ends with a Redirect naming the leader goes there at once. An
// observer's sessions may use any node that answers.
type transport struct {
	endpoints []string
	conns     *connPool
	loc       *locator // nil with a pinned connection (Config.Conn): no other node to find
	leader    bool
}

func newTransport(endpoints []string, shared *grpc.ClientConn, pool *Pool, opts []grpc.DialOption, leader bool) *transport {
	t := &transport{endpoints: endpoints, conns: newConnPool(shared, pool, opts), leader: leader}
	if shared == nil {
		t.loc = t.conns.locator(endpoints)
	}
	return t
}

func (t *transport) pinned() bool { return t.loc == nil }

// close closes the connections dialed for this transport only.
func (t *transport) close() { t.conns.close() }

// sessionEnd is how a session ended.
type sessionEnd struct {
	// next is where to go now, when known: the leader a Redirect named,
	// or the one found while the stream was silent.
	next string
	// redirected: a Redirect ended the session (the node does not lead).
	redirected bool
	// welcomed: the session was established (a consumer was welcomed; an
	// observer received routing).
	welcomed bool
	nodeID   string // the node that served the session, if it said
	err      error
}

// avoidFor is how long run avoids an endpoint whose session just failed:
// about the time a cell takes to elect a new leader.
const avoidFor = 1500 * time.Millisecond

// maxRetryPause caps the pause between consumer sessions that fail without
// a Welcome at a node that says it leads (a Join that cannot commit).
const maxRetryPause = time.Second

// maxObserverPause caps the pause between observer sessions.
const maxObserverPause = 2 * time.Second

// notFoundGrace is how long a session keeps retrying NotFound: a node
// that has not yet applied a domain's creation answers NotFound for a few
// milliseconds after `wds domain create` returned, and in a federation a
// cell learns the global catalog up to a renewal interval later.
const notFoundGrace = 2 * time.Second

// avoidList is the endpoints and node ids whose sessions just failed.
type avoidList struct {
	until map[string]time.Time
}

func (a *avoidList) add(keys ...string) {
	if a.until == nil {
		a.until = map[string]time.Time{}
	}
	for _, k := range keys {
		if k != "" {
			a.until[k] = time.Now().Add(avoidFor)
		}
	}
}

func (a *avoidList) has(keys ...string) bool {
	now := time.Now()
	for _, k := range keys {
		if u, ok := a.until[k]; ok && now.Before(u) {
			return true
		}
	}
	return false
}

func (a *avoidList) clear() { a.until = nil }

// run opens sessions with open until ctx ends (it returns nil) or a
// session ends with an error retrying cannot fix (it returns that error and
// the endpoint that answered it).
// ended, if set, is told of every session's end before the next opens.
//
// It finds a node by asking every endpoint at once (locator); a consumer's
// session that ends with a Redirect naming the leader goes there at once.
// No redirect counts as a failure and nothing backs off while the cell
// elects a leader: the locator paces its questions (every 50-100 ms), so a
// consumer is welcomed by a new leader within that of its accession, well
// inside its lease. An endpoint whose session just failed is avoided for
// avoidFor (about an election): peers that have not yet noticed a hung
// leader still name it for up to their heartbeat timeout. Only for a
// while: if it was the healthy leader after all (our own process paused),
// it is the only node that can serve us.
func (t *transport) run(ctx context.Context, open func(endpoint string) sessionEnd, ended func(endpoint string, end sessionEnd)) (string, error) {
	target := ""
	var avoid avoidList
	multi := len(t.endpoints) > 1
	skip := func(nodeID, ep string) bool { return multi && avoid.has(nodeID, ep) }
	pick := pickAny(len(t.endpoints), skip)
	if t.leader {
		pick = pickLeader(skip)
	}
	fails, hops := 0, 0
	var since, notFoundSince time.Time
	for ctx.Err() == nil {
		if target == "" {
			if t.pinned() {
				target = t.endpoints[0]
			} else {
				ep, err := t.loc.find(ctx, since, pick)
				if err != nil {
					return "", nil
				}
				target = ep
			}
		}
		ep := target
		target = ""
		end := open(ep)
		if ctx.Err() != nil {
			return "", nil
		}
		since = time.Now()
		err := end.err
		if errors.Is(err, ErrNotFound) {
			if notFoundSince.IsZero() {
				notFoundSince = time.Now()
			}
			if time.Since(notFoundSince) < notFoundGrace {
				err = nil // a domain just created: retry below
			}
		} else {
			notFoundSince = time.Time{}
		}
		if err != nil && permanent(err) {
			return ep, err
		}
		if ended != nil {
			ended(ep, end)
		}
		var d time.Duration
		if t.leader {
			d = t.next(ep, end, &avoid, &fails, &hops, &target, skip)
		} else {
			// Any node serves observers: try another one, pausing more
			// after each session that served nothing.
			if end.welcomed {
				fails = 0
			}
			avoid.add(ep)
			fails++
			d = min(50*time.Millisecond<<min(fails-1, 5), maxObserverPause)
			d = d/2 + rand.N(d/2+1)
		}
		if d > 0 {
			select {
			case <-ctx.Done():
				return "", nil
			case <-time.After(d):
			}
		}
	}
	return "", nil
}

// next decides, for a consumer's session to ep that ended, where the next
// one goes (target, when a redirect named the leader) and how long to
// pause first.
func (t *transport) next(ep string, end sessionEnd, avoid *avoidList, fails, hops *int, target *string, skip func(nodeID, ep string) bool) time.Duration {
	err := end.err
	if end.welcomed {
		*fails, *hops = 0, 0
		avoid.clear()
	}
	switch {
	case err != nil && !end.redirected && end.next == "" && errors.Is(err, ErrUnavailable):
		// The node failed us (gone, hung, stalled): ask the others.
		avoid.add(ep, end.nodeID)
		if !end.welcomed {
			*fails++
		}
	case err != nil && !end.welcomed && (!end.redirected || t.pinned()):
		// Refused (a duplicate id) or, on a pinned connection, sent
		// elsewhere: ask again, but not in a tight loop.
		*fails++
	}
	if end.next != "" && end.next != ep && !skip("", end.next) && *hops < 2 && !t.pinned() {
		// Follow a named leader at once; a chain of stale redirects
		// falls back to asking every endpoint.
		*target = end.next
		*hops++
	} else if end.redirected {
		*hops = 0
	}
	var d time.Duration
	if *fails > 0 && *target == "" {
		// A node that says it leads but cannot admit us: do not spin.
		d = min(50*time.Millisecond<<min(*fails-1, 5), maxRetryPause)
		d = d/2 + rand.N(d/2+1)
	}
	if errors.Is(err, ErrDuplicateConsumer) {
		d = max(d, 500*time.Millisecond)
	}
	return d
}

// logSessionEnd logs how a consumer's session ended.
func logSessionEnd(log *slog.Logger, ep string, end sessionEnd) {
	switch {
	case end.redirected && !end.welcomed:
		// Sent on before a session began: routine, not a disconnection.
		log.Debug("redirected", "endpoint", ep, "leader", end.next, "reason", end.err)
	case end.err != nil:
		log.Debug("session ended", "endpoint", ep, "err", end.err)
	}
}

// activeStream is an open session stream: sends are serialized.
type activeStream struct {
	mu     sync.Mutex
	stream wdsv1.Session_ConnectClient
	// recvClock: when the session last read a message of any kind, proof
	// the node is alive and sending even when acks queue behind routing.
	recvClock
	// moved is the endpoint of another node found leading while this
	// stream was silent (heartbeat): the session ends and goes there.
	moved atomic.Pointer[string]
}

func (a *activeStream) movedTo() string {
	if p := a.moved.Load(); p != nil {
		return *p
	}
	return ""
}

func (a *activeStream) send(m *wdsv1.ClientMessage) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stream.Send(m)
}

// closeSend half-closes the stream; like Send it must not run concurrently
// with another Send.
func (a *activeStream) closeSend() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stream.CloseSend()
}

// recvClock records when a stream last received anything, on the
// monotonic clock, for the silence checks of consumers and observers.
type recvClock struct{ last atomic.Int64 } // nanoseconds since clockBase

var clockBase = time.Now()

func (r *recvClock) touch() { r.last.Store(int64(time.Since(clockBase))) }

// quiet is how long the stream has received nothing.
func (r *recvClock) quiet(now time.Time) time.Duration {
	return now.Sub(clockBase) - time.Duration(r.last.Load())
}
