package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// DefaultEndpoint is where `wds dev` serves its first node.
const DefaultEndpoint = "127.0.0.1:7100"

// Shard is a granted shard: exclusive ownership of Range of Domain under
// Token, until the handler's context is cancelled.
type Shard struct {
	Domain string
	// Region is the key space's region for a REGIONAL domain (after a
	// regional failover a consumer may serve another region's key space of
	// the domain); empty for GLOBAL and UNIT domains.
	Region string
	Range  topology.Range
	Token  topology.Token
}

func (s Shard) String() string { return s.Domain + s.Range.String() + "@" + s.Token.String() }

// Handler runs while the consumer owns a shard. ctx is cancelled when the
// shard is revoked (moved, drained, deleted) or when its lease may have
// lapsed — at the client's lease deadline, whether or not the network said
// anything. The handler must stop using the shard then and return; the
// library releases the shard once it has returned. Returning early
// releases the shard voluntarily.
type Handler func(ctx context.Context, s Shard)

// EventKind names consumer events.
type EventKind string

const (
	EventWelcome EventKind = "welcome"
	EventGrant   EventKind = "grant"
	EventPrepare EventKind = "prepare"
	EventRevoke  EventKind = "revoke"
	EventLost    EventKind = "lost"
	EventRelease EventKind = "release"
	EventDrained EventKind = "drained"
	// EventDisconnected: a session ended, or an attempt to open one failed.
	// Being sent on to the leader before a session began is not reported.
	EventDisconnected EventKind = "disconnected"
)

// Event is something that happened to a consumer, for logs and histories.
// Time is when ownership began (grant) or ended (revoke, lost: the lease
// deadline itself, even if the process noticed later).
type Event struct {
	Kind     EventKind
	Shard    Shard
	Time     time.Time
	Reason   string
	Endpoint string
	Err      error
}

// Config configures a consumer (or, with Handler nil and only Watch, an
// observer: see NewObserver).
type Config struct {
	// Endpoints are regional WDS endpoints, host:port (any nodes of the
	// cell; required unless Conn is set). The client asks all of them
	// which node leads and follows the leader.
	Endpoints []string
	// ID identifies this instance (1-128 chars of [A-Za-z0-9._:-]); unique
	// among live consumers of the cell.
	ID string
	// Region is the instance's region; it must be the cell's. Empty
	// means the region of the cell the endpoints reach.
	Region string
	// Endpoint is where other instances route requests for keys this
	// instance owns (host:port; optional).
	Endpoint string
	// Domains the instance serves (is granted shards of).
	Domains []string
	// Watch lists further domains whose routing the instance wants.
	Watch []string
	// Handler runs per granted shard (required for consumers).
	Handler Handler
	// OnPrepare, if set, is told of shards about to be granted (warm
	// handover): load state, but do not act as owner yet.
	OnPrepare func(Shard)
	// OnEvent, if set, receives every event in order, from one goroutine.
	OnEvent func(Event)
	// Logger for connection problems (default: discard).
	Logger *slog.Logger
	// DialOptions are added to the gRPC dial (default: plaintext).
	DialOptions []grpc.DialOption
	// Conn, if set, is used for every session instead of dialing: many
	// consumers may share one connection (load tests, multi-tenant
	// processes). Redirects to other nodes are then not followed, so point
	// it at the leader. The consumer does not close it.
	Conn *grpc.ClientConn
	// Pool, if set, shares connections with other consumers and observers
	// of the process; sessions still follow the leader. The consumer does
	// not close it.
	Pool *Pool
}

