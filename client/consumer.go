package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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

func (s Shard) String() string {
	if s.Region != "" {
		return s.Domain + "/" + s.Region + s.Range.String() + "@" + s.Token.String()
	}
	return s.Domain + s.Range.String() + "@" + s.Token.String()
}

// key names the shard: (domain, key-space region, range start).
func (s Shard) key() shardKey { return shardKey{s.Domain, s.Region, s.Range.From} }

// ref is the shard's reference on the wire, with its token.
func (s Shard) ref() *wdsv1.ShardRef {
	return &wdsv1.ShardRef{Domain: s.Domain, Region: s.Region, Range: topology.RangeToProto(s.Range), Token: topology.TokenToProto(s.Token)}
}

func (s Shard) grant() *wdsv1.ShardGrant {
	return &wdsv1.ShardGrant{Domain: s.Domain, Region: s.Region, Range: topology.RangeToProto(s.Range), Token: topology.TokenToProto(s.Token)}
}

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
	// means the region of the cell the endpoints reach. Its key space of a
	// REGIONAL domain is the one Routing().Lookup uses.
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

// Consumer is one service instance's session with its cell: it receives
// grants, runs the handler per shard, heartbeats, and keeps a routing table.
type Consumer struct {
	// A facade over three parts: the transport (transport.go) keeps a
	// session open on the cell leader, the session protocol (session.go)
	// moves messages, and the lease book (lease.go) decides — purely, given
	// the time — which shards run until when. The Consumer carries out the
	// book's actions (handler goroutines and their contexts, Releases)
	// under mu and reports events through its event queue (events.go).
	cfg     Config
	log     *slog.Logger
	routing *Routing
	tr      *transport
	events  *eventQueue
	ctx     context.Context
	cancel  context.CancelFunc

	mu       sync.Mutex
	book     *leaseBook
	cancels  map[uint64]context.CancelFunc // per handler run: its context
	token    []byte                        // session token for resuming
	interval time.Duration                 // heartbeat interval
	lastAck  time.Time
	stream   *activeStream // the welcomed session's stream, nil between sessions
	draining bool
	welcomed bool
	permErr  error

	handlers  sync.WaitGroup
	leaseWake chan struct{}
	connected chan struct{}
	drained   chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	drainOnce sync.Once
	connOnce  sync.Once
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
	c := newConsumer(cfg, newTransport(cfg.Endpoints, cfg.Conn, cfg.Pool, cfg.DialOptions, true))
	go c.run()
	go c.leaseLoop()
	go c.events.run(c.done, c.handlers.Wait)
	return c, nil
}

// newConsumer builds a consumer on tr without starting anything.
func newConsumer(cfg Config, tr *transport) *Consumer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Consumer{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "wds-client", "consumer", cfg.ID),
		routing:   newRouting(),
		tr:        tr,
		events:    newEventQueue(cfg.OnEvent),
		ctx:       ctx,
		cancel:    cancel,
		book:      newLeaseBook(),
		cancels:   map[uint64]context.CancelFunc{},
		leaseWake: make(chan struct{}, 1),
		connected: make(chan struct{}),
		drained:   make(chan struct{}),
		done:      make(chan struct{}),
	}
	c.routing.setRegion(cfg.Region)
	return c
}

// run keeps a session open until the consumer stops (see transport.run).
func (c *Consumer) run() {
	ep, err := c.tr.run(c.ctx, c.session, func(ep string, end sessionEnd) {
		logSessionEnd(c.log, ep, end)
		if end.err != nil && !(end.redirected && !end.welcomed) {
			c.events.push(Event{Kind: EventDisconnected, Time: time.Now(), Endpoint: ep, Err: end.err})
		}
	})
	if err != nil {
		c.log.Error("session rejected", "endpoint", ep, "err", err)
		c.stop(err)
	}
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
	return c.book.running()
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
	case <-c.events.delivered(): // after every handler returned and its release was reported
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	c.tr.close()
	return err
}

// stop ends everything: the session, and every shard context.
func (c *Consumer) stop(perm error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if perm != nil && c.permErr == nil {
			c.permErr = perm
		}
		c.applyLocked(c.book.close("consumer closed", time.Now()))
		c.mu.Unlock()
		c.connOnce.Do(func() { close(c.connected) })
		c.cancel()
		close(c.done)
	})
}

// applyLocked carries out the lease book's actions in order: handlers are
// started and their contexts cancelled at once, with their events; the
// shards to release are returned, to be sent once c.mu is released.
func (c *Consumer) applyLocked(acts []action) (release []*wdsv1.ShardRef) {
	for _, a := range acts {
		switch a.op {
		case opStart:
			ctx, cancel := context.WithCancel(c.ctx)
			c.cancels[a.run] = cancel
			c.events.push(Event{Kind: EventGrant, Shard: a.shard, Time: a.time})
			c.handlers.Add(1)
			go c.runHandler(ctx, a.run, a.shard)
		case opStop:
			if cancel := c.cancels[a.run]; cancel != nil {
				cancel()
			}
			c.events.push(Event{Kind: a.event, Shard: a.shard, Time: a.time, Reason: a.reason})
		case opRelease:
			if a.event != "" {
				c.events.push(Event{Kind: a.event, Shard: a.shard, Time: a.time})
			}
			release = append(release, a.shard.ref())
		}
	}
	return release
}

