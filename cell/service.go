package cell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/wdsio/wds/internal/rpcerr"
	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Wire limits: nothing from the wire is trusted.
const (
	maxEndpointLen   = 256
	maxDomainsPerMsg = 256
	maxWatch         = 1024
	maxShardRefs     = 1 << 20
	maxTokenLen      = 64
)

// sessionService implements wdsv1.SessionServer.
type sessionService struct {
	wdsv1.UnimplementedSessionServer
	n *Node
}

func (s *sessionService) Connect(stream wdsv1.Session_ConnectServer) error {
	s.n.metrics.sessionsOpen.Add(stream.Context(), 1)
	defer s.n.metrics.sessionsOpen.Add(context.Background(), -1)
	hello, received, err := firstHello(stream, s.n.cfg.HelloTimeout)
	if err != nil {
		return toStatus(err)
	}
	if hello.GetRegion() == "" {
		hello.Region = s.n.cfg.Region // "the region of the cell I reach"
	}
	if err := validateHello(hello, s.n.cfg.Region); err != nil {
		return toStatus(err)
	}
	switch hello.GetRole() {
	case wdsv1.Role_ROLE_CONSUMER:
		return s.serveConsumer(stream, hello, received)
	default:
		return s.serveObserver(stream, hello)
	}
}

// firstHello waits for the session's first message, which must be a Hello.
func firstHello(stream wdsv1.Session_ConnectServer, timeout time.Duration) (*wdsv1.Hello, time.Time, error) {
	type res struct {
		m   *wdsv1.ClientMessage
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := stream.Recv()
		ch <- res{m, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, time.Time{}, r.err
		}
		h := r.m.GetHello()
		if h == nil {
			return nil, time.Time{}, topology.Invalid("hello", "", "the first message of a session must be a Hello")
		}
		return h, time.Now(), nil
	case <-t.C:
		return nil, time.Time{}, rpcerr.Newf(codes.DeadlineExceeded, rpcerr.ReasonHelloTimeout, "no Hello within %v", timeout)
	}
}

// validateHello checks everything about a Hello that does not need state.
func validateHello(h *wdsv1.Hello, region string) error {
	switch h.GetRole() {
	case wdsv1.Role_ROLE_CONSUMER:
		if err := topology.ValidateConsumerID("hello.consumer_id", h.GetConsumerId()); err != nil {
			return err
		}
		if h.GetRegion() != region {
			return topology.Invalid("hello.region", fmt.Sprintf("%q", h.GetRegion()), "this endpoint serves region %q: connect consumers to their own region's endpoint", region)
		}
		if len(h.GetDomains()) == 0 {
			return topology.Invalid("hello.domains", "", "a consumer must serve at least one domain")
		}
	case wdsv1.Role_ROLE_OBSERVER:
		if len(h.GetDomains())+len(h.GetWatch()) == 0 {
			return topology.Invalid("hello.watch", "", "an observer must watch at least one domain")
		}
		if len(h.GetHeld()) > 0 {
			return topology.Invalid("hello.held", "", "an observer holds no grants")
		}
	default:
		return topology.Invalid("hello.role", h.GetRole().String(), "must be ROLE_CONSUMER or ROLE_OBSERVER")
	}
	if len(h.GetEndpoint()) > maxEndpointLen {
		return topology.Invalid("hello.endpoint", fmt.Sprintf("%d bytes", len(h.GetEndpoint())), "longer than %d bytes", maxEndpointLen)
	}
	if h.GetEndpoint() != "" {
		// Published in routing for others to dial: it must be an address.
		if err := topology.ValidateHostPort("hello.endpoint", h.GetEndpoint()); err != nil {
			return err
		}
	}
	if len(h.GetDomains()) > maxDomainsPerMsg {
		return topology.Invalid("hello.domains", fmt.Sprintf("%d domains", len(h.GetDomains())), "at most %d", maxDomainsPerMsg)
	}
	if len(h.GetWatch()) > maxWatch {
		return topology.Invalid("hello.watch", fmt.Sprintf("%d domains", len(h.GetWatch())), "at most %d", maxWatch)
	}
	if len(h.GetSessionToken()) > maxTokenLen {
		return topology.Invalid("hello.session_token", fmt.Sprintf("%d bytes", len(h.GetSessionToken())), "at most %d bytes", maxTokenLen)
	}
	if len(h.GetHeld()) > maxShardRefs {
		return topology.Invalid("hello.held", fmt.Sprintf("%d grants", len(h.GetHeld())), "at most %d", maxShardRefs)
	}
	seen := map[string]bool{}
	for i, d := range h.GetDomains() {
		f := fmt.Sprintf("hello.domains[%d]", i)
		if err := topology.ValidateName(f, d); err != nil {
			return err
		}
		if seen[d] {
			return topology.Invalid(f, fmt.Sprintf("%q", d), "listed twice")
		}
		seen[d] = true
	}
	for i, d := range h.GetWatch() {
		if err := topology.ValidateName(fmt.Sprintf("hello.watch[%d]", i), d); err != nil {
			return err
		}
	}
	for i, g := range h.GetHeld() {
		f := fmt.Sprintf("hello.held[%d]", i)
		if err := topology.ValidateName(f+".domain", g.GetDomain()); err != nil {
			return err
		}
		if _, err := topology.RangeFromProto(f+".range", g.GetRange()); err != nil {
			return err
		}
	}
	return nil
}

