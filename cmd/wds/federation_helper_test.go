package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/federation"
	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/internal/logging"
	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/internal/serve"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	"github.com/wdsio/wds/topology"
)

// testFed is a federation in this process for the CLI's tests: one node
// per region, each its region's whole cell and a global voter, started
// from a topology file the way `wds server --topology FILE --node ID` is
// (federation.NodeConfig, the global group bootstrapped from the file),
// with LAN timings. The wds binary under test talks to it over loopback.
type testFed struct {
	t       *testing.T
	regions []string
	// file is the topology file's path; regionsYAML its regions section
	// (with the nodes), which other files of the test reuse.
	file        string
	regionsYAML string
	// grpc is each region's node endpoint; global its global Raft address.
	grpc   []string
	global []string
	nodes  []*federation.Node
	procs  []*serve.Process
}

// fedRegions are the test federation's regions.
var fedRegions = []string{"us-east", "eu-west", "ap-south"}

// newTestFed starts a federation of fedRegions whose topology file has
// the given domains section (YAML list items under "domains:"); opts
// adjust each node's configuration.
func newTestFed(t *testing.T, domainsYAML string, opts ...func(*federation.Config)) *testFed {
	t.Helper()
	f := &testFed{t: t, regions: fedRegions}
	addrs := celltest.FreeAddrs(t, 3*len(f.regions))
	var b strings.Builder
	b.WriteString("regions:\n")
	for i, r := range f.regions {
		raft, grpcAddr, global := addrs[3*i], addrs[3*i+1], addrs[3*i+2]
		f.grpc = append(f.grpc, grpcAddr)
		f.global = append(f.global, global)
		fmt.Fprintf(&b, "  - name: %s\n    nodes:\n      - {id: %s, raft: %q, grpc: %q, global: %q}\n", r, fedNode(r), raft, grpcAddr, global)
	}
	f.regionsYAML = b.String()
	dir := t.TempDir()
	f.file = f.writeFile("wds.yaml", domainsYAML)
	file, err := topology.Load(f.file)
	if err != nil {
		t.Fatal(err)
	}
	f.nodes = make([]*federation.Node, len(f.regions))
	f.procs = make([]*serve.Process, len(f.regions))
	t.Cleanup(f.close)
	for i, r := range f.regions {
		base := cell.DefaultConfig()
		base.DataDir = filepath.Join(dir, fedNode(r))
		base.Logger = logging.Discard()
		base.RenewInterval = 250 * time.Millisecond
		base.HTTPBind = ""
		cfg, err := federation.NodeConfig(file, fedNode(r), base)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Global.Raft = raftnode.DefaultLANConfig()
		cfg.Global.Raft.Group = "global"
		cfg.Global.Settle = 200 * time.Millisecond
		cfg.Global.LiveWindow = time.Second
		for _, o := range opts {
			o(&cfg)
		}
		var startErr error
		for try := 0; try < 50; try++ {
			if f.nodes[i], f.procs[i], startErr = federation.Start(cfg); startErr == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if startErr != nil {
			t.Fatalf("start %s: %v", r, startErr)
		}
	}
	f.waitReady(federation.TopologyProto(file))
	return f
}

func fedNode(region string) string { return region + "-1" }

// writeFile writes a topology file of the federation's regions and the
// given domains section into the test's temp dir and returns its path.
func (f *testFed) writeFile(name, domainsYAML string) string {
	f.t.Helper()
	return writeTopology(f.t, name, f.regionsYAML+"domains:\n"+domainsYAML)
}

// writeTopology writes text into a file of the test's temp dir and returns
// its path.
func writeTopology(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// endpoint is the --endpoint flag naming region i's node.
func (f *testFed) endpoint(i int) string { return "--endpoint=" + f.grpc[i] }

// waitReady waits until the global group has a leader that bootstrapped
// the file's topology, hears every region renew, and has placed every
// shard: a plan of the file then has neither changes nor moves.
func (f *testFed) waitReady(file *globalv1.ApplyTopology) {
	f.t.Helper()
	celltest.Eventually(f.t, 30*time.Second, func() error {
		st, err := f.globalStatus()
		if err != nil {
			return err
		}
		if len(st.GetRegions()) != len(f.regions) {
			return fmt.Errorf("global leader knows %d regions", len(st.GetRegions()))
		}
		for _, r := range st.GetRegions() {
			if !r.GetRenewing() {
				return fmt.Errorf("region %s not renewing", r.GetName())
			}
		}
		for _, n := range f.nodes {
			if !n.Global.IsLeader() {
				continue
			}
			var plan *globalv1.PlanTopologyResponse
			if err := f.call(n, func(ctx context.Context, c globalv1.GlobalAdminClient) (err error) {
				plan, err = c.PlanTopology(ctx, &globalv1.ApplyTopologyRequest{Topology: file})
				return err
			}); err != nil {
				return err
			}
			if !proto.Equal(plan, &globalv1.PlanTopologyResponse{}) {
				return fmt.Errorf("placement not settled: plan of the file %v", plan)
			}
			return nil
		}
		return fmt.Errorf("no global leader")
	})
}

// globalStatus is the global leader's status.
func (f *testFed) globalStatus() (*globalv1.GlobalStatusResponse, error) {
	for _, n := range f.nodes {
		if n == nil || n.Global == nil || !n.Global.IsLeader() {
			continue
		}
		var res *globalv1.GlobalStatusResponse
		err := f.call(n, func(ctx context.Context, c globalv1.GlobalAdminClient) (err error) {
			res, err = c.GlobalStatus(ctx, &globalv1.GlobalStatusRequest{})
			return err
		})
		return res, err
	}
	return nil, fmt.Errorf("no global leader yet")
}

// topology is the global group's topology as the global leader holds it.
func (f *testFed) topology() *globalv1.GetTopologyResponse {
	f.t.Helper()
	for _, n := range f.nodes {
		if n == nil || n.Global == nil || !n.Global.IsLeader() {
			continue
		}
		var res *globalv1.GetTopologyResponse
		if err := f.call(n, func(ctx context.Context, c globalv1.GlobalAdminClient) (err error) {
			res, err = c.GetTopology(ctx, &globalv1.GetTopologyRequest{})
			return err
		}); err != nil {
			f.t.Fatal(err)
		}
		return res
	}
	f.t.Fatal("no global leader")
	return nil
}

func (f *testFed) call(n *federation.Node, fn func(context.Context, globalv1.GlobalAdminClient) error) error {
	i := -1
	for j, m := range f.nodes {
		if m == n {
			i = j
		}
	}
	cc, err := dial(f.grpc[i])
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return fn(ctx, globalv1.NewGlobalAdminClient(cc))
}

func (f *testFed) close() {
	for i := range f.nodes {
		f.stop(i)
	}
}

// stop stops region i's node (a crash, as far as the others can tell).
func (f *testFed) stop(i int) {
	if f.nodes[i] != nil {
		f.nodes[i].Close()
		f.nodes[i] = nil
	}
	if f.procs[i] != nil {
		f.procs[i].Stop()
		f.procs[i] = nil
	}
}

// globalAddr is region's node's global Raft address.
func (f *testFed) globalAddr(region string) string {
	return f.global[slices.Index(f.regions, region)]
}