// update asks the lease book for actions and carries them out under one
// hold of c.mu, releasing on stream as (the current one if nil). Deciding
// and doing must not be split: between the two, the lease timer could
// expire a shard the book just started, find no handler context to cancel
// yet, and the handler would then start with a context nothing cancels.
func (c *Consumer) update(book func(now time.Time) []action, as *activeStream) {
	c.mu.Lock()
	release := c.applyLocked(book(time.Now()))
	if as == nil {
		as = c.stream
	}
	c.mu.Unlock()
	c.wakeLease()
	c.release(as, release)
}

func (c *Consumer) release(as *activeStream, refs []*wdsv1.ShardRef) {
	if len(refs) > 0 && as != nil {
		_ = as.send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Release{Release: &wdsv1.Release{Shards: refs}}})
	}
}

func (c *Consumer) wakeLease() {
	select {
	case c.leaseWake <- struct{}{}:
	default:
	}
}

// welcome reconciles the held shards with the cell's authoritative list,
// then takes the Welcome as the Hello's ack and its grants as grants.
func (c *Consumer) welcome(w *wdsv1.Welcome, helloSeq uint64, endpoint string, as *activeStream) {
	now := time.Now()
	ttls := map[string]time.Duration{}
	for _, l := range w.GetLeases() {
		ttls[l.GetDomain()] = time.Duration(l.GetTtlMillis()) * time.Millisecond
	}
	grants := shardsFromGrants(w.GetGrants())
	region := w.GetRegion()
	if region == "" {
		region = c.cfg.Region
	}
	c.routing.setRegion(region)

	c.mu.Lock()
	c.token = w.GetSessionToken()
	c.interval = time.Duration(w.GetHeartbeatIntervalMillis()) * time.Millisecond
	if c.interval <= 0 {
		c.interval = time.Second
	}
	c.book.setLeases(w.GetDrift(), ttls)
	c.stream = as
	c.welcomed = true
	dropped := c.applyLocked(c.book.reconcile(grants, now))
	c.events.push(Event{Kind: EventWelcome, Time: now, Endpoint: endpoint})
	draining := c.draining
	c.mu.Unlock()
	if w.GetAcked() {
		c.ack(helloSeq, w.GetWithheld())
	}
	c.release(as, dropped)
	c.update(func(now time.Time) []action { return c.book.grant(grants, now) }, as)
	if draining && as != nil {
		_ = as.send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Drain{Drain: &wdsv1.Drain{}}})
	}
	c.connOnce.Do(func() { close(c.connected) })
}

// ack takes the ack of heartbeat seq (see leaseBook.ack).
func (c *Consumer) ack(seq uint64, withheld []string) {
	c.mu.Lock()
	now := time.Now()
	acts, ok := c.book.ack(seq, withheld, now)
	if ok {
		c.lastAck = now
	}
	release := c.applyLocked(acts)
	as := c.stream
	c.mu.Unlock()
	c.wakeLease()
	c.release(as, release)
}

// grant takes a Grant (see leaseBook.grant).
func (c *Consumer) grant(gs []*wdsv1.ShardGrant, as *activeStream) {
	grants := shardsFromGrants(gs)
	c.update(func(now time.Time) []action { return c.book.grant(grants, now) }, as)
}

// revoke takes a Revoke (see leaseBook.revoke).
func (c *Consumer) revoke(r *wdsv1.Revoke) {
	shards := shardsFromRefs("revoke.range", r.GetShards())
	c.update(func(now time.Time) []action { return c.book.revoke(shards, reasonText(r.GetReason()), now) }, nil)
}

func shardsFromGrants(gs []*wdsv1.ShardGrant) []Shard {
	out := make([]Shard, 0, len(gs))
	for _, g := range gs {
		rng, err := topology.RangeFromProto("grant.range", g.GetRange())
		if err != nil {
			continue
		}
		out = append(out, Shard{Domain: g.GetDomain(), Region: g.GetRegion(), Range: rng, Token: topology.TokenFromProto(g.GetToken())})
	}
	return out
}

func shardsFromRefs(field string, refs []*wdsv1.ShardRef) []Shard {
	out := make([]Shard, 0, len(refs))
	for _, ref := range refs {
		rng, err := topology.RangeFromProto(field, ref.GetRange())
		if err != nil {
			continue
		}
		out = append(out, Shard{Domain: ref.GetDomain(), Region: ref.GetRegion(), Range: rng, Token: topology.TokenFromProto(ref.GetToken())})
	}
	return out
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
	now := time.Now()
	for _, s := range shardsFromRefs("prepare.range", p.GetShards()) {
		s.Token = topology.Token{}
		c.events.push(Event{Kind: EventPrepare, Shard: s, Time: now})
		if c.cfg.OnPrepare != nil {
			go c.cfg.OnPrepare(s)
		}
	}
}

// runHandler runs the handler of one shard run; once it returned, the
// shard is released (and a newer grant that waited for it may start).
func (c *Consumer) runHandler(ctx context.Context, run uint64, s Shard) {
	defer c.handlers.Done()
	c.cfg.Handler(ctx, s)
	c.mu.Lock()
	acts := c.book.returned(run, time.Now())
	release := c.applyLocked(acts)
	if cancel := c.cancels[run]; cancel != nil {
		cancel()
		delete(c.cancels, run)
	}
	as := c.stream
	c.mu.Unlock()
	c.wakeLease()
	c.release(as, release)
}

// leaseLoop cancels every running shard of a domain at the domain's lease
// deadline: contract (1), independent of the network.
func (c *Consumer) leaseLoop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		acts, next := c.book.expire(time.Now())
		c.applyLocked(acts)
		c.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
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
