package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/federation"
	"github.com/wdsio/wds/internal/serve"
	"github.com/wdsio/wds/internal/telemetry"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// plaintextWarning is printed on stderr by every wds server: nothing it
// serves is encrypted or authenticated yet.
const plaintextWarning = `WARNING: wds server serves gRPC, Raft and HTTP in PLAINTEXT, without TLS or
WARNING: authentication (not implemented yet): anyone who can reach its ports
WARNING: can read and change the cell. Run it only on a trusted network.`

type serverOptions struct {
	node     string
	region   string
	dataDir  string
	raft     string
	grpc     string
	http     string
	peers    []string
	topology string
	drift    float64
	maxMoves int
}

// NewServerCommand returns `wds server`.
func NewServerCommand(g *globals) *cobra.Command {
	o := serverOptions{}
	def := cell.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "server --data-dir DIR (--node ID [--peer ID=RAFT=GRPC ...] | --topology FILE --node ID)",
		Short: "Run one node of a cell",
		Long: `Run one node of a WDS cell: a Raft voter that keeps the cell's domains,
consumers and grants under --data-dir (they survive restarts), serves the
Session and Admin gRPC APIs, and HTTP /metrics, /healthz and /readyz.

A cell is 1 or 3 (or 5, 7) nodes of one region. Describe it either with
flags: --node, --region and this node's --raft and --grpc addresses, plus
one --peer ID=RAFTADDR=GRPCADDR per voter (this node included; without
--peer the node forms a single-node cell of itself); or with a topology file
(--topology FILE --node ID), which gives the region, the voters and their
addresses, and domains, which are created once the cell has a leader if
they do not exist yet.

A topology file of several regions runs a federation node: the cell member
and, for a node with a global address, a voter of the global group (its
Raft log in DATA-DIR/global). On an empty global data dir a voter asks the
file's other voters first: it joins their group when one exists (once a
topology that lists it is applied), and bootstraps a new one only when all
of them answer that they have none. A node never leads both its cell and
the global group: it hands its cell to another member.

Runs until SIGINT or SIGTERM, then stops the node (a leader hands its cell,
and its global group, over first); the data dir stays.
There is no TLS yet: run it on a trusted network only.`,
		Example: `  # a single-node cell
  wds server --node n1 --data-dir /var/lib/wds

  # one node of a 3-node cell (run the same with n2 and n3 on their hosts)
  wds server --node n1 --region us-east --data-dir /var/lib/wds \
    --raft 10.0.0.1:7200 --grpc 10.0.0.1:7100 --http 0.0.0.0:7300 \
    --peer n1=10.0.0.1:7200=10.0.0.1:7100 \
    --peer n2=10.0.0.2:7200=10.0.0.2:7100 \
    --peer n3=10.0.0.3:7200=10.0.0.3:7100

  # the same from a topology file
  wds server --topology wds.yaml --node n1 --data-dir /var/lib/wds`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, domains, file, err := o.config(cmd)
			if err != nil {
				return err
			}
			log, err := g.logger(cmd, "info")
			if err != nil {
				return err
			}
			cfg.Logger = log
			if file != nil && federation.Federated(file) {
				// A federation: this node's cell member, and its global
				// voter if the file gives it a global address; the global
				// group starts from the file's regions and domains.
				fc, err := federation.NodeConfig(file, cfg.NodeID, cfg)
				if err != nil {
					return err
				}
				return runServer(cmd, g, cfg, nil, log, &fc)
			}
			return runServer(cmd, g, cfg, domains, log, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.node, "node", "", "this node's id (required)")
	f.StringVar(&o.region, "region", "local", "the cell's region (not with --topology)")
	f.StringVar(&o.dataDir, "data-dir", "", "directory of the Raft log and snapshots (required; survives restarts)")
	f.StringVar(&o.raft, "raft", "127.0.0.1:7200", "Raft address, host:port (with --peer or --topology: the listen address, if it differs)")
	f.StringVar(&o.grpc, "grpc", "127.0.0.1:7100", "gRPC address for clients, host:port (with --peer or --topology: the listen address, if it differs)")
	f.StringVar(&o.http, "http", "127.0.0.1:7300", `HTTP admin address for /metrics, /healthz, /readyz ("" disables it)`)
	f.StringArrayVar(&o.peers, "peer", nil, "a voter of the cell as ID=RAFTADDR=GRPCADDR; repeat for each, this node included")
	f.StringVar(&o.topology, "topology", "", "topology file (YAML) giving region, voters, addresses and domains")
	f.Float64Var(&o.drift, "drift", def.Drift, "allowed clock-rate drift between machines, ε (0.01 = 1%)")
	f.IntVar(&o.maxMoves, "max-moves", def.MaxMovesInFlight, "shards of one domain being handed over at once, at most")
	return cmd
}

