package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/internal/rpcerr"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// How a locator asks: every endpoint at once, each again after a pause,
// while anyone waits for an answer.
const (
	// probeTimeout bounds one Locate call: a hung node (SIGSTOPped, its
	// socket open) does not answer, and its silence must not hold anyone.
	probeTimeout = time.Second
	// probePause is the pause between two probes of one endpoint, jittered
	// up to twice that; after probeSlowAfter without an answer anyone
	// took (a cell down, not an election) it grows to probePauseMax.
	probePause     = 50 * time.Millisecond
	probePauseMax  = time.Second
	probeSlowAfter = 5 * time.Second
	// claimMaxAge: older answers are not acted on.
	claimMaxAge = 250 * time.Millisecond
)

// claim is what one endpoint answered to Locate.
type claim struct {
	endpoint string // the endpoint asked
	at       time.Time
	resp     *wdsv1.LocateResponse
	err      error
}

func (c claim) ok() bool { return c.err == nil && c.resp != nil }

// leads: the endpoint says it is the ready leader.
func (c claim) leads() bool { return c.ok() && c.resp.GetLeader() }

// locator finds nodes of a cell among a list of endpoints. It asks every
// endpoint at once (Session.Locate, answered by each node from its own view
// without touching the Raft log) and goes on asking each one after a short
// pause, until a waiter's pick accepts an answer. A dead endpoint fails at
// once and a hung one is simply not waited for, so one bad node among the
// endpoints costs nothing. Concurrent finds share the probes: after a leader
// change, the thousands of sessions of one process sharing a Pool cause one
// probe per endpoint per pause, not one each.
type locator struct {
	endpoints []string
	conn      func(endpoint string) (*grpc.ClientConn, error)

	mu      sync.Mutex
	claims  map[string]claim
	changed chan struct{} // closed and replaced on every new claim
	waiters int
	stop    context.CancelFunc // ends the probes; nil while none run
}

func newLocator(endpoints []string, conn func(string) (*grpc.ClientConn, error)) *locator {
	return &locator{endpoints: endpoints, conn: conn, claims: map[string]claim{}, changed: make(chan struct{})}
}

// find waits until pick chooses an endpoint among the latest answers of
// the endpoints made after since (and at most claimMaxAge old), in the
// order of the endpoint list, or until ctx ends.
func (l *locator) find(ctx context.Context, since time.Time, pick func([]claim) (string, bool)) (string, error) {
	l.mu.Lock()
	l.waiters++
	if l.stop == nil {
		pctx, cancel := context.WithCancel(context.Background())
		l.stop = cancel
		for _, ep := range l.endpoints {
			go l.probe(pctx, ep)
		}
	}
	defer func() {
		l.waiters--
		if l.waiters == 0 {
			l.stop()
			l.stop = nil
		}
		l.mu.Unlock()
	}()
	for {
		now := time.Now()
		var fresh []claim
		for _, ep := range l.endpoints {
			if c, ok := l.claims[ep]; ok && c.at.After(since) && now.Sub(c.at) <= claimMaxAge {
				fresh = append(fresh, c)
			}
		}
		if ep, ok := pick(fresh); ok {
			return ep, nil
		}
		changed := l.changed
		l.mu.Unlock()
		var err error
		select {
		case <-changed:
		case <-ctx.Done():
			err = ctx.Err()
		}
		l.mu.Lock()
		if err != nil {
			return "", err
		}
	}
}

// probe asks one endpoint again and again until ctx ends.
func (l *locator) probe(ctx context.Context, ep string) {
	started := time.Now()
	pause := probePause
	for {
		c := claim{endpoint: ep}
		cc, err := l.conn(ep)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			c.resp, err = wdsv1.NewSessionClient(cc).Locate(pctx, &wdsv1.LocateRequest{})
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		c.err, c.at = err, time.Now()
		l.mu.Lock()
		l.claims[ep] = c
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
		if time.Since(started) > probeSlowAfter {
			pause = min(pause*3/2, probePauseMax)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause + rand.N(pause)):
		}
	}
}

// pickLeader chooses the endpoint of the cell's leader: an endpoint that
// says it leads, else the leader a node heard from just now. skip rejects a
// node (by id, or by endpoint) the caller does not want to be sent to.
func pickLeader(skip func(nodeID, endpoint string) bool) func([]claim) (string, bool) {
	return func(cs []claim) (string, bool) {
		for _, c := range cs {
			if c.leads() && !skip(c.resp.GetNodeId(), c.endpoint) {
				return c.endpoint, true
			}
		}
		for _, c := range cs {
			if r := c.resp; c.ok() && !r.GetLeader() && r.GetLeaderEndpoint() != "" && !skip(r.GetLeaderId(), r.GetLeaderEndpoint()) {
				return r.GetLeaderEndpoint(), true
			}
		}
		return "", false
	}
}

// pickAny chooses any node that answers, preferring one that knows a
// leader (it is in touch with the cell, so its view is current); when none
// does, any node that answered, once all of the n endpoints have.
func pickAny(n int, skip func(nodeID, endpoint string) bool) func([]claim) (string, bool) {
	return func(cs []claim) (string, bool) {
		first := ""
		for _, c := range cs {
			if !c.ok() || skip(c.resp.GetNodeId(), c.endpoint) {
				continue
			}
			if c.resp.GetLeader() || c.resp.GetLeaderId() != "" {
				return c.endpoint, true
			}
			if first == "" {
				first = c.endpoint
			}
		}
		return first, first != "" && len(cs) == n
	}
}

