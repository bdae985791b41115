package cellstate

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	cellv1 "github.com/wdsio/wds/proto/wds/cell/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// The query API (state_query.go), read against richState: orders (GLOBAL,
// 8 shards: 0 free, 1 a ACTIVE, 2 a REVOKED, 3 a REVOKED with b ALLOCATED,
// 4 b ACTIVE, 5 c ACTIVE, 6 and 7 free); leader (UNIT: c ACTIVE); gone
// (REGIONAL, being deleted: shard 1 a REVOKED); consumers a (orders,
// gone), b (orders), c (leader, orders; draining), d (leader).

func opSetConfirmed(id, inc string, unconfirmed bool) *cellv1.Op {
	return &cellv1.Op{Op: &cellv1.Op_SetConfirmed{SetConfirmed: &cellv1.SetConfirmed{
		ConsumerId: id, Incarnation: []byte(inc), Unconfirmed: unconfirmed,
	}}}
}

func opCreateTTL(name string, ttl time.Duration) *cellv1.Op {
	return opCreateProto(&wdsv1.Domain{Name: name, Kind: global, Shards: 2, TtlMillis: ttl.Milliseconds()})
}

// wantNotFound checks err is ErrNotFound with exactly msg after the
// sentinel's text.
func wantNotFound(t *testing.T, err error, msg string) {
	t.Helper()
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if want := ErrNotFound.Error() + ": " + msg; err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
}