func (c *Config) normalize() error {
	if c.Conn != nil {
		c.Endpoints = []string{c.Conn.Target()}
	} else if err := checkEndpoints("endpoints", c.Endpoints); err != nil {
		return err
	}
	if c.Endpoint != "" {
		if err := topology.ValidateHostPort("endpoint", c.Endpoint); err != nil {
			return fmt.Errorf("%w: %v (the address other instances route to for keys this one owns)", ErrInvalid, err)
		}
	}
	if c.Region != "" {
		if err := topology.ValidateName("region", c.Region); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

type shardKey struct {
	domain string
	from   topology.Bound
}

type heldState uint8

const (
	heldPending heldState = iota // granted, waiting for a valid lease to start
	heldRunning
	heldRevoked // cancelled by the cell
	heldLost    // cancelled at the lease deadline
)

type held struct {
	shard   Shard
	state   heldState
	ctx     context.Context
	cancel  context.CancelFunc
	regrant *Shard // a newer grant that arrived while the handler was stopping
}

// Consumer is one service instance's session with its cell: it receives
// grants, runs the handler per shard, heartbeats, and keeps a routing table.
type Consumer struct {
	cfg     Config
	log     *slog.Logger
	routing *Routing
	ctx     context.Context
	cancel  context.CancelFunc

	pool *connPool
	loc  *locator // nil with Config.Conn: no other node to find

	mu        sync.Mutex
	token     []byte
	ttls      map[string]time.Duration
	drift     float64
	interval  time.Duration
	valid     map[string]time.Time // per domain: lease valid until (local monotonic)
	shards    map[shardKey]*held
	ended     map[shardKey]topology.Token // newest token given up, per shard
	seq       uint64
	sent      map[uint64]time.Time
	lastAck   time.Time
	stream    *activeStream
	draining  bool
	welcomed  bool
	permErr   error
	events    []Event
	handlers  sync.WaitGroup
	connected chan struct{}
	drained   chan struct{}
	done      chan struct{}
	leaseWake chan struct{}
	eventWake chan struct{}
	eventsOut chan struct{} // closed once every event was delivered
	closeOnce sync.Once
	drainOnce sync.Once
	connOnce  sync.Once
}

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

// recvClock records when a stream last received anything, on the
// monotonic clock, for the silence checks of consumers and observers.
type recvClock struct{ last atomic.Int64 } // nanoseconds since clockBase

var clockBase = time.Now()

func (r *recvClock) touch() { r.last.Store(int64(time.Since(clockBase))) }

// quiet is how long the stream has received nothing.
func (r *recvClock) quiet(now time.Time) time.Duration {
	return now.Sub(clockBase) - time.Duration(r.last.Load())
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

// NewConsumer validates cfg and starts the consumer in the background. Use
// WaitConnected to wait for the first session, Close to drain and stop.
func NewConsumer(cfg Config) (*Consumer, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if err := topology.ValidateConsumerID("id", cfg.ID); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if cfg.Handler == nil {
		return nil, fmt.Errorf("%w: handler: required for a consumer", ErrInvalid)
	}
	if len(cfg.Domains) == 0 {
		return nil, fmt.Errorf("%w: domains: a consumer must serve at least one domain", ErrInvalid)
	}
	for i, d := range cfg.Domains {
		if err := topology.ValidateName(fmt.Sprintf("domains[%d]", i), d); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Consumer{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "wds-client", "consumer", cfg.ID),
		routing:   newRouting(),
		ctx:       ctx,
		cancel:    cancel,
		pool:      newConnPool(cfg.Conn, cfg.Pool, cfg.DialOptions),
		ttls:      map[string]time.Duration{},
		valid:     map[string]time.Time{},
		shards:    map[shardKey]*held{},
		ended:     map[shardKey]topology.Token{},
		sent:      map[uint64]time.Time{},
		connected: make(chan struct{}),
		drained:   make(chan struct{}),
		done:      make(chan struct{}),
		leaseWake: make(chan struct{}, 1),
		eventWake: make(chan struct{}, 1),
		eventsOut: make(chan struct{}),
	}
	if cfg.Conn == nil {
		c.loc = c.pool.locator(cfg.Endpoints)
	}
	go c.run()
	go c.leaseLoop()
	go c.eventLoop()
	return c, nil
}

// Routing is the live routing table of the served and watched domains.
func (c *Consumer) Routing() *Routing { return c.routing }

// ID is the consumer id.
func (c *Consumer) ID() string { return c.cfg.ID }

// WaitConnected waits for the first Welcome, a permanent error, or ctx.
func (c *Consumer) WaitConnected(ctx context.Context) error {
	select {
	case <-c.connected:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.permErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the consumer stopped (Close, or a permanent error).
func (c *Consumer) Done() <-chan struct{} { return c.done }

// Err is the permanent error that stopped the consumer, if any.
func (c *Consumer) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.permErr
}

// Held lists the shards whose handlers run now.
func (c *Consumer) Held() []Shard {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Shard
	for _, h := range c.shards {
		if h.state == heldRunning {
			out = append(out, h.shard)
		}
	}
	return out
}

// Drain asks the cell to move every shard away, and waits until the cell
// says none is left (or ctx ends).
func (c *Consumer) Drain(ctx context.Context) error {
	c.mu.Lock()
	c.draining = true
	s := c.stream
	c.mu.Unlock()
	if s != nil {
		_ = s.send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Drain{Drain: &wdsv1.Drain{}}})
	}
	select {
	case <-c.drained:
		return nil
	case <-c.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Drained is closed when the cell reports that this consumer is drained:
// it holds nothing and may exit. That follows Drain or Close, or an
// operator's drain (`wds drain ID`), after which the cell grants this
// consumer nothing more — a process that sees it should Close and exit.
func (c *Consumer) Drained() <-chan struct{} { return c.drained }

// Close drains (bounded by ctx), then ends the session and waits for the
// handlers to return and for OnEvent to have received every event. Shards
// still held when ctx ends are cancelled and released.
func (c *Consumer) Close(ctx context.Context) error {
	var err error
	c.mu.Lock()
	welcomed := c.welcomed && c.permErr == nil
	c.mu.Unlock()
	if welcomed {
		err = c.Drain(ctx)
		if errors.Is(err, ErrClosed) {
			err = nil
		}
	}
	c.stop(nil)
	select {
	case <-c.eventsOut: // after every handler returned and its release was reported
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	c.pool.close()
	return err
}

// stop ends everything: the session, and every shard context.
func (c *Consumer) stop(perm error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if perm != nil && c.permErr == nil {
			c.permErr = perm
		}
		now := time.Now()
		for _, h := range c.shards {
			if h.state == heldRunning {
				h.state = heldRevoked
				h.cancel()
				c.emitLocked(Event{Kind: EventRevoke, Shard: h.shard, Time: now, Reason: "consumer closed"})
			}
		}
		c.mu.Unlock()
		c.connOnce.Do(func() { close(c.connected) })
		c.cancel()
		close(c.done)
	})
}

func (c *Consumer) emitLocked(e Event) {
	if c.cfg.OnEvent == nil {
		return
	}
	c.events = append(c.events, e)
	select {
	case c.eventWake <- struct{}{}:
	default:
	}
}

func (c *Consumer) eventLoop() {
	defer close(c.eventsOut)
	for {
		c.mu.Lock()
		evs := c.events
		c.events = nil
		c.mu.Unlock()
		for _, e := range evs {
			c.cfg.OnEvent(e)
		}
		if len(evs) > 0 {
			continue
		}
		select {
		case <-c.eventWake:
		case <-c.done:
			c.mu.Lock()
			evs := c.events
			c.events = nil
			c.mu.Unlock()
			for _, e := range evs {
				c.cfg.OnEvent(e)
			}
			// Handlers may still be returning: deliver their releases.
			c.handlers.Wait()
			c.mu.Lock()
			evs = c.events
			c.events = nil
			c.mu.Unlock()
			for _, e := range evs {
				c.cfg.OnEvent(e)
			}
			return
		}
	}
}

// handshakeLimit bounds the wait for a Welcome (see session).
const handshakeLimit = 5 * time.Second

// avoidFor is how long run avoids an endpoint whose session just failed:
// about the time a cell takes to elect a new leader.
const avoidFor = 1500 * time.Millisecond

// maxRetryPause caps the pause between sessions that fail without a
// Welcome at a node that says it leads (a Join that cannot commit).
const maxRetryPause = time.Second

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

// sessionEnd is how a session ended.
type sessionEnd struct {
	// next is where to go now, when known: the leader a Redirect named,
	// or the one found while the stream was silent.
	next string
	// redirected: a Redirect ended the session (the node does not lead).
	redirected bool
	welcomed   bool
	nodeID     string // the node that served the session, if it said
	err        error
}

// run keeps a session open. It finds the leader by asking every endpoint
// at once (locator) and opens the session there; a session that ends with
// a Redirect naming the leader goes there at once. No redirect counts as a
// failure and nothing backs off while the cell elects a leader: the locator
// paces its questions (every 50-100 ms), so a consumer is welcomed by a new
// leader within that of its accession, well inside its lease. An endpoint
// whose session just failed is avoided for avoidFor (about an election):
// peers that have not yet noticed a hung leader still name it for up to
// their heartbeat timeout. Only for a while: if it was the healthy leader
// after all (our own process paused), it is the only node that can serve us.
func (c *Consumer) run() {
	target := ""
	var avoid avoidList
	multi := len(c.cfg.Endpoints) > 1
	skip := func(nodeID, ep string) bool { return multi && avoid.has(nodeID, ep) }
	fails, hops := 0, 0
	since := time.Time{}
	for c.ctx.Err() == nil {
		if target == "" {
			if c.cfg.Conn != nil {
				target = c.cfg.Endpoints[0]
			} else {
				ep, err := c.loc.find(c.ctx, since, pickLeader(skip))
				if err != nil {
					return
				}
				target = ep
			}
		}
		ep := target
		target = ""
		end := c.session(ep)
		if c.ctx.Err() != nil {
			return
		}
		since = time.Now()
		err := end.err
		if err != nil && permanent(err) {
			c.log.Error("session rejected", "endpoint", ep, "err", err)
			c.stop(err)
			return
		}
		switch {
		case end.redirected && !end.welcomed:
			// Sent on before a session began: routine, not a disconnection.
			c.log.Debug("redirected", "endpoint", ep, "leader", end.next, "reason", err)
		case err != nil:
			c.log.Debug("session ended", "endpoint", ep, "err", err)
			c.mu.Lock()
			c.emitLocked(Event{Kind: EventDisconnected, Time: time.Now(), Endpoint: ep, Err: err})
			c.mu.Unlock()
		}
		if end.welcomed {
			fails, hops = 0, 0
			avoid.clear()
		}
		switch {
		case err != nil && !end.redirected && end.next == "" && errors.Is(err, ErrUnavailable):
			// The node failed us (gone, hung, stalled): ask the others.
			avoid.add(ep, end.nodeID)
			if !end.welcomed {
				fails++
			}
		case err != nil && !end.welcomed && (!end.redirected || c.cfg.Conn != nil):
			// Refused (a duplicate id) or, on a pinned connection, sent
			// elsewhere: ask again, but not in a tight loop.
			fails++
		}
		if end.next != "" && end.next != ep && !skip("", end.next) && hops < 2 && c.cfg.Conn == nil {
			// Follow a named leader at once; a chain of stale redirects
			// falls back to asking every endpoint.
			target = end.next
			hops++
		} else if end.redirected {
			hops = 0
		}
		var d time.Duration
		if fails > 0 && target == "" {
			// A node that says it leads but cannot admit us: do not spin.
			d = min(50*time.Millisecond<<min(fails-1, 5), maxRetryPause)
			d = d/2 + rand.N(d/2+1)
		}
		if errors.Is(err, ErrDuplicateConsumer) {
			d = max(d, 500*time.Millisecond)
		}
		if d > 0 {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(d):
			}
		}
	}
}

// session runs one stream to endpoint, until it ends.
func (c *Consumer) session(endpoint string) (end sessionEnd) {
	cc, err := c.pool.get(endpoint)
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
	c.seq++
	helloSeq := c.seq
	c.sent[helloSeq] = time.Now()
	hello := &wdsv1.Hello{
		Role: wdsv1.Role_ROLE_CONSUMER, ConsumerId: c.cfg.ID, Region: c.cfg.Region, Endpoint: c.cfg.Endpoint,
		Domains: c.cfg.Domains, Watch: c.cfg.Watch, SessionToken: c.token, Seq: helloSeq,
	}
	for _, h := range c.shards {
		if h.state == heldRunning || h.state == heldPending {
			hello.Held = append(hello.Held, &wdsv1.ShardGrant{Domain: h.shard.Domain, Range: topology.RangeToProto(h.shard.Range), Token: topology.TokenToProto(h.shard.Token)})
		}
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
			c.ack(msg.HeartbeatAck.GetSeq())
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
			c.mu.Lock()
			c.emitLocked(Event{Kind: EventDrained, Time: time.Now()})
			c.mu.Unlock()
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
	backstop := max(silentAfter, 2*c.minTTLLocked())
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
		c.seq++
		seq := c.seq
		c.sent[seq] = time.Now()
		for s := range c.sent {
			if seq-s > 64 {
				delete(c.sent, s)
			}
		}
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
			if quiet >= suspectAfter && !suspecting && c.loc != nil {
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
	ep, err := c.loc.find(lctx, time.Now(), pickLeader(other))
	if err != nil || as.quiet(time.Now()) < within {
		return // nothing found, or the stream spoke again meanwhile
	}
	c.log.Warn("session stream silent and another node leads; switching", "from", endpoint, "to", ep)
	as.moved.Store(&ep)
	cancel()
}

// minTTLLocked is the shortest lease TTL of the session's domains.
func (c *Consumer) minTTLLocked() time.Duration {
	var m time.Duration
	for _, ttl := range c.ttls {
		if m == 0 || ttl < m {
			m = ttl
		}
	}
	return m
}

// welcome reconciles the held shards with the cell's authoritative list.
func (c *Consumer) welcome(w *wdsv1.Welcome, helloSeq uint64, endpoint string, as *activeStream) {
	c.mu.Lock()
	c.token = w.GetSessionToken()
	c.drift = w.GetDrift()
	c.interval = time.Duration(w.GetHeartbeatIntervalMillis()) * time.Millisecond
	if c.interval <= 0 {
		c.interval = time.Second
	}
	for _, l := range w.GetLeases() {
		c.ttls[l.GetDomain()] = time.Duration(l.GetTtlMillis()) * time.Millisecond
	}
	c.stream = as
	c.welcomed = true
	auth := map[shardKey]topology.Token{}
	var grants []*wdsv1.ShardGrant
	for _, g := range w.GetGrants() {
		rng, err := topology.RangeFromProto("range", g.GetRange())
		if err != nil {
			continue
		}
		auth[shardKey{g.GetDomain(), rng.From}] = topology.TokenFromProto(g.GetToken())
		grants = append(grants, g)
	}
	now := time.Now()
	var dropped []*wdsv1.ShardRef
	for k, h := range c.shards {
		tok, ok := auth[k]
		if h.regrant != nil && (!ok || tok != h.regrant.Token) {
			// A newer grant waiting for the old handler to return that the
			// cell no longer lists (moved away while we were gone): it
			// must never start, and its release lets a handover waiting
			// on it go ahead now rather than at its frozen deadline.
			c.endLocked(k, h.regrant.Token)
			dropped = append(dropped, &wdsv1.ShardRef{Domain: h.regrant.Domain, Range: topology.RangeToProto(h.regrant.Range), Token: topology.TokenToProto(h.regrant.Token)})
			h.regrant = nil
		}
		if ok && tok == h.shard.Token {
			continue
		}
		switch h.state {
		case heldRunning:
			h.state = heldRevoked
			h.cancel()
			c.emitLocked(Event{Kind: EventRevoke, Shard: h.shard, Time: now, Reason: "the cell no longer lists this grant"})
		case heldPending:
			delete(c.shards, k)
		}
	}
	c.emitLocked(Event{Kind: EventWelcome, Time: now, Endpoint: endpoint})
	draining := c.draining
	c.mu.Unlock()
	if w.GetAcked() {
		c.ack(helloSeq)
	}
	if len(dropped) > 0 && as != nil {
		_ = as.send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Release{Release: &wdsv1.Release{Shards: dropped}}})
	}
	c.grant(grants, as)
	if draining {
		_ = as.send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Drain{Drain: &wdsv1.Drain{}}})
	}
	c.connOnce.Do(func() { close(c.connected) })
}

