package client

import (
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// connPool keeps one gRPC connection per endpoint for a consumer or an
// observer, or hands out a caller-provided shared connection.
type connPool struct {
	shared *grpc.ClientConn // Config.Conn: never dialed or closed here
	opts   []grpc.DialOption

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newConnPool(shared *grpc.ClientConn, extra []grpc.DialOption) *connPool {
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
	}, extra...)
	return &connPool{shared: shared, opts: opts, conns: map[string]*grpc.ClientConn{}}
}

// get returns the connection to endpoint, dialing it (lazily: grpc
// connects on first use) the first time.
func (p *connPool) get(endpoint string) (*grpc.ClientConn, error) {
	if p.shared != nil {
		return p.shared, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[endpoint]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(endpoint, p.opts...)
	if err != nil {
		return nil, err
	}
	p.conns[endpoint] = cc
	return cc, nil
}

// close closes the connections the pool dialed.
func (p *connPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cc := range p.conns {
		cc.Close()
	}
	p.conns = map[string]*grpc.ClientConn{}
}