// config builds the node's configuration from the flags or the topology
// file, and returns the domains the topology file declares.
func (o *serverOptions) config(cmd *cobra.Command) (cell.Config, []topology.Domain, *topology.File, error) {
	cfg := cell.DefaultConfig()
	flags := cmd.Flags()
	if o.node == "" {
		return cfg, nil, nil, usageErrorf(cmd, "--node is required: this node's id")
	}
	if o.dataDir == "" {
		return cfg, nil, nil, usageErrorf(cmd, "--data-dir is required: where this node keeps its Raft log and snapshots")
	}
	cfg.NodeID = o.node
	cfg.DataDir = o.dataDir
	cfg.Drift = o.drift
	cfg.MaxMovesInFlight = o.maxMoves
	cfg.HTTPBind = o.http
	var domains []topology.Domain
	var file *topology.File
	if o.topology != "" {
		for _, name := range []string{"peer", "region"} {
			if flags.Changed(name) {
				return cfg, nil, nil, usageErrorf(cmd, "--%s cannot be combined with --topology: the file gives it", name)
			}
		}
		f, err := topology.Load(o.topology)
		file = f
		if err != nil {
			return cfg, nil, nil, err
		}
		region, node, ok := f.Node(o.node)
		if !ok {
			var ids []string
			for _, r := range f.Regions {
				for _, n := range r.Nodes {
					ids = append(ids, n.ID)
				}
			}
			return cfg, nil, nil, topology.Invalid("--node", fmt.Sprintf("%q", o.node), "no such node in %s (it has %s)", o.topology, strings.Join(ids, ", "))
		}
		cfg.Region = region.Name
		for _, n := range region.Nodes {
			cfg.Peers = append(cfg.Peers, cell.Peer{ID: n.ID, Raft: n.Raft, GRPC: n.GRPC})
		}
		if !flags.Changed("http") {
			cfg.HTTPBind = node.HTTP
		}
		domains = f.Domains
	} else {
		cfg.Region = o.region
		for _, p := range o.peers {
			parts := strings.Split(p, "=")
			if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
				return cfg, nil, nil, usageErrorf(cmd, "invalid --peer %q: want ID=RAFTADDR=GRPCADDR, e.g. n1=10.0.0.1:7200=10.0.0.1:7100", p)
			}
			cfg.Peers = append(cfg.Peers, cell.Peer{ID: parts[0], Raft: parts[1], GRPC: parts[2]})
		}
		if len(cfg.Peers) == 0 {
			cfg.Peers = []cell.Peer{{ID: o.node, Raft: o.raft, GRPC: o.grpc}}
		}
	}
	if len(o.peers) > 0 || o.topology != "" {
		if flags.Changed("raft") {
			cfg.RaftBind = o.raft
		}
		if flags.Changed("grpc") {
			cfg.GRPCBind = o.grpc
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, nil, err
	}
	return cfg, domains, file, nil
}

type serverJSON struct {
	Node   string `json:"node"`
	Region string `json:"region"`
	GRPC   string `json:"grpc"`
	Raft   string `json:"raft"`
	HTTP   string `json:"http"`
	Peers  int    `json:"peers"`
	// Global is the node's global Raft address when it is a global voter.
	Global string `json:"global,omitempty"`
}

// runServer serves the node of cfg until SIGINT or SIGTERM: a lone cell's
// node (fed nil; it creates the topology file's domains), or a federation
// node (fed: cfg is its cell member's configuration).
func runServer(cmd *cobra.Command, g *globals, cfg cell.Config, domains []topology.Domain, log *slog.Logger, fed *federation.Config) error {
	fmt.Fprintln(cmd.ErrOrStderr(), plaintextWarning)
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Traces go out over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.
	tp, shutdownTracing, err := telemetry.NewTracing(ctx, telemetry.ServiceName,
		attribute.String("node", cfg.NodeID), attribute.String("region", cfg.Region))
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()
	cfg.TracerProvider = tp
	var node *cell.Node
	var proc *serve.Process
	closeRest := func() error { return nil }
	var shutdown func(context.Context) error
	if fed != nil {
		fed.Cell.TracerProvider = tp
		var fn *federation.Node
		fn, proc, err = federation.Start(*fed)
		if err != nil {
			return listenHint(err)
		}
		node, closeRest, shutdown = fn.Cell, fn.Close, fn.Shutdown
	} else if node, proc, err = serveNode(cfg); err != nil {
		return listenHint(err)
	} else {
		shutdown = node.Shutdown
	}
	defer proc.Stop()
	defer closeRest()
	raftAddr := cfg.RaftBind
	for _, p := range cfg.Peers {
		if p.ID == cfg.NodeID && raftAddr == "" {
			raftAddr = p.Raft
		}
	}
	info := serverJSON{Node: cfg.NodeID, Region: cfg.Region, GRPC: proc.GRPCAddr(), Raft: raftAddr, HTTP: proc.HTTPAddr(), Peers: len(cfg.Peers)}
	if fed != nil && fed.Global != nil {
		for _, p := range fed.Global.Peers {
			if p.ID == cfg.NodeID {
				info.Global = p.Raft
			}
		}
	}
	out := cmd.OutOrStdout()
	if g.json() {
		err = writeJSON(out, info)
	} else {
		global := ""
		if info.Global != "" {
			global = ", global raft " + info.Global
		}
		_, err = fmt.Fprintf(out, "wds server: node %s of region %s (%d voter(s)): grpc %s, raft %s%s, http %s, data %s\n",
			info.Node, info.Region, info.Peers, info.GRPC, info.Raft, global, dash(info.HTTP), cfg.DataDir)
	}
	if err != nil {
		node.Close()
		return err
	}
	done := make(chan struct{})
	if len(domains) > 0 {
		go func() {
			defer close(done)
			ensureDomains(ctx, proc.GRPCAddr(), domains, log)
		}()
	} else {
		close(done)
	}
	<-ctx.Done()
	log.Info("signal received: stopping the node (the data dir stays)")
	stop()
	<-done
	// A leader hands its leadership over first (the cell's, and a global
	// voter's of the global group), so neither group waits out an
	// election timeout (a rolling restart must cost no lease); bounded, so
	// a group that cannot elect anyone does not hold the stop.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownHandover)
	defer cancel()
	return shutdown(sctx)
}

