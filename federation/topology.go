package federation

import (
	"fmt"
	"path/filepath"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/global"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	"github.com/wdsio/wds/topology"
)

// TopologyProto is a topology file as the global group applies it:
// regions with their failover order (the explicit list, else every other
// region in file order) and their global voters (the nodes with a global
// address), and the domains.
func TopologyProto(f *topology.File) *globalv1.ApplyTopology {
	t := &globalv1.ApplyTopology{}
	for _, r := range f.Regions {
		reg := &globalv1.Region{Name: r.Name, Failover: f.FailoverOf(r.Name)}
		for _, n := range r.Nodes {
			if n.Global != "" {
				reg.Voters = append(reg.Voters, &globalv1.Voter{Id: n.ID, Raft: n.Global, Grpc: n.GRPC})
			}
		}
		t.Regions = append(t.Regions, reg)
	}
	for _, d := range f.Domains {
		t.Domains = append(t.Domains, topology.DomainToProto(d))
	}
	return t
}

// Federated reports whether a topology file describes a federation (it
// has global voters) rather than a lone cell.
func Federated(f *topology.File) bool { return len(f.GlobalVoters()) > 0 }

// NodeConfig derives node id's federation configuration from a topology
// file: its cell (the region's nodes), its global voter if the file gives
// it a global address, the global voters' endpoints, and the file's
// topology as the global group's bootstrap. base is the cell configuration
// to fill in (timings, drift, data dir); the global voter's data dir is
// DataDir/global.
func NodeConfig(f *topology.File, id string, base cell.Config) (Config, error) {
	region, node, ok := f.Node(id)
	if !ok {
		return Config{}, topology.Invalid("node", id, "no such node in the topology file")
	}
	if !Federated(f) {
		return Config{}, fmt.Errorf("the topology file has no global voter: it describes a lone cell")
	}
	cc := base
	cc.NodeID = id
	cc.Region = region.Name
	cc.Peers = nil
	for _, n := range region.Nodes {
		cc.Peers = append(cc.Peers, cell.Peer{ID: n.ID, Raft: n.Raft, GRPC: n.GRPC})
	}
	cc.PeerRegions = map[string][]string{}
	for _, r := range f.Regions {
		if r.Name == region.Name {
			continue
		}
		for _, n := range r.Nodes {
			cc.PeerRegions[r.Name] = append(cc.PeerRegions[r.Name], n.GRPC)
		}
	}
	cfg := Config{Cell: cc}
	var peers []global.Peer
	for _, v := range f.GlobalVoters() {
		peers = append(peers, global.Peer{ID: v.Node.ID, Region: v.Region, Raft: v.Node.Global, GRPC: v.Node.GRPC})
		cfg.GlobalEndpoints = append(cfg.GlobalEndpoints, v.Node.GRPC)
	}
	if node.Global != "" {
		gc := global.DefaultConfig()
		gc.NodeID = id
		gc.DataDir = filepath.Join(base.DataDir, "global")
		gc.Peers = peers
		gc.Drift = base.Drift
		gc.Logger = base.Logger
		gc.Bootstrap = TopologyProto(f)
		// A domain created before the bootstrap committed stays.
		gc.Bootstrap.KeepUnlisted = true
		cfg.Global = &gc
	}
	if err := cc.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}