func TestStateQueryDomainTTLs(t *testing.T) {
	h := richState(t)
	h.ok(opCreateTTL("fast", time.Second), opCreateTTL("slow", 9*time.Second))
	s := h.state()

	got, err := s.DomainTTLs("hello.domains", []string{"orders", "fast", "slow"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]time.Duration{"orders": 3 * time.Second, "fast": time.Second, "slow": 9 * time.Second}; !maps.Equal(got, want) {
		t.Fatalf("DomainTTLs = %v, want %v", got, want)
	}
	if got, err := s.DomainTTLs("hello.domains", nil); err != nil || len(got) != 0 {
		t.Fatalf("DomainTTLs(nil) = %v, %v", got, err)
	}
	_, err = s.DomainTTLs("hello.domains", []string{"orders", "gone"})
	wantNotFound(t, err, `hello.domains[1]: domain "gone" does not exist (create it with `+"`wds domain create`)")
	_, err = s.DomainTTLs("hello.domains", []string{"nope", "orders"})
	wantNotFound(t, err, `hello.domains[0]: domain "nope" does not exist (create it with `+"`wds domain create`)")

	// DomainTTL knows a domain being deleted too.
	for name, want := range map[string]time.Duration{"orders": 3 * time.Second, "gone": 3 * time.Second, "fast": time.Second, "slow": 9 * time.Second} {
		if got, ok := s.DomainTTL(name); !ok || got != want {
			t.Errorf("DomainTTL(%q) = %v, %v; want %v", name, got, ok, want)
		}
	}
	if got, ok := s.DomainTTL("nope"); ok || got != 0 {
		t.Errorf("DomainTTL(nope) = %v, %v", got, ok)
	}

	// MaxTTL: by incarnation, over the consumer's domains in the catalog.
	h.ok(opJoin("e", "e1", "fast", "slow", "nope"), opJoin("f", "f1", "nope"), opJoin("g", "g1", "fast"))
	for inc, want := range map[string]time.Duration{"e1": 9 * time.Second, "g1": time.Second, "a1": 3 * time.Second, "d1": 3 * time.Second} {
		if got, ok := s.MaxTTL(inc); !ok || got != want {
			t.Errorf("MaxTTL(%q) = %v, %v; want %v", inc, got, ok, want)
		}
	}
	for _, inc := range []string{"f1", "e", "zz", ""} {
		if got, ok := s.MaxTTL(inc); ok || got != 0 {
			t.Errorf("MaxTTL(%q) = %v, %v; want 0, false", inc, got, ok)
		}
	}
}

func TestStateQueryDomainChecks(t *testing.T) {
	h := richState(t)
	s := h.state()
	if err := s.DomainsExist("hello.watch", []string{"orders", "leader"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DomainsExist("hello.watch", nil); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s.DomainsExist("hello.watch", []string{"orders", "leader", "gone"}), `hello.watch[2]: domain "gone" does not exist`)
	wantNotFound(t, s.DomainsExist("hello.watch", []string{"nope"}), `hello.watch[0]: domain "nope" does not exist`)

	if err := s.CheckDomain("name", "orders"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s.CheckDomain("name", "gone"), `name: domain "gone" does not exist`)
	wantNotFound(t, s.CheckDomain("name", "nope"), `name: domain "nope" does not exist`)
	wantFieldError(t, s.CheckDomain("name", ""), "name")
	wantFieldError(t, s.CheckDomain("name", "Orders"), "name")
}

func TestStateQueryListDomains(t *testing.T) {
	h := richState(t)
	got := h.state().ListDomains()
	want := []*wdsv1.Domain{
		{Name: "leader", Kind: unit, Shards: 1, TtlMillis: 3000, CreatedIndex: 1},
		{Name: "orders", Kind: global, Shards: 8, TtlMillis: 3000, CreatedIndex: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("ListDomains = %v, want %v", got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("ListDomains[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if got := NewState(testRegion).ListDomains(); len(got) != 0 {
		t.Fatalf("empty state lists %v", got)
	}
}

func TestStateQueryDescribeDomain(t *testing.T) {
	h := richState(t)
	h.ok(opSetConfirmed("b", "b1", true))
	s := h.state()
	connected := map[string]bool{"a": true, "c": true}
	info := func(id string, shards uint32, conn, draining, unconfirmed bool, domains ...string) *wdsv1.ConsumerInfo {
		return &wdsv1.ConsumerInfo{Id: id, Region: testRegion, Endpoint: id + ":7000", Domains: domains,
			Draining: draining, Connected: conn, Unconfirmed: unconfirmed, Shards: shards}
	}
	check := func(name string, want *wdsv1.DescribeDomainResponse) {
		t.Helper()
		got, err := s.DescribeDomain(name, connected)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("DescribeDomain(%q) =\n%v\nwant\n%v", name, got, want)
		}
	}
	check("orders", &wdsv1.DescribeDomainResponse{
		Domain:  &wdsv1.Domain{Name: "orders", Kind: global, Shards: 8, TtlMillis: 3000, CreatedIndex: 1},
		Unowned: 5, Moving: 2, Unconfirmed: 1,
		Consumers: []*wdsv1.ConsumerInfo{
			info("a", 1, true, false, false, "orders", "gone"),
			info("b", 1, false, false, true, "orders"),
			info("c", 1, true, true, false, "leader", "orders"),
		},
	})
	check("leader", &wdsv1.DescribeDomainResponse{
		Domain: &wdsv1.Domain{Name: "leader", Kind: unit, Shards: 1, TtlMillis: 3000, CreatedIndex: 1},
		Consumers: []*wdsv1.ConsumerInfo{
			info("c", 1, true, true, false, "leader", "orders"),
			info("d", 0, false, false, false, "leader"),
		},
	})
	_, err := s.DescribeDomain("gone", connected)
	wantNotFound(t, err, `name: domain "gone" does not exist`)
	_, err = s.DescribeDomain("", connected)
	wantFieldError(t, err, "name")

	// The returned protos are copies.
	got, _ := s.DescribeDomain("orders", connected)
	got.Consumers[0].Domains[0] = "mutated"
	if d := h.consumer("a").domains; d[0] != "orders" {
		t.Fatalf("mutating DescribeDomain's answer changed the state: %v", d)
	}
}

// fedState is a federated domain fed of 4 shards delegated at generation
// 40, e holding shard 0, whose first half (shards 0 and 1) was then
// relinquished: shard 0 REVOKED outside a live delegation, shard 1 outside
// with no grant, shards 2 and 3 delegated and free.
func fedState(t *testing.T) *harness {
	h := newHarness(t)
	h.ok(opCreateFederated("fed", global, 4), opJoin("e", "e1", "fed"))
	h.ok(opDelegate("fed", "", 40))
	h.ok(opAssign("fed", topology.Start, "e"))
	h.ok(opRelinquish("fed", "", 40, topology.Range{From: topology.Start, To: h.evenBound(4, 2)}))
	h.wantHolder("fed", 0, "e", stateRevoked)
	return h
}

func TestStateQueryDelegatedShardsOnly(t *testing.T) {
	h := fedState(t)
	s := h.state()
	got, err := s.DescribeDomain("fed", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &wdsv1.DescribeDomainResponse{
		Domain:    &wdsv1.Domain{Name: "fed", Kind: global, Shards: 4, TtlMillis: 3000, CreatedIndex: 1},
		Unowned:   2, // shards 2 and 3; 0 and 1 are not this cell's
		Consumers: []*wdsv1.ConsumerInfo{{Id: "e", Region: testRegion, Endpoint: "e:7000", Domains: []string{"fed"}}},
	}
	if !proto.Equal(got, want) {
		t.Fatalf("DescribeDomain(fed) =\n%v\nwant\n%v", got, want)
	}

	m, err := s.ShardMap("fed")
	if err != nil {
		t.Fatal(err)
	}
	ks := h.domain("fed")
	wantMap := &wdsv1.ShardMapResponse{Domain: "fed", Version: h.index, Shards: []*wdsv1.ShardInfo{
		{Range: topology.RangeToProto(ks.ranges[0]), Owner: "e", State: wdsv1.GrantState_GRANT_STATE_REVOKED,
			Token: topology.TokenToProto(topology.Token{Generation: 40, Index: 3}), Endpoint: "e:7000"},
		// shard 1: outside the delegations, no grant: left out
		{Range: topology.RangeToProto(ks.ranges[2])},
		{Range: topology.RangeToProto(ks.ranges[3])},
	}}
	if !proto.Equal(m, wantMap) {
		t.Fatalf("ShardMap(fed) =\n%v\nwant\n%v", m, wantMap)
	}

	dcs := s.DomainCounts()
	if want := []DomainCounts{{Name: "fed", Unowned: 2, Consumers: 1}}; !slices.Equal(dcs, want) {
		t.Fatalf("DomainCounts = %v, want %v", dcs, want)
	}
}

func TestStateQueryShardMap(t *testing.T) {
	h := richState(t)
	h.ok(opSetConfirmed("b", "b1", true), opSetConfirmed("a", "a1", true))
	s := h.state()
	got, err := s.ShardMap("orders")
	if err != nil {
		t.Fatal(err)
	}
	ks := h.domain("orders")
	tok := func(i int) *wdsv1.Token { return topology.TokenToProto(h.token("orders", i)) }
	held := func(i int, owner string, st wdsv1.GrantState, next string, unconfirmed bool) *wdsv1.ShardInfo {
		return &wdsv1.ShardInfo{Range: topology.RangeToProto(ks.ranges[i]), Owner: owner, State: st, Token: tok(i),
			Endpoint: owner + ":7000", NextOwner: next, Unconfirmed: unconfirmed}
	}
	free := func(i int) *wdsv1.ShardInfo { return &wdsv1.ShardInfo{Range: topology.RangeToProto(ks.ranges[i])} }
	active, revoked := wdsv1.GrantState_GRANT_STATE_ACTIVE, wdsv1.GrantState_GRANT_STATE_REVOKED
	want := &wdsv1.ShardMapResponse{Domain: "orders", Version: h.index, Shards: []*wdsv1.ShardInfo{
		free(0),
		held(1, "a", active, "", true), // a's REVOKED grants are not "unconfirmed"
		held(2, "a", revoked, "", false),
		held(3, "a", revoked, "b", false),
		held(4, "b", active, "", true),
		held(5, "c", active, "", false),
		free(6),
		free(7),
	}}
	if !proto.Equal(got, want) {
		t.Fatalf("ShardMap(orders) =\n%v\nwant\n%v", got, want)
	}
	if h.index == 0 || got.Version != s.Index() {
		t.Fatalf("ShardMap version %d, state index %d", got.Version, s.Index())
	}
	_, err = s.ShardMap("gone")
	wantNotFound(t, err, `domain: domain "gone" does not exist`)
	_, err = s.ShardMap("")
	wantFieldError(t, err, "domain")
}

func TestStateQueryConsumers(t *testing.T) {
	h := richState(t)
	h.ok(opSetConfirmed("d", "d1", true))
	s := h.state()
	got := s.ListConsumers(map[string]bool{"b": true, "d": true})
	want := []*wdsv1.ConsumerInfo{
		{Id: "a", Region: testRegion, Endpoint: "a:7000", Domains: []string{"orders", "gone"}, Shards: 1, ShardsByDomain: map[string]uint32{"orders": 1}},
		{Id: "b", Region: testRegion, Endpoint: "b:7000", Domains: []string{"orders"}, Connected: true, Shards: 1, ShardsByDomain: map[string]uint32{"orders": 1}},
		{Id: "c", Region: testRegion, Endpoint: "c:7000", Domains: []string{"leader", "orders"}, Draining: true, Shards: 2, ShardsByDomain: map[string]uint32{"orders": 1, "leader": 1}},
		{Id: "d", Region: testRegion, Endpoint: "d:7000", Domains: []string{"leader"}, Connected: true, Unconfirmed: true, ShardsByDomain: map[string]uint32{}},
	}
	if len(got) != len(want) {
		t.Fatalf("ListConsumers = %v, want %v", got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("ListConsumers[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	got[0].Domains[0] = "mutated"
	if d := h.consumer("a").domains; d[0] != "orders" {
		t.Fatalf("mutating ListConsumers' answer changed the state: %v", d)
	}

	views := map[string]ConsumerView{
		"a": {Incarnation: "a1", Grants: 4, Active: 1}, // orders 1, 2, 3; gone 1
		"b": {Incarnation: "b1", Grants: 2, Active: 1}, // orders 4; successor of 3
		"c": {Incarnation: "c1", Draining: true, Grants: 2, Active: 2},
		"d": {Incarnation: "d1"},
	}
	for id, want := range views {
		if got, ok := s.ConsumerView(id); !ok || got != want {
			t.Errorf("ConsumerView(%q) = %+v, %v; want %+v", id, got, ok, want)
		}
	}
	if got, ok := s.ConsumerView("zz"); ok || got != (ConsumerView{}) {
		t.Errorf("ConsumerView(zz) = %+v, %v", got, ok)
	}
	if got := s.Incarnations(); !maps.Equal(got, map[string]string{"a": "a1", "b": "b1", "c": "c1", "d": "d1"}) {
		t.Errorf("Incarnations = %v", got)
	}

	// Drained: draining, the incarnation asked for, nothing held or allocated.
	if s.Drained("c", "c1") {
		t.Error("c holds two shards but is drained")
	}
	if s.Drained("d", "d1") {
		t.Error("d is not draining but is drained")
	}
	h.ok(opDrain("d", "d1"))
	if !s.Drained("d", "d1") || s.Drained("d", "d0") || s.Drained("zz", "d1") {
		t.Errorf("d draining with nothing: Drained(d, d1) = %v, Drained(d, d0) = %v", s.Drained("d", "d1"), s.Drained("d", "d0"))
	}
	h.ok(opDrain("b", "b1"), opRelease("orders", h.from("orders", 4), "b", h.token("orders", 4), false))
	if v, _ := s.ConsumerView("b"); s.Drained("b", "b1") || v != (ConsumerView{Incarnation: "b1", Draining: true, Grants: 1}) {
		t.Errorf("b draining with an allocation left: %+v, drained %v", v, s.Drained("b", "b1"))
	}
	h.ok(opRelease("orders", h.from("orders", 3), "b", topology.Token{}, false))
	if !s.Drained("b", "b1") {
		t.Error("b draining with nothing left is not drained")
	}
}

func TestStateQueryWelcomeOf(t *testing.T) {
	h := richState(t)
	s := h.state()
	grant := func(name, region string, i int) *wdsv1.ShardGrant {
		ks := h.state().domains[name].spaces[0]
		return &wdsv1.ShardGrant{Domain: name, Region: region, Range: topology.RangeToProto(ks.ranges[i]), Token: topology.TokenToProto(ks.shards[i].holder.token)}
	}
	ref := func(name, region string, i int) GrantRef {
		ks := h.state().domains[name].spaces[0]
		return GrantRef{Domain: name, Region: region, Range: ks.ranges[i], Token: ks.shards[i].holder.token}
	}
	check := func(id, inc string, want ConsumerWelcome) {
		t.Helper()
		got := s.WelcomeOf(id, inc)
		if got.Index != want.Index || got.Found != want.Found || got.Draining != want.Draining ||
			!slices.EqualFunc(got.Grants, want.Grants, func(a, b *wdsv1.ShardGrant) bool { return proto.Equal(a, b) }) ||
			!slices.Equal(got.Revoked, want.Revoked) {
			t.Fatalf("WelcomeOf(%q, %q) = %+v, want %+v", id, inc, got, want)
		}
	}
	check("a", "a1", ConsumerWelcome{Index: h.index, Found: true,
		Grants:  []*wdsv1.ShardGrant{grant("orders", "", 1)},
		Revoked: []GrantRef{ref("gone", testRegion, 1), ref("orders", "", 2), ref("orders", "", 3)},
	})
	check("b", "b1", ConsumerWelcome{Index: h.index, Found: true, Grants: []*wdsv1.ShardGrant{grant("orders", "", 4)}})
	check("c", "c1", ConsumerWelcome{Index: h.index, Found: true, Draining: true,
		Grants: []*wdsv1.ShardGrant{grant("leader", "", 0), grant("orders", "", 5)}})
	check("d", "d1", ConsumerWelcome{Index: h.index, Found: true})
	check("a", "a0", ConsumerWelcome{Index: h.index})
	check("zz", "a1", ConsumerWelcome{Index: h.index})
	if len(s.WelcomeOf("a", "a1").Revoked) != 3 || s.WelcomeOf("a", "a1").Revoked[0].Token.IsZero() {
		t.Fatal("revoked grants carry no token")
	}
}

func TestStateQueryCounts(t *testing.T) {
	s := NewState(testRegion)
	if got := s.Counts(); got != (StateCounts{}) {
		t.Fatalf("empty Counts = %+v", got)
	}
	if s.HasWork() {
		t.Fatal("an empty state has work")
	}
	h := newHarness(t)
	h.ok(opCreate("orders", global, 2))
	if h.state().HasWork() {
		t.Fatal("a state with only a domain has work")
	}
	h.ok(opDelete("orders", false))
	if !h.state().HasWork() {
		t.Fatal("a domain being deleted is no work")
	}

	h = richState(t)
	s = h.state()
	if got, want := s.Counts(), (StateCounts{Domains: 2, Consumers: 4, Grants: 8}); got != want {
		t.Fatalf("Counts = %+v, want %+v", got, want)
	}
	if !s.HasWork() {
		t.Fatal("registered consumers are no work")
	}

	dcs := s.DomainCounts()
	slices.SortFunc(dcs, func(a, b DomainCounts) int { return strings.Compare(a.Name, b.Name) })
	want := []DomainCounts{
		{Name: "leader", Consumers: 2},
		{Name: "orders", Unowned: 5, Moving: 2, Consumers: 3},
	}
	if !slices.Equal(dcs, want) {
		t.Fatalf("DomainCounts = %+v, want %+v", dcs, want)
	}
}

// The queries lock the state themselves: run them while entries apply
// (meaningful under -race).
func TestStateQueryConcurrent(t *testing.T) {
	h := richState(t)
	s := h.state()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = s.DomainTTLs("hello.domains", []string{"orders"})
				_, _ = s.DomainTTL("orders")
				_, _ = s.MaxTTL("a1")
				_ = s.ListDomains()
				_, _ = s.DescribeDomain("orders", nil)
				_, _ = s.ShardMap("orders")
				_ = s.ListConsumers(nil)
				_, _ = s.ConsumerView("a")
				_ = s.Drained("c", "c1")
				_ = s.Incarnations()
				_ = s.WelcomeOf("a", "a1")
				_ = s.Counts()
				_ = s.HasWork()
				_ = s.DomainCounts()
				_ = s.DomainsExist("hello.watch", []string{"orders"})
				_ = s.CheckDomain("name", "orders")
			}
		}()
	}
	for i := range 50 {
		h.ok(opAssign("orders", h.from("orders", 6), "b"))
		h.ok(opRelease("orders", h.from("orders", 6), "b", h.token("orders", 6), false))
		if i%10 == 0 {
			h.ok(opCreate("extra", global, 4), opJoin("x", "x1", "extra"))
			h.ok(opLeave("x", "x1"), opDelete("extra", false))
			h.ok(opDelete("extra", true))
		}
	}
	close(stop)
	wg.Wait()
}

// TestDomainCountsThroughAHandover follows the per-domain gauges' values
// through grants, a move, a release, a leave and deletion.
func TestDomainCountsThroughAHandover(t *testing.T) {
	h := newHarness(t)
	want := func(wants ...DomainCounts) {
		t.Helper()
		got := h.state().DomainCounts()
		slices.SortFunc(got, func(a, b DomainCounts) int { return strings.Compare(a.Name, b.Name) })
		if !slices.Equal(got, wants) {
			t.Fatalf("DomainCounts = %+v, want %+v", got, wants)
		}
	}
	want()
	h.ok(opCreate("orders", global, 4), opCreate("jobs", global, 2))
	h.ok(opJoin("a", "a1", "orders"), opJoin("b", "b1", "orders", "jobs"), opJoin("x", "x1", "other"))
	want(DomainCounts{Name: "jobs", Unowned: 2, Consumers: 1}, DomainCounts{Name: "orders", Unowned: 4, Consumers: 2})

	for i := range 4 {
		h.ok(opAssign("orders", h.from("orders", i), "a"))
	}
	h.ok(opAssign("jobs", h.from("jobs", 0), "b"))
	want(DomainCounts{Name: "jobs", Unowned: 1, Consumers: 1}, DomainCounts{Name: "orders", Consumers: 2})

	// A move: shard 0 REVOKED with b ALLOCATED behind it, shard 1 REVOKED
	// with no successor yet. Neither has an ACTIVE holder.
	f0, tok0 := h.from("orders", 0), h.token("orders", 0)
	h.ok(opMove("orders", f0, "a", tok0, "b", rebalance))
	h.ok(opMove("orders", h.from("orders", 1), "a", h.token("orders", 1), "", rebalance))
	h.wantHolder("orders", 0, "a", stateRevoked)
	want(DomainCounts{Name: "jobs", Unowned: 1, Consumers: 1}, DomainCounts{Name: "orders", Unowned: 2, Moving: 2, Consumers: 2})

	// a releases shard 0: b is ACTIVE.
	h.ok(opRelease("orders", f0, "a", tok0, false))
	h.wantHolder("orders", 0, "b", stateActive)
	want(DomainCounts{Name: "jobs", Unowned: 1, Consumers: 1}, DomainCounts{Name: "orders", Unowned: 1, Moving: 1, Consumers: 2})

	// b leaves: jobs loses its holder and its consumer.
	h.ok(opLeave("b", "b1"))
	want(DomainCounts{Name: "jobs", Unowned: 2}, DomainCounts{Name: "orders", Unowned: 2, Moving: 1, Consumers: 1})

	// A deleting domain (a still holds shards) and a deleted one are gone.
	h.ok(opDelete("orders", false), opDelete("jobs", false))
	want()
}