// ack applies contract (1): grants are valid until the acknowledged
// heartbeat's send time + TTL·(1−ε).
func (c *Consumer) ack(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sent, ok := c.sent[seq]
	if !ok {
		return
	}
	delete(c.sent, seq)
	c.lastAck = time.Now()
	// A lease that lapsed before this ack arrived stays lapsed: the shard
	// must not run on across the gap just because the lease timer has not
	// fired yet (the leader may have given it away meanwhile).
	c.expireLapsedLocked(c.lastAck)
	for d, ttl := range c.ttls {
		until := sent.Add(time.Duration(float64(ttl) * (1 - c.drift)))
		if until.After(c.valid[d]) {
			c.valid[d] = until
		}
	}
	c.startPendingLocked()
	c.wakeLease()
}

func (c *Consumer) wakeLease() {
	select {
	case c.leaseWake <- struct{}{}:
	default:
	}
}

// grant records new grants and starts those with a valid lease.
func (c *Consumer) grant(gs []*wdsv1.ShardGrant, as *activeStream) {
	var stale []*wdsv1.ShardRef
	c.mu.Lock()
	for _, g := range gs {
		rng, err := topology.RangeFromProto("grant.range", g.GetRange())
		if err != nil {
			continue
		}
		s := Shard{Domain: g.GetDomain(), Range: rng, Token: topology.TokenFromProto(g.GetToken())}
		k := shardKey{s.Domain, rng.From}
		if end, ok := c.ended[k]; ok && !end.Less(s.Token) {
			// We already gave this grant up (revoked, lost or returned);
			// the cell has not seen our release yet. Release it again.
			stale = append(stale, &wdsv1.ShardRef{Domain: s.Domain, Range: g.GetRange(), Token: g.GetToken()})
			continue
		}
		if h, ok := c.shards[k]; ok {
			if h.shard.Token == s.Token {
				continue // duplicate
			}
			if h.state == heldRevoked || h.state == heldLost {
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
		c.shards[k] = &held{shard: s, state: heldPending}
	}
	c.startPendingLocked()
	c.mu.Unlock()
	c.wakeLease()
	if len(stale) > 0 && as != nil {
		_ = as.send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Release{Release: &wdsv1.Release{Shards: stale}}})
	}
}

