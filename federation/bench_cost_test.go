package federation_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// renewMethod is the coordinator stream's full method name.
const renewMethod = "/wds.global.v1.Coordinator/Renew"

// methodBytes is a client stats handler that counts the wire bytes (both
// ways, gRPC framing included) and messages of one method's streams.
type methodBytes struct {
	method          string
	bytes, sent, in atomic.Int64
}

type methodKey struct{}

func (m *methodBytes) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, methodKey{}, info.FullMethodName == m.method)
}

func (m *methodBytes) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if ok, _ := ctx.Value(methodKey{}).(bool); !ok {
		return
	}
	switch p := s.(type) {
	case *stats.OutPayload:
		m.bytes.Add(int64(p.WireLength))
		m.sent.Add(1)
	case *stats.InPayload:
		m.bytes.Add(int64(p.WireLength))
		m.in.Add(1)
	}
}

func (m *methodBytes) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (m *methodBytes) HandleConn(context.Context, stats.ConnStats)                       {}

// BenchmarkRenewalCost measures what holding delegations costs a cell: 3
// regions of one node each (20–50 ms apart), 30 domains (10 GLOBAL of 64
// shards, 10 REGIONAL of 8 per region, 10 UNIT), one consumer of every
// domain in each region, placement settled; then a 10 s window. Reported
// per cell: renewals/s (answered), bytes/s on the coordinator stream
// (both ways, gRPC framing included, as the cell's client counts them),
// bytes per renewal (request + answer), and the delegations the cells
// hold; and the CPU of the whole process (3 cells, the global group, 3
// consumers) in % of one core — an upper bound of what renewals cost, as
// it includes the cells' Raft heartbeats, the consumers' heartbeats and
// the federation routing streams. Run with -benchtime 1x.
func BenchmarkRenewalCost(b *testing.B) {
	for range b.N {
		counters := map[string]*methodBytes{}
		f := newFed(b, threeRegions, withDialOptions(func(node string) []grpc.DialOption {
			m := &methodBytes{method: renewMethod}
			counters[node] = m
			return []grpc.DialOption{grpc.WithStatsHandler(m)}
		}))
		var doms []*wdsv1.Domain
		var names []string
		for i := range 10 {
			for _, d := range []*wdsv1.Domain{dom(fmt.Sprintf("g%d", i), kGlobal, 64), dom(fmt.Sprintf("r%d", i), kRegional, 8), dom(fmt.Sprintf("u%d", i), kUnit, 1)} {
				doms = append(doms, d)
				names = append(names, d.GetName())
			}
		}
		f.applyTopology(doms...)
		var cs []*celltest.Consumer
		for _, r := range threeRegions {
			cs = append(cs, f.consumer(r, "c-"+r, names...))
		}
		// Settled: each GLOBAL domain split 22/21/21, each region's REGIONAL
		// key space held at home, each UNIT held once.
		waitHeld(b, "placement settled", func(h map[string]map[string]int) error {
			for i := range 10 {
				g := h[fmt.Sprintf("g%d/", i)]
				if len(g) != 3 || g["c-us-east"]+g["c-eu-west"]+g["c-ap-south"] != 64 {
					return fmt.Errorf("g%d held %v", i, g)
				}
				for _, r := range threeRegions {
					if n := g["c-"+r]; n < 21 || n > 22 {
						return fmt.Errorf("g%d held %v", i, g)
					}
					if k := h[fmt.Sprintf("r%d/%s", i, r)]; k["c-"+r] != 8 {
						return fmt.Errorf("r%d/%s held %v", i, r, k)
					}
				}
				u := h[fmt.Sprintf("u%d/", i)]
				if len(u) != 1 {
					return fmt.Errorf("u%d held %v", i, u)
				}
			}
			return nil
		}, cs...)
		time.Sleep(2 * time.Second) // let the moves' renewals and reports pass
		const window = 10 * time.Second
		b0, r0, cpu0 := map[string]int64{}, map[string]int64{}, celltest.CPUTime()
		for _, r := range threeRegions {
			b0[r], r0[r] = counters[cellID(r)].bytes.Load(), counters[cellID(r)].in.Load()
		}
		time.Sleep(window)
		cpu := celltest.CPUTime() - cpu0
		var bytesPerS, renewalsPerS []float64
		for _, r := range threeRegions {
			m := counters[cellID(r)]
			db, dr := m.bytes.Load()-b0[r], m.in.Load()-r0[r]
			bytesPerS = append(bytesPerS, float64(db)/window.Seconds())
			renewalsPerS = append(renewalsPerS, float64(dr)/window.Seconds())
			b.Logf("%s: %d renewals answered, %d bytes on the coordinator stream in %v", r, dr, db, window)
		}
		g := f.globalLeader()
		b.ReportMetric(median(renewalsPerS), "renewals/s/cell")
		b.ReportMetric(median(bytesPerS), "bytes/s/cell")
		b.ReportMetric(median(bytesPerS)/median(renewalsPerS), "bytes/renewal")
		b.ReportMetric(float64(len(g.State().Delegations(""))), "delegations")
		b.ReportMetric(100*cpu.Seconds()/window.Seconds(), "process-cpu-%")
		checkHistory(b, f.History)
		f.close()
	}
}

