package federation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// TestFederationRoutingAcrossRegions: every endpoint serves the routing of
// every region's cell. An observer at eu-west's endpoint finds the owners
// of keys held in us-east and ap-south, the GLOBAL table is whole there
// (per-source versions for every region), REGIONAL key spaces of other
// regions are visible with LookupIn, and a move across regions shows up.
func TestFederationRoutingAcrossRegions(t *testing.T) {
	f := newFed(t, threeRegions)
	f.applyTopology(dom("prices", kGlobal, 12), dom("orders", kRegional, 4))
	a1 := f.consumer("us-east", "a1", "prices", "orders")
	c1 := f.consumer("ap-south", "c1", "prices", "orders")
	waitHeld(t, "us-east and ap-south hold prices", balanced("prices/", map[string]int{"a1": 6, "c1": 6}), a1, c1)

	var eps []string
	for _, p := range f.cfgs[f.index("eu-west")].Cell.Peers {
		eps = append(eps, p.GRPC)
	}
	obs, err := client.NewObserver(client.ObserverConfig{Endpoints: eps, Watch: []string{"prices", "orders"}, DialOptions: nil})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := obs.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	ranges, _ := topology.SplitEven(12)
	owners := func() (map[string]int, error) {
		got := map[string]int{}
		for _, r := range ranges {
			k, _ := r.From.Key()
			rt, ok := obs.Routing().Lookup("prices", k)
			if !ok || rt.Owner == "" {
				return nil, fmt.Errorf("no owner of %s at eu-west's endpoint (table %v)", k, obs.Routing().Table("prices"))
			}
			got[rt.Owner]++
		}
		return got, nil
	}
	start := time.Now()
	celltest.Eventually(t, 10*time.Second, func() error {
		got, err := owners()
		if err != nil {
			return err
		}
		if got["a1"] != 6 || got["c1"] != 6 {
			return fmt.Errorf("owners at eu-west %v", got)
		}
		if k, _ := uuid.Parse("00000000-0000-0000-0000-000000000001"); true {
			if rt, ok := obs.Routing().LookupIn("orders", "us-east", k); !ok || rt.Owner != "a1" {
				return fmt.Errorf("orders/us-east at eu-west: %+v %v", rt, ok)
			}
		}
		return nil
	})
	t.Logf("eu-west's endpoint serves the owners held in us-east and ap-south (%v); versions %v", time.Since(start).Round(time.Millisecond), obs.Routing().Versions())
	if v := obs.Routing().Versions(); v["us-east"] == 0 || v["ap-south"] == 0 {
		t.Fatalf("per-source versions %v: want us-east and ap-south", v)
	}

	// The shard map from eu-west's endpoint lists every shard, with the
	// region holding its delegation.
	cc, err := grpc.NewClient(eps[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	celltest.Eventually(t, 10*time.Second, func() error {
		sm, err := wdsv1.NewAdminClient(cc).ShardMap(ctx, &wdsv1.ShardMapRequest{Domain: "prices"})
		if err != nil {
			return err
		}
		by := map[string]int{}
		for _, s := range sm.GetShards() {
			by[s.GetDelegatedTo()+"/"+s.GetOwner()]++
		}
		if len(sm.GetShards()) != 12 || by["us-east/a1"] != 6 || by["ap-south/c1"] != 6 {
			return fmt.Errorf("eu-west's shard map: %d shards, %v", len(sm.GetShards()), by)
		}
		return nil
	})

	// A consumer joins in eu-west: a third of prices moves there; the
	// observer's table follows, across sources.
	b1 := f.consumer("eu-west", "b1", "prices")
	waitHeld(t, "three regions", balanced("prices/", map[string]int{"a1": 4, "b1": 4, "c1": 4}), a1, b1, c1)
	celltest.Eventually(t, 10*time.Second, func() error {
		got, err := owners()
		if err != nil {
			return err
		}
		if got["a1"] != 4 || got["b1"] != 4 || got["c1"] != 4 {
			return fmt.Errorf("owners at eu-west %v", got)
		}
		return nil
	})
	checkHistory(t, f.History)
}

// TestFederationCreateDomainAnywhere: a domain created through any
// region's cell Admin goes into the global catalog: every cell has it,
// consumers in two regions share it, and deleting it through a third
// region's endpoint removes it everywhere.
func TestFederationCreateDomainAnywhere(t *testing.T) {
	f := newFed(t, threeRegions)
	f.applyTopology()
	celltest.Eventually(t, 10*time.Second, func() error {
		for _, n := range f.nodes {
			if !n.Cell.IsLeader() {
				return fmt.Errorf("%s does not lead its cell yet", n.Cell.ID())
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	admin := func(region string) wdsv1.AdminClient {
		cc, err := grpc.NewClient(f.cfgs[f.index(region)].Cell.Peers[0].GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return wdsv1.NewAdminClient(cc)
	}
	resp, err := admin("ap-south").CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: dom("jobs", kGlobal, 8)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDomain().GetCreatedIndex() == 0 {
		t.Fatalf("created %v: want the global incarnation", resp.GetDomain())
	}
	for _, r := range threeRegions {
		celltest.Eventually(t, 5*time.Second, func() error {
			l, err := admin(r).ListDomains(ctx, &wdsv1.ListDomainsRequest{})
			if err != nil || len(l.GetDomains()) != 1 || l.GetDomains()[0].GetCreatedIndex() != resp.GetDomain().GetCreatedIndex() {
				return fmt.Errorf("%s lists %v (%v)", r, l.GetDomains(), err)
			}
			return nil
		})
	}
	a := f.consumer("us-east", "a", "jobs")
	e := f.consumer("eu-west", "e", "jobs")
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range f.nodes {
				if n != nil && n.Global != nil && n.Global.IsLeader() {
					t.Logf("global delegations: %+v", n.Global.State().Delegations(""))
				}
			}
		}
	})
	waitHeld(t, "jobs shared", balanced("jobs/", map[string]int{"a": 4, "e": 4}), a, e)
	if _, err := admin("us-east").CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: dom("jobs", kGlobal, 8)}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("creating it again: %v, want AlreadyExists", err)
	}
	if _, err := admin("ap-south").DeleteDomain(ctx, &wdsv1.DeleteDomainRequest{Name: "jobs"}); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, "jobs deleted", func(h map[string]map[string]int) error {
		if len(h["jobs/"]) != 0 {
			return fmt.Errorf("jobs still held: %v", h["jobs/"])
		}
		return nil
	}, a, e)
	celltest.Eventually(t, 10*time.Second, func() error {
		if _, _, ok := f.globalLeader().State().Domain("jobs"); ok {
			return fmt.Errorf("jobs not purged from the global catalog yet")
		}
		return nil
	})
	checkHistory(t, f.History)
}