// startPendingLocked starts the handlers of pending shards whose domain
// lease is valid now.
func (c *Consumer) startPendingLocked() {
	now := time.Now()
	for _, h := range c.shards {
		if h.state != heldPending || !now.Before(c.valid[h.shard.Domain]) {
			continue
		}
		h.state = heldRunning
		h.ctx, h.cancel = context.WithCancel(c.ctx)
		c.emitLocked(Event{Kind: EventGrant, Shard: h.shard, Time: now})
		c.handlers.Add(1)
		go c.runHandler(h)
	}
}

func (c *Consumer) runHandler(h *held) {
	defer c.handlers.Done()
	c.cfg.Handler(h.ctx, h.shard)
	c.mu.Lock()
	k := shardKey{h.shard.Domain, h.shard.Range.From}
	now := time.Now()
	if h.state == heldRunning {
		// Returned on its own: a voluntary release.
		h.state = heldRevoked
		h.cancel()
		c.emitLocked(Event{Kind: EventRevoke, Shard: h.shard, Time: now, Reason: "handler returned"})
	}
	h.cancel()
	if c.shards[k] == h {
		delete(c.shards, k)
	}
	c.endLocked(k, h.shard.Token)
	c.emitLocked(Event{Kind: EventRelease, Shard: h.shard, Time: now})
	as := c.stream
	regrant := h.regrant
	c.mu.Unlock()
	if as != nil {
		_ = as.send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Release{Release: &wdsv1.Release{Shards: []*wdsv1.ShardRef{{
			Domain: h.shard.Domain, Range: topology.RangeToProto(h.shard.Range), Token: topology.TokenToProto(h.shard.Token),
		}}}}})
	}
	if regrant != nil && c.ctx.Err() == nil {
		c.grant([]*wdsv1.ShardGrant{{Domain: regrant.Domain, Range: topology.RangeToProto(regrant.Range), Token: topology.TokenToProto(regrant.Token)}}, as)
	}
}

