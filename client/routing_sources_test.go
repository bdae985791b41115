package client

import (
	"testing"

	"github.com/google/uuid"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// TestRoutingMergesSources: in a federation each source region's cell
// sends the entries of the shards delegated to it; the client serves the
// merge, per shard the owned entry and the higher token, and ignores a
// source's older version.
func TestRoutingMergesSources(t *testing.T) {
	rs, err := topology.SplitEven(4)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(i int, owner string, gen, idx uint64) *wdsv1.RouteEntry {
		e := &wdsv1.RouteEntry{Range: topology.RangeToProto(rs[i])}
		if owner != "" {
			e.Owner, e.Endpoint, e.Token = owner, owner+":1", &wdsv1.Token{Generation: gen, Index: idx}
		}
		return e
	}
	part := func(source string, version uint64, replace bool, entries ...*wdsv1.RouteEntry) *wdsv1.DomainRouting {
		return &wdsv1.DomainRouting{Domain: "prices", Kind: wdsv1.DomainKind_DOMAIN_KIND_GLOBAL, Replace: replace,
			Source: source, SourceVersion: version, Entries: entries}
	}
	r := newRouting()
	ch, cancel := r.Watch(16)
	defer cancel()
	apply := func(parts ...*wdsv1.DomainRouting) {
		t.Helper()
		if err := r.apply(&wdsv1.Routing{Version: 1, Domains: parts}); err != nil {
			t.Fatal(err)
		}
	}
	owner := func(i int) string {
		t.Helper()
		k, _ := rs[i].From.Key()
		rt, ok := r.Lookup("prices", k)
		if !ok {
			return "<none>"
		}
		return rt.Owner
	}
	// us-east holds shards 0-1, eu-west 2-3.
	apply(part("us-east", 10, true, entry(0, "a", 5, 10), entry(1, "a", 5, 10)),
		part("eu-west", 7, true, entry(2, "e", 5, 7), entry(3, "e", 5, 7)))
	for i, want := range []string{"a", "a", "e", "e"} {
		if got := owner(i); got != want {
			t.Fatalf("shard %d owned by %q, want %q", i, got, want)
		}
	}
	if tab := r.Table("prices"); len(tab) != 4 {
		t.Fatalf("merged table %v", tab)
	}
	if v := r.Versions(); v["us-east"] != 10 || v["eu-west"] != 7 {
		t.Fatalf("versions %v", v)
	}
	// Shard 1 moves to eu-west: eu-west lists it owned (generation 9)
	// before us-east's table drops it: the owned, higher token wins.
	apply(part("eu-west", 8, false, entry(1, "e", 9, 8)))
	if got := owner(1); got != "e" {
		t.Fatalf("shard 1 owned by %q during the move, want e (higher token)", got)
	}
	apply(part("us-east", 11, true, entry(0, "a", 5, 10)))
	if got := owner(1); got != "e" {
		t.Fatalf("shard 1 owned by %q after the move, want e", got)
	}
	// An older view of us-east (a lagging node after a reconnect) is
	// ignored.
	apply(part("us-east", 9, true, entry(0, "stale", 5, 3), entry(1, "stale", 5, 3)))
	if got := owner(0); got != "a" || r.Versions()["us-east"] != 11 {
		t.Fatalf("an older us-east view was applied: owner %q, versions %v", got, r.Versions())
	}
	// A watcher's replacement is the merged table.
	var last Change
	for len(ch) > 0 {
		last = <-ch
	}
	if !last.Replaced || len(last.Routes) != 4 {
		t.Fatalf("last change %+v: want a replacement of the whole merged table", last)
	}
	_ = uuid.Nil
}