// Locate answers from this node's own view: no Raft round trip, no lock
// of the state.
func (s *sessionService) Locate(ctx context.Context, _ *wdsv1.LocateRequest) (*wdsv1.LocateResponse, error) {
	n := s.n
	id, ep := n.leaderEndpoint()
	r := n.raft.Status()
	return &wdsv1.LocateResponse{
		NodeId:         n.cfg.NodeID,
		Region:         n.cfg.Region,
		Leader:         n.currentLeader() != nil,
		LeaderId:       id,
		LeaderEndpoint: ep,
		Term:           r.Term,
		CommitIndex:    r.CommitIndex,
		AppliedIndex:   r.AppliedIndex,
	}, nil
}

func (s *sessionService) serveConsumer(stream wdsv1.Session_ConnectServer, h *wdsv1.Hello, received time.Time) error {
	l := s.n.currentLeader()
	if l == nil {
		id, ep := s.n.leaderEndpoint()
		reason := "consumer sessions are served by the cell leader"
		if id == "" {
			reason = "no leader known right now (an election may be under way); ask again"
		}
		return stream.Send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Redirect{Redirect: &wdsv1.Redirect{
			LeaderEndpoint: ep, LeaderId: id, Reason: reason,
		}}})
	}
	ctx, cancel := context.WithTimeout(stream.Context(), 10*time.Second)
	conn, owner, err := l.attachConsumer(ctx, h, received, stream)
	cancel()
	if err != nil {
		if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrShutdown) {
			id, ep := s.n.leaderEndpoint()
			return stream.Send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Redirect{Redirect: &wdsv1.Redirect{
				LeaderEndpoint: ep, LeaderId: id, Reason: err.Error(),
			}}})
		}
		return toStatus(err)
	}
	conn.sub = s.n.hub.subscribe(append(append([]string{}, h.GetDomains()...), h.GetWatch()...), false, conn.deliverRouting)
	defer s.n.hub.unsubscribe(conn.sub)
	s.n.metrics.consumerSessions.Add(stream.Context(), 1)
	defer s.n.metrics.consumerSessions.Add(context.Background(), -1)

	go s.recvConsumer(stream, l, owner, conn)
	err = conn.run()
	l.detach(owner.cl, conn)
	return err
}