// shutdownHandover bounds the leadership handover of a stopping server.
const shutdownHandover = 5 * time.Second

// serveNode starts the cell node of cfg and serves it (internal/serve) on
// cfg's gRPC and HTTP addresses, with a metrics registry of its own (unless
// cfg has one) and cfg.TracerProvider: the ports are bound before the node
// opens its data dir. The node's Close stops the process too.
func serveNode(cfg cell.Config) (*cell.Node, *serve.Process, error) {
	if cfg.Metrics == nil {
		m, err := telemetry.NewMetrics(attribute.String("node", cfg.NodeID), attribute.String("region", cfg.Region))
		if err != nil {
			return nil, nil, err
		}
		cfg.Metrics = m
	}
	var node *cell.Node
	proc, err := serve.Start(serve.Config{
		GRPC:           cfg.GRPCListenAddr(),
		HTTP:           cfg.HTTPBind,
		Logger:         cfg.Logger.With("node", cfg.NodeID),
		Metrics:        cfg.Metrics,
		TracerProvider: cfg.TracerProvider,
		ServerOptions:  cell.ServerOptions(cfg),
	}, func() ([]serve.Service, error) {
		var err error
		node, err = cell.NewNode(cfg)
		return []serve.Service{node}, err
	})
	return node, proc, err
}

// ensureDomains creates the topology file's domains that do not exist yet,
// through the node's own Admin API (which forwards to the leader), retrying
// until the cell has a leader. It is idempotent: every node of the cell
// runs it, and a domain another node created first is left alone. An
// existing domain whose settings differ from the file is reported, not
// changed.
func ensureDomains(ctx context.Context, endpoint string, domains []topology.Domain, log *slog.Logger) {
	cc, err := dial(endpoint)
	if err != nil {
		log.Error("topology domains: dial own endpoint", "err", err)
		return
	}
	defer cc.Close()
	admin := wdsv1.NewAdminClient(cc)
	pending := slices.Clone(domains)
	backoff := 200 * time.Millisecond
	for len(pending) > 0 {
		var left []topology.Domain
		for _, d := range pending {
			if err := ensureDomain(ctx, admin, d, log); err != nil {
				if ctx.Err() != nil {
					return
				}
				if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded && c != codes.Aborted {
					log.Error("topology domain not created", "domain", d.Name, "err", err)
					continue
				}
				log.Debug("topology domain: retrying", "domain", d.Name, "err", err)
				left = append(left, d)
			}
		}
		pending = left
		if len(pending) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func ensureDomain(ctx context.Context, admin wdsv1.AdminClient, d topology.Domain, log *slog.Logger) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := admin.DescribeDomain(cctx, &wdsv1.DescribeDomainRequest{Name: d.Name})
	switch status.Code(err) {
	case codes.OK:
		have, perr := topology.DomainFromProto(res.GetDomain())
		if perr == nil && (have.Kind != d.Kind || have.Shards != d.Shards || have.TTL != d.TTL) {
			log.Warn("topology domain exists with other settings; left as it is",
				"domain", d.Name, "file", fmt.Sprintf("%s, %d shards, ttl %s", d.Kind, d.Shards, d.TTL),
				"cell", fmt.Sprintf("%s, %d shards, ttl %s", have.Kind, have.Shards, have.TTL))
		}
		return nil
	case codes.NotFound:
	default:
		return err
	}
	_, err = admin.CreateDomain(cctx, &wdsv1.CreateDomainRequest{Domain: topology.DomainToProto(d)})
	switch status.Code(err) {
	case codes.OK:
		log.Info("created topology domain", "domain", d.Name, "kind", d.Kind.String(), "shards", d.Shards, "ttl", d.TTL)
		return nil
	case codes.AlreadyExists:
		return nil
	}
	return err
}

// listenHint adds advice to an error about a port in use.
func listenHint(err error) error {
	if err != nil && strings.Contains(err.Error(), "address already in use") {
		return fmt.Errorf("%w (is another wds server or wds dev running on this port?)", err)
	}
	return err
}