// unreachable reports, once every one of the n endpoints has answered,
// whether every one refused the connection (or had no route: see refused).
func unreachable(cs []claim, n int) (error, bool) {
	if len(cs) < n {
		return nil, false
	}
	e := &UnreachableError{}
	for _, c := range cs {
		// Refused, or no route: down. A node that did not answer in time
		// (hung, or just slow) may still answer the next probe.
		if c.err == nil || !refused(c.err) {
			return nil, false
		}
		e.Endpoints = append(e.Endpoints, c.endpoint)
		if cause := shortError(c.err); !slices.Contains(e.Causes, cause) {
			e.Causes = append(e.Causes, cause)
		}
	}
	return e, true
}

// refused reports a connection the far side refused, or that found no
// route or no such host: nothing listens there.
func refused(err error) bool {
	if status.Code(err) != codes.Unavailable || rpcerr.FromServer(err) {
		return false // a node answered (its statuses carry an ErrorInfo)
	}
	// gRPC's own transport failures carry nothing machine-readable but
	// the code Unavailable, which a hung or restarting node shares: only
	// the text (of the dialer's, the resolver's error) tells the causes
	// that mean nothing listens there.
	msg := status.Convert(err).Message()
	for _, s := range []string{"connection refused", "no route to host", "network is unreachable", "no such host", "produced zero addresses"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// shortError is the root cause of a gRPC transport error ("connection
// refused") without its nested description: gRPC gives it only as text.
func shortError(err error) string {
	msg := status.Convert(err).Message()
	if strings.Contains(msg, "produced zero addresses") || strings.Contains(msg, "no such host") {
		return "unknown host"
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 && i+2 < len(msg) {
		return strings.Trim(msg[i+2:], "\" ")
	}
	return msg
}

// A Locator finds a cell's nodes among a list of endpoints, the way
// consumers and observers do: it asks every endpoint at once which node
// leads (Session.Locate), so that a dead or hung endpoint in the list costs
// nothing, and asks again every 50-100 ms while no node leads (an election).
// The wds CLI sends its admin calls through one.
type Locator struct {
	l    *locator
	pool *Pool
}

// NewLocator returns a Locator over endpoints (host:port). opts are added
// to the default dial options (plaintext). Close it when done.
func NewLocator(endpoints []string, opts ...grpc.DialOption) (*Locator, error) {
	if err := checkEndpoints("endpoints", endpoints); err != nil {
		return nil, err
	}
	p := NewPool(1, opts...)
	return &Locator{l: p.locator(endpoints), pool: p}, nil
}

// Conn returns the locator's connection to endpoint.
func (l *Locator) Conn(endpoint string) (*grpc.ClientConn, error) { return l.pool.get(endpoint) }

// Close closes the locator's connections.
func (l *Locator) Close() { l.pool.Close() }

// Leader returns the endpoint of the cell's leader. It fails with an
// UnreachableError as soon as every endpoint has refused the connection;
// while nodes answer but none leads, or do not answer at all (hung), it
// keeps asking until ctx ends.
func (l *Locator) Leader(ctx context.Context) (string, error) {
	return l.find(ctx, pickLeader(noSkip))
}

// Any returns the endpoint of a node that answers, preferring one in touch
// with a leader. It fails like Leader.
func (l *Locator) Any(ctx context.Context) (string, error) {
	return l.find(ctx, pickAny(len(l.l.endpoints), noSkip))
}

func (l *Locator) find(ctx context.Context, pick func([]claim) (string, bool)) (string, error) {
	var down error
	ep, err := l.l.find(ctx, time.Time{}, func(cs []claim) (string, bool) {
		if ep, ok := pick(cs); ok {
			return ep, true
		}
		if err, ok := unreachable(cs, len(l.l.endpoints)); ok {
			down = err
			return "", true
		}
		return "", false
	})
	if down != nil {
		return "", down
	}
	if err != nil {
		return "", &NoLeaderError{Summary: l.l.summary(), Err: err}
	}
	return ep, nil
}

// summary says what the endpoints last answered, for an error.
func (l *locator) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var answered, silent []string
	for _, ep := range l.endpoints {
		if c, ok := l.claims[ep]; ok && c.ok() {
			answered = append(answered, c.resp.GetNodeId())
		} else {
			silent = append(silent, ep)
		}
	}
	switch {
	case len(answered) == 0:
		return "no answer from " + strings.Join(silent, ",")
	case len(silent) == 0:
		return "no leader: " + strings.Join(answered, ", ") + " answered but know none (an election under way, or too few nodes up for a quorum)"
	}
	return "no leader: " + strings.Join(answered, ", ") + " answered but know none; no answer from " + strings.Join(silent, ",")
}

func noSkip(string, string) bool { return false }

// checkEndpoints rejects an empty list and what is not host:port.
func checkEndpoints(field string, eps []string) error {
	if len(eps) == 0 {
		return fmt.Errorf("%w: %s: at least one endpoint (host:port) is required", ErrInvalid, field)
	}
	for i, ep := range eps {
		if err := topology.ValidateHostPort(fmt.Sprintf("%s[%d]", field, i), ep); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	return nil
}