// recvConsumer is a consumer session's receive loop.
func (s *sessionService) recvConsumer(stream wdsv1.Session_ConnectServer, l *leader, o *consumerOwner, conn *sessionConn) {
	for {
		m, err := stream.Recv()
		if err != nil {
			if err == io.EOF {
				conn.close(nil, nil)
			} else {
				conn.close(err, nil)
			}
			return
		}
		switch msg := m.GetMsg().(type) {
		case *wdsv1.ClientMessage_Heartbeat:
			s.n.metrics.heartbeats.Add(l.ctx, 1)
			conn.enqueue(outItem{kind: itemAck, seq: msg.Heartbeat.GetSeq(), received: time.Now()})
		case *wdsv1.ClientMessage_Release:
			ops, err := releaseOps(o.cl.id, msg.Release)
			if err != nil {
				conn.close(toStatus(err), nil)
				return
			}
			go func() {
				if _, err := l.n.propose(l.ctx, ops...); err != nil {
					l.log.Debug("release not committed", "consumer", o.cl.id, "err", err)
				}
			}()
		case *wdsv1.ClientMessage_Drain:
			go func() {
				_, err := l.n.propose(l.ctx, &cellv1.Op{Op: &cellv1.Op_SetDraining{SetDraining: &cellv1.SetDraining{
					ConsumerId: o.cl.id, Incarnation: []byte(o.cl.incarnation),
				}}})
				if err != nil {
					l.log.Debug("drain not committed", "consumer", o.cl.id, "err", err)
				}
			}()
		default:
			conn.close(toStatus(topology.Invalid("message", messageKind(m), "not valid after the Hello on a consumer session: a session sends one Hello, first, then heartbeats, releases and drains")), nil)
			return
		}
	}
}

func releaseOps(consumerID string, r *wdsv1.Release) ([]*cellv1.Op, error) {
	if len(r.GetShards()) > maxShardRefs {
		return nil, topology.Invalid("release.shards", fmt.Sprintf("%d shards", len(r.GetShards())), "at most %d", maxShardRefs)
	}
	ops := make([]*cellv1.Op, 0, len(r.GetShards()))
	for i, ref := range r.GetShards() {
		f := fmt.Sprintf("release.shards[%d]", i)
		if err := topology.ValidateName(f+".domain", ref.GetDomain()); err != nil {
			return nil, err
		}
		if ref.GetRegion() != "" {
			if err := topology.ValidateName(f+".region", ref.GetRegion()); err != nil {
				return nil, err
			}
		}
		rng, err := topology.RangeFromProto(f+".range", ref.GetRange())
		if err != nil {
			return nil, err
		}
		ops = append(ops, &cellv1.Op{Op: &cellv1.Op_Release{Release: &cellv1.Release{
			Domain: ref.GetDomain(), Region: ref.GetRegion(), From: rng.From.Bytes(), ConsumerId: consumerID, Token: ref.GetToken(),
		}}})
	}
	return ops, nil
}

// observerOwner serves observer sessions: no lease, routing only.
type observerOwner struct{ hub *routingHub }

func (o observerOwner) beforeAck(*sessionConn, time.Time) (bool, []string) { return true, nil }
func (o observerOwner) beforeRevoke(*sessionConn, []grantKey)              {}
func (o observerOwner) resync(c *sessionConn) {
	if c.sub != nil {
		o.hub.resync(c.sub)
	}
}

func (s *sessionService) serveObserver(stream wdsv1.Session_ConnectServer, h *wdsv1.Hello) error {
	names := append(append([]string{}, h.GetDomains()...), h.GetWatch()...)
	if err := s.n.state.DomainsExist("hello.watch", names); err != nil {
		return toStatus(err)
	}
	conn := newSessionConn(stream, observerOwner{hub: s.n.hub}, s.n.cfg.MaxSessionQueue, s.n.cfg.MaxRoutingQueue)
	conn.enqueueWelcome(outItem{kind: itemWelcome, welcome: &wdsv1.Welcome{NodeId: s.n.cfg.NodeID, Drift: s.n.cfg.Drift, AckSeq: h.GetSeq()}}, 0)
	conn.sub = s.n.hub.subscribe(names, h.GetOwnRoutingOnly(), conn.deliverRouting)
	defer s.n.hub.unsubscribe(conn.sub)
	s.n.addObserver(conn)
	defer s.n.removeObserver(conn)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				conn.close(nil, nil)
				return
			}
			if hb := m.GetHeartbeat(); hb != nil {
				conn.enqueue(outItem{kind: itemAck, seq: hb.GetSeq()})
				continue
			}
			conn.close(toStatus(topology.Invalid("message", messageKind(m), "an observer session sends one Hello, then only heartbeats")), nil)
			return
		}
	}()
	return conn.run()
}