// endLocked records that every grant of shard k up to tok is given up, so
// a late or repeated Grant of one of them is released, never started.
func (c *Consumer) endLocked(k shardKey, tok topology.Token) {
	if end, ok := c.ended[k]; !ok || end.Less(tok) {
		c.ended[k] = tok
	}
}

func (c *Consumer) revoke(r *wdsv1.Revoke) {
	var release []*wdsv1.ShardRef
	c.mu.Lock()
	now := time.Now()
	for _, ref := range r.GetShards() {
		rng, err := topology.RangeFromProto("revoke.range", ref.GetRange())
		if err != nil {
			continue
		}
		k := shardKey{ref.GetDomain(), rng.From}
		h, ok := c.shards[k]
		if !ok {
			continue
		}
		if tok := topology.TokenFromProto(ref.GetToken()); !tok.IsZero() && tok != h.shard.Token {
			if h.regrant != nil && h.regrant.Token == tok {
				// The newer grant waiting for the old handler to return
				// is revoked before it ever ran: drop it, and release it
				// at once (it has no handler to wait for).
				c.endLocked(k, tok)
				h.regrant = nil
				release = append(release, ref)
			}
			continue
		}
		switch h.state {
		case heldRunning:
			h.state = heldRevoked
			h.cancel()
			c.emitLocked(Event{Kind: EventRevoke, Shard: h.shard, Time: now, Reason: reasonText(r.GetReason())})
		case heldPending:
			delete(c.shards, k)
			release = append(release, ref)
		}
	}
	as := c.stream
	c.mu.Unlock()
	if len(release) > 0 && as != nil {
		_ = as.send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Release{Release: &wdsv1.Release{Shards: release}}})
	}
}

