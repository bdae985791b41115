package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/federation"
	"github.com/wdsio/wds/global"
	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/internal/serve"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Port layout of `wds dev`. The nodes are numbered k = 0, 1, ... across
// the regions, in order (region i's nodes are k = i·nodes ...
// i·nodes+nodes-1): node k serves gRPC on base+k, Raft on base+100+k and
// HTTP on base+200+k. In a federation the first node of region i is also
// a voter of the global group, whose Raft listens on base+150+i. A single
// region is a lone cell with no global group: node k is n(k+1), as before
// the federation.
const (
	devDefaultBase  = 7100
	devRaftOffset   = 100
	devGlobalOffset = 150
	devHTTPOffset   = 200
	// devMaxRegions bounds --regions: every region's nodes run in this
	// process (and the node numbers must stay below the next range's
	// offset: 9 regions of 3 nodes are 27 < 50).
	devMaxRegions = 9
)

// devDefaultRegions is the federation `wds dev` runs by default.
var devDefaultRegions = []string{"us-east", "eu-west", "ap-south"}

// devMaxBase is the highest --base-port for nodes nodes in all: the last
// HTTP port, base+200+nodes-1, must still be a port.
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
	ID     string `json:"id"`
	Region string `json:"region,omitempty"`
	GRPC   string `json:"grpc"`
	Raft   string `json:"raft"`
	// Global is the node's global Raft address when it is a global voter.
	Global string `json:"global,omitempty"`
	HTTP   string `json:"http"`
}

// devRegionJSON is one region of `wds dev`: its cell.
type devRegionJSON struct {
	Name      string        `json:"name"`
	Nodes     []devNodeJSON `json:"nodes"`
	Endpoints string        `json:"endpoints"`
	// Leader is the cell's leader.
	Leader string `json:"leader"`
	// Failover is the order in which the other regions take the region's
	// REGIONAL key spaces over while it is down.
	Failover []string `json:"failover,omitempty"`
}

// devJSON is what `wds dev -o json` prints. Region, Nodes, Endpoints and
// Leader describe the cell at the base port (the first region's, the
// default --endpoint of every client command); Regions lists every
// region, the first one included.
type devJSON struct {
	Region    string          `json:"region"`
	Nodes     []devNodeJSON   `json:"nodes"`
	Endpoints string          `json:"endpoints"`
	Leader    string          `json:"leader"`
	Regions   []devRegionJSON `json:"regions"`
	// Federation: the regions form a federation with a global group
	// (false: a lone cell).
	Federation bool `json:"federation"`
	// GlobalLeader is the node leading the global group, once known.
	GlobalLeader string `json:"global_leader,omitempty"`
	DataDir      string `json:"data_dir"`
	Temporary    bool   `json:"temporary"`
}

