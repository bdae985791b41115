package cell

import (
	"testing"

	"github.com/wdsio/wds/internal/serve"
)

// startServed starts a node of cfg and serves it on a process front of its
// own (internal/serve), as internal/celltest does, for the package's
// internal tests; the process stops when the test ends (or the node
// closes).
func startServed(t testing.TB, cfg Config) (*Node, error) {
	t.Helper()
	var n *Node
	p, err := serve.Start(serve.Config{GRPC: cfg.GRPCListenAddr(), HTTP: cfg.HTTPBind, Logger: cfg.Logger, ServerOptions: ServerOptions(cfg)},
		func() ([]serve.Service, error) {
			var err error
			n, err = NewNode(cfg)
			return []serve.Service{n}, err
		})
	if err != nil {
		return nil, err
	}
	t.Cleanup(p.Stop)
	return n, nil
}
