package cell

import (
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/wdsio/wds/internal/wire"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// How a node is served. The node owns no listener, gRPC server or HTTP
// port: the process composes them (internal/serve, for `wds server`, `wds
// dev` and internal/celltest) and registers the node on them, beside other
// services later (the global group's member):
//
//	srv := grpc.NewServer(append(otel, cell.ServerOptions(cfg)...)...)
//	node.Register(srv)
//	node.Serving(grpcAddr, httpAddr) // Endpoint, HTTPAddr
//	// HTTP admin: node.Health (/healthz), node.Ready (/readyz), node.Metrics
//	// when node.Done is closed (Close), stop srv.

// PeerResolver finds a cell node's client (gRPC) endpoint by node id: where
// sessions are redirected, follower admin calls forwarded and Status looks.
// StaticPeers resolves from Config.Peers; gossip membership will later.
type PeerResolver interface {
	// Endpoint returns node id's endpoint (host:port), false if unknown.
	Endpoint(id string) (string, bool)
}

// StaticPeers resolves endpoints from a fixed list of voters.
type StaticPeers []Peer

// Endpoint returns the GRPC address of the peer id.
func (s StaticPeers) Endpoint(id string) (string, bool) {
	for _, p := range s {
		if p.ID == id && p.GRPC != "" {
			return p.GRPC, true
		}
	}
	return "", false
}

// GRPCListenAddr is where the node's gRPC services are to be served:
// GRPCBind, else this node's Peers[].GRPC.
func (c Config) GRPCListenAddr() string { return firstNonEmpty(c.GRPCBind, c.self().GRPC) }

// ServerOptions are the gRPC server options a server carrying a node's
// services must have: the cell's codec (routing frames encoded once for
// many streams; malformed input answered InvalidArgument, see
// wire.RegisterService), the client message bound (MaxRecvMsgBytes) and the
// keepalive policy. The codec replaces the server's for every service on
// it: another service sharing the server must report malformed input as
// wire.RegisterService does. RPC metrics and tracing (otelgrpc) are the
// composer's (internal/serve); the leader-only Admin forwarding is not a
// server option but part of Register.
func ServerOptions(cfg Config) []grpc.ServerOption {
	maxRecv := cfg.MaxRecvMsgBytes
	if maxRecv <= 0 {
		maxRecv = DefaultConfig().MaxRecvMsgBytes
	}
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecv),
		grpc.ForceServerCodecV2(wire.Codec()),
		grpc.SharedWriteBuffer(true),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
}

// Register registers the node's Session and Admin services on s, which
// must have ServerOptions. The Admin service carries the leader-only
// forwarding (adminForwarder: a follower relays every call but Status to
// the leader), inside any interceptor of the server; once the node is
// closed its handlers refuse new calls (SHUTTING_DOWN), so a server that
// other services share goes on serving them.
func (n *Node) Register(s grpc.ServiceRegistrar) {
	wire.RegisterService(wire.Registrar{S: s, Gate: n.serving}, &wdsv1.Session_ServiceDesc, &sessionService{n: n})
	wire.RegisterService(wire.Registrar{S: s, Gate: n.serving, Unary: n.adminForwarder()}, &wdsv1.Admin_ServiceDesc, &adminService{n: n})
}

// serving is nil until the node is closed.
func (n *Node) serving() error {
	select {
	case <-n.done:
		return toStatus(fmt.Errorf("%w: node %s is shut down", ErrShutdown, n.cfg.NodeID))
	default:
		return nil
	}
}

// servedAddrs is where the process serves the node.
type servedAddrs struct{ grpc, http string }

// Serving tells the node where the process serves it (the bound gRPC
// address; the HTTP admin address, "" without one): Endpoint and HTTPAddr
// report them.
func (n *Node) Serving(grpcAddr, httpAddr string) {
	n.served.Store(&servedAddrs{grpc: grpcAddr, http: httpAddr})
}

// Done is closed once Close (or Shutdown) has ended the node's sessions:
// the node serves no more, and its process may stop serving.
func (n *Node) Done() <-chan struct{} { return n.done }

// Health is the liveness check of /healthz: nil unless Raft is shut down.
func (n *Node) Health() error { return n.health() }

// Ready is the readiness check of /readyz (see readiness): the node is the
// ready leader, or has applied what the leader has committed.
func (n *Node) Ready() error { return n.ready() }
