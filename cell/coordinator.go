package cell

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/wdsio/wds/internal/rpcerr"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// GlobalClient is the Delegator of a federated cell: it renews the cell's
// delegations with the global group's leader over one Coordinator stream
// (the cell reaches the global group only through this generated client),
// following the leader when it moves. It implements Nudger: the global
// leader's "renew now" reaches the renewal loop at once.
type GlobalClient struct {
	// configured are the endpoints the client was made with; endpoints
	// (under mu) are those and the voters' the last answer named.
	configured []string
	dial       func(endpoint string) (grpc.ClientConnInterface, error)

	// leaderHint, if set, names the global leader's endpoint as this
	// process knows it (a global voter in the same process): a new stream
	// goes there before it tries the endpoints in turn.
	leaderHint func() string

	mu        sync.Mutex
	endpoints []string
	st        *renewStream
	next      int    // the endpoint to try after the hint
	hint      string // the leader's endpoint as the last refusal named it
	seq       uint64
	nudges    chan struct{}
}

// NewGlobalClient returns a client of the global voters at endpoints
// (gRPC host:port). dial opens (and may cache) a connection to one.
func NewGlobalClient(endpoints []string, dial func(endpoint string) (grpc.ClientConnInterface, error)) *GlobalClient {
	return &GlobalClient{configured: slices.Clone(endpoints), endpoints: slices.Clone(endpoints), dial: dial, nudges: make(chan struct{}, 1)}
}

// Endpoints are the global voters' endpoints the client tries: those it
// was made with, and those the last renewal answer named.
func (c *GlobalClient) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.endpoints)
}

