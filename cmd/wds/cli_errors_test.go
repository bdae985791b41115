package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/topology"
)

// TestCellErrorsNameFlags: what the cell rejects is named by the flag or
// argument the operator typed, not by the field of the wire protocol.
func TestCellErrorsNameFlags(t *testing.T) {
	t.Parallel()
	c := celltest.New(t, 1)
	ep := "--endpoint=" + strings.Join(c.Endpoints(), ",")
	c.CreateDomain("work", topology.KindGlobal, 4, 2*time.Second)
	for _, tc := range []struct {
		name string
		args []string
		want string // the whole stderr line
	}{
		{"consume unknown domain", []string{"consume", "--domain", "nope", "--id", "e-1"},
			"wds: NotFound: --domain \"nope\": domain does not exist (create it with `wds domain create`)"},
		{"consume unknown 2nd domain", []string{"consume", "--domain", "work,nope", "--id", "e-2"},
			"wds: NotFound: --domain \"nope\": domain does not exist (create it with `wds domain create`)"},
		{"consume region", []string{"consume", "--domain", "work", "--id", "e-3", "--region", "mars"},
			`wds: InvalidArgument: --region: this endpoint serves region "local": connect consumers to their own region's endpoint (got "mars")`},
		{"consume endpoint", []string{"consume", "--domain", "work", "--id", "e-4", "--endpoint-advertise", "nonsense"},
			"wds: InvalidArgument: --endpoint-advertise: "},
		{"shards", []string{"shards", "nope"}, `wds: NotFound: domain "nope" does not exist`},
		{"describe", []string{"domain", "describe", "nope"}, `wds: NotFound: domain "nope" does not exist`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := wds(t, append([]string{ep}, tc.args...)...)
			line := strings.TrimSuffix(r.stderr, "\n")
			if r.code != 1 || strings.Contains(line, "\n") || !strings.HasPrefix(line, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant the line to start with\n%s", r.code, r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, "hello.") {
				t.Errorf("stderr names a wire field: %s", r.stderr)
			}
		})
	}
}

// TestConsumeBatchOrder: the grants of one Grant message (one kind, one
// time) are printed in key order.
func TestConsumeBatchOrder(t *testing.T) {
	t.Parallel()
	c := celltest.New(t, 1)
	ep := "--endpoint=" + strings.Join(c.Endpoints(), ",")
	const n = 64
	c.CreateDomain("sorted", topology.KindGlobal, n, 2*time.Second)
	p := start(t, ep, "consume", "--domain", "sorted", "--id", "sort-1")
	var grants []eventJSON
	for len(grants) < n {
		if e := parseEvent(t, p.next(15*time.Second)); e.Event == "grant" {
			grants = append(grants, e)
		}
	}
	biggest := 0
	for i, size := 0, 0; i < len(grants); i++ {
		if i > 0 && grants[i].Time == grants[i-1].Time {
			size++
			if grants[i].From <= grants[i-1].From { // fixed-width hex: compares like the keys
				t.Errorf("grant %d (from %s) after %s in the same batch", i, grants[i].From, grants[i-1].From)
			}
		} else {
			size = 1
		}
		biggest = max(biggest, size)
	}
	if biggest < 2 {
		t.Fatalf("no batch of grants at all (every grant at its own time): the test shows nothing")
	}
	t.Logf("largest batch: %d grants", biggest)
	var froms []string
	for _, g := range grants {
		froms = append(froms, g.From[:8])
	}
	if t.Failed() {
		t.Log(fmt.Sprint(froms))
	}
}