// BenchmarkDelegatedGrants compares the grant throughput of one 3-node
// cell under delegation (us-east of a 3-region federation, holding the
// whole GLOBAL domain because every consumer is there) with a lone 3-node
// cell (no global group): 50 consumers, 2,000 shards, handlers that return
// at once, so each grant is followed by a Release and a new grant; a 10 s
// window; grants/s from the cell leader's wds.cell.grants. Under
// delegation a grant is activated only inside a live delegation, and the
// leader renews its delegations every second. Run with -benchtime 1x.
func BenchmarkDelegatedGrants(b *testing.B) {
	const consumers, shards, window, ttl = 50, 2000, 10 * time.Second, 10 * time.Second
	churn := func(c *client.Config) { c.Handler = func(context.Context, client.Shard) {} }
	measure := func(b *testing.B, leader func() *cell.Node) {
		n0, cpu0 := celltest.Metric(leader(), "wds_cell_grants_total"), celltest.CPUTime()
		time.Sleep(window)
		n1, cpu := celltest.Metric(leader(), "wds_cell_grants_total"), celltest.CPUTime()-cpu0
		b.ReportMetric((n1-n0)/window.Seconds(), "grants/s")
		b.ReportMetric(100*cpu.Seconds()/window.Seconds(), "process-cpu-%")
	}
	b.Run("lone", func(b *testing.B) {
		for range b.N {
			c := celltest.New(b, 3)
			c.CreateDomain("churn", topology.KindGlobal, shards, ttl)
			for i := range consumers {
				c.NewConsumer(fmt.Sprintf("c%d", i), []string{"churn"}, churn)
			}
			time.Sleep(3 * time.Second) // the consumers connect
			measure(b, func() *cell.Node { return c.Nodes[c.Leader()] })
			// The cluster closes in cleanup, after its consumers (closed
			// first, they drain at once instead of timing out).
		}
	})
	b.Run("delegated", func(b *testing.B) {
		for range b.N {
			f := newFed(b, threeRegions, withCellNodes("us-east", 3))
			f.applyTopology(domT("churn", kGlobal, shards, ttl))
			var eps []string
			for _, p := range f.cfgs[f.index("us-east")].Cell.Peers {
				eps = append(eps, p.GRPC)
			}
			for i := range consumers {
				celltest.StartConsumer(b, f.Net, f.History, eps, "us-east", fmt.Sprintf("c%d", i), []string{"churn"}, churn)
			}
			time.Sleep(5 * time.Second) // the consumers connect, the domain's delegations move to us-east
			leader := func() *cell.Node {
				for _, n := range f.nodes {
					if n != nil && strings.HasPrefix(n.Cell.ID(), "us-east-") && n.Cell.IsLeader() {
						return n.Cell
					}
				}
				return nil
			}
			measure(b, leader)
		}
	})
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
