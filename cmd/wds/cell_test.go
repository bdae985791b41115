package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

var tokenRE = regexp.MustCompile(`^\d+\.\d+$`)

// TestDomainCommands: create, list, describe and delete round trip against
// a real 3-node cell, with the cell's errors shown as "wds: <code>: ...".
func TestDomainCommands(t *testing.T) {
	t.Parallel()
	c := celltest.New(t, 3)
	ep := "--endpoint=" + strings.Join(c.Endpoints(), ",")

	out := mustWDS(t, ep, "domain", "create", "orders", "--kind", "global", "--shards", "8", "--ttl", "2s")
	if !strings.Contains(out, "orders") || !strings.Contains(out, "8 shards") {
		t.Errorf("create printed %q", out)
	}
	var created domainJSON
	if err := json.Unmarshal([]byte(mustWDS(t, ep, "-o", "json", "domain", "create", "sched", "--kind", "unit")), &created); err != nil {
		t.Fatal(err)
	}
	if created.Name != "sched" || created.Kind != "unit" || created.Shards != 1 || created.TTLMillis != 10000 {
		t.Errorf("created %+v", created)
	}

	r := wds(t, ep, "domain", "create", "orders", "--kind", "global", "--shards", "8")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "wds: AlreadyExists: ") || !strings.Contains(r.stderr, "orders") {
		t.Errorf("second create: exit %d, stderr %q", r.code, r.stderr)
	}

	var list []domainJSON
	if err := json.Unmarshal([]byte(mustWDS(t, ep, "domain", "list", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "orders" || list[0].Kind != "global" || list[0].Shards != 8 || list[0].TTLMillis != 2000 || list[0].TTL != "2s" || list[1].Name != "sched" {
		t.Errorf("list: %+v", list)
	}
	if out := mustWDS(t, ep, "domain", "list"); !strings.Contains(out, "NAME") || !strings.Contains(out, "orders") || !strings.Contains(out, "global") {
		t.Errorf("list table:\n%s", out)
	}

	// Describe with consumers: one consumer holds every shard.
	c.NewConsumer("desc-1", []string{"orders"})
	celltest.Eventually(t, 10*time.Second, func() error {
		var d describeJSON
		if err := json.Unmarshal([]byte(mustWDS(t, ep, "domain", "describe", "orders", "-o", "json")), &d); err != nil {
			return err
		}
		if d.Domain.Name != "orders" || d.Domain.Shards != 8 || len(d.Consumers) != 1 || d.Consumers[0].ID != "desc-1" || d.Consumers[0].Shards != 8 || d.Unowned != 0 {
			return fmt.Errorf("describe: %+v", d)
		}
		return nil
	})
	if out := mustWDS(t, ep, "domain", "describe", "orders"); !strings.Contains(out, "desc-1") || !strings.Contains(out, "Unowned:") {
		t.Errorf("describe table:\n%s", out)
	}

	r = wds(t, ep, "domain", "describe", "nope")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "wds: NotFound: ") || !strings.Contains(r.stderr, `"nope"`) {
		t.Errorf("describe unknown: exit %d, stderr %q", r.code, r.stderr)
	}
	r = wds(t, ep, "shards", "nope")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "wds: NotFound: ") {
		t.Errorf("shards unknown: exit %d, stderr %q", r.code, r.stderr)
	}

	mustWDS(t, ep, "domain", "delete", "orders")
	r = wds(t, ep, "domain", "describe", "orders")
	if r.code != 1 || !strings.Contains(r.stderr, "NotFound") {
		t.Errorf("describe deleted: exit %d, stderr %q", r.code, r.stderr)
	}
	r = wds(t, ep, "domain", "delete", "orders")
	if r.code != 1 || !strings.Contains(r.stderr, "NotFound") {
		t.Errorf("delete deleted: exit %d, stderr %q", r.code, r.stderr)
	}
	if err := json.Unmarshal([]byte(mustWDS(t, ep, "domain", "list", "-o", "json")), &list); err != nil || len(list) != 1 || list[0].Name != "sched" {
		t.Errorf("list after delete: %+v, %v", list, err)
	}

	// status through a follower-or-leader endpoint, and drain.
	var st statusJSON
	if err := json.Unmarshal([]byte(mustWDS(t, "--endpoint="+c.Endpoints()[1], "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Node != "n2" || st.Region != celltest.Region || st.Leader == "" || len(st.Nodes) != 3 || st.Domains != 1 || st.CommitIndex == 0 {
		t.Errorf("status: %+v", st)
	}
	if out := mustWDS(t, ep, "status"); !strings.Contains(out, "Leader:") || !strings.Contains(out, "n3") {
		t.Errorf("status table:\n%s", out)
	}
	r = wds(t, ep, "drain", "nobody")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "wds: NotFound: ") {
		t.Errorf("drain unknown: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestShardsAndDrain: `wds shards -o json` tiles the key space with UUID
// bounds and agrees with the cell; `wds drain` moves a consumer's shards.
func TestShardsAndDrain(t *testing.T) {
	t.Parallel()
	c := celltest.New(t, 3)
	ep := "--endpoint=" + strings.Join(c.Endpoints(), ",")
	c.CreateDomain("tiles", topology.KindGlobal, 16, 2*time.Second)

	// Unowned: empty owner and token.
	shards := shardsJSON(t, ep, "tiles")
	checkTiling(t, shards, 16)
	for _, s := range shards {
		if s.Owner != "" || s.Token != "" || s.State != "" {
			t.Errorf("unowned shard %+v", s)
		}
	}

	c.NewConsumer("a", []string{"tiles"})
	c.NewConsumer("b", []string{"tiles"})
	celltest.Eventually(t, 10*time.Second, func() error {
		counts, err := c.OwnerCounts("tiles")
		if err != nil {
			return err
		}
		if counts["a"] != 8 || counts["b"] != 8 {
			return fmt.Errorf("counts %v", counts)
		}
		return nil
	})
	shards = shardsJSON(t, ep, "tiles")
	checkTiling(t, shards, 16)
	m, err := c.ShardMap("tiles")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range shards {
		if s.Owner != m.GetShards()[i].GetOwner() {
			continue // moved between the two reads; the balance below is what matters
		}
		if s.State != "active" || !tokenRE.MatchString(s.Token) || s.Endpoint != s.Owner+".test:8080" {
			t.Errorf("shard %d: %+v", i, s)
		}
	}
	if out := mustWDS(t, ep, "shards", "tiles"); !strings.Contains(out, "FROM") || !strings.Contains(out, " end ") || strings.Count(out, "\n") != 17 {
		t.Errorf("shards table:\n%s", out)
	}

	var dr struct {
		Consumer string `json:"consumer"`
		Shards   int    `json:"shards"`
	}
	if err := json.Unmarshal([]byte(mustWDS(t, ep, "drain", "a", "-o", "json")), &dr); err != nil || dr.Consumer != "a" || dr.Shards != 8 {
		t.Errorf("drain: %+v %v", dr, err)
	}
	celltest.Eventually(t, 10*time.Second, func() error {
		for _, s := range shardsJSON(t, ep, "tiles") {
			if s.Owner != "b" || s.State != "active" {
				return fmt.Errorf("after drain: %+v", s)
			}
		}
		return nil
	})
}

func shardsJSON(t *testing.T, ep, domain string) []shardJSON {
	t.Helper()
	var shards []shardJSON
	if err := json.Unmarshal([]byte(mustWDS(t, ep, "shards", domain, "-o", "json")), &shards); err != nil {
		t.Fatal(err)
	}
	return shards
}

// checkTiling: n shards, UUID bounds, each starting where the previous
// ended, from the first UUID to the end of the key space.
func checkTiling(t *testing.T, shards []shardJSON, n int) {
	t.Helper()
	if len(shards) != n {
		t.Fatalf("%d shards, want %d", len(shards), n)
	}
	for i, s := range shards {
		if _, err := uuid.Parse(s.From); err != nil {
			t.Errorf("shard %d: from %q: %v", i, s.From, err)
		}
		if _, err := uuid.Parse(s.To); err != nil {
			t.Errorf("shard %d: to %q: %v", i, s.To, err)
		}
		last := i == n-1
		if s.ToEnd != last {
			t.Errorf("shard %d: to_end = %v", i, s.ToEnd)
		}
		if !last && s.To != shards[i+1].From {
			t.Errorf("shard %d ends at %s, shard %d starts at %s", i, s.To, i+1, shards[i+1].From)
		}
	}
	if shards[0].From != "00000000-0000-0000-0000-000000000000" || shards[n-1].To != "ffffffff-ffff-ffff-ffff-ffffffffffff" {
		t.Errorf("shards span %s to %s", shards[0].From, shards[n-1].To)
	}
}

// TestConsume: `wds consume` prints a JSON line per event as it happens;
// on SIGTERM it drains and exits 0, and so it does when an operator drains
// it; errors retrying cannot fix exit 1.
func TestConsume(t *testing.T) {
	t.Parallel()
	c := celltest.New(t, 3)
	ep := "--endpoint=" + strings.Join(c.Endpoints(), ",")
	c.CreateDomain("work", topology.KindGlobal, 8, 2*time.Second)

	p := start(t, ep, "consume", "--domain", "work", "--id", "cli-1", "--endpoint-advertise", "cli-1.test:9000")
	granted := map[string]eventJSON{}
	for len(granted) < 8 {
		e := parseEvent(t, p.next(15*time.Second))
		if e.Event == "grant" {
			granted[e.From] = e
		}
	}
	for _, e := range granted {
		if e.Domain != "work" || e.Region == nil || *e.Region != "" || !tokenRE.MatchString(e.Token) || e.ToEnd == nil {
			t.Errorf("grant %+v", e)
		}
	}
	// wds shards agrees.
	celltest.Eventually(t, 5*time.Second, func() error {
		for _, s := range shardsJSON(t, ep, "work") {
			if s.Owner != "cli-1" || s.Endpoint != "cli-1.test:9000" || granted[s.From].Token != s.Token {
				return fmt.Errorf("shard %+v, granted %+v", s, granted[s.From])
			}
		}
		return nil
	})

	p.signal(syscall.SIGTERM)
	rest, code := p.wait(30 * time.Second)
	if code != 0 {
		t.Fatalf("exit %d after SIGTERM; stderr:\n%s", code, p.stderr.String())
	}
	released := map[string]bool{}
	drained := false
	for _, l := range rest {
		e := parseEvent(t, l)
		switch e.Event {
		case "release":
			released[e.From] = true
		case "drained":
			drained = true
		}
	}
	if !drained || len(released) != 8 {
		t.Errorf("after SIGTERM: drained %v, %d releases; lines:\n%s", drained, len(released), strings.Join(rest, "\n"))
	}

	// Drained by an operator, it exits 0 by itself. Its endpoint list
	// starts at a follower: being sent on to the leader is no
	// "disconnected" event; the first line is the welcome.
	li := c.Leader()
	eps := []string{c.Endpoints()[(li+1)%3], c.Endpoints()[li]}
	p = start(t, "--endpoint="+strings.Join(eps, ","), "consume", "--domain", "work", "--id", "cli-4")
	if e := parseEvent(t, p.next(15*time.Second)); e.Event != "welcome" {
		t.Errorf("first event %+v, want the welcome", e)
	}
	for n := 0; n < 8; {
		if e := parseEvent(t, p.next(15*time.Second)); e.Event == "grant" {
			n++
		}
	}
	mustWDS(t, ep, "drain", "cli-4")
	rest, code = p.wait(30 * time.Second)
	if code != 0 || !strings.Contains(p.stderr.String(), "was drained by the cell") {
		t.Fatalf("after wds drain: exit %d; stderr:\n%s", code, p.stderr.String())
	}
	if last := parseEvent(t, rest[len(rest)-1]); last.Event != "drained" {
		t.Errorf("after wds drain: last event %+v, want drained; lines:\n%s", last, strings.Join(rest, "\n"))
	}

	// Permanent errors name the field and exit 1.
	r := wds(t, ep, "consume", "--domain", "nope", "--id", "cli-2")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "wds: NotFound: ") || !strings.Contains(r.stderr, `"nope"`) {
		t.Errorf("unknown domain: exit %d, stderr %q", r.code, r.stderr)
	}
	r = wds(t, ep, "consume", "--domain", "work", "--id", "cli-3", "--region", "mars")
	if r.code != 1 || !strings.Contains(r.stderr, "region") || !strings.Contains(r.stderr, "InvalidArgument") {
		t.Errorf("wrong region: exit %d, stderr %q", r.code, r.stderr)
	}
}

func parseEvent(t *testing.T, line string) eventJSON {
	t.Helper()
	var e eventJSON
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	if e.Consumer == "" || e.Event == "" {
		t.Errorf("line %q lacks consumer or event", line)
	}
	ts, err := time.Parse(time.RFC3339Nano, e.Time)
	if err != nil || !strings.HasSuffix(e.Time, "Z") || ts.IsZero() {
		t.Errorf("line %q: time %q is not RFC 3339 UTC: %v", line, e.Time, err)
	}
	if e.Domain != "" {
		if _, err := uuid.Parse(e.From); err != nil {
			t.Errorf("line %q: from: %v", line, err)
		}
		if _, err := uuid.Parse(e.To); err != nil {
			t.Errorf("line %q: to: %v", line, err)
		}
	}
	return e
}

// TestWatch: `wds watch -o json` prints the table, then each change.
func TestWatch(t *testing.T) {
	t.Parallel()
	c := celltest.New(t, 3)
	ep := "--endpoint=" + strings.Join(c.Endpoints(), ",")
	c.CreateDomain("seen", topology.KindGlobal, 4, 2*time.Second)
	// An observer may attach to any node, and a follower that has not
	// applied the creation yet answers NotFound: wait until all know it.
	celltest.Eventually(t, 10*time.Second, func() error {
		for i := range c.Nodes {
			st, err := c.Admin(i).Status(context.Background(), &wdsv1.StatusRequest{})
			if err != nil {
				return err
			}
			if st.GetDomains() != 1 {
				return fmt.Errorf("node %s knows %d domains", st.GetNodeId(), st.GetDomains())
			}
		}
		return nil
	})

	p := start(t, ep, "watch", "seen", "-o", "json")
	var snap []routeJSON
	for len(snap) < 4 {
		var r routeJSON
		if err := json.Unmarshal([]byte(p.next(15*time.Second)), &r); err != nil {
			t.Fatal(err)
		}
		if !r.Snapshot || r.Owner != "" || r.Domain != "seen" || r.Version == 0 {
			t.Errorf("snapshot line %+v", r)
		}
		snap = append(snap, r)
	}
	if snap[3].ToEnd == nil || !*snap[3].ToEnd || snap[0].From != "00000000-0000-0000-0000-000000000000" {
		t.Errorf("snapshot %+v", snap)
	}

	c.NewConsumer("w1", []string{"seen"})
	owned := map[string]bool{}
	var last uint64
	for len(owned) < 4 {
		var r routeJSON
		if err := json.Unmarshal([]byte(p.next(15*time.Second)), &r); err != nil {
			t.Fatal(err)
		}
		if r.Snapshot || r.Version < last {
			t.Errorf("delta line %+v after version %d", r, last)
		}
		last = r.Version
		if r.Owner == "w1" && tokenRE.MatchString(r.Token) && r.Endpoint == "w1.test:8080" {
			owned[r.From] = true
		}
	}
	p.signal(syscall.SIGINT)
	if _, code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGINT; stderr:\n%s", code, p.stderr.String())
	}

	r := wds(t, ep, "watch", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, "NotFound") {
		t.Errorf("watch unknown domain: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestHungEndpointFirstCLI: with a node that accepts connections but never
// answers (SIGSTOPped) first in --endpoint, the client commands are
// answered by the healthy nodes instead of failing after the whole
// --timeout (they ask every endpoint at once).
func TestHungEndpointFirstCLI(t *testing.T) {
	t.Parallel()
	c := celltest.New(t, 3)
	c.CreateDomain("orders", topology.KindGlobal, 4, 3*time.Second)
	ep := "--endpoint=" + strings.Join(append([]string{celltest.HungEndpoint(t)}, c.Endpoints()...), ",")
	for _, args := range [][]string{
		{"status"}, {"shards", "orders"}, {"domain", "list"}, {"domain", "describe", "orders"},
		{"domain", "create", "more", "--kind", "unit"},
	} {
		r := wds(t, append([]string{ep, "--timeout", "4s"}, args...)...)
		if r.code != 0 {
			t.Errorf("wds %s with a hung first endpoint: exit %d, stderr %s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	// Only hung endpoints: an error naming them once --timeout passes.
	r := wds(t, "--endpoint="+celltest.HungEndpoint(t), "--timeout", "1s", "domain", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "Unavailable") && !strings.Contains(r.stderr, "DeadlineExceeded") {
		t.Errorf("only a hung endpoint: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestOperatorCommands: `wds owner` names a key's owner (and rejects a bad
// UUID naming KEY), `wds consumers` lists consumers with their shard
// counts, `wds shards --owner/--state` filter, `wds drain --wait` follows
// a drain to its end and says when nobody can take the shards, and a
// second consumer with a live consumer's id is told to pick another id.
func TestOperatorCommands(t *testing.T) {
	t.Parallel()
	c := celltest.New(t, 3)
	ep := "--endpoint=" + strings.Join(c.Endpoints(), ",")
	c.CreateDomain("orders", topology.KindGlobal, 8, 3*time.Second)
	c.CreateDomain("solo", topology.KindGlobal, 2, 3*time.Second)
	c.NewConsumer("op-1", []string{"orders", "solo"})
	c.NewConsumer("op-2", []string{"orders"})
	celltest.Eventually(t, 10*time.Second, func() error {
		counts, err := c.OwnerCounts("orders")
		if err != nil || counts["op-1"] != 4 || counts["op-2"] != 4 {
			return fmt.Errorf("owners %v (%v)", counts, err)
		}
		return nil
	})

	key := "9f000000-0000-0000-0000-000000000001"
	var own ownerJSON
	if err := json.Unmarshal([]byte(mustWDS(t, ep, "owner", "orders", key, "-o", "json")), &own); err != nil {
		t.Fatal(err)
	}
	if own.Key != key || own.From != "80000000-0000-0000-0000-000000000000" || own.Owner == "" || own.State != "active" || !tokenRE.MatchString(own.Token) {
		t.Errorf("owner: %+v", own)
	}
	if out := mustWDS(t, ep, "owner", "orders", key); !strings.Contains(out, own.Owner) || !strings.Contains(out, own.Token) {
		t.Errorf("owner table:\n%s", out)
	}
	if r := wds(t, ep, "owner", "orders", "not-a-uuid"); r.code != 1 || !strings.Contains(r.stderr, "KEY") || !strings.Contains(r.stderr, "not-a-uuid") {
		t.Errorf("owner with a bad key: exit %d, stderr %q", r.code, r.stderr)
	}

	var cons []consumerJSON
	if err := json.Unmarshal([]byte(mustWDS(t, ep, "consumers", "-o", "json")), &cons); err != nil {
		t.Fatal(err)
	}
	if len(cons) != 2 || cons[0].ID != "op-1" || cons[0].Shards != 6 || cons[0].ShardsByDomain["solo"] != 2 || !cons[0].Connected || cons[1].Shards != 4 {
		t.Errorf("consumers: %+v", cons)
	}
	if out := mustWDS(t, ep, "consumers"); !strings.Contains(out, "op-1") || !strings.Contains(out, "solo(2)") {
		t.Errorf("consumers table:\n%s", out)
	}

	var shards []shardJSON
	if err := json.Unmarshal([]byte(mustWDS(t, ep, "shards", "orders", "--owner", "op-2", "-o", "json")), &shards); err != nil {
		t.Fatal(err)
	}
	if len(shards) != 4 || shards[0].Owner != "op-2" {
		t.Errorf("shards --owner op-2: %+v", shards)
	}
	if err := json.Unmarshal([]byte(mustWDS(t, ep, "shards", "orders", "--state", "unowned", "-o", "json")), &shards); err != nil || len(shards) != 0 {
		t.Errorf("shards --state unowned: %+v (%v)", shards, err)
	}
	if r := wds(t, ep, "shards", "orders", "--state", "gone"); r.code != 1 || !strings.Contains(r.stderr, "--state") {
		t.Errorf("shards --state gone: exit %d, stderr %q", r.code, r.stderr)
	}

	// A second consumer under op-1's id: told the id is held by a live
	// session, not shown a countdown.
	dupErr := make(chan error, 1)
	dup, err := client.NewConsumer(client.Config{Endpoints: c.Endpoints(), ID: "op-1", Domains: []string{"orders"},
		Handler: func(ctx context.Context, _ client.Shard) { <-ctx.Done() },
		OnEvent: func(e client.Event) {
			if e.Kind == client.EventDisconnected {
				select {
				case dupErr <- e.Err:
				default:
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if e := <-dupErr; !errors.Is(e, client.ErrDuplicateConsumer) || !strings.Contains(e.Error(), "live, heartbeating session") || strings.Contains(e.Error(), "from now") {
		t.Errorf("duplicate live id: %v", e)
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = dup.Close(closeCtx)
	cancel()

	// Drain op-1 and follow it: op-2 takes orders, nobody serves solo.
	r := wds(t, ep, "drain", "op-1", "--wait", "--wait-timeout", "20s")
	if r.code != 0 || !strings.Contains(r.stdout, "consumer op-1 is drained") || !strings.Contains(r.stdout, "no other consumer serves solo") {
		t.Errorf("drain --wait: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestRegionalDomain: a REGIONAL domain's shards name their key space's
// region (the cell's) in `wds shards`, `wds owner` and `wds consume`; a
// GLOBAL domain's have region "" and no REGION column.
func TestRegionalDomain(t *testing.T) {
	t.Parallel()
	c := celltest.New(t, 3)
	ep := "--endpoint=" + strings.Join(c.Endpoints(), ",")
	c.CreateDomain("carts", topology.KindRegional, 4, 3*time.Second)
	c.CreateDomain("flat", topology.KindGlobal, 2, 3*time.Second)

	p := start(t, ep, "consume", "--domain", "carts,flat", "--id", "rc-1", "--region", celltest.Region)
	granted := map[string]eventJSON{}
	for len(granted) < 6 {
		e := parseEvent(t, p.next(15*time.Second))
		if e.Event == "grant" {
			granted[e.Domain+" "+e.From] = e
		}
	}
	for _, e := range granted {
		want := map[string]string{"carts": celltest.Region, "flat": ""}[e.Domain]
		if e.Region == nil || *e.Region != want {
			t.Errorf("grant of %s %s: region %v, want %q", e.Domain, e.From, e.Region, want)
		}
	}

	shards := shardsJSON(t, ep, "carts")
	checkTiling(t, shards, 4)
	for _, s := range shards {
		if s.Region != celltest.Region {
			t.Errorf("carts shard %+v: region %q, want %q", s, s.Region, celltest.Region)
		}
	}
	for _, s := range shardsJSON(t, ep, "flat") {
		if s.Region != "" {
			t.Errorf("flat shard %+v: region %q, want none", s, s.Region)
		}
	}
	if out := mustWDS(t, ep, "shards", "carts"); !strings.HasPrefix(out, "REGION ") || strings.Count(out, "\n"+celltest.Region+" ") != 4 {
		t.Errorf("carts shards table:\n%s", out)
	}
	if out := mustWDS(t, ep, "shards", "flat"); !strings.HasPrefix(out, "FROM ") || strings.Contains(out, "REGION") {
		t.Errorf("flat shards table:\n%s", out)
	}
	if got := shardsJSONArgs(t, ep, "carts", "--region", "elsewhere"); len(got) != 0 {
		t.Errorf("shards carts --region elsewhere: %+v", got)
	}
	if got := shardsJSONArgs(t, ep, "carts", "--region", celltest.Region); len(got) != 4 {
		t.Errorf("shards carts --region %s: %+v", celltest.Region, got)
	}

	key := "9f000000-0000-0000-0000-000000000001"
	for _, args := range [][]string{{}, {"--region", celltest.Region}} {
		var own ownerJSON
		if err := json.Unmarshal([]byte(mustWDS(t, append([]string{ep, "owner", "carts", key, "-o", "json"}, args...)...)), &own); err != nil {
			t.Fatal(err)
		}
		if own.Region != celltest.Region || own.From != "80000000-0000-0000-0000-000000000000" || own.Owner != "rc-1" {
			t.Errorf("owner %v: %+v", args, own)
		}
	}
	if out := mustWDS(t, ep, "owner", "carts", key); !strings.Contains(out, "of carts, region "+celltest.Region) {
		t.Errorf("owner table:\n%s", out)
	}
	if r := wds(t, ep, "owner", "carts", key, "--region", "elsewhere"); r.code != 1 || !strings.Contains(r.stderr, `region "elsewhere"`) || !strings.Contains(r.stderr, "it serves "+celltest.Region) {
		t.Errorf("owner --region elsewhere: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := wds(t, ep, "owner", "flat", key, "--region", celltest.Region); r.code != 1 || !strings.Contains(r.stderr, "--region") {
		t.Errorf("owner of a GLOBAL domain with --region: exit %d, stderr %q", r.code, r.stderr)
	}

	p.signal(syscall.SIGTERM)
	if _, code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM; stderr:\n%s", code, p.stderr.String())
	}
}

func shardsJSONArgs(t *testing.T, ep, domain string, args ...string) []shardJSON {
	t.Helper()
	var shards []shardJSON
	if err := json.Unmarshal([]byte(mustWDS(t, append([]string{ep, "shards", domain, "-o", "json"}, args...)...)), &shards); err != nil {
		t.Fatal(err)
	}
	return shards
}
