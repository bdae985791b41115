package client

import (
	"fmt"
	"testing"

	"github.com/google/uuid"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

func entries(rs []topology.Range, owner string) []*wdsv1.RouteEntry {
	var out []*wdsv1.RouteEntry
	for i, r := range rs {
		out = append(out, &wdsv1.RouteEntry{Range: topology.RangeToProto(r), Owner: owner, Endpoint: owner + ":1",
			Token: &wdsv1.Token{Generation: 1, Index: uint64(i + 1)}})
	}
	return out
}

func TestRoutingSnapshotDeltaLookup(t *testing.T) {
	r := newRouting()
	ch, cancel := r.Watch(16)
	defer cancel()
	rs, _ := topology.SplitEven(4)
	// A snapshot in two parts: only the first replaces.
	if err := r.apply(&wdsv1.Routing{Version: 5, Snapshot: true, More: true, Domains: []*wdsv1.DomainRouting{
		{Domain: "d", Replace: true, Entries: entries(rs[:2], "a")}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.apply(&wdsv1.Routing{Version: 5, Snapshot: true, Domains: []*wdsv1.DomainRouting{
		{Domain: "d", Entries: entries(rs[2:], "b")}}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key   string
		owner string
	}{
		{"00000000-0000-0000-0000-000000000000", "a"},
		{"3fffffff-ffff-ffff-ffff-ffffffffffff", "a"},
		{"40000000-0000-0000-0000-000000000000", "a"},
		{"80000000-0000-0000-0000-000000000000", "b"},
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", "b"}, // the last key: no off-by-one
	} {
		owner, ep, _, ok := r.Owner("d", uuid.MustParse(tc.key))
		if !ok || owner != tc.owner || ep != tc.owner+":1" {
			t.Errorf("owner of %s = %q %q %v, want %q", tc.key, owner, ep, ok, tc.owner)
		}
	}
	// A delta replaces the entry with the same start; others stay.
	if err := r.apply(&wdsv1.Routing{Version: 6, Domains: []*wdsv1.DomainRouting{{Domain: "d", Entries: []*wdsv1.RouteEntry{
		{Range: topology.RangeToProto(rs[3])}}}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, ok := r.Owner("d", uuid.MustParse("ffffffff-ffff-ffff-ffff-ffffffffffff")); ok {
		t.Error("unowned entry still has an owner")
	}
	if len(r.Table("d")) != 4 || r.Version() != 6 {
		t.Errorf("table %d entries at version %d", len(r.Table("d")), r.Version())
	}
	// Deletion drops the table.
	if err := r.apply(&wdsv1.Routing{Version: 7, Domains: []*wdsv1.DomainRouting{{Domain: "d", Deleted: true}}}); err != nil {
		t.Fatal(err)
	}
	if r.Table("d") != nil {
		t.Error("deleted domain still has a table")
	}
	var got []Change
	for len(ch) > 0 {
		got = append(got, <-ch)
	}
	if len(got) != 4 || !got[0].Replaced || got[2].Version != 6 || !got[3].Deleted {
		t.Errorf("changes %+v", got)
	}
}

func TestRoutingRejectsBadEntry(t *testing.T) {
	r := newRouting()
	err := r.apply(&wdsv1.Routing{Domains: []*wdsv1.DomainRouting{{Domain: "d", Entries: []*wdsv1.RouteEntry{
		{Range: &wdsv1.KeyRange{From: []byte{1}}}}}}})
	if err == nil {
		t.Fatal("malformed range accepted")
	}
}

func TestWatchSlowWatcherMisses(t *testing.T) {
	r := newRouting()
	ch, cancel := r.Watch(1)
	defer cancel()
	rs, _ := topology.SplitEven(1)
	for v := uint64(1); v <= 3; v++ {
		if err := r.apply(&wdsv1.Routing{Version: v, Domains: []*wdsv1.DomainRouting{{Domain: "d", Replace: true, Entries: entries(rs, "a")}}}); err != nil {
			t.Fatal(err)
		}
	}
	first := <-ch
	if first.Version != 1 {
		t.Fatalf("first change version %d", first.Version)
	}
	if err := r.apply(&wdsv1.Routing{Version: 4, Domains: []*wdsv1.DomainRouting{{Domain: "d", Entries: entries(rs, "b")}}}); err != nil {
		t.Fatal(err)
	}
	next := <-ch
	if next.Version != 4 || next.Missed != 2 {
		t.Fatalf("after a stall got version %d with %d missed, want 4 and 2", next.Version, next.Missed)
	}
}

// TestRoutingUnwatched: without watchers apply skips building changes; the
// table must still follow every delta, and a watcher added later gets the
// changes after it.
func TestRoutingUnwatched(t *testing.T) {
	r := newRouting()
	rs, _ := topology.SplitEven(4)
	if err := r.apply(&wdsv1.Routing{Version: 1, Domains: []*wdsv1.DomainRouting{{Domain: "d", Replace: true, Entries: entries(rs, "a")}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.apply(&wdsv1.Routing{Version: 2, Domains: []*wdsv1.DomainRouting{{Domain: "d", Entries: entries(rs[2:3], "b")}}}); err != nil {
		t.Fatal(err)
	}
	key := func(i int) uuid.UUID { k, _ := rs[i].From.Key(); return k }
	if owner, _, _, ok := r.Owner("d", key(2)); !ok || owner != "b" {
		t.Fatalf("owner of shard 2 = %q (ok %v), want b", owner, ok)
	}
	if owner, _, _, _ := r.Owner("d", key(1)); owner != "a" {
		t.Fatalf("owner of shard 1 = %q, want a", owner)
	}
	ch, cancel := r.Watch(4)
	defer cancel()
	if err := r.apply(&wdsv1.Routing{Version: 3, Domains: []*wdsv1.DomainRouting{{Domain: "d", Entries: entries(rs[1:2], "c")}}}); err != nil {
		t.Fatal(err)
	}
	chg := <-ch
	if chg.Version != 3 || len(chg.Routes) != 1 || chg.Routes[0].Owner != "c" || chg.Missed != 0 {
		t.Fatalf("change after Watch = %+v, want version 3 with shard 1 owned by c", chg)
	}
}

func BenchmarkLookup(b *testing.B) {
	r := newRouting()
	rs, _ := topology.SplitEven(1 << 16)
	if err := r.apply(&wdsv1.Routing{Version: 1, Domains: []*wdsv1.DomainRouting{{Domain: "d", Replace: true, Entries: entries(rs, "a")}}}); err != nil {
		b.Fatal(err)
	}
	keys := make([]uuid.UUID, 1024)
	for i := range keys {
		keys[i] = uuid.New()
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, ok := r.Lookup("d", keys[i%len(keys)]); !ok {
			b.Fatal("no route")
		}
	}
}

// BenchmarkRoutingApply: the client's cost of one routing delta of 100
// entries (a consumer's domain re-granted) once decoded, with and without a
// watcher; a process hosting many sessions pays it per session.
func BenchmarkRoutingApply(b *testing.B) {
	rs, _ := topology.SplitEven(100)
	for _, watched := range []bool{false, true} {
		b.Run(fmt.Sprintf("watched=%v", watched), func(b *testing.B) {
			r := newRouting()
			if err := r.apply(&wdsv1.Routing{Version: 1, Domains: []*wdsv1.DomainRouting{{Domain: "d", Replace: true, Entries: entries(rs, "a")}}}); err != nil {
				b.Fatal(err)
			}
			if watched {
				ch, cancel := r.Watch(1)
				defer cancel()
				go func() {
					for range ch {
					}
				}()
			}
			delta := &wdsv1.Routing{Version: 2, Domains: []*wdsv1.DomainRouting{{Domain: "d", Entries: entries(rs, "b")}}}
			b.ReportAllocs()
			for b.Loop() {
				if err := r.apply(delta); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestRoutingKeySpaces: a REGIONAL domain's key spaces are kept apart:
// replace and delete apply to one key space; Lookup uses the session's
// region, LookupIn the one named; a GLOBAL domain (no region) and a server
// that names no key space work as before.
func TestRoutingKeySpaces(t *testing.T) {
	r := newRouting()
	ch, cancel := r.Watch(16)
	defer cancel()
	rs, _ := topology.SplitEven(2)
	regional := wdsv1.DomainKind_DOMAIN_KIND_REGIONAL
	if err := r.apply(&wdsv1.Routing{Version: 1, Snapshot: true, Domains: []*wdsv1.DomainRouting{
		{Domain: "d", Region: "a", Kind: regional, Replace: true, Entries: entries(rs, "a1")},
		{Domain: "d", Region: "b", Kind: regional, Replace: true, Entries: entries(rs, "b1")},
		{Domain: "g", Replace: true, Entries: entries(rs, "g1")},
	}}); err != nil {
		t.Fatal(err)
	}
	key := uuid.MustParse("90000000-0000-0000-0000-000000000000")
	// The region is not known yet and d has two key spaces: no answer.
	if rt, ok := r.Lookup("d", key); ok {
		t.Errorf("lookup without a region found %+v", rt)
	}
	r.setRegion("b")
	if rt, ok := r.Lookup("d", key); !ok || rt.Owner != "b1" || rt.Region != "b" {
		t.Errorf("lookup in the session's region = %+v %v, want b1 in b", rt, ok)
	}
	if rt, ok := r.LookupIn("d", "a", key); !ok || rt.Owner != "a1" || rt.Region != "a" {
		t.Errorf("LookupIn a = %+v %v, want a1 in a", rt, ok)
	}
	if rt, ok := r.Lookup("g", key); !ok || rt.Owner != "g1" || rt.Region != "" {
		t.Errorf("GLOBAL lookup = %+v %v, want g1", rt, ok)
	}
	if _, ok := r.LookupIn("d", "c", key); ok {
		t.Error("LookupIn an unknown key space found a route")
	}
	// A replace of a's key space leaves b's alone.
	if err := r.apply(&wdsv1.Routing{Version: 2, Domains: []*wdsv1.DomainRouting{
		{Domain: "d", Region: "a", Kind: regional, Replace: true, Entries: entries(rs, "a2")}}}); err != nil {
		t.Fatal(err)
	}
	if owner, _, _, _ := r.Owner("d", key); owner != "b1" {
		t.Errorf("owner in b after a's replace = %q, want b1", owner)
	}
	if tb := r.TableIn("d", "a"); len(tb) != 2 || tb[0].Owner != "a2" {
		t.Errorf("a's table %+v", tb)
	}
	if ks := fmt.Sprint(r.KeySpaces("d")); ks != "[a b]" {
		t.Errorf("key spaces %s, want [a b]", ks)
	}
	// Deleting b's key space keeps a's and the domain.
	if err := r.apply(&wdsv1.Routing{Version: 3, Domains: []*wdsv1.DomainRouting{{Domain: "d", Region: "b", Deleted: true}}}); err != nil {
		t.Fatal(err)
	}
	if r.TableIn("d", "b") != nil || len(r.TableIn("d", "a")) != 2 || fmt.Sprint(r.Domains()) != "[d g]" {
		t.Errorf("after deleting b's key space: b %v, a %v, domains %v", r.TableIn("d", "b"), r.TableIn("d", "a"), r.Domains())
	}
	if _, ok := r.Lookup("d", key); ok {
		t.Error("lookup in the deleted key space of the session's region found a route")
	}
	var got []Change
	for len(ch) > 0 {
		got = append(got, <-ch)
	}
	if len(got) != 5 || got[0].Region != "a" || got[1].Region != "b" || got[2].Region != "" || got[3].Region != "a" || !got[4].Deleted || got[4].Region != "b" {
		t.Errorf("changes %+v", got)
	}
	// A deletion naming no region deletes the domain: every key space.
	if err := r.apply(&wdsv1.Routing{Version: 4, Domains: []*wdsv1.DomainRouting{
		{Domain: "d", Region: "b", Kind: regional, Replace: true, Entries: entries(rs, "b2")}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.apply(&wdsv1.Routing{Version: 5, Domains: []*wdsv1.DomainRouting{{Domain: "d", Deleted: true, Replace: true}}}); err != nil {
		t.Fatal(err)
	}
	if ks := r.KeySpaces("d"); len(ks) != 0 || fmt.Sprint(r.Domains()) != "[g]" {
		t.Errorf("after deleting domain d: key spaces %v, domains %v", ks, r.Domains())
	}
	if _, ok := r.LookupIn("d", "a", key); ok {
		t.Error("a deleted domain's key space still answers")
	}
	// A server that names no key space: its table serves Lookup for any
	// session region, REGIONAL or not.
	old := newRouting()
	old.setRegion("b")
	if err := old.apply(&wdsv1.Routing{Version: 1, Domains: []*wdsv1.DomainRouting{
		{Domain: "d", Kind: regional, Replace: true, Entries: entries(rs, "o")}}}); err != nil {
		t.Fatal(err)
	}
	if owner, _, _, ok := old.Owner("d", key); !ok || owner != "o" || len(old.Table("d")) != 2 {
		t.Errorf("old server's REGIONAL table: owner %q %v", owner, ok)
	}
}