// NewDevCommand returns `wds dev`.
func NewDevCommand(g *globals) *cobra.Command {
	var (
		nodes   int
		base    int
		dataDir string
		regions string
		region  string
		demo    bool
	)
	cmd := &cobra.Command{
		Use:   "dev [--demo]",
		Short: "Run a 3-region federation (or one cell) in this process on loopback, for development",
		Long: `Run a whole WDS federation in this process, on 127.0.0.1 with real Raft and
gRPC, the way production runs one node per machine: by default 3 regions,
us-east, eu-west and ap-south, of one node each, every node a voter of the
global group, every region failing over to the others. Node k (counting
across the regions, in order) serves gRPC on base+k (7100, 7101, 7102:
127.0.0.1:7100 is us-east, and every client command's default --endpoint),
its cell's Raft on base+100+k and HTTP /metrics, /healthz and /readyz on
base+200+k; region i's global voter uses base+150+i for the global Raft.
--base-port moves all of them. A consumer joins the region of the endpoint
it reaches. The federation is built from a generated topology file, as
'wds server --topology' runs one.

--regions names the regions (a comma list). A single region is a lone
cell, with no global group: 'wds dev --regions local' is a 3-node cell
(node k is n(k+1)), as wds dev ran before the federation. --nodes is the
number of nodes per region: 1 or 3 (default 1 per region of a federation,
3 for a lone cell); with 3, the first node of each region is its global
voter.

State lives in a temporary directory removed on exit, unless --data-dir
names one to keep (one subdirectory per node).

--demo also creates the domains "demo" (global, 16 shards, ttl 5s) and, in
a federation, "demo-regional" (regional, 4 shards per region, ttl 5s),
runs consumers in this process (one per region, or three in a lone cell)
and, every few seconds, adds one (in the next region) or drains the oldest,
printing each grant and revoke and, now and then, each consumer's shard
count: shards move, with the fewest moves that keep the counts even, the
global domain's across regions, the regional one's within its region.

Runs until SIGINT or SIGTERM. Plaintext, loopback only.`,
		Example: `  wds dev
  wds dev --demo
  wds dev --regions us-east,eu-west --nodes 3
  wds dev --regions local --nodes 1 --base-port 17100 --data-dir ./wds-data`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			flags := cmd.Flags()
			list := regions
			if flags.Changed("region") {
				if flags.Changed("regions") {
					return usageErrorf(cmd, "--region cannot be combined with --regions: use --regions alone")
				}
				list = region
			}
			names, err := parseDevRegions(list)
			if err != nil {
				return &usageError{cmd: cmd, err: err}
			}
			if !flags.Changed("nodes") {
				nodes = 1
				if len(names) == 1 {
					nodes = 3
				}
			}
			if nodes != 1 && nodes != 3 {
				return usageErrorf(cmd, "invalid value %d for --nodes: want 1 or 3 (nodes per region)", nodes)
			}
			total := nodes * len(names)
			if maxBase := devMaxBase(total); base < 1 || base > maxBase {
				return usageErrorf(cmd, "--base-port: must be between 1 and %d (HTTP uses %s); got %d", maxBase, devHTTPPorts(total), base)
			}
			log, err := g.logger(cmd, "error")
			if err != nil {
				return err
			}
			// The nodes log errors while they stop (peers vanish one by
			// one); nobody needs those.
			gate := &gateHandler{Handler: log.Handler()}
			o := devOptions{nodes: nodes, base: base, dataDir: dataDir, regions: names, demo: demo}
			if len(names) == 1 {
				o.region = names[0]
			}
			return runDev(cmd, g, o, slog.New(gate), gate)
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", 0, "nodes per region: 1 or 3 (default 1 per region of a federation, 3 for a single region)")
	f.IntVar(&base, "base-port", devDefaultBase, "first gRPC port; Raft uses base+100.., global Raft base+150.., HTTP base+200..")
	f.StringVar(&dataDir, "data-dir", "", "keep the nodes' state in this directory (default: a temporary one, removed on exit)")
	f.StringVar(&regions, "regions", strings.Join(devDefaultRegions, ","), "the regions, a comma list; a single region runs a lone cell")
	f.StringVar(&region, "region", "", "the lone cell's region (the same as --regions NAME)")
	_ = f.MarkHidden("region")
	f.BoolVar(&demo, "demo", false, "also run demo consumers and show shards move")
	return cmd
}

// parseDevRegions parses --regions: 1 to devMaxRegions distinct region
// names.
func parseDevRegions(s string) ([]string, error) {
	var names []string
	for _, p := range strings.Split(s, ",") {
		name := strings.TrimSpace(p)
		if name == "" {
			continue
		}
		if err := topology.ValidateName("--regions", name); err != nil {
			return nil, err
		}
		if slices.Contains(names, name) {
			return nil, topology.Invalid("--regions", fmt.Sprintf("%q", s), "region %s is listed twice", name)
		}
		names = append(names, name)
	}
	switch {
	case len(names) == 0:
		return nil, topology.Invalid("--regions", fmt.Sprintf("%q", s), "required: at least one region name, e.g. --regions us-east,eu-west")
	case len(names) > devMaxRegions:
		return nil, topology.Invalid("--regions", fmt.Sprintf("%d regions", len(names)), "at most %d regions run in one process", devMaxRegions)
	}
	return names, nil
}

type devOptions struct {
	nodes   int // per region
	base    int
	dataDir string
	// regions are the regions; region is the only one of a lone cell
	// (empty in a federation).
	regions []string
	region  string
	demo    bool
}

// runDev runs the lone cell or the federation of o until SIGINT or
// SIGTERM.
func runDev(cmd *cobra.Command, g *globals, o devOptions, log *slog.Logger, gate *gateHandler) error {
	if o.region == "" {
		return runDevFederation(cmd, g, o, log, gate)
	}
	return runDevCell(cmd, g, o, log, gate)
}

func runDevCell(cmd *cobra.Command, g *globals, o devOptions, log *slog.Logger, gate *gateHandler) (err error) {
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
		info.Nodes = append(info.Nodes, devNodeJSON{ID: n.ID(), Region: o.region, GRPC: procs[i].GRPCAddr(), Raft: peers[i].Raft, HTTP: procs[i].HTTPAddr()})
		eps = append(eps, procs[i].GRPCAddr())
	}
	info.Endpoints = strings.Join(eps, ",")
	info.Regions = []devRegionJSON{{Name: o.region, Nodes: info.Nodes, Endpoints: info.Endpoints, Leader: info.Leader}}
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

// devTopology is the topology file of the federation `wds dev` runs:
// regions of nodes nodes each on loopback from base (the port layout
// above), every region failing over to the others in order, the first
// node of each region a global voter, and no domains.
func devTopology(regions []string, nodes, base int) *topology.File {
	addr := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
	f := &topology.File{}
	for i, name := range regions {
		r := topology.Region{Name: name}
		for j := 0; j < nodes; j++ {
			k := i*nodes + j
			n := topology.Node{
				ID:   fmt.Sprintf("%s-%d", name, j+1),
				Raft: addr(base + devRaftOffset + k),
				GRPC: addr(base + k),
				HTTP: addr(base + devHTTPOffset + k),
			}
			if j == 0 {
				n.Global = addr(base + devGlobalOffset + i)
			}
			r.Nodes = append(r.Nodes, n)
		}
		for _, o := range regions {
			if o != name {
				r.Failover = append(r.Failover, o)
			}
		}
		f.Regions = append(f.Regions, r)
	}
	return f
}

// devFedNode is a running node of the dev federation.
type devFedNode struct {
	region string
	spec   topology.Node
	node   *federation.Node
	proc   *serve.Process
}

// runDevFederation runs the federation of o: one federation node per
// node of the generated topology, each configured by
// federation.NodeConfig as `wds server --topology` configures its node.
func runDevFederation(cmd *cobra.Command, g *globals, o devOptions, log *slog.Logger, gate *gateHandler) (err error) {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := cmd.OutOrStdout()

	file := devTopology(o.regions, o.nodes, o.base)
	if err := file.Validate(); err != nil {
		return fmt.Errorf("wds dev: generated topology: %w", err)
	}
	dir, temporary := o.dataDir, false
	if dir == "" {
		dir, err = os.MkdirTemp("", "wds-dev-")
		if err != nil {
			return err
		}
		temporary = true
		defer os.RemoveAll(dir)
	}
	var running []*devFedNode
	defer func() {
		for _, n := range running {
			n.node.Close()
			n.proc.Stop()
		}
	}()
	for _, r := range file.Regions {
		for _, spec := range r.Nodes {
			base := cell.DefaultConfig()
			base.DataDir = filepath.Join(dir, spec.ID)
			base.HTTPBind = spec.HTTP
			base.Logger = log.With("node", spec.ID)
			fc, err := federation.NodeConfig(file, spec.ID, base)
			if err != nil {
				return err
			}
			if fc.Global != nil {
				// Every voter is on loopback: LAN timings elect the
				// global group's first leader within a second.
				rc := raftnode.DefaultLANConfig()
				rc.Group = fc.Global.Raft.Group
				fc.Global.Raft = rc
				// Its regions are the flags': a data dir made with
				// others is a mistake, not a voter change.
				fc.Global.FixedVoters = true
			}
			n, proc, err := federation.Start(fc)
			if errors.Is(err, raftnode.ErrVoterMismatch) {
				return fmt.Errorf("%w (wds dev: --data-dir %s was made with other --regions, --nodes or --base-port; run with those, or use another --data-dir)", err, dir)
			}
			if err != nil {
				return listenHint(err)
			}
			running = append(running, &devFedNode{region: r.Name, spec: spec, node: n, proc: proc})
		}
	}

	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	info, err := devFederationInfo(wctx, file, running)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	info.DataDir, info.Temporary = dir, temporary
	if g.json() {
		err = writeJSON(out, info)
	} else {
		err = printDevFederation(out, info, o.nodes)
	}
	if err != nil {
		return err
	}

	var d *fedDemo
	if o.demo {
		d, err = startFedDemo(ctx, out, info.Regions, log)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
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

// devFederationInfo waits for every cell's leader and for the global
// leader to have applied the generated topology (a domain created before
// would be deleted by it), and describes the federation.
func devFederationInfo(ctx context.Context, file *topology.File, running []*devFedNode) (devJSON, error) {
	info := devJSON{Federation: true}
	var globals []*global.Node
	for _, n := range running {
		if n.node.Global != nil {
			globals = append(globals, n.node.Global)
		}
	}
	for _, r := range file.Regions {
		reg := devRegionJSON{Name: r.Name, Failover: file.FailoverOf(r.Name)}
		var cells []*cell.Node
		var eps []string
		for _, n := range running {
			if n.region != r.Name {
				continue
			}
			cells = append(cells, n.node.Cell)
			eps = append(eps, n.proc.GRPCAddr())
			reg.Nodes = append(reg.Nodes, devNodeJSON{ID: n.spec.ID, Region: r.Name, GRPC: n.proc.GRPCAddr(), Raft: n.spec.Raft, Global: n.spec.Global, HTTP: n.proc.HTTPAddr()})
		}
		leader, err := cell.WaitLeader(ctx, cells...)
		if err != nil {
			return info, fmt.Errorf("region %s: %w", r.Name, err)
		}
		reg.Leader = leader.ID()
		reg.Endpoints = strings.Join(eps, ",")
		info.Regions = append(info.Regions, reg)
	}
	gl, err := global.WaitLeader(ctx, globals...)
	if err != nil {
		return info, err
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for len(gl.State().Regions()) == 0 {
		select {
		case <-ctx.Done():
			return info, fmt.Errorf("the global group did not apply the topology: %w", ctx.Err())
		case <-t.C:
		}
	}
	info.GlobalLeader = gl.ID()
	first := info.Regions[0]
	info.Region, info.Nodes, info.Endpoints, info.Leader = first.Name, first.Nodes, first.Endpoints, first.Leader
	return info, nil
}

func printDevFederation(w io.Writer, info devJSON, perRegion int) error {
	var b strings.Builder
	node := "1 node"
	if perRegion > 1 {
		node = fmt.Sprintf("%d nodes", perRegion)
	}
	fmt.Fprintf(&b, "WDS dev federation: %d regions of %s, plaintext on loopback\n\n", len(info.Regions), node)
	tw := newTable(&b)
	fmt.Fprintln(tw, "REGION\tNODE\tGRPC ENDPOINT\tRAFT\tGLOBAL RAFT\tHTTP ADMIN")
	globalRegion := ""
	for _, r := range info.Regions {
		for _, n := range r.Nodes {
			var marks []string
			if perRegion > 1 && n.ID == r.Leader {
				marks = append(marks, "cell leader")
			}
			if n.ID == info.GlobalLeader {
				marks = append(marks, "global leader")
				globalRegion = r.Name
			}
			mark := ""
			if len(marks) > 0 {
				mark = "  (" + strings.Join(marks, ", ") + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\thttp://%s/metrics /healthz /readyz%s\n", r.Name, n.ID, n.GRPC, n.Raft, dash(n.Global), n.HTTP, mark)
		}
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nGlobal group: %d voters (one node per region), leader %s in %s.\n", len(info.Regions), info.GlobalLeader, globalRegion)
	if info.Temporary {
		fmt.Fprintf(&b, "Data: %s (removed on exit; --data-dir DIR keeps it)\n", info.DataDir)
	} else {
		fmt.Fprintf(&b, "Data: %s (kept)\n", info.DataDir)
	}
	first := info.Regions[0]
	other := info.Regions[1]
	fmt.Fprintf(&b, `
A consumer joins the region of the endpoint it reaches:
`)
	tw = newTable(&b)
	for _, r := range info.Regions {
		fmt.Fprintf(tw, "  %s\t--endpoint %s\t(fails over to %s)\n", r.Name, r.Endpoints, strings.Join(r.Failover, ", "))
	}
	tw.Flush()
	firstEP := strings.Split(first.Endpoints, ",")[0]
	otherEP := strings.Split(other.Endpoints, ",")[0]
	fmt.Fprintf(&b, `
Try, in another terminal:
  export %s=%s
  wds domain create orders --kind global --shards 16 --ttl 5s
  wds domain create carts --kind regional --shards 4 --ttl 5s
  wds consume --endpoint %s --domain orders,carts --id worker-1    # joins %s
  wds consume --endpoint %s --domain orders,carts --id worker-2    # joins %s
  wds shards orders -o json                           # every shard, federation-wide, with delegated_to
  wds watch orders --endpoint %s                      # routing from any region
  wds status

Ctrl-C stops the federation.
`, EnvEndpoint, firstEP, firstEP, first.Name, otherEP, other.Name, otherEP)
	_, err := w.Write([]byte(b.String()))
	return err
}

// The federation demo's domains: demoDomain (global) and a regional one.
const (
	devDemoRegional       = "demo-regional"
	devDemoRegionalShards = 4
)

// fedDemo is the demo of a federation: consumers in every region serve a
// GLOBAL and a REGIONAL domain; every demoStep one joins (in the next
// region) or the oldest drains, and what moves is printed.
type fedDemo struct {
	demoCore
	regions    []devRegionJSON
	nextRegion int // under mu
}

func startFedDemo(ctx context.Context, out io.Writer, regions []devRegionJSON, log *slog.Logger) (*fedDemo, error) {
	specs := []topology.Domain{
		{Name: demoDomain, Kind: topology.KindGlobal, Shards: demoShards, TTL: demoTTL},
		{Name: devDemoRegional, Kind: topology.KindRegional, Shards: devDemoRegionalShards, TTL: demoTTL},
	}
	if err := createDevDomains(ctx, regions, specs); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &fedDemo{demoCore: demoCore{out: out, log: log, cancel: cancel}, regions: regions}
	d.printf("\ndemo: domains %q (global, %d shards) and %q (regional, %d shards per region), ttl %s;\n"+
		"demo: a consumer joins (in the next region) or the oldest drains every %s\n",
		demoDomain, demoShards, devDemoRegional, devDemoRegionalShards, demoTTL, demoStep)
	for range regions {
		if err := d.add(); err != nil {
			cancel()
			d.stop()
			return nil, err
		}
	}
	d.wg.Add(1)
	go d.loop(ctx, d.add, d.counts)
	return d, nil
}

// createDevDomains creates the domains (through the first region's cell,
// which hands them to the global group) unless they exist, and waits
// until every region's cell knows them.
func createDevDomains(ctx context.Context, regions []devRegionJSON, specs []topology.Domain) error {
	a, err := newAdminClient(strings.Split(regions[0].Endpoints, ","), 10*time.Second)
	if err != nil {
		return err
	}
	defer a.close()
	for _, spec := range specs {
		err = a.call(ctx, func(ctx context.Context, c wdsv1.AdminClient) error {
			_, err := c.CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: topology.DomainToProto(spec)})
			return err
		})
		if err != nil && status.Code(err) != codes.AlreadyExists { // a kept --data-dir
			return fmt.Errorf("create domain %q: %w", spec.Name, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for _, r := range regions {
		ra, err := newAdminClient(strings.Split(r.Endpoints, ","), 10*time.Second)
		if err != nil {
			return err
		}
		for _, spec := range specs {
			for {
				err = ra.call(wctx, func(ctx context.Context, c wdsv1.AdminClient) error {
					_, err := c.DescribeDomain(ctx, &wdsv1.DescribeDomainRequest{Name: spec.Name})
					return err
				})
				if err == nil || wctx.Err() != nil {
					break
				}
				select {
				case <-wctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
			if err != nil {
				ra.close()
				return fmt.Errorf("region %s does not know domain %q: %w", r.Name, spec.Name, err)
			}
		}
		ra.close()
	}
	return nil
}

// add starts one more consumer, in the next region.
func (d *fedDemo) add() error {
	id := d.nextID()
	d.mu.Lock()
	r := d.regions[d.nextRegion%len(d.regions)]
	d.nextRegion++
	d.mu.Unlock()
	events := newEventBatcher(func(e client.Event) { d.event(id, r.Name, e) })
	c, err := client.NewConsumer(client.Config{
		Endpoints: strings.Split(r.Endpoints, ","),
		ID:        id,
		Region:    r.Name,
		Endpoint:  id + "." + r.Name + ".demo.local:8080",
		Domains:   []string{demoDomain, devDemoRegional},
		Handler:   func(ctx context.Context, _ client.Shard) { <-ctx.Done() },
		OnEvent:   events.add,
		Logger:    d.log,
	})
	if err != nil {
		return err
	}
	d.joined(demoConsumer{Consumer: c, region: r.Name, events: events})
	return nil
}

func (d *fedDemo) event(id, region string, e client.Event) {
	switch e.Kind {
	case client.EventGrant, client.EventRevoke, client.EventLost:
		shard := e.Shard.Domain + " " + shortRange(e.Shard.Range)
		if e.Shard.Region != "" { // a REGIONAL domain's key space
			shard = e.Shard.Domain + " " + e.Shard.Region + " " + shortRange(e.Shard.Range)
		}
		line := fmt.Sprintf("%s   %-8s %-8s %-7s %s", clock(e.Time), id, region, e.Kind, shard)
		if !e.Shard.Token.IsZero() {
			line += " token " + e.Shard.Token.String()
		}
		if e.Reason != "" && e.Kind != client.EventGrant {
			line += " (" + e.Reason + ")"
		}
		d.printf("%s\n", line)
	case client.EventDrained:
		d.printf("%s   %-8s %-8s holds nothing: may exit\n", clock(e.Time), id, region)
	}
}

// counts prints, per domain and region, each running consumer's number of
// shards, and reports whether every shard of both domains is held.
func (d *fedDemo) counts() bool {
	cs := d.running()
	all := true
	for _, dom := range []struct {
		name  string
		total int
	}{{demoDomain, demoShards}, {devDemoRegional, devDemoRegionalShards * len(d.regions)}} {
		per := map[string][]string{}
		held := 0
		for _, c := range cs {
			n := 0
			for _, s := range c.Held() {
				if s.Domain == dom.name {
					n++
				}
			}
			held += n
			per[c.region] = append(per[c.region], fmt.Sprintf("%s=%d", c.ID(), n))
		}
		var parts []string
		for _, r := range d.regions {
			sort.Strings(per[r.Name])
			if len(per[r.Name]) == 0 {
				parts = append(parts, r.Name+" -")
				continue
			}
			parts = append(parts, r.Name+" "+strings.Join(per[r.Name], " "))
		}
		d.printf("%s shards of %s: %s (held %d of %d)\n", clock(time.Now()), dom.name, strings.Join(parts, ", "), held, dom.total)
		all = all && held == dom.total
	}
	return all
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
