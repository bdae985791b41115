package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/internal/serve"
)

// Port layout of `wds dev`: node i serves gRPC on base+i, Raft on
// base+100+i and HTTP on base+200+i.
const (
	devDefaultBase = 7100
	devRaftOffset  = 100
	devHTTPOffset  = 200
)

// devMaxBase is the highest --base-port for nodes nodes: the last HTTP
// port, base+200+nodes-1, must still be a port.
func devMaxBase(nodes int) int { return 65535 - devHTTPOffset - nodes + 1 }

// devHTTPPorts describes the HTTP ports relative to the base:
// "base+200..base+202", or "base+200" for one node.
func devHTTPPorts(nodes int) string {
	if nodes == 1 {
		return fmt.Sprintf("base+%d", devHTTPOffset)
	}
	return fmt.Sprintf("base+%d..base+%d", devHTTPOffset, devHTTPOffset+nodes-1)
}

type devNodeJSON struct {
	ID   string `json:"id"`
	GRPC string `json:"grpc"`
	Raft string `json:"raft"`
	HTTP string `json:"http"`
}

type devJSON struct {
	Region    string        `json:"region"`
	Nodes     []devNodeJSON `json:"nodes"`
	Endpoints string        `json:"endpoints"`
	Leader    string        `json:"leader"`
	DataDir   string        `json:"data_dir"`
	Temporary bool          `json:"temporary"`
}

