package client

import (
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
