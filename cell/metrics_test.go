package cell_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

const (
	metricUnowned   = "wds_cell_domain_shards_unowned"
	metricMoving    = "wds_cell_domain_shards_moving"
	metricConsumers = "wds_cell_domain_consumers"
)

// domainSeries reports whether node n exports family name for domain.
func domainSeries(n *cell.Node, name, domain string) bool {
	mfs, _ := n.Metrics().Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "domain" && lp.GetValue() == domain {
					return true
				}
			}
		}
	}
	return false
}

// wantDomainGauges waits until every node of c reports unowned, moving and
// consumers for domain.
func wantDomainGauges(t *testing.T, c *celltest.Cluster, domain string, unowned, moving, consumers float64) {
	t.Helper()
	celltest.Eventually(t, 10*time.Second, func() error {
		for _, n := range c.Nodes {
			u := celltest.MetricWith(n, metricUnowned, "domain", domain)
			m := celltest.MetricWith(n, metricMoving, "domain", domain)
			k := celltest.MetricWith(n, metricConsumers, "domain", domain)
			if !domainSeries(n, metricUnowned, domain) || u != unowned || m != moving || k != consumers {
				return fmt.Errorf("node %s: %s unowned=%v moving=%v consumers=%v; want %v %v %v",
					n.ID(), domain, u, m, k, unowned, moving, consumers)
			}
		}
		return nil
	})
}

func TestDomainGaugesOnEveryNode(t *testing.T) {
	c := celltest.New(t, 3)
	c.CreateDomain("orders", topology.KindGlobal, 8, 3*time.Second)
	c.CreateDomain("jobs", topology.KindGlobal, 2, 3*time.Second)
	wantDomainGauges(t, c, "orders", 8, 0, 0)
	wantDomainGauges(t, c, "jobs", 2, 0, 0)

	c.NewConsumer("c1", []string{"orders"})
	wantDomainGauges(t, c, "orders", 0, 0, 1)
	wantDomainGauges(t, c, "jobs", 2, 0, 0)

	// A deleted domain's series go away.
	if err := c.OnAny(func(a wdsv1.AdminClient) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := a.DeleteDomain(ctx, &wdsv1.DeleteDomainRequest{Name: "jobs"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	celltest.Eventually(t, 10*time.Second, func() error {
		for _, n := range c.Nodes {
			for _, fam := range []string{metricUnowned, metricMoving, metricConsumers} {
				if domainSeries(n, fam, "jobs") {
					return fmt.Errorf("node %s still exports %s{domain=\"jobs\"}", n.ID(), fam)
				}
			}
		}
		return nil
	})
	wantDomainGauges(t, c, "orders", 0, 0, 1)

	// The whole registry (cell, otelgrpc, runtime, process) gathers
	// without a collision, with no scope labels.
	for _, n := range c.Nodes {
		mfs, err := n.Metrics().Registry.Gather()
		if err != nil {
			t.Fatalf("node %s: Gather: %v", n.ID(), err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if strings.HasPrefix(lp.GetName(), "otel_scope_") {
						t.Fatalf("node %s: %s has label %s", n.ID(), mf.GetName(), lp.GetName())
					}
				}
			}
		}
	}
}

// A holder whose handler does not return on revoke keeps its shards
// REVOKED: they are moving and unowned until it lets go.
func TestDomainGaugesMoving(t *testing.T) {
	c := celltest.New(t, 1)
	c.CreateDomain("orders", topology.KindGlobal, 8, 30*time.Second)
	hold := make(chan struct{})
	letGo := sync.OnceFunc(func() { close(hold) })
	defer letGo() // before the consumers' cleanups close them
	c.NewConsumer("c1", []string{"orders"}, func(cfg *client.Config) {
		cfg.Handler = func(ctx context.Context, _ client.Shard) {
			<-ctx.Done()
			<-hold
		}
	})
	wantDomainGauges(t, c, "orders", 0, 0, 1)

	c.NewConsumer("c2", []string{"orders"})
	// The balancer moves half of c1's shards to c2; c1 does not release.
	celltest.Eventually(t, 10*time.Second, func() error {
		n := c.Nodes[0]
		u := celltest.MetricWith(n, metricUnowned, "domain", "orders")
		m := celltest.MetricWith(n, metricMoving, "domain", "orders")
		k := celltest.MetricWith(n, metricConsumers, "domain", "orders")
		if m == 0 || u != m || k != 2 {
			return fmt.Errorf("unowned=%v moving=%v consumers=%v; want unowned = moving > 0, consumers 2", u, m, k)
		}
		return nil
	})

	// c1's handlers return and it releases: c2 takes the shards over.
	letGo()
	wantDomainGauges(t, c, "orders", 0, 0, 2)
}
