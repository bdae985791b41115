package rpcfwd

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/internal/rpcerr"
)

const checkMethod = "/grpc.health.v1.Health/Check"

// node is one member of a made-up group serving the health service's
// Check as a leader-only call.
type node struct {
	healthpb.UnimplementedHealthServer
	id       string
	addr     string
	calls    atomic.Int32 // Check calls answered by the handler
	seenFrom atomic.Value // ForwardedBy of the last answered call

	mu     sync.Mutex
	leads  bool
	leader string // the leader's id as this node believes
	answer error  // the handler's error, if any

	g *members
}

// members are the group's nodes by id.
type members struct {
	mu    sync.Mutex
	nodes map[string]*node
}

func (m *members) get(id string) *node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nodes[id]
}

func (m *members) add(n *node) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nodes[n.id] = n
}

func (n *node) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	n.calls.Add(1)
	n.seenFrom.Store(ForwardedBy(ctx))
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.answer != nil {
		return nil, n.answer
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (n *node) set(leads bool, leader string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.leads, n.leader = leads, leader
}

// group starts nodes a and b on loopback; every node forwards Check.
func group(t *testing.T) (a, b *node) {
	t.Helper()
	g := &members{nodes: map[string]*node{}}
	var conns sync.Map
	for _, id := range []string{"a", "b"} {
		n := &node{id: id, g: g}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n.addr = lis.Addr().String()
		f := &Forwarder{
			Self:  id,
			Group: "test group",
			Leader: func() (bool, string, string) {
				n.mu.Lock()
				leads, leader := n.leads, n.leader
				n.mu.Unlock()
				if leads {
					return true, "", ""
				}
				if l := g.get(leader); l != nil {
					return false, l.id, l.addr
				}
				return false, leader, ""
			},
			Dial: func(ep string) (grpc.ClientConnInterface, error) {
				if cc, ok := conns.Load(ep); ok {
					return cc.(*grpc.ClientConn), nil
				}
				cc, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					return nil, err
				}
				t.Cleanup(func() { cc.Close() })
				conns.Store(ep, cc)
				return cc, nil
			},
		}
		s := grpc.NewServer(grpc.ChainUnaryInterceptor(f.Interceptor(checkMethod)))
		healthpb.RegisterHealthServer(s, n)
		go s.Serve(lis)
		t.Cleanup(s.Stop)
		g.add(n)
	}
	return g.get("a"), g.get("b")
}

func check(t *testing.T, n *node) (*healthpb.HealthCheckResponse, error) {
	t.Helper()
	cc, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
}

// TestFollowerForwards: a follower relays a leader-only call to the
// leader, which answers it (seeing who forwarded it); the leader answers
// its own calls.
func TestFollowerForwards(t *testing.T) {
	a, b := group(t)
	a.set(false, "b")
	b.set(true, "b")
	res, err := check(t, a)
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("forwarded call: %v, %v", res, err)
	}
	if a.calls.Load() != 0 || b.calls.Load() != 1 || b.seenFrom.Load() != "a" {
		t.Errorf("handler calls a=%d b=%d, b saw forwarded-by %q; want 0, 1, \"a\"", a.calls.Load(), b.calls.Load(), b.seenFrom.Load())
	}
	if _, err := check(t, b); err != nil || b.calls.Load() != 2 || b.seenFrom.Load() != "" {
		t.Errorf("the leader's own call: %v, calls %d, forwarded-by %q", err, b.calls.Load(), b.seenFrom.Load())
	}
	// The leader's own errors come back as they are.
	b.mu.Lock()
	b.answer = rpcerr.New(codes.NotFound, rpcerr.ReasonNotFound, `domain "x" does not exist`)
	b.mu.Unlock()
	_, err = check(t, a)
	if status.Code(err) != codes.NotFound || rpcerr.Reason(err) != rpcerr.ReasonNotFound || status.Convert(err).Message() != `domain "x" does not exist` {
		t.Errorf("the leader's error through a follower: %v (reason %q)", err, rpcerr.Reason(err))
	}
}

// TestForwardedCallToNonLeaderRefused: two nodes that each think the
// other leads do not bounce a call between them: the second refuses it
// with NOT_LEADER, naming the node that forwarded it, and no handler runs.
func TestForwardedCallToNonLeaderRefused(t *testing.T) {
	a, b := group(t)
	a.set(false, "b")
	b.set(false, "a")
	_, err := check(t, a)
	if status.Code(err) != codes.Unavailable || rpcerr.Reason(err) != rpcerr.ReasonNotLeader {
		t.Fatalf("got %v (reason %q), want Unavailable NOT_LEADER", err, rpcerr.Reason(err))
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "node b is not the leader (forwarded by a)") {
		t.Errorf("message %q does not say which node refused and who forwarded", msg)
	}
	if md := rpcerr.Info(err).GetMetadata(); md[rpcerr.KeyLeaderID] != "a" || md[rpcerr.KeyLeaderEndpoint] != a.addr {
		t.Errorf("metadata %v, want the leader b believes in (a at %s)", md, a.addr)
	}
	if a.calls.Load() != 0 || b.calls.Load() != 0 {
		t.Errorf("handlers ran: a=%d b=%d", a.calls.Load(), b.calls.Load())
	}
}

// TestNoLeader: with no leader known, or the leader unreachable, the
// follower says so with NOT_LEADER or LEADER_UNREACHABLE.
func TestNoLeader(t *testing.T) {
	a, b := group(t)
	a.set(false, "")
	_, err := check(t, a)
	if status.Code(err) != codes.Unavailable || rpcerr.Reason(err) != rpcerr.ReasonNotLeader ||
		status.Convert(err).Message() != "the test group has no leader right now; retry shortly" {
		t.Errorf("no leader: %v (reason %q)", err, rpcerr.Reason(err))
	}
	a.set(false, "a") // names itself but is not in office
	if _, err := check(t, a); rpcerr.Reason(err) != rpcerr.ReasonNotLeader {
		t.Errorf("self named, not leading: %v (reason %q)", err, rpcerr.Reason(err))
	}

	// The leader's address refuses connections.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	a.g.add(&node{id: "c", addr: dead})
	a.set(false, "c")
	_, err = check(t, a)
	if status.Code(err) != codes.Unavailable || rpcerr.Reason(err) != rpcerr.ReasonLeaderUnreachable {
		t.Fatalf("leader down: %v (reason %q), want Unavailable LEADER_UNREACHABLE", err, rpcerr.Reason(err))
	}
	if md := rpcerr.Info(err).GetMetadata(); md[rpcerr.KeyLeaderID] != "c" || md[rpcerr.KeyLeaderEndpoint] != dead {
		t.Errorf("metadata %v, want leader c at %s", md, dead)
	}
	if a.calls.Load()+b.calls.Load() != 0 {
		t.Error("a handler ran")
	}
}

// TestOtherMethodsPass: methods not named are answered where they land.
func TestOtherMethodsPass(t *testing.T) {
	f := &Forwarder{Self: "a", Leader: func() (bool, string, string) { t.Fatal("Leader asked"); return false, "", "" }}
	ic := f.Interceptor(checkMethod)
	ran := false
	_, err := ic(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/List"},
		func(context.Context, any) (any, error) { ran = true; return nil, nil })
	if err != nil || !ran {
		t.Errorf("unlisted method: ran %v, err %v", ran, err)
	}
}

func TestUnknownMethodPanics(t *testing.T) {
	for _, m := range []string{"/no.such.Service/Call", "/grpc.health.v1.Health/Watch"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Interceptor(%q) did not panic", m)
				}
			}()
			(&Forwarder{}).Interceptor(m)
		}()
	}
}
