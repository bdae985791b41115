package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/rpcerr"
	"github.com/wdsio/wds/topology"
)

func TestFormatError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{status.Error(codes.NotFound, `name: domain "x" does not exist`), `wds: NotFound: name: domain "x" does not exist`},
		{status.Error(codes.AlreadyExists, `domain "x"`), `wds: AlreadyExists: domain "x" already exists`},
		{fmt.Errorf("%w: hello.region: wrong", client.ErrInvalid), "wds: InvalidArgument: hello.region: wrong"},
		{fmt.Errorf("%w: hello.domains[0]: nope", client.ErrNotFound), "wds: NotFound: hello.domains[0]: nope"},
		{topology.Invalid("shards", "0", "must be positive"), "wds: shards: must be positive (got 0)"},
		{errors.New("wds: already prefixed"), "wds: already prefixed"},
		{callError(status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`), []string{"127.0.0.1:1"}, "10s"),
			"wds: Unavailable: cannot reach the cell at 127.0.0.1:1: connection refused (is `wds dev` or `wds server` running? set --endpoint or WDS_ENDPOINT)"},
	} {
		if got := formatError(tc.err); got != tc.want {
			t.Errorf("formatError(%v)\n got %s\nwant %s", tc.err, got, tc.want)
		}
	}
}

func TestEventJSON(t *testing.T) {
	rng, err := topology.SplitEven(2)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	e := eventToJSON("c1", client.Event{Kind: client.EventLost, Time: at, Reason: "lease expired",
		Shard: client.Shard{Domain: "d", Range: rng[1], Token: topology.Token{Generation: 1, Index: 42}}})
	b, _ := json.Marshal(e)
	want := `{"event":"lost","consumer":"c1","domain":"d","region":"","from":"80000000-0000-0000-0000-000000000000","to":"ffffffff-ffff-ffff-ffff-ffffffffffff","to_end":true,"token":"1.42","time":"2025-01-02T02:04:05.000000006Z","reason":"lease expired"}`
	if string(b) != want {
		t.Errorf("lost event\n got %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(eventToJSON("c1", client.Event{Kind: client.EventDrained, Time: at}))
	if want := `{"event":"drained","consumer":"c1","time":"2025-01-02T02:04:05.000000006Z"}`; string(b) != want {
		t.Errorf("drained event\n got %s\nwant %s", b, want)
	}
	// A REGIONAL domain's shard names its key space.
	b, _ = json.Marshal(eventToJSON("c1", client.Event{Kind: client.EventGrant, Time: at,
		Shard: client.Shard{Domain: "d", Region: "eu-west", Range: rng[0], Token: topology.Token{Generation: 2, Index: 7}}}))
	if want := `{"event":"grant","consumer":"c1","domain":"d","region":"eu-west","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","to_end":false,"token":"2.7","time":"2025-01-02T02:04:05.000000006Z"}`; string(b) != want {
		t.Errorf("regional grant event\n got %s\nwant %s", b, want)
	}
}

// TestShardJSON: every shard of `wds shards -o json` names its key space's
// region, "" for GLOBAL and UNIT domains.
func TestShardJSON(t *testing.T) {
	for _, tc := range []struct {
		s    shardJSON
		want string
	}{
		{shardJSON{From: "00000000-0000-0000-0000-000000000000", To: "ffffffff-ffff-ffff-ffff-ffffffffffff", ToEnd: true},
			`{"region":"","from":"00000000-0000-0000-0000-000000000000","to":"ffffffff-ffff-ffff-ffff-ffffffffffff","to_end":true,"owner":"","state":"","token":"","endpoint":"","next_owner":"","unconfirmed":false}`},
		{shardJSON{Region: "eu-west", From: "00000000-0000-0000-0000-000000000000", To: "80000000-0000-0000-0000-000000000000", Owner: "w1", State: "active", Token: "1.2"},
			`{"region":"eu-west","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","to_end":false,"owner":"w1","state":"active","token":"1.2","endpoint":"","next_owner":"","unconfirmed":false}`},
	} {
		if b, _ := json.Marshal(tc.s); string(b) != tc.want {
			t.Errorf("shard JSON\n got %s\nwant %s", b, tc.want)
		}
	}
	b, _ := json.Marshal(ownerJSON{Domain: "d", Key: "k", shardJSON: shardJSON{Region: "us-east"}})
	if !strings.HasPrefix(string(b), `{"domain":"d","key":"k","region":"us-east","from":`) {
		t.Errorf("owner JSON %s", b)
	}
}

// testShards returns shards of n even ranges in each key space of regions
// (one "" for a GLOBAL domain), key space by key space.
func testShards(t *testing.T, n int, regions ...string) ([]shardJSON, []topology.Range) {
	t.Helper()
	even, err := topology.SplitEven(n)
	if err != nil {
		t.Fatal(err)
	}
	var shards []shardJSON
	var ranges []topology.Range
	for i, r := range regions {
		for j, rg := range even {
			from, _ := boundJSON(rg.From)
			to, end := boundJSON(rg.To)
			shards = append(shards, shardJSON{Region: r, From: from, To: to, ToEnd: end, Owner: fmt.Sprintf("w%d", i), State: "active", Token: fmt.Sprintf("%d.%d", i+1, j+1)})
			ranges = append(ranges, rg)
		}
	}
	return shards, ranges
}

// TestShardTable: the REGION column is there only for shards of a
// REGIONAL domain's key spaces.
func TestShardTable(t *testing.T) {
	var b strings.Builder
	global, _ := testShards(t, 2, "")
	if err := writeShardTable(&b, global); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "FROM ") || strings.Contains(b.String(), "REGION") ||
		!strings.HasPrefix(lines[2], "80000000-0000-0000-0000-000000000000  end ") {
		t.Errorf("GLOBAL domain's table:\n%s", b.String())
	}

	b.Reset()
	regional, _ := testShards(t, 2, "eu-west", "us-east")
	if err := writeShardTable(&b, regional); err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "REGION   FROM ") ||
		!strings.HasPrefix(lines[1], "eu-west  00000000-0000-0000-0000-000000000000  80000000-") ||
		!strings.HasPrefix(lines[3], "us-east  00000000-0000-0000-0000-000000000000  80000000-") ||
		!strings.Contains(lines[4], " end ") || !strings.Contains(lines[4], " 2.2 ") {
		t.Errorf("REGIONAL domain's table:\n%s", b.String())
	}
}

// TestKeySpaceOf: `wds owner` looks a key up in one key space: the only
// one of a GLOBAL domain, the one --region names of a REGIONAL domain's,
// by default the cell's region's.
func TestKeySpaceOf(t *testing.T) {
	asked := 0
	cell := func(r string) func() (string, error) {
		return func() (string, error) { asked++; return r, nil }
	}
	key := topology.BoundOf(uuid.MustParse("9f000000-0000-0000-0000-000000000001"))
	owner := func(shards []shardJSON, ranges []topology.Range) string {
		i := topology.FindBound(ranges, key)
		if i < 0 {
			return "none"
		}
		return shards[i].Region + "/" + shards[i].Owner + "@" + shards[i].Token
	}

	global, granges := testShards(t, 4, "")
	ss, rs, err := keySpaceOf("d", "", global, granges, cell("local"))
	if err != nil || len(ss) != 4 || owner(ss, rs) != "/w0@1.3" || asked != 0 {
		t.Errorf("GLOBAL domain: %d shards, owner %s, err %v, cell asked %d times", len(ss), owner(ss, rs), err, asked)
	}
	if _, _, err := keySpaceOf("d", "local", global, granges, cell("local")); err == nil || !strings.Contains(err.Error(), "--region") || !strings.Contains(err.Error(), "not a REGIONAL domain") {
		t.Errorf("GLOBAL domain with --region: %v", err)
	}

	regional, rranges := testShards(t, 4, "eu-west", "us-east")
	for _, tc := range []struct {
		region, cell, want, err string
	}{
		{"", "us-east", "us-east/w1@2.3", ""},
		{"", "eu-west", "eu-west/w0@1.3", ""},
		{"eu-west", "us-east", "eu-west/w0@1.3", ""},
		{"us-east", "eu-west", "us-east/w1@2.3", ""},
		{"ap-south", "us-east", "", `no key space of d in region "ap-south"; it serves eu-west, us-east (name one with --region)`},
		{"", "ap-south", "", `no key space of d in region "ap-south"`},
	} {
		asked = 0
		ss, rs, err := keySpaceOf("d", tc.region, regional, rranges, cell(tc.cell))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("--region %q, cell in %s: error %v, want %q", tc.region, tc.cell, err, tc.err)
			}
			continue
		}
		if err != nil || len(ss) != 4 || owner(ss, rs) != tc.want {
			t.Errorf("--region %q, cell in %s: %d shards, owner %s (err %v), want %s", tc.region, tc.cell, len(ss), owner(ss, rs), err, tc.want)
		}
		if want := map[bool]int{true: 1, false: 0}[tc.region == ""]; asked != want {
			t.Errorf("--region %q: the cell's region asked %d times, want %d", tc.region, asked, want)
		}
	}
	if _, _, err := keySpaceOf("d", "", regional, rranges, func() (string, error) { return "", errors.New("no leader") }); err == nil || err.Error() != "no leader" {
		t.Errorf("cell's region unknown: %v", err)
	}
}

// TestRouteWriter: a resync prints only the entries that changed.
func TestRouteWriter(t *testing.T) {
	rng, _ := topology.SplitEven(2)
	var out strings.Builder
	w := newRouteWriter(&out, true, "d")
	a := client.Route{Domain: "d", Range: rng[0]}
	b := client.Route{Domain: "d", Range: rng[1]}
	w.snapshot(5, []keySpace{{routes: []client.Route{a, b}}})
	b2 := b
	b2.Owner, b2.Token = "c1", topology.Token{Generation: 1, Index: 7}
	w.update(6, "", []client.Route{a, b2}) // a unchanged
	w.sync(7, "", []client.Route{a, b2}, false)
	w.deleted(8, "")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines:\n%s", len(lines), out.String())
	}
	var r routeJSON
	if err := json.Unmarshal([]byte(lines[2]), &r); err != nil || r.Version != 6 || r.Owner != "c1" || r.Token != "1.7" || !*r.ToEnd {
		t.Errorf("delta line %s (%v)", lines[2], err)
	}
	if err := json.Unmarshal([]byte(lines[3]), &r); err != nil || !r.Deleted || r.Version != 8 {
		t.Errorf("deleted line %s (%v)", lines[3], err)
	}
}

// TestUsageErrorLine: a usage error is one line ending with a hint to the
// command's --help; cobra's unknown command keeps its suggestions on that
// line.
func TestUsageErrorLine(t *testing.T) {
	root := NewRootCommand()
	create, _, err := root.Find([]string{"domain", "create"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{usageErrorf(create, "missing argument: %s", "the domain NAME"), "wds: missing argument: the domain NAME (see 'wds domain create --help')"},
		{errors.New("unknown command \"dmo\" for \"wds\"\n\nDid you mean this?\n\tdev\n\tdemo\n"), `wds: unknown command "dmo" for "wds"; did you mean dev or demo? (see 'wds --help')`},
		{errors.New(`unknown command "x" for "wds"`), `wds: unknown command "x" for "wds" (see 'wds --help')`},
		{flagError(create, errors.New("unknown flag: --shrads")), `wds: unknown flag --shrads for "wds domain create"; did you mean --shards? (see 'wds domain create --help')`},
		{flagError(create, errors.New("unknown flag: --endpiont")), `wds: unknown flag --endpiont for "wds domain create"; did you mean --endpoint? (see 'wds domain create --help')`},
		{flagError(create, errors.New("unknown flag: --zzz")), `wds: unknown flag --zzz for "wds domain create" (see 'wds domain create --help')`},
	} {
		if got := formatError(tc.err); got != tc.want {
			t.Errorf("formatError(%q)\n got %s\nwant %s", tc.err, got, tc.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	flags := []string{"domain", "id", "region", "endpoint", "endpoint-advertise", "drain-timeout", "output", "timeout", "log-level", "log-format", "help"}
	for _, tc := range []struct {
		typed string
		want  []string
	}{
		{"domian", []string{"domain"}}, // a swap is one edit
		{"domains", []string{"domain"}},
		{"regoin", []string{"region"}},
		{"ip", []string{"id"}},
		{"timout", []string{"timeout"}},
		{"log-levl", []string{"log-level"}},
		{"log", []string{"log-format", "log-level"}}, // a prefix
		{"endpoint-adv", []string{"endpoint-advertise"}},
		{"bogus", nil},
		{"xyz", nil},
	} {
		if got := suggest(tc.typed, flags); !slices.Equal(got, tc.want) {
			t.Errorf("suggest(%q) = %q, want %q", tc.typed, got, tc.want)
		}
	}
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "abc", 3}, {"domian", "domain", 1}, {"kitten", "sitting", 3}, {"same", "same", 0}, {"ca", "abc", 3}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

// TestNameFields: the cell's field paths become the flags and arguments
// of the command.
func TestNameFields(t *testing.T) {
	// Each on its own root: parsing sets the flags of the command.
	find := func(args ...string) *cobra.Command {
		c, rest, err := NewRootCommand().Find(args)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ParseFlags(rest); err != nil {
			t.Fatal(err)
		}
		return c
	}
	consume := find("consume", "--domain", "work,nope", "--id", "c1")
	server := find("server", "--node", "n1", "--data-dir", "d", "--peer", "n1=a:1=a:2", "--peer", "n2=b:1=b:2")
	serverTopo := find("server", "--node", "n1", "--data-dir", "d", "--topology", "f.yaml")
	shards := find("shards")
	describe := find("domain", "describe")
	create := find("domain", "create", "--regions", "us-east,mars")
	for _, tc := range []struct {
		cmd  *cobra.Command
		args []string
		err  error
		want string
	}{
		{consume, nil, fmt.Errorf("%w: hello.domains[1]: domain \"nope\" does not exist (create it with `wds domain create`)", client.ErrNotFound),
			"wds: NotFound: --domain \"nope\": domain does not exist (create it with `wds domain create`)"},
		{consume, nil, fmt.Errorf("%w: hello.region: this endpoint serves region \"local\": connect consumers to their own region's endpoint (got \"mars\")", client.ErrInvalid),
			`wds: InvalidArgument: --region: this endpoint serves region "local": connect consumers to their own region's endpoint (got "mars")`},
		{consume, nil, fmt.Errorf("%w: hello.consumer_id: bad (got \"x y\")", client.ErrInvalid), `wds: InvalidArgument: --id: bad (got "x y")`},
		{consume, nil, fmt.Errorf("%w: hello.endpoint: must be host:port (got \"x\")", client.ErrInvalid), `wds: InvalidArgument: --endpoint-advertise: must be host:port (got "x")`},
		{consume, nil, fmt.Errorf("%w: hello.domains[7]: out of range", client.ErrInvalid), "wds: InvalidArgument: hello.domains[7]: out of range"},
		{consume, nil, fmt.Errorf("%w: no leader", client.ErrUnavailable), "wds: Unavailable: no leader"},
		{shards, []string{"nope"}, status.Error(codes.NotFound, `domain: domain "nope" does not exist`), `wds: NotFound: domain "nope" does not exist`},
		{describe, []string{"nope"}, status.Error(codes.NotFound, `name: domain "nope" does not exist`), `wds: NotFound: domain "nope" does not exist`},
		{describe, []string{"nope"}, status.Error(codes.InvalidArgument, `name: too long`), `wds: InvalidArgument: NAME: too long`},
		{shards, []string{"nope"}, status.Error(codes.Unavailable, `no leader: try again`), `wds: Unavailable: no leader: try again`},
		{create, []string{"d"}, status.Error(codes.InvalidArgument, `regions[1]: unknown region (domain "d") (got mars)`), `wds: InvalidArgument: --regions "mars": unknown region (domain "d") (got mars)`},
		{create, []string{"d"}, status.Error(codes.InvalidArgument, `domain.failover: unknown failover`), `wds: InvalidArgument: --failover: unknown failover`},
		{create, []string{"d"}, status.Error(codes.InvalidArgument, `regions: only REGIONAL domains have regions`), `wds: InvalidArgument: --regions: only REGIONAL domains have regions`},
		{server, nil, topology.Invalid("node_id", "n9", "must be one of the peers"), "wds: --node: must be one of the peers (got n9)"},
		{server, nil, topology.Invalid("max_moves_in_flight", "0", "must be at least 1"), "wds: --max-moves: must be at least 1 (got 0)"},
		{server, nil, topology.Invalid("data_dir", "", "required"), "wds: --data-dir: required"},
		{server, nil, topology.Invalid("drift", "5", "too big"), "wds: --drift: too big (got 5)"},
		{server, nil, topology.Invalid("region", `"X"`, "bad"), `wds: --region: bad (got "X")`},
		{server, nil, topology.Invalid("peers[1].id", "n2", "duplicate node id"), `wds: the 2nd --peer "n2=b:1=b:2" (ID): duplicate node id (got n2)`},
		{server, nil, topology.Invalid("peers[0].grpc", "a:1", "bad"), `wds: the 1st --peer "n1=a:1=a:2" (GRPCADDR): bad (got a:1)`},
		{serverTopo, nil, topology.Invalid("peers[0].grpc", "a:1", "bad"), `wds: peers[0].grpc: bad (got a:1)`},
		{serverTopo, nil, topology.Invalid("node_id", "n9", "must be one of the peers"), "wds: --node: must be one of the peers (got n9)"},
		{serverTopo, nil, &topology.FileError{File: "f.yaml", Line: 3, Field: "region", Err: topology.Invalid("region", `"X"`, "bad")}, ""},
	} {
		mk := cellFieldNames[tc.cmd.CommandPath()]
		err := nameFields(tc.err, mk(tc.cmd, tc.args))
		want := tc.want
		if want == "" {
			want = formatError(tc.err) // left as it is
		}
		if got := formatError(err); got != want {
			t.Errorf("%s: %v\n got %s\nwant %s", tc.cmd.CommandPath(), tc.err, got, want)
		}
		if errors.Is(tc.err, client.ErrNotFound) && !errors.Is(err, client.ErrNotFound) {
			t.Errorf("%v: renamed error no longer matches client.ErrNotFound", tc.err)
		}
	}
	// A renamed status keeps its details: the reason a script or the
	// client reads from ErrorInfo.
	withInfo := rpcerr.New(codes.NotFound, rpcerr.ReasonNotLeader, `name: domain "nope" does not exist`)
	renamed := nameFields(rpcerr.ToStatus(withInfo), cellFieldNames[describe.CommandPath()](describe, []string{"nope"}))
	if got := formatError(renamed); got != `wds: NotFound: domain "nope" does not exist` {
		t.Errorf("renamed status: %s", got)
	}
	if rpcerr.Reason(renamed) != rpcerr.ReasonNotLeader {
		t.Errorf("renamed status lost its ErrorInfo: reason %q", rpcerr.Reason(renamed))
	}
	for n, want := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 102: "102nd", 111: "111th"} {
		if got := ordinal(n); got != want {
			t.Errorf("ordinal(%d) = %s, want %s", n, got, want)
		}
	}
}

