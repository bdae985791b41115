package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/client"
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
	want := `{"event":"lost","consumer":"c1","domain":"d","from":"80000000-0000-0000-0000-000000000000","to":"ffffffff-ffff-ffff-ffff-ffffffffffff","to_end":true,"token":"1.42","time":"2025-01-02T02:04:05.000000006Z","reason":"lease expired"}`
	if string(b) != want {
		t.Errorf("lost event\n got %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(eventToJSON("c1", client.Event{Kind: client.EventDrained, Time: at}))
	if want := `{"event":"drained","consumer":"c1","time":"2025-01-02T02:04:05.000000006Z"}`; string(b) != want {
		t.Errorf("drained event\n got %s\nwant %s", b, want)
	}
}

// TestRouteWriter: a resync prints only the entries that changed.
func TestRouteWriter(t *testing.T) {
	rng, _ := topology.SplitEven(2)
	var out strings.Builder
	w := &routeWriter{out: &out, json: true, domain: "d", table: map[topology.Bound]client.Route{}}
	a := client.Route{Domain: "d", Range: rng[0]}
	b := client.Route{Domain: "d", Range: rng[1]}
	w.sync(5, []client.Route{a, b}, true)
	b2 := b
	b2.Owner, b2.Token = "c1", topology.Token{Generation: 1, Index: 7}
	w.update(6, []client.Route{a, b2}) // a unchanged
	w.sync(7, []client.Route{a, b2}, false)
	w.deleted(8)
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
