package client

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// slowWelcomeServer is a busy but healthy leader, over real gRPC: the
// first session is welcomed at once and ended after 1.2 s (as a slow
// stream is); every later Hello is answered after welcomeDelay. Heartbeats
// are acked at once.
type slowWelcomeServer struct {
	wdsv1.UnimplementedSessionServer
	sessions     atomic.Int32
	welcomeDelay time.Duration
}

// Locate: this node leads (it is the only one).
func (s *slowWelcomeServer) Locate(context.Context, *wdsv1.LocateRequest) (*wdsv1.LocateResponse, error) {
	return &wdsv1.LocateResponse{NodeId: "n1", Leader: true}, nil
}

func (s *slowWelcomeServer) Connect(st grpc.BidiStreamingServer[wdsv1.ClientMessage, wdsv1.ServerMessage]) error {
	n := s.sessions.Add(1)
	m, err := st.Recv()
	if err != nil {
		return err
	}
	if n > 1 {
		select {
		case <-time.After(s.welcomeDelay):
		case <-st.Context().Done():
			return st.Context().Err()
		}
	}
	w := welcomeMsg(shard0)
	w.SessionToken = []byte("tok")
	w.AckSeq = m.GetHello().GetSeq()
	if err := st.Send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_Welcome{Welcome: w}}); err != nil {
		return err
	}
	var mu sync.Mutex
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			if hb := m.GetHeartbeat(); hb != nil {
				mu.Lock()
				_ = st.Send(&wdsv1.ServerMessage{Msg: &wdsv1.ServerMessage_HeartbeatAck{HeartbeatAck: &wdsv1.HeartbeatAck{Seq: hb.GetSeq()}}})
				mu.Unlock()
			}
		}
	}()
	if n == 1 {
		select {
		case <-time.After(1200 * time.Millisecond):
			return status.Error(codes.Unavailable, "session stream too slow: reconnect")
		case err := <-errc:
			return err
		}
	}
	return <-errc
}

// TestSlowWelcomeIsAwaited: a reconnecting consumer must let a busy leader
// that answers every Hello in 2.2 s (lease 3 s) finish its handshake —
// abandoning it would only add retries to the leader's queue — and the
// first heartbeat goes out at once, so the short lease the late Welcome
// leaves is renewed before it lapses.
func TestSlowWelcomeIsAwaited(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := &slowWelcomeServer{welcomeDelay: 2200 * time.Millisecond}
	wdsv1.RegisterSessionServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	var mu sync.Mutex
	var welcomes, losts int
	resumed := make(chan struct{})
	c, err := NewConsumer(Config{
		Endpoints: []string{lis.Addr().String()}, ID: "c1", Region: "r", Domains: []string{"d"},
		Handler: func(ctx context.Context, s Shard) { <-ctx.Done() },
		OnEvent: func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			switch e.Kind {
			case EventWelcome:
				if welcomes++; welcomes == 2 {
					close(resumed)
				}
			case EventLost:
				losts++
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = c.Close(ctx)
	}()
	select {
	case <-resumed:
	case <-time.After(8 * time.Second):
		t.Fatalf("not resumed after 8 s (%d sessions opened): the handshake with a slow but healthy leader was cut short", fake.sessions.Load())
	}
	// One heartbeat round trip after the late Welcome, the lease is renewed.
	time.Sleep(time.Second)
	mu.Lock()
	defer mu.Unlock()
	if losts != 0 || len(c.Held()) != 1 {
		t.Errorf("after resuming: %d lost, %d held; want 0 lost and the shard running", losts, len(c.Held()))
	}
}