// NewDevCommand returns `wds dev`.
func NewDevCommand(g *globals) *cobra.Command {
	var (
		nodes   int
		base    int
		dataDir string
		region  string
		demo    bool
	)
	cmd := &cobra.Command{
		Use:   "dev [--demo]",
		Short: "Run a 3-node cell in this process on loopback, for development",
		Long: `Run a whole cell in this process: 3 nodes (or --nodes 1) on 127.0.0.1 with
real Raft and gRPC, the way production runs one per machine. Node i serves
gRPC on base+i (7100, 7101, 7102: 127.0.0.1:7100 is every client command's
default --endpoint), Raft on base+100+i and HTTP /metrics, /healthz and
/readyz on base+200+i; --base-port moves all three ranges. State lives in a
temporary directory removed on exit, unless --data-dir names one to keep.

--demo also creates a domain "demo" (global, 16 shards, ttl 5s), runs three
consumers in this process and, every few seconds, adds one or drains one,
printing each grant and revoke and, now and then, each consumer's shard
count: shards move, with the fewest moves that keep the counts even.

Runs until SIGINT or SIGTERM. Plaintext, loopback only.`,
		Example: `  wds dev
  wds dev --demo
  wds dev --nodes 1 --base-port 17100 --data-dir ./wds-data`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if nodes != 1 && nodes != 3 {
				return usageErrorf(cmd, "invalid value %d for --nodes: want 1 or 3", nodes)
			}
			if maxBase := devMaxBase(nodes); base < 1 || base > maxBase {
				return usageErrorf(cmd, "--base-port: must be between 1 and %d (HTTP uses %s); got %d", maxBase, devHTTPPorts(nodes), base)
			}
			log, err := g.logger(cmd, "error")
			if err != nil {
				return err
			}
			// The nodes log errors while they stop (peers vanish one by
			// one); nobody needs those.
			gate := &gateHandler{Handler: log.Handler()}
			return runDev(cmd, g, devOptions{nodes: nodes, base: base, dataDir: dataDir, region: region, demo: demo}, slog.New(gate), gate)
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", 3, "number of nodes: 1 or 3")
	f.IntVar(&base, "base-port", devDefaultBase, "first gRPC port; Raft uses base+100.., HTTP base+200..")
	f.StringVar(&dataDir, "data-dir", "", "keep the cell's state in this directory (default: a temporary one, removed on exit)")
	f.StringVar(&region, "region", "local", "the cell's region")
	f.BoolVar(&demo, "demo", false, "also run demo consumers and show shards move")
	return cmd
}

type devOptions struct {
	nodes   int
	base    int
	dataDir string
	region  string
	demo    bool
}

func runDev(cmd *cobra.Command, g *globals, o devOptions, log *slog.Logger, gate *gateHandler) (err error) {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := cmd.OutOrStdout()

	dir, temporary := o.dataDir, false
	if dir == "" {
		dir, err = os.MkdirTemp("", "wds-dev-")
		if err != nil {
			return err
		}
		temporary = true
		defer os.RemoveAll(dir)
	}
	var peers []cell.Peer
	for i := 0; i < o.nodes; i++ {
		peers = append(peers, cell.Peer{
			ID:   fmt.Sprintf("n%d", i+1),
			Raft: fmt.Sprintf("127.0.0.1:%d", o.base+devRaftOffset+i),
			GRPC: fmt.Sprintf("127.0.0.1:%d", o.base+i),
		})
	}
	var running []*cell.Node
	var procs []*serve.Process
	defer func() {
		for _, n := range running {
			n.Close()
		}
		for _, p := range procs {
			p.Stop()
		}
	}()
	for i, p := range peers {
		cfg := cell.DefaultConfig()
		cfg.NodeID = p.ID
		cfg.Region = o.region
		cfg.DataDir = filepath.Join(dir, p.ID)
		cfg.Peers = peers
		cfg.HTTPBind = fmt.Sprintf("127.0.0.1:%d", o.base+devHTTPOffset+i)
		cfg.Logger = log
		n, proc, err := serveNode(cfg)
		if errors.Is(err, raftnode.ErrVoterMismatch) {
			return fmt.Errorf("%w (wds dev: --data-dir %s was made with other --nodes or --base-port; run with those, or use another --data-dir)", err, dir)
		}
		if err != nil {
			return listenHint(err)
		}
		running, procs = append(running, n), append(procs, proc)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	leader, err := cell.WaitLeader(wctx, running...)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	info := devJSON{Region: o.region, Leader: leader.ID(), DataDir: dir, Temporary: temporary}
	var eps []string
	for i, n := range running {
		info.Nodes = append(info.Nodes, devNodeJSON{ID: n.ID(), GRPC: procs[i].GRPCAddr(), Raft: peers[i].Raft, HTTP: procs[i].HTTPAddr()})
		eps = append(eps, procs[i].GRPCAddr())
	}
	info.Endpoints = strings.Join(eps, ",")
	if g.json() {
		err = writeJSON(out, info)
	} else {
		err = printDev(out, info)
	}
	if err != nil {
		return err
	}

	var d *demo
	if o.demo {
		d, err = startDemo(ctx, out, eps, o.region, log)
		if err != nil {
			return err
		}
	}
	<-ctx.Done()
	stop()
	fmt.Fprintln(cmd.ErrOrStderr(), "wds dev: stopping")
	gate.closed.Store(true)
	if d != nil {
		d.stop()
	}
	return nil
}

// gateHandler passes records on until closed.
type gateHandler struct {
	slog.Handler
	closed atomic.Bool
}

func (h *gateHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return !h.closed.Load() && h.Handler.Enabled(ctx, l)
}

func (h *gateHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.closed.Load() {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h *gateHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &gatedChild{Handler: h.Handler.WithAttrs(attrs), gate: h}
}

func (h *gateHandler) WithGroup(name string) slog.Handler {
	return &gatedChild{Handler: h.Handler.WithGroup(name), gate: h}
}

// gatedChild is a derived handler that follows its gate.
type gatedChild struct {
	slog.Handler
	gate *gateHandler
}

func (h *gatedChild) Enabled(ctx context.Context, l slog.Level) bool {
	return !h.gate.closed.Load() && h.Handler.Enabled(ctx, l)
}

func (h *gatedChild) Handle(ctx context.Context, r slog.Record) error {
	if h.gate.closed.Load() {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h *gatedChild) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &gatedChild{Handler: h.Handler.WithAttrs(attrs), gate: h.gate}
}

func (h *gatedChild) WithGroup(name string) slog.Handler {
	return &gatedChild{Handler: h.Handler.WithGroup(name), gate: h.gate}
}

func printDev(w interface{ Write([]byte) (int, error) }, info devJSON) error {
	var b strings.Builder
	fmt.Fprintf(&b, "WDS dev cell: %d node(s) in region %q, plaintext on loopback\n\n", len(info.Nodes), info.Region)
	tw := newTable(&b)
	fmt.Fprintln(tw, "NODE\tGRPC ENDPOINT\tRAFT\tHTTP ADMIN")
	for _, n := range info.Nodes {
		leader := ""
		if n.ID == info.Leader {
			leader = "  (leader)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\thttp://%s/metrics /healthz /readyz%s\n", n.ID, n.GRPC, n.Raft, n.HTTP, leader)
	}
	tw.Flush()
	if info.Temporary {
		fmt.Fprintf(&b, "\nData: %s (removed on exit; --data-dir DIR keeps it)\n", info.DataDir)
	} else {
		fmt.Fprintf(&b, "\nData: %s (kept)\n", info.DataDir)
	}
	fmt.Fprintf(&b, `
Try, in another terminal:
  export %s=%s
  wds domain create orders --kind global --shards 16 --ttl 5s
  wds consume --domain orders --id worker-1
  wds consume --domain orders --id worker-2
  wds shards orders
  wds watch orders
  wds domain describe orders
  wds status

Ctrl-C stops the cell.
`, EnvEndpoint, info.Endpoints)
	_, err := w.Write([]byte(b.String()))
	return err
}