// shuffledBatch returns one batch (same kind, same time) of grants of n
// shards of domain d, not in key order.
func shuffledBatch(d string, n int, at time.Time) []client.Event {
	return shuffledBatchIn(d, "", n, at)
}

// shuffledBatchIn is shuffledBatch in region's key space of d.
func shuffledBatchIn(d, region string, n int, at time.Time) []client.Event {
	rng, _ := topology.SplitEven(n)
	var out []client.Event
	for _, i := range rand.Perm(n) {
		out = append(out, client.Event{Kind: client.EventGrant, Time: at, Shard: client.Shard{Domain: d, Region: region, Range: rng[i]}})
	}
	return out
}

// TestEventBatcherKeySpaces: a batch holding the same ranges of two key
// spaces of a domain comes out sorted by (domain, region, from).
func TestEventBatcherKeySpaces(t *testing.T) {
	var got []client.Event
	b := newEventBatcher(func(e client.Event) { got = append(got, e) })
	at := time.Now()
	batch := append(shuffledBatchIn("a", "us-east", 4, at), shuffledBatchIn("a", "eu-west", 4, at)...)
	batch = append(batch, shuffledBatch("b", 2, at)...)
	rand.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	// Held as one batch (add would let the idle timer cut it on a loaded
	// machine), then flushed.
	b.batch = batch
	b.flush()
	var keys []string
	for _, e := range got {
		keys = append(keys, e.Shard.Domain+"/"+e.Shard.Region+" "+shortRange(e.Shard.Range))
	}
	want := []string{
		"a/eu-west [00000000, 40000000)", "a/eu-west [40000000, 80000000)", "a/eu-west [80000000, c0000000)", "a/eu-west [c0000000, end)",
		"a/us-east [00000000, 40000000)", "a/us-east [40000000, 80000000)", "a/us-east [80000000, c0000000)", "a/us-east [c0000000, end)",
		"b/ [00000000, 80000000)", "b/ [80000000, end)",
	}
	if !slices.Equal(keys, want) {
		t.Errorf("batch order:\n%s\nwant:\n%s", strings.Join(keys, "\n"), strings.Join(want, "\n"))
	}
}

