package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// watchLines returns the lines written since the last call, and forgets
// them.
func watchLines(b *strings.Builder) []string {
	s := strings.TrimSuffix(b.String(), "\n")
	b.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// watchRoute is a route of domain d in region's key space.
func watchRoute(region string, rng topology.Range, owner string, index uint64) client.Route {
	rt := client.Route{Domain: "d", Region: region, Range: rng, Owner: owner}
	if owner != "" {
		rt.Endpoint, rt.Token = owner+".test:8080", topology.Token{Generation: 1, Index: index}
	}
	return rt
}

// TestRouteWriterKeySpaces: the two key spaces of a REGIONAL domain
// (after a regional failover), whose ranges are the same numbers, are
// followed each on its own: a change or a resync of one is compared with
// that key space's last state only, and every line names its region.
func TestRouteWriterKeySpaces(t *testing.T) {
	rng, _ := topology.SplitEven(2)
	var out strings.Builder
	w := newRouteWriter(&out, true, "d")
	parse := func(step string, want int) []routeJSON {
		t.Helper()
		lines := watchLines(&out)
		if len(lines) != want {
			t.Fatalf("%s: %d lines, want %d:\n%s", step, len(lines), want, strings.Join(lines, "\n"))
		}
		var rs []routeJSON
		for _, l := range lines {
			if !strings.Contains(l, `"region":`) {
				t.Errorf("%s: line %s has no region", step, l)
			}
			var r routeJSON
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("%s: line %s: %v", step, l, err)
			}
			rs = append(rs, r)
		}
		return rs
	}
	key := func(r routeJSON) string {
		return fmt.Sprintf("%d %s %s %s %s", r.Version, r.Region, r.From[:8], r.Owner, r.Token)
	}

	eu0, eu1 := watchRoute("eu-west", rng[0], "w0", 1), watchRoute("eu-west", rng[1], "w0", 2)
	us0, us1 := watchRoute("us-east", rng[0], "w1", 3), watchRoute("us-east", rng[1], "w1", 4)
	w.snapshot(5, []keySpace{{"eu-west", []client.Route{eu0, eu1}}, {"us-east", []client.Route{us0, us1}}})
	rs := parse("snapshot", 4)
	var got []string
	for _, r := range rs {
		if !r.Snapshot || r.Domain != "d" {
			t.Errorf("snapshot line %+v", r)
		}
		got = append(got, key(r))
	}
	if want := "5 eu-west 00000000 w0 1.1|5 eu-west 80000000 w0 1.2|5 us-east 00000000 w1 1.3|5 us-east 80000000 w1 1.4"; strings.Join(got, "|") != want {
		t.Errorf("snapshot:\n got %s\nwant %s", strings.Join(got, "|"), want)
	}

	// us-east's first shard moves: one line, of us-east.
	us0 = watchRoute("us-east", rng[0], "w2", 6)
	w.update(6, "us-east", []client.Route{us0})
	if rs := parse("us-east delta", 1); key(rs[0]) != "6 us-east 00000000 w2 1.6" || rs[0].Snapshot {
		t.Errorf("us-east delta %+v", rs[0])
	}
	// eu-west's unchanged first shard is not a change (us-east's moved,
	// not eu-west's).
	w.update(7, "eu-west", []client.Route{eu0})
	parse("eu-west unchanged delta", 0)
	// A replacement of us-east as it is prints nothing and leaves eu-west
	// alone.
	w.sync(8, "us-east", []client.Route{us0, us1}, false)
	parse("us-east replaced unchanged", 0)
	w.update(9, "eu-west", []client.Route{eu0, eu1})
	parse("eu-west unchanged after us-east replaced", 0)
	// A replacement of eu-west prints its changed entry only.
	eu1 = watchRoute("eu-west", rng[1], "w3", 10)
	w.sync(10, "eu-west", []client.Route{eu0, eu1}, false)
	if rs := parse("eu-west replaced", 1); key(rs[0]) != "10 eu-west 80000000 w3 1.10" {
		t.Errorf("eu-west replaced %+v", rs[0])
	}
	// A resync (changes missed) compares each key space with its own.
	us1 = watchRoute("us-east", rng[1], "", 0)
	w.resync(11, []keySpace{{"eu-west", []client.Route{eu0, eu1}}, {"us-east", []client.Route{us0, us1}}})
	if rs := parse("resync", 1); key(rs[0]) != "11 us-east 80000000  " {
		t.Errorf("resync %+v", rs[0])
	}

	// One key space ends; the other goes on.
	w.deleted(12, "eu-west")
	if rs := parse("eu-west deleted", 1); !rs[0].Deleted || rs[0].Region != "eu-west" || rs[0].From != "" {
		t.Errorf("eu-west deleted %+v", rs[0])
	}
	w.update(13, "us-east", []client.Route{us0})
	parse("us-east unchanged after eu-west deleted", 0)
	w.update(14, "eu-west", []client.Route{eu0})
	if rs := parse("eu-west again", 1); key(rs[0]) != "14 eu-west 00000000 w0 1.1" {
		t.Errorf("eu-west again %+v", rs[0])
	}
	// The domain ends: all its key spaces.
	w.deleted(15, "")
	if rs := parse("domain deleted", 1); !rs[0].Deleted || rs[0].Region != "" || rs[0].Version != 15 {
		t.Errorf("domain deleted %+v", rs[0])
	}
	w.update(16, "us-east", []client.Route{us0})
	parse("us-east after the domain's deletion", 1)
}

