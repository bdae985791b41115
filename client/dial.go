package client

import (
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// Pool shares gRPC connections among the consumers and observers of one
// process (a multi-tenant service, a load generator): PerEndpoint
// connections to each endpoint, handed out round-robin as sessions open.
// Unlike Config.Conn, sessions on a pool follow redirects to any node.
// Close it after every consumer and observer using it.
type Pool struct {
	opts []grpc.DialOption
	per  int

	mu       sync.Mutex
	conns    map[string][]*grpc.ClientConn
	next     map[string]int
	locators map[string]*locator // per endpoint list: shared probes
}

// NewPool returns a pool of perEndpoint connections per endpoint (at least
// 1). opts are added to the default dial options (plaintext).
func NewPool(perEndpoint int, opts ...grpc.DialOption) *Pool {
	return &Pool{
		opts:     append(defaultDialOptions(), opts...),
		per:      max(perEndpoint, 1),
		conns:    map[string][]*grpc.ClientConn{},
		next:     map[string]int{},
		locators: map[string]*locator{},
	}
}

// locator returns the pool's locator for an endpoint list: every consumer
// and observer of the pool with the same endpoints shares its probes.
func (p *Pool) locator(endpoints []string) *locator {
	key := strings.Join(endpoints, ",")
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.locators[key]; ok {
		return l
	}
	l := newLocator(endpoints, p.probeConn)
	p.locators[key] = l
	return l
}

// probeConn is the connection probes use: the first to endpoint.
func (p *Pool) probeConn(endpoint string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	if cs := p.conns[endpoint]; len(cs) > 0 {
		p.mu.Unlock()
		return cs[0], nil
	}
	p.mu.Unlock()
	return p.get(endpoint)
}

func defaultDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
		// gRPC's default reconnect backoff grows to 2 minutes: a node
		// that was down for a few seconds (a restart) would stay
		// unusable through this connection long after it is back. Retry
		// within a second; the locator decides which nodes are worth it.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
	}
}

// get returns the next connection to endpoint, dialing lazily (grpc
// connects on first use).
func (p *Pool) get(endpoint string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.conns[endpoint]
	if len(cs) < p.per {
		cc, err := grpc.NewClient(endpoint, p.opts...)
		if err != nil {
			return nil, err
		}
		p.conns[endpoint] = append(cs, cc)
		return cc, nil
	}
	i := p.next[endpoint] % len(cs)
	p.next[endpoint] = i + 1
	return cs[i], nil
}

// Close closes every connection of the pool.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cs := range p.conns {
		for _, cc := range cs {
			cc.Close()
		}
	}
	p.conns = map[string][]*grpc.ClientConn{}
}

// connPool is a consumer's or observer's source of connections: a shared
// Config.Conn, a shared Pool, or connections of its own (one per endpoint).
type connPool struct {
	shared *grpc.ClientConn
	pool   *Pool
	own    *Pool
}

func newConnPool(shared *grpc.ClientConn, pool *Pool, extra []grpc.DialOption) *connPool {
	if shared != nil || pool != nil {
		return &connPool{shared: shared, pool: pool}
	}
	return &connPool{own: NewPool(1, extra...)}
}

func (p *connPool) locator(endpoints []string) *locator {
	if p.pool != nil {
		return p.pool.locator(endpoints)
	}
	return p.own.locator(endpoints)
}

func (p *connPool) get(endpoint string) (*grpc.ClientConn, error) {
	switch {
	case p.shared != nil:
		return p.shared, nil
	case p.pool != nil:
		return p.pool.get(endpoint)
	}
	return p.own.get(endpoint)
}

// close closes the connections dialed for this consumer or observer only.
func (p *connPool) close() {
	if p.own != nil {
		p.own.Close()
	}
}