// learn makes the endpoints the configured ones plus voters (an answer's
// voter_endpoints), in that order, without repeats.
func (c *GlobalClient) learn(voters []string) {
	if len(voters) == 0 {
		return
	}
	eps := slices.Clone(c.configured)
	for _, v := range voters {
		if !slices.Contains(eps, v) {
			eps = append(eps, v)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endpoints = eps
}

// SetLeaderHint makes new streams go first to the endpoint hint returns
// (when not empty): the global leader as a global voter in the same
// process knows it, so that a new cell leader's first renewal does not
// start with a refusal. Call it before the first Renew.
func (c *GlobalClient) SetLeaderHint(hint func() string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leaderHint = hint
}

// Nudges implements Nudger.
func (c *GlobalClient) Nudges() <-chan struct{} { return c.nudges }

// renewStream is one open Coordinator stream.
type renewStream struct {
	endpoint string
	stream   globalv1.Coordinator_RenewClient
	cancel   context.CancelFunc
	done     chan struct{} // closed when the stream ended; err says why
	err      error

	mu      sync.Mutex
	waiting map[uint64]chan *globalv1.RenewResponse
}

// Renew implements Delegator: it sends req on the stream (opening one to
// the leader if needed) and waits for its answer.
func (c *GlobalClient) Renew(ctx context.Context, req RenewRequest) (RenewResponse, error) {
	msg := renewToProto(req)
	var last error
	for attempt := 0; ctx.Err() == nil && attempt <= 2*len(c.Endpoints()); attempt++ {
		st, err := c.stream()
		if err != nil {
			last = err
			continue
		}
		c.mu.Lock()
		c.seq++
		msg.Seq = c.seq
		c.mu.Unlock()
		ch := make(chan *globalv1.RenewResponse, 1)
		st.mu.Lock()
		st.waiting[msg.Seq] = ch
		st.mu.Unlock()
		if err := st.stream.Send(msg); err != nil {
			<-st.done
			last = c.drop(st)
			continue
		}
		select {
		case resp := <-ch:
			c.learn(resp.GetVoterEndpoints())
			return renewFromProto(resp)
		case <-st.done:
			last = c.drop(st)
			continue
		case <-ctx.Done():
			st.mu.Lock()
			delete(st.waiting, msg.Seq)
			st.mu.Unlock()
			return RenewResponse{}, ctx.Err()
		}
	}
	if last == nil {
		last = ctx.Err()
	}
	return RenewResponse{}, fmt.Errorf("renew with the global group: %w", last)
}

// stream returns the open stream, or opens one: to the leader the last
// refusal named, else to the next endpoint.
func (c *GlobalClient) stream() (*renewStream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != nil {
		return c.st, nil
	}
	if len(c.endpoints) == 0 {
		return nil, errors.New("no global voter endpoints")
	}
	ep := c.hint
	c.hint = ""
	if ep == "" && c.leaderHint != nil {
		ep = c.leaderHint()
	}
	if ep == "" {
		ep = c.endpoints[c.next%len(c.endpoints)]
		c.next++
	}
	cc, err := c.dial(ep)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s, err := globalv1.NewCoordinatorClient(cc).Renew(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	st := &renewStream{endpoint: ep, stream: s, cancel: cancel, done: make(chan struct{}), waiting: map[uint64]chan *globalv1.RenewResponse{}}
	go c.receive(st)
	c.st = st
	return st, nil
}

// receive delivers answers to their waiters and nudges to the loop.
func (c *GlobalClient) receive(st *renewStream) {
	defer close(st.done)
	for {
		resp, err := st.stream.Recv()
		if err != nil {
			st.err = err
			return
		}
		if resp.GetSeq() == 0 {
			select {
			case c.nudges <- struct{}{}:
			default:
			}
			continue
		}
		st.mu.Lock()
		ch := st.waiting[resp.GetSeq()]
		delete(st.waiting, resp.GetSeq())
		st.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
}

// drop forgets an ended stream and returns why it ended; a refusal that
// names the leader sends the next stream there.
func (c *GlobalClient) drop(st *renewStream) error {
	st.cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st == st {
		c.st = nil
	}
	if info := rpcerr.Info(st.err); info.GetReason() == rpcerr.ReasonNotLeader {
		c.hint = info.GetMetadata()[rpcerr.KeyLeaderEndpoint]
		if c.hint == "" {
			// Nobody known to lead yet (an election): do not spin.
			time.Sleep(50 * time.Millisecond)
		}
	}
	return st.err
}

// CreateDomain creates a domain in the federation's catalog (the global
// group's), through any global voter.
func (c *GlobalClient) CreateDomain(ctx context.Context, d *wdsv1.Domain) (*wdsv1.Domain, error) {
	var out *wdsv1.Domain
	err := c.admin(ctx, func(ctx context.Context, a globalv1.GlobalAdminClient) error {
		resp, err := a.CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: d})
		out = resp.GetDomain()
		return err
	})
	return out, err
}

// DeleteDomain starts deleting a domain federation-wide.
func (c *GlobalClient) DeleteDomain(ctx context.Context, name string) error {
	return c.admin(ctx, func(ctx context.Context, a globalv1.GlobalAdminClient) error {
		_, err := a.DeleteDomain(ctx, &wdsv1.DeleteDomainRequest{Name: name})
		return err
	})
}

// admin runs call against the global voters in turn until one answers
// with anything but an unreachable node or no leader.
func (c *GlobalClient) admin(ctx context.Context, call func(context.Context, globalv1.GlobalAdminClient) error) error {
	var last error
	for _, ep := range c.Endpoints() {
		cc, err := c.dial(ep)
		if err != nil {
			last = err
			continue
		}
		err = call(ctx, globalv1.NewGlobalAdminClient(cc))
		if err == nil {
			return nil
		}
		if r := rpcerr.Reason(err); r != rpcerr.ReasonNotLeader && r != rpcerr.ReasonLeaderUnreachable && rpcerr.FromServer(err) {
			return err // the global group's answer
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("%w: the global group did not answer: %v", ErrNotLeader, last)
}

// Close ends the stream.
func (c *GlobalClient) Close() {
	c.mu.Lock()
	st := c.st
	c.st = nil
	c.mu.Unlock()
	if st != nil {
		st.cancel()
	}
}

func renewToProto(req RenewRequest) *globalv1.RenewRequest {
	m := &globalv1.RenewRequest{Region: req.Region, NodeId: req.NodeID, CatalogIndex: req.CatalogIndex, Domains: req.Domains}
	for _, id := range req.Held {
		m.Held = append(m.Held, &globalv1.DelegationRanges{Domain: id.Domain, Region: id.Region, Generation: id.Generation})
	}
	for _, id := range req.Stale {
		m.Stale = append(m.Stale, &globalv1.DelegationRanges{Domain: id.Domain, Region: id.Region, Generation: id.Generation})
	}
	for _, dl := range req.Released {
		r := &globalv1.DelegationRanges{Domain: dl.Domain, Region: dl.Region, Generation: dl.Generation}
		for _, x := range dl.Ranges {
			r.Ranges = append(r.Ranges, topology.RangeToProto(x))
		}
		m.Released = append(m.Released, r)
	}
	for name, n := range req.Load {
		m.Load = append(m.Load, &globalv1.DomainLoad{Domain: name, Consumers: uint32(n)})
	}
	return m
}

func renewFromProto(m *globalv1.RenewResponse) (RenewResponse, error) {
	var resp RenewResponse
	for i, d := range m.GetDelegations() {
		dl := Delegation{
			DelegationID: DelegationID{Domain: d.GetDomain(), Region: d.GetRegion(), Generation: d.GetGeneration()},
			Duration:     time.Duration(d.GetDurationMillis()) * time.Millisecond,
		}
		for j, r := range d.GetRanges() {
			x, err := topology.RangeFromProto(fmt.Sprintf("delegations[%d].ranges[%d]", i, j), r)
			if err != nil {
				return RenewResponse{}, err
			}
			dl.Ranges = append(dl.Ranges, x)
		}
		resp.Delegations = append(resp.Delegations, dl)
	}
	for _, e := range m.GetEnded() {
		resp.Ended = append(resp.Ended, DelegationID{Domain: e.GetDomain(), Region: e.GetRegion(), Generation: e.GetGeneration()})
	}
	if c := m.GetCatalog(); c != nil {
		resp.Catalog = &Catalog{Index: c.GetIndex(), Domains: append([]*wdsv1.Domain(nil), c.GetDomains()...), Deleting: c.GetDeleting()}
	}
	return resp, nil
}