// TestRouteWriterTable: the text table has a REGION column only when some
// key space has a region; a GLOBAL domain's lines are as they always were.
func TestRouteWriterTable(t *testing.T) {
	rng, _ := topology.SplitEven(2)
	at := time.Date(2025, 1, 2, 15, 4, 5, 123e6, time.Local)
	const old = "%-12s  %-8s  %-36s  %-36s  %-20s  %-10s  %s\n" // the format before key spaces
	var out strings.Builder

	w := newRouteWriter(&out, false, "d")
	w.now = func() time.Time { return at }
	w.snapshot(3, []keySpace{{"", []client.Route{watchRoute("", rng[0], "w0", 1), watchRoute("", rng[1], "", 0)}}})
	w.deleted(4, "")
	want := fmt.Sprintf(old, "TIME", "VERSION", "FROM", "TO", "OWNER", "TOKEN", "ENDPOINT") +
		fmt.Sprintf(old, "15:04:05.123", "3", "00000000-0000-0000-0000-000000000000", "80000000-0000-0000-0000-000000000000", "w0", "1.1", "w0.test:8080") +
		fmt.Sprintf(old, "15:04:05.123", "3", "80000000-0000-0000-0000-000000000000", "end", "-", "-", "-") +
		"15:04:05.123  4         domain d deleted\n"
	if out.String() != want {
		t.Errorf("GLOBAL domain:\n got:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	w = newRouteWriter(&out, false, "d")
	w.now = func() time.Time { return at }
	w.snapshot(3, []keySpace{
		{"eu-west", []client.Route{watchRoute("eu-west", rng[0], "w0", 1)}},
		{"us-east", []client.Route{watchRoute("us-east", rng[0], "w1", 2)}},
	})
	w.update(5, "us-east", []client.Route{watchRoute("us-east", rng[0], "", 0)})
	w.deleted(6, "eu-west")
	lines := watchLines(&out)
	if len(lines) != 5 ||
		!strings.HasPrefix(lines[0], "TIME          VERSION   REGION      FROM ") ||
		!strings.HasPrefix(lines[1], "15:04:05.123  3         eu-west     00000000-0000-0000-0000-000000000000  80000000-") ||
		!strings.Contains(lines[1], "  w0  ") ||
		!strings.HasPrefix(lines[2], "15:04:05.123  3         us-east     00000000-") || !strings.Contains(lines[2], "  w1  ") ||
		!strings.HasPrefix(lines[3], "15:04:05.123  5         us-east     00000000-") || !strings.HasSuffix(lines[3], "  -") ||
		lines[4] != "15:04:05.123  6         key space eu-west of domain d deleted" {
		t.Errorf("REGIONAL domain:\n%s", strings.Join(lines, "\n"))
	}

	// A key space with a region after a table without: the header again,
	// with the column.
	out.Reset()
	w = newRouteWriter(&out, false, "d")
	w.now = func() time.Time { return at }
	w.snapshot(3, nil)
	w.sync(4, "eu-west", []client.Route{watchRoute("eu-west", rng[0], "w0", 1)}, false)
	lines = watchLines(&out)
	if len(lines) != 3 || strings.Contains(lines[0], "REGION") || !strings.Contains(lines[1], "  REGION  ") || !strings.Contains(lines[2], "  eu-west  ") {
		t.Errorf("region after the header:\n%s", strings.Join(lines, "\n"))
	}
}

// TestWatchRegional: `wds watch` of a REGIONAL domain names its key
// space's region (the cell's) on every line, in a REGION column of the
// table; a GLOBAL domain's lines have region "" and no column.
func TestWatchRegional(t *testing.T) {
	t.Parallel()
	c := celltest.New(t, 3)
	ep := "--endpoint=" + strings.Join(c.Endpoints(), ",")
	c.CreateDomain("carts", topology.KindRegional, 2, 3*time.Second)
	c.CreateDomain("flat", topology.KindGlobal, 2, 3*time.Second)
	// An observer may attach to any node: wait until all know both.
	celltest.Eventually(t, 10*time.Second, func() error {
		for i := range c.Nodes {
			st, err := c.Admin(i).Status(context.Background(), &wdsv1.StatusRequest{})
			if err != nil {
				return err
			}
			if st.GetDomains() != 2 {
				return fmt.Errorf("node %s knows %d domains", st.GetNodeId(), st.GetDomains())
			}
		}
		return nil
	})

	p := start(t, ep, "watch", "carts", "-o", "json")
	for range 2 {
		line := p.next(15 * time.Second)
		var r routeJSON
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if !r.Snapshot || r.Domain != "carts" || r.Region != celltest.Region {
			t.Errorf("carts snapshot line %s", line)
		}
	}
	c.NewConsumer("w1", []string{"carts"})
	for owned := 0; owned < 2; {
		line := p.next(15 * time.Second)
		var r routeJSON
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Region != celltest.Region {
			t.Errorf("carts delta line %s", line)
		}
		if r.Owner == "w1" {
			owned++
		}
	}
	p.signal(syscall.SIGINT)
	if _, code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGINT; stderr:\n%s", code, p.stderr.String())
	}

	p = start(t, ep, "watch", "carts")
	if h := p.next(15 * time.Second); !strings.HasPrefix(h, "TIME ") || !strings.Contains(h, "  REGION  ") {
		t.Errorf("carts header %q", h)
	}
	for range 2 {
		if l := p.next(15 * time.Second); !strings.Contains(l, "  "+celltest.Region+"  ") {
			t.Errorf("carts line %q", l)
		}
	}
	p.signal(syscall.SIGINT)
	p.wait(10 * time.Second)

	p = start(t, ep, "watch", "flat", "-o", "json")
	for range 2 {
		if l := p.next(15 * time.Second); !strings.Contains(l, `"domain":"flat","region":"",`) {
			t.Errorf("flat line %s", l)
		}
	}
	p.signal(syscall.SIGINT)
	p.wait(10 * time.Second)
	p = start(t, ep, "watch", "flat")
	if h := p.next(15 * time.Second); !strings.HasPrefix(h, "TIME ") || strings.Contains(h, "REGION") {
		t.Errorf("flat header %q", h)
	}
	p.signal(syscall.SIGINT)
	p.wait(10 * time.Second)
}