// TestEventBatcher: the events of a batch come out sorted by (domain,
// from); batches and other events keep their order; a batch is passed on
// within a few ms even when nothing follows it.
func TestEventBatcher(t *testing.T) {
	var mu sync.Mutex
	var got []client.Event
	b := newEventBatcher(func(e client.Event) {
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	})
	t0 := time.Now()
	t1 := t0.Add(time.Millisecond)
	b.add(client.Event{Kind: client.EventWelcome, Time: t0})
	batch := append(shuffledBatch("b", 8, t0), shuffledBatch("a", 8, t0)...)
	for _, e := range batch {
		b.add(e)
	}
	// The next batch: the same kind at another time.
	next := shuffledBatch("a", 4, t1)
	for _, e := range next {
		b.add(e)
	}
	b.add(client.Event{Kind: client.EventDrained, Time: t1})
	lost := shuffledBatch("a", 4, t1)
	for i := range lost {
		lost[i].Kind = client.EventLost
		b.add(lost[i])
	}
	// The last batch is flushed by the idle timer.
	deadline := time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 1+16+4+1+4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var lines []string
	for _, e := range got {
		lines = append(lines, fmt.Sprintf("%s %s %s %d", e.Kind, e.Shard.Domain, shortRange(e.Shard.Range), e.Time.Sub(t0)))
	}
	check := func(from, n int, kind client.EventKind, at time.Time) {
		t.Helper()
		if from+n > len(got) {
			t.Fatalf("%d events:\n%s", len(got), strings.Join(lines, "\n"))
		}
		for i := from; i < from+n; i++ {
			e := got[i]
			if e.Kind != kind || !e.Time.Equal(at) {
				t.Errorf("event %d is %s, want %s at %v", i, lines[i], kind, at.Sub(t0))
			}
			if i > from {
				p := got[i-1]
				if p.Shard.Domain > e.Shard.Domain || (p.Shard.Domain == e.Shard.Domain && !p.Shard.Range.From.Less(e.Shard.Range.From)) {
					t.Errorf("event %d out of order:\n%s", i, strings.Join(lines, "\n"))
				}
			}
		}
	}
	check(0, 1, client.EventWelcome, t0)
	check(1, 16, client.EventGrant, t0)
	check(17, 4, client.EventGrant, t1)
	check(21, 1, client.EventDrained, t1)
	check(22, 4, client.EventLost, t1)
	if len(got) != 26 {
		t.Errorf("%d events, want 26:\n%s", len(got), strings.Join(lines, "\n"))
	}
}

// TestDemoBatchOrder: `wds dev --demo` prints a consumer's batch of grants
// in key order.
func TestDemoBatchOrder(t *testing.T) {
	var out syncBuffer
	d := &demo{demoCore: demoCore{out: &out}}
	b := d.batcher("demo-1")
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, e := range shuffledBatch(demoDomain, 16, at) {
		b.add(e)
	}
	b.flush()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 16 {
		t.Fatalf("%d lines:\n%s", len(lines), out.String())
	}
	if !slices.IsSorted(lines) || !strings.Contains(lines[0], "[00000000, 10000000)") || !strings.Contains(lines[15], "[f0000000, end)") {
		t.Errorf("not in key order:\n%s", out.String())
	}
}