func reasonText(r wdsv1.RevokeReason) string {
	switch r {
	case wdsv1.RevokeReason_REVOKE_REASON_REBALANCE:
		return "rebalance"
	case wdsv1.RevokeReason_REVOKE_REASON_DRAIN:
		return "drain"
	case wdsv1.RevokeReason_REVOKE_REASON_DOMAIN_DELETED:
		return "domain deleted"
	case wdsv1.RevokeReason_REVOKE_REASON_LOST:
		return "lost"
	case wdsv1.RevokeReason_REVOKE_REASON_DELEGATION:
		return "delegation"
	}
	return "unspecified"
}

func (c *Consumer) prepare(p *wdsv1.Prepare) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, ref := range p.GetShards() {
		rng, err := topology.RangeFromProto("prepare.range", ref.GetRange())
		if err != nil {
			continue
		}
		s := Shard{Domain: ref.GetDomain(), Range: rng}
		c.emitLocked(Event{Kind: EventPrepare, Shard: s, Time: now})
		if c.cfg.OnPrepare != nil {
			go c.cfg.OnPrepare(s)
		}
	}
}

// leaseLoop cancels every running shard of a domain at the domain's lease
// deadline: contract (1), independent of the network.
// expireLapsedLocked ends every running shard whose lease has lapsed at
// now (contract (1)) and returns the earliest deadline still ahead.
func (c *Consumer) expireLapsedLocked(now time.Time) (next time.Time) {
	for _, h := range c.shards {
		if h.state != heldRunning {
			continue
		}
		until := c.valid[h.shard.Domain]
		if !now.Before(until) {
			h.state = heldLost
			h.cancel()
			// The belief ended at the deadline, even if we noticed late.
			c.emitLocked(Event{Kind: EventLost, Shard: h.shard, Time: until, Reason: "lease expired"})
			continue
		}
		if next.IsZero() || until.Before(next) {
			next = until
		}
	}
	return next
}

func (c *Consumer) leaseLoop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		next := c.expireLapsedLocked(time.Now())
		c.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-c.done:
			return
		case <-c.leaseWake:
		case <-timer.C:
		}
	}
}
