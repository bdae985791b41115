package federation_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/global"
	"github.com/wdsio/wds/global/globalstate"
	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/internal/faults"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// TestFederationGlobalVoterChanges: the global group's voters follow the
// applied topology. ap-south starts without a voter; a node the topology
// does not list is refused when it asks to join; once a topology lists
// ap-south's voter, its node (restarted as a voter on an empty global data
// dir) joins instead of bootstrapping a group of its own, and the group
// then needs it: with eu-west's voter cut off, us-east and ap-south still
// elect and commit. A topology without eu-west's voter takes it out of the
// group (handing leadership over if it led), and the two that remain carry
// on. No consumer of the regions whose nodes stayed up churns, and the
// checker finds no overlap.
func TestFederationGlobalVoterChanges(t *testing.T) {
	f := newFed(t, threeRegions, withOutage(8*time.Second), withoutGlobalVoter("ap-south"))
	doms := []*wdsv1.Domain{domT("prices", kGlobal, 12, churnTTL)}
	f.applyTopology(doms...)
	a := f.consumer("us-east", "a", "prices")
	b := f.consumer("eu-west", "b", "prices")
	c := f.consumer("ap-south", "c", "prices")
	all := []*celltest.Consumer{a, b, c}
	waitHeld(t, "settled", balanced("prices/", map[string]int{"a": 4, "b": 4, "c": 4}), all...)
	time.Sleep(time.Second)
	stayed := []*celltest.Consumer{a, b}
	before := churnOf(stayed...)

	usEast := f.voters["us-east"].GetGrpc()
	statusAt := func(ep string) *globalv1.GlobalStatusResponse {
		t.Helper()
		cc, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := globalv1.NewGlobalAdminClient(cc).GlobalStatus(ctx, &globalv1.GlobalStatusRequest{})
		if err != nil {
			t.Fatalf("GlobalStatus at %s: %v", ep, err)
		}
		return st
	}
	voterIDs := func(st *globalv1.GlobalStatusResponse, joining bool) []string {
		var out []string
		for _, v := range st.GetVoters() {
			if v.GetJoining() == joining {
				out = append(out, v.GetId())
			}
		}
		slices.Sort(out)
		return out
	}

	// A node the applied topology does not list is refused.
	cc, err := grpc.NewClient(usEast, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = globalv1.NewGlobalAdminClient(cc).Join(ctx, &globalv1.JoinRequest{NodeId: globalID("ap-south"), RaftAddress: f.voters["ap-south"].GetRaft()})
	cancel()
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "not a global voter of the applied topology") {
		t.Fatalf("Join of an unlisted node: got %v, want FailedPrecondition naming the topology", err)
	}

	// The topology lists ap-south's voter: it is joining until it runs.
	if err := f.applyTopologyVoters(threeRegions, doms...); err != nil {
		t.Fatal(err)
	}
	celltest.Eventually(t, 5*time.Second, func() error {
		if got := voterIDs(statusAt(usEast), true); !slices.Equal(got, []string{globalID("ap-south")}) {
			return fmt.Errorf("joining voters: %v, want [%s]", got, globalID("ap-south"))
		}
		return nil
	})

	// A topology whose only voter is ap-south's, listed but not in the
	// configuration yet, is refused: the group would be left to it.
	if err := f.applyTopologyVoters([]string{"ap-south"}, doms...); err == nil || !strings.Contains(err.Error(), "keeps none of the voters in the global group's configuration") {
		t.Fatalf("apply keeping only a voter not in the group: %v", err)
	}

	// ap-south's node restarts as a voter, with a file that lists all
	// three, on an empty global data dir: it must join, not bootstrap.
	i := f.index("ap-south")
	added := time.Now()
	f.kill(i)
	peers := append(slices.Clone(f.gpeers), global.Peer{ID: globalID("ap-south"), Region: "ap-south", Raft: f.voters["ap-south"].GetRaft(), GRPC: f.voters["ap-south"].GetGrpc()})
	f.cfgs[i].Global = f.globalConfig("ap-south", peers)
	f.cfgs[i].GlobalEndpoints = append(f.cfgs[i].GlobalEndpoints, f.voters["ap-south"].GetGrpc())
	f.start(i)
	want := []string{globalID("ap-south"), globalID("eu-west"), globalID("us-east")}
	celltest.Eventually(t, 20*time.Second, func() error {
		st := statusAt(f.voters["ap-south"].GetGrpc())
		if got := voterIDs(st, false); !st.GetConfigured() || !slices.Equal(got, want) {
			return fmt.Errorf("ap-south's view of the voters: configured %v, %v (joining %v)", st.GetConfigured(), got, voterIDs(st, true))
		}
		if st.GetAppliedIndex() < f.globalLeader().State().Index() {
			return fmt.Errorf("ap-south's voter has applied %d of %d", st.GetAppliedIndex(), f.globalLeader().State().Index())
		}
		return nil
	})
	t.Logf("ap-south's voter in the group %v after its node was restarted", time.Since(added).Round(time.Millisecond))
	waitHeld(t, "ap-south's consumer back", balanced("prices/", map[string]int{"a": 4, "b": 4, "c": 4}), all...)

	// The group counts ap-south now: without eu-west's voter, us-east
	// and ap-south elect (one of two old voters could not) and commit.
	gEU := globalID("eu-west")
	f.Net.Isolate(gEU, faults.Raft)
	var rest []*global.Node
	for _, r := range []string{"us-east", "ap-south"} {
		rest = append(rest, f.nodes[f.index(r)].Global)
	}
	celltest.Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		g, err := global.WaitLeader(ctx, rest...)
		if err != nil {
			return err
		}
		if _, err = g.CreateDomain(ctx, dom("while-eu-west-is-cut", kGlobal, 4)); errors.Is(err, globalstate.ErrExists) {
			return nil // an earlier try committed
		}
		return err
	})
	f.Net.Heal(gEU, faults.Raft)
	doms = append(doms, dom("while-eu-west-is-cut", kGlobal, 4))

	// wantIn waits until both us-east's and ap-south's voters see want as
	// the configuration, nobody joining.
	wantIn := func(what string, want ...string) {
		t.Helper()
		slices.Sort(want)
		since := time.Now()
		celltest.Eventually(t, 30*time.Second, func() error {
			for _, r := range []string{"us-east", "ap-south"} {
				st := statusAt(f.voters[r].GetGrpc())
				if got := voterIDs(st, false); !slices.Equal(got, want) || len(voterIDs(st, true)) > 0 {
					return fmt.Errorf("%s: %s's view of the voters: %v (joining %v), want %v", what, r, got, voterIDs(st, true), want)
				}
			}
			return nil
		})
		t.Logf("%s: voters %v after %v", what, want, time.Since(since).Round(time.Millisecond))
	}
	gUS, gAP := globalID("us-east"), globalID("ap-south")
	// apply retries through leader changes (the test cuts voters off).
	apply := func(voters ...string) {
		t.Helper()
		celltest.Eventually(t, 30*time.Second, func() error { return f.applyTopologyVoters(voters, doms...) })
	}

	// The topology drops eu-west's voter while ap-south's is cut off: the
	// configuration without eu-west would need ap-south, so the leader
	// waits; once ap-south answers again it takes eu-west out (if eu-west's
	// voter leads, it hands over first).
	f.Net.Isolate(gAP, faults.Raft)
	apply("us-east", "ap-south")
	time.Sleep(3 * time.Second)
	if got := voterIDs(statusAt(usEast), false); !slices.Contains(got, gEU) {
		t.Fatalf("eu-west's voter removed while ap-south's was cut off (the group would stop): %v", got)
	}
	f.Net.Heal(gAP, faults.Raft)
	wantIn("eu-west's voter removed once ap-south's answers", gUS, gAP)
	// The removed voter keeps running, outside the group, and says so.
	if st := statusAt(f.voters["eu-west"].GetGrpc()); slices.Contains(voterIDs(st, false), gEU) {
		t.Fatalf("the removed voter still lists itself: %v", voterIDs(st, false))
	}

	// Listed again, the running removed voter asks to join and is back.
	apply(threeRegions...)
	wantIn("eu-west's voter listed again", gUS, gEU, gAP)
	if after := churnOf(stayed...); !equalChurn(before, after) {
		t.Fatalf("us-east's and eu-west's consumers churned across the voter changes: before %v, after %v", before, after)
	}

	// Removed while its node is down, a voter's own configuration still
	// lists it when it restarts: it finds out from the others, and joins
	// again once a topology lists it.
	eu := f.index("eu-west")
	f.kill(eu)
	apply("us-east", "ap-south")
	wantIn("eu-west's voter removed while down", gUS, gAP)
	f.start(eu)
	apply(threeRegions...)
	wantIn("eu-west's voter, removed while down, back", gUS, gEU, gAP)

	// Last, dropped for good: the two that remain carry the group.
	apply("us-east", "ap-south")
	wantIn("eu-west's voter removed", gUS, gAP)
	stayed, before = []*celltest.Consumer{a}, churnOf(a)
	// eu-west's cell was started knowing us-east's and eu-west's voters:
	// the answers to its renewals taught it ap-south's.
	celltest.Eventually(t, 10*time.Second, func() error {
		if eps := f.nodes[eu].GlobalEndpoints(); !slices.Contains(eps, f.voters["ap-south"].GetGrpc()) {
			return fmt.Errorf("eu-west's cell tries %v, not ap-south's voter %s", eps, f.voters["ap-south"].GetGrpc())
		}
		return nil
	})

	// The two that remain carry the group: eu-west's old voter cut off
	// changes nothing, and every region still renews.
	f.Net.Isolate(gEU, faults.Raft)
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g, err := global.WaitLeader(ctx, rest...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.CreateDomain(ctx, dom("after-removal", kGlobal, 4)); err != nil {
		t.Fatal(err)
	}
	celltest.Eventually(t, 10*time.Second, func() error { return renewedAll(g, f.regions) })
	time.Sleep(2 * time.Second)
	if after := churnOf(stayed...); !equalChurn(before, after) {
		t.Fatalf("us-east's consumer churned after eu-west's restart: before %v, after %v", before, after)
	}
	checkHistory(t, f.History)
}
