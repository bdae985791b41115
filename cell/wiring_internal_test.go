package cell

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/internal/logging"
	"github.com/wdsio/wds/internal/rpcerr"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// TestRegisterOnSharedServer: a node registers on a server it shares with
// another service (as the global group's member will); closed, it refuses
// new calls as shutting down while the other service goes on serving.
func TestRegisterOnSharedServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftAddr := raftLis.Addr().String()
	raftLis.Close()
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Region, cfg.DataDir = "n1", "local", t.TempDir()
	cfg.Peers = []Peer{{ID: "n1", Raft: raftAddr, GRPC: lis.Addr().String()}}
	cfg.Logger = logging.Discard()
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	srv := grpc.NewServer(ServerOptions(cfg)...)
	n.Register(srv)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	defer srv.Stop()
	n.Serving(lis.Addr().String(), "")
	if n.Endpoint() != lis.Addr().String() || n.HTTPAddr() != "" {
		t.Fatalf("Endpoint %q HTTPAddr %q", n.Endpoint(), n.HTTPAddr())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := WaitLeader(ctx, n); err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := wdsv1.NewAdminClient(cc).ListDomains(ctx, &wdsv1.ListDomainsRequest{}); err != nil {
		t.Fatalf("ListDomains on the leader: %v", err)
	}
	n.Close()
	select {
	case <-n.Done():
	default:
		t.Fatal("Done not closed by Close")
	}
	_, err = wdsv1.NewSessionClient(cc).Locate(ctx, &wdsv1.LocateRequest{})
	if status.Code(err) != codes.Unavailable || rpcerr.Reason(err) != rpcerr.ReasonShuttingDown {
		t.Errorf("Locate on a closed node: %v, want Unavailable %s", err, rpcerr.ReasonShuttingDown)
	}
	st, err := wdsv1.NewSessionClient(cc).Connect(ctx)
	if err == nil {
		_, err = st.Recv()
	}
	if rpcerr.Reason(err) != rpcerr.ReasonShuttingDown {
		t.Errorf("Connect on a closed node: %v, want %s", err, rpcerr.ReasonShuttingDown)
	}
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("the other service of the server: %v", err)
	}
}
