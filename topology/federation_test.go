package topology

import (
	"errors"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// federationFile is a federation of three regions with every field of the
// multi-region model: failover lists (mutual ones, and a region without
// one), global voters, a REGIONAL domain's regions and failover, GLOBAL and
// UNIT pins.
const federationFile = `# a federation of three regions
regions:
  - name: us-east
    failover: [eu-west, ap-south]     # tried in order; not transitive
    nodes:
      - id: u1
        raft: 10.1.0.1:7200
        grpc: 10.1.0.1:7100
        global: 10.1.0.1:7400         # also a voter of the global group
      - {id: u2, raft: "10.1.0.2:7200", grpc: "10.1.0.2:7100"}
      - {id: u3, raft: "10.1.0.3:7200", grpc: "10.1.0.3:7100"}
  - name: eu-west
    failover: [us-east]               # mutual lists are normal
    nodes:
      - {id: e1, raft: "10.2.0.1:7200", grpc: "10.2.0.1:7100", http: "0.0.0.0:7300", global: "10.2.0.1:7400"}
  - name: ap-south                    # no list: every other region, in file order
    nodes:
      - {id: a1, raft: "10.3.0.1:7200", grpc: "10.3.0.1:7100", global: "10.3.0.1:7400"}
domains:
  - name: orders
    kind: global
    shards: 4
    pins:                             # on shard boundaries, no overlap
      - from: 00000000-0000-0000-0000-000000000000
        to: 40000000-0000-0000-0000-000000000000
        region: us-east
      - {from: C0000000-0000-0000-0000-000000000000, to: END, region: eu-west}
  - name: scheduler
    kind: unit
    pins: [{region: ap-south}]         # a unit domain is pinned whole
  - name: carts
    kind: regional
    shards: 16
    regions: [us-east, eu-west]       # default: every region
    failover: manual                  # default: auto
  - name: sessions
    kind: regional
    shards: 8
    failback_after: 2m                # default: 30s
`

func mustBound(t *testing.T, s string) Bound {
	t.Helper()
	b, err := ParseBound("bound", s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseFederation(t *testing.T) {
	f, err := Parse("fed.yaml", []byte(federationFile))
	if err != nil {
		t.Fatal(err)
	}
	quarter := mustBound(t, "40000000-0000-0000-0000-000000000000")
	threeQuarters := mustBound(t, "c0000000-0000-0000-0000-000000000000")
	want := &File{
		Regions: []Region{
			{Name: "us-east", Failover: []string{"eu-west", "ap-south"}, Nodes: []Node{
				{ID: "u1", Raft: "10.1.0.1:7200", GRPC: "10.1.0.1:7100", Global: "10.1.0.1:7400"},
				{ID: "u2", Raft: "10.1.0.2:7200", GRPC: "10.1.0.2:7100"},
				{ID: "u3", Raft: "10.1.0.3:7200", GRPC: "10.1.0.3:7100"},
			}},
			{Name: "eu-west", Failover: []string{"us-east"}, Nodes: []Node{
				{ID: "e1", Raft: "10.2.0.1:7200", GRPC: "10.2.0.1:7100", HTTP: "0.0.0.0:7300", Global: "10.2.0.1:7400"},
			}},
			{Name: "ap-south", Nodes: []Node{
				{ID: "a1", Raft: "10.3.0.1:7200", GRPC: "10.3.0.1:7100", Global: "10.3.0.1:7400"},
			}},
		},
		Domains: []Domain{
			{Name: "orders", Kind: KindGlobal, Shards: 4, TTL: DefaultTTL, Pins: []Pin{
				{Range: Range{From: Start, To: quarter}, Region: "us-east"},
				{Range: Range{From: threeQuarters, To: End}, Region: "eu-west"},
			}},
			{Name: "scheduler", Kind: KindUnit, Shards: 1, TTL: DefaultTTL, Pins: []Pin{{Range: Full, Region: "ap-south"}}},
			{Name: "carts", Kind: KindRegional, Shards: 16, TTL: DefaultTTL, Regions: []string{"us-east", "eu-west"}, Failover: FailoverManual},
			{Name: "sessions", Kind: KindRegional, Shards: 8, TTL: DefaultTTL, Regions: []string{"us-east", "eu-west", "ap-south"}, Failover: FailoverAuto, FailbackAfter: 2 * time.Minute},
		},
	}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", f, want)
	}
	if err := f.Validate(); err != nil {
		t.Errorf("Validate() of a parsed file = %v", err)
	}

	voters := f.GlobalVoters()
	wantVoters := []GlobalVoter{
		{Region: "us-east", Node: want.Regions[0].Nodes[0]},
		{Region: "eu-west", Node: want.Regions[1].Nodes[0]},
		{Region: "ap-south", Node: want.Regions[2].Nodes[0]},
	}
	if !reflect.DeepEqual(voters, wantVoters) {
		t.Errorf("GlobalVoters() = %+v, want %+v", voters, wantVoters)
	}

	for _, tt := range []struct {
		region string
		want   []string
	}{
		{"us-east", []string{"eu-west", "ap-south"}},
		{"eu-west", []string{"us-east"}},
		{"ap-south", []string{"us-east", "eu-west"}}, // the default
		{"nowhere", nil},
	} {
		got := f.FailoverOf(tt.region)
		if !slices.Equal(got, tt.want) || (tt.want == nil) != (got == nil) {
			t.Errorf("FailoverOf(%q) = %q, want %q", tt.region, got, tt.want)
		}
	}
	// The answer is the caller's to change.
	f.FailoverOf("us-east")[0] = "changed"
	if f.Regions[0].Failover[0] != "eu-west" {
		t.Errorf("FailoverOf returned the file's own slice")
	}
}

// fedPrelude is a valid federation of regions a, b, c (lines 1-11), a with
// the only global voter, for inputs that test domains from line 12 on.
const fedPrelude = `regions:
  - name: a
    nodes:
      - {id: a1, raft: "h:1", grpc: "h:2", global: "h:3"}
  - name: b
    nodes:
      - {id: b1, raft: "h:11", grpc: "h:12"}
  - name: c
    nodes:
      - {id: c1, raft: "h:21", grpc: "h:22"}
domains:
`

// twoRegions returns a file of regions a and b (lines 1-7), with extra the
// lines of region a's fields after its name and nodeA the fields of its node
// after id, raft and grpc.
func twoRegions(extra, nodeA string) string {
	return "regions:\n  - name: a\n" + extra + "    nodes:\n      - {id: a1, raft: 'h:1', grpc: 'h:2'" + nodeA + "}\n" +
		"  - name: b\n    nodes:\n      - {id: b1, raft: 'h:11', grpc: 'h:12', global: 'h:13'}\n"
}

const (
	keyQuarter = "40000000-0000-0000-0000-000000000000"
	keyHalf    = "80000000-0000-0000-0000-000000000000"
	keyZero    = "00000000-0000-0000-0000-000000000000"
)

// global4 starts a GLOBAL domain of 4 shards in flow style, to be closed.
const global4 = "  - {name: g, kind: global, shards: 4"

func TestParseFederationErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // the whole error
	}{
		// regions[].failover
		{"failover unknown region", twoRegions("    failover: [b, x]\n", ""),
			`topo.yaml:3: regions[0].failover[1]: unknown region: the file's regions are a, b (got "x")`},
		{"failover to itself", twoRegions("    failover:\n      - b\n      - a\n", ""),
			`topo.yaml:5: regions[0].failover[1]: a region cannot fail over to itself: list the regions that serve its regional key spaces while it is down (got "a")`},
		{"failover duplicate", fedPrelude[:strings.Index(fedPrelude, "    nodes:")] + "    failover: [b, c, b]\n" + fedPrelude[strings.Index(fedPrelude, "    nodes:"):],
			`topo.yaml:3: regions[0].failover[2]: duplicate region, also regions[0].failover[0] (got "b")`},
		{"failover empty", twoRegions("    failover: []\n", ""),
			`topo.yaml:3: regions[0].failover: empty: list the regions that serve this region's regional key spaces while it is down, or omit the field for every other region in file order`},
		{"failover null", twoRegions("    failover:\n", ""),
			`topo.yaml:3: regions[0].failover: empty: list the regions that serve this region's regional key spaces while it is down, or omit the field for every other region in file order`},
		{"failover not a list", twoRegions("    failover: b\n", ""),
			`topo.yaml:3: regions[0].failover: must be a list, not the value "b"`},
		{"failover item not a name", twoRegions("    failover: [[b]]\n", ""),
			`topo.yaml:3: regions[0].failover[0]: must be a single value, not a list`},
		{"failover in a lone cell", "regions:\n  - name: a\n    failover: [b]\n    nodes:\n      - {id: a1, raft: 'h:1', grpc: 'h:2'}\n",
			`topo.yaml:3: regions[0].failover[0]: unknown region: the file's regions are a (got "b")`},
		{"unknown region field", twoRegions("    failovr: [b]\n", ""),
			`topo.yaml:3: regions[0].failovr: unknown field; known fields here: name, nodes, failover`},

		// nodes[].global
		{"global wildcard", twoRegions("", ", global: '0.0.0.0:7400'"),
			`topo.yaml:4: regions[0].nodes[0].global: invalid host:port: 0.0.0.0 is a wildcard that nobody can dial; give this node's own address (got "0.0.0.0:7400")`},
		{"global without port", twoRegions("", ", global: 'h'"),
			`topo.yaml:4: regions[0].nodes[0].global: invalid host:port: missing port in address (got "h")`},
		{"global same as own raft", twoRegions("", ", global: 'H:1'"),
			`topo.yaml:4: regions[0].nodes[0].global: address already used by regions[0].nodes[0].raft (got "H:1")`},
		{"global same as another global", twoRegions("", ", global: 'h:13'"),
			`topo.yaml:7: regions[1].nodes[0].global: address already used by regions[0].nodes[0].global (got "h:13")`},
		{"raft same as a global", "regions:\n  - name: a\n    nodes:\n      - {id: a1, raft: 'h:1', grpc: 'h:2', global: 'h:3'}\n      - {id: a2, raft: 'h:3', grpc: 'h:4'}\n",
			`topo.yaml:5: regions[0].nodes[1].raft: address already used by regions[0].nodes[0].global (got "h:3")`},
		{"no global voter", "regions:\n  - name: a\n    nodes:\n      - {id: a1, raft: 'h:1', grpc: 'h:2'}\n  - name: b\n    nodes:\n      - {id: b1, raft: 'h:11', grpc: 'h:12', global: ''}\n",
			`topo.yaml:1: regions: a file of several regions is a federation and needs at least one global voter: give nodes a global address (host:port of the global Raft transport), typically one node per region (got 2 regions)`},
		{"unknown node field", twoRegions("", ", globl: 'h:3'"),
			`topo.yaml:4: regions[0].nodes[0].globl: unknown field; known fields here: id, raft, grpc, http, global`},

		// domains[].regions
		{"regions unknown", fedPrelude + "  - {name: u, kind: unit}\n  - {name: g, kind: global, shards: 2}\n  - name: r\n    kind: regional\n    shards: 4\n    regions:\n      - a\n      - x\n",
			`topo.yaml:19: domains[2].regions[1]: unknown region: the file's regions are a, b, c (got "x")`},
		{"regions empty", fedPrelude + "  - {name: r, kind: regional, shards: 4, regions: []}\n",
			`topo.yaml:12: domains[0].regions: a REGIONAL domain in no region: list the regions that have its key space, or omit the field for every region of the file`},
		{"regions null", fedPrelude + "  - name: r\n    kind: regional\n    shards: 4\n    regions:\n",
			`topo.yaml:15: domains[0].regions: a REGIONAL domain in no region: list the regions that have its key space, or omit the field for every region of the file`},
		{"regions duplicate", fedPrelude + "  - {name: r, kind: regional, shards: 4, regions: [a, b, a]}\n",
			`topo.yaml:12: domains[0].regions[2]: duplicate region, also regions[0] (got "a")`},
		{"regions bad name", fedPrelude + "  - {name: r, kind: regional, shards: 4, regions: [A]}\n",
			`topo.yaml:12: domains[0].regions[0]: must start with a lowercase letter or digit (got "A")`},
		{"regions empty name", fedPrelude + "  - {name: r, kind: regional, shards: 4, regions: ['']}\n",
			`topo.yaml:12: domains[0].regions[0]: required: 1 to 63 lowercase letters, digits, '-', '_' or '.'`},
		{"regions not a list", fedPrelude + "  - {name: r, kind: regional, shards: 4, regions: a}\n",
			`topo.yaml:12: domains[0].regions: must be a list, not the value "a"`},
		{"regions on global", fedPrelude + global4 + ", regions: [a]}\n",
			`topo.yaml:12: domains[0].regions: only a regional domain has regions: a global domain has one key space for the whole federation (place it with pins)`},
		{"regions empty on unit", fedPrelude + "  - name: u\n    regions: []\n    kind: unit\n",
			`topo.yaml:13: domains[0].regions: only a regional domain has regions: a unit domain has one key space for the whole federation (place it with pins)`},
		{"regions without kind", fedPrelude + "  - {name: r, shards: 4, regions: []}\n",
			`topo.yaml:12: domains[0].kind: required: one of unit, global, regional`},

		// domains[].failover
		{"failover setting unknown", fedPrelude + "  - {name: r, kind: regional, shards: 4, failover: sometimes}\n",
			`topo.yaml:12: domains[0].failover: unknown failover: want one of auto, manual (got "sometimes")`},
		{"failover setting empty", fedPrelude + "  - name: r\n    kind: regional\n    shards: 4\n    failover:\n",
			`topo.yaml:15: domains[0].failover: must be one of auto, manual (omit the field for auto)`},
		{"failover setting a list", fedPrelude + "  - {name: r, kind: regional, shards: 4, failover: [auto]}\n",
			`topo.yaml:12: domains[0].failover: must be a single value, not a list`},
		{"failover setting on global", fedPrelude + global4 + ", failover: auto}\n",
			`topo.yaml:12: domains[0].failover: only a regional domain has a failover setting: a global domain always fails over to live regions`},
		{"failover setting on unit", fedPrelude + "  - name: u\n    kind: unit\n    failover: manual\n",
			`topo.yaml:14: domains[0].failover: only a regional domain has a failover setting: a unit domain always fails over to live regions`},

		// domains[].pins
		{"pins on regional", fedPrelude + "  - {name: r, kind: regional, shards: 4, pins: []}\n",
			`topo.yaml:12: domains[0].pins: a regional domain cannot be pinned: each of its regions serves its own key space (choose them with regions)`},
		{"pins not a list", fedPrelude + global4 + ", pins: a}\n",
			`topo.yaml:12: domains[0].pins: must be a list, not the value "a"`},
		{"pin not a mapping", fedPrelude + global4 + ", pins: [a]}\n",
			`topo.yaml:12: domains[0].pins[0]: must be a mapping with fields from, to, region, not the value "a"`},
		{"pin unknown field", fedPrelude + global4 + ", pins: [{from: " + keyZero + ", to: end, region: a, weight: 2}]}\n",
			`topo.yaml:12: domains[0].pins[0].weight: unknown field; known fields here: from, to, region`},
		{"unit pin with from", fedPrelude + "  - name: u\n    kind: unit\n    pins:\n      - region: a\n        from: " + keyZero + "\n",
			`topo.yaml:16: domains[0].pins[0].from: a unit domain's pin takes only region: the domain is one shard, pinned whole`},
		{"unit pin with to", fedPrelude + "  - name: u\n    kind: unit\n    pins:\n      - region: a\n        to: end\n",
			`topo.yaml:16: domains[0].pins[0].to: a unit domain's pin takes only region: the domain is one shard, pinned whole`},
		{"unit two pins", fedPrelude + "  - name: u\n    kind: unit\n    pins:\n      - region: a\n      - region: b\n",
			`topo.yaml:16: domains[0].pins[1]: a unit domain takes at most one pin: it is one shard, and pins[0] places it`},
		{"unit pin without region", fedPrelude + "  - name: u\n    kind: unit\n    pins:\n      - {}\n",
			`topo.yaml:15: domains[0].pins[0].region: required: the region that holds the pinned range`},
		{"unit pin unknown region", fedPrelude + "  - name: u\n    kind: unit\n    pins:\n      - region: x\n",
			`topo.yaml:15: domains[0].pins[0].region: unknown region: the file's regions are a, b, c (got "x")`},
		{"unit pin bad region name", fedPrelude + "  - name: u\n    kind: unit\n    pins:\n      - region: 'x y'\n",
			`topo.yaml:15: domains[0].pins[0].region: invalid character ' ' at offset 1: use lowercase letters, digits, '-', '_' or '.' (got "x y")`},
		{"global pin without from", fedPrelude + global4 + ", pins: [{to: end, region: a}]}\n",
			`topo.yaml:12: domains[0].pins[0].from: required: the first key of the pinned range, a UUID on a shard boundary`},
		{"global pin without to", fedPrelude + "  - name: g\n    kind: global\n    shards: 4\n    pins:\n      - from: " + keyZero + "\n        region: a\n",
			`topo.yaml:16: domains[0].pins[0].to: required: the end of the pinned range, a UUID on a shard boundary or end`},
		{"global pin empty from", fedPrelude + global4 + ", pins: [{from: , to: end, region: a}]}\n",
			`topo.yaml:12: domains[0].pins[0].from: must be a UUID on a shard boundary`},
		{"global pin empty to", fedPrelude + global4 + ", pins: [{from: " + keyZero + ", to: '', region: a}]}\n",
			`topo.yaml:12: domains[0].pins[0].to: must be a UUID on a shard boundary, or end`},
		{"global pin bad uuid", fedPrelude + global4 + ", pins: [{from: nope, to: end, region: a}]}\n",
			`topo.yaml:12: domains[0].pins[0].from: invalid UUID: invalid UUID length: 4 (got "nope")`},
		{"global pin from end", fedPrelude + global4 + ", pins: [{from: end, to: end, region: a}]}\n",
			`topo.yaml:12: domains[0].pins[0].from: must be a key, not the end of the key space (got end)`},
		{"global pin empty range", fedPrelude + global4 + ", pins: [{from: " + keyHalf + ", to: " + keyHalf + ", region: a}]}\n",
			`topo.yaml:12: domains[0].pins[0].to: must be after from 80000000-0000-0000-0000-000000000000 (a range holds at least one key) (got 80000000-0000-0000-0000-000000000000)`},
		{"global pin backwards", fedPrelude + global4 + ", pins: [{from: " + keyHalf + ", to: " + keyQuarter + ", region: a}]}\n",
			`topo.yaml:12: domains[0].pins[0].to: must be after from 80000000-0000-0000-0000-000000000000 (a range holds at least one key) (got 40000000-0000-0000-0000-000000000000)`},
		{"global pin from off boundary", fedPrelude + global4 + ", pins: [{from: 00000000-0000-0000-0000-000000000001, to: end, region: a}]}\n",
			`topo.yaml:12: domains[0].pins[0].from: must be a shard boundary: the domain's 4 shards split the key space evenly, and this is inside shard 0 [00000000-0000-0000-0000-000000000000, 40000000-0000-0000-0000-000000000000) (got 00000000-0000-0000-0000-000000000001)`},
		{"global pin to off boundary", fedPrelude + "  - name: g\n    kind: global\n    shards: 4\n    pins:\n      - from: " + keyZero + "\n        to: ffffffff-ffff-ffff-ffff-ffffffffffff\n        region: a\n",
			`topo.yaml:17: domains[0].pins[0].to: must be a shard boundary: the domain's 4 shards split the key space evenly, and this is inside shard 3 [c0000000-0000-0000-0000-000000000000, end) (got ffffffff-ffff-ffff-ffff-ffffffffffff)`},
		{"global pin off an uneven boundary", fedPrelude + "  - {name: g, kind: global, shards: 3, pins: [{from: 55555555-5555-5555-5555-555555555556, to: end, region: a}]}\n",
			`topo.yaml:12: domains[0].pins[0].from: must be a shard boundary: the domain's 3 shards split the key space evenly, and this is inside shard 1 [55555555-5555-5555-5555-555555555555, aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa) (got 55555555-5555-5555-5555-555555555556)`},
		{"global pins overlap", fedPrelude + "  - name: g\n    kind: global\n    shards: 4\n    pins:\n      - {from: " + keyHalf + ", to: end, region: a}\n      - {from: " + keyZero + ", to: " + keyQuarter + ", region: b}\n      - {from: " + keyQuarter + ", to: c0000000-0000-0000-0000-000000000000, region: c}\n",
			`topo.yaml:18: domains[0].pins[2]: overlaps pins[0] [80000000-0000-0000-0000-000000000000, end): a key is pinned to one region at most (got [40000000-0000-0000-0000-000000000000, c0000000-0000-0000-0000-000000000000))`},
		{"global pins the same", fedPrelude + global4 + ", pins: [{from: " + keyZero + ", to: end, region: a}, {from: " + keyZero + ", to: end, region: b}]}\n",
			`topo.yaml:12: domains[0].pins[1]: overlaps pins[0] [00000000-0000-0000-0000-000000000000, end): a key is pinned to one region at most (got [00000000-0000-0000-0000-000000000000, end))`},
		{"global pin unknown region", fedPrelude + "  - {name: u, kind: unit}\n  - name: g\n    kind: global\n    shards: 4\n    pins:\n      - from: " + keyZero + "\n        to: end\n        region: x\n",
			`topo.yaml:19: domains[1].pins[0].region: unknown region: the file's regions are a, b, c (got "x")`},
		{"failback on global", fedPrelude + global4 + ", failback_after: 10s}\n",
			`topo.yaml:12: domains[0].failback_after: only a regional domain fails back: a global domain's placement follows its consumers, not a home region`},
		{"failback not a duration", fedPrelude + "  - {name: r, kind: regional, failback_after: 30}\n",
			`topo.yaml:12: domains[0].failback_after: must be a duration with a unit, such as 30s or 5m (got "30")`},
		{"failback zero", fedPrelude + "  - {name: r, kind: regional, failback_after: 0s}\n",
			`topo.yaml:12: domains[0].failback_after: must be between 1ms and 24h0m0s (omit it for the default, 30s) (got 0s)`},
		{"failback too long", fedPrelude + "  - {name: r, kind: regional, failback_after: 25h}\n",
			`topo.yaml:12: domains[0].failback_after: must be between 1ms and 24h0m0s (omit it for the default, 30s) (got 25h0m0s)`},
		{"failback sub-millisecond", fedPrelude + "  - {name: r, kind: regional, failback_after: 1500us}\n",
			`topo.yaml:12: domains[0].failback_after: must be a whole number of milliseconds (got 1.5ms)`},
		{"unknown domain field", fedPrelude + global4 + ", pin: []}\n",
			`topo.yaml:12: domains[0].pin: unknown field; known fields here: name, kind, shards, ttl, regions, failover, failback_after, pins`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("topo.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", f)
			}
			var fe *FileError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q (%T) is not a *FileError matching ErrInvalid", err, err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n%s\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestParseFederationValid(t *testing.T) {
	tests := []struct {
		name, in string
		check    func(t *testing.T, f *File)
	}{
		{"lone cell", "regions:\n  - name: r\n    nodes:\n      - {id: n, raft: 'h:1', grpc: 'h:2'}\ndomains:\n  - {name: d, kind: regional, shards: 2}\n",
			func(t *testing.T, f *File) {
				if v := f.GlobalVoters(); len(v) != 0 {
					t.Errorf("GlobalVoters() = %+v, want none", v)
				}
				if got := f.FailoverOf("r"); got == nil || len(got) != 0 {
					t.Errorf("FailoverOf(r) = %#v, want empty", got)
				}
				if d := f.Domains[0]; !slices.Equal(d.Regions, []string{"r"}) || d.Failover != FailoverAuto || d.Pins != nil {
					t.Errorf("defaults: %+v", d)
				}
			}},
		{"lone cell with a global voter", "regions:\n  - name: r\n    nodes:\n      - {id: n, raft: 'h:1', grpc: 'h:2', global: 'h:3'}\n",
			func(t *testing.T, f *File) {
				if v := f.GlobalVoters(); len(v) != 1 || v[0].Region != "r" || v[0].Node.Global != "h:3" {
					t.Errorf("GlobalVoters() = %+v", v)
				}
			}},
		{"mutual failover lists", twoRegions("    failover: [b]\n", "") + "  - name: c\n    failover: [a, b]\n    nodes:\n      - {id: c1, raft: 'h:21', grpc: 'h:22'}\n",
			func(t *testing.T, f *File) {
				f.Regions[1].Failover = []string{"a"} // b: [a] too
				if err := f.Validate(); err != nil {
					t.Error(err)
				}
				if got := f.FailoverOf("a"); !slices.Equal(got, []string{"b"}) {
					t.Errorf("FailoverOf(a) = %q", got)
				}
			}},
		{"domains before regions", "domains:\n  - {name: d, kind: regional, shards: 2}\n" + twoRegions("", ""),
			func(t *testing.T, f *File) {
				if got := f.Domains[0].Regions; !slices.Equal(got, []string{"a", "b"}) {
					t.Errorf("default regions = %q", got)
				}
			}},
		{"defaults are separate slices", fedPrelude + "  - {name: d, kind: regional, shards: 2}\n  - {name: e, kind: regional, shards: 2}\n",
			func(t *testing.T, f *File) {
				f.Domains[0].Regions[0] = "changed"
				if f.Domains[1].Regions[0] != "a" {
					t.Errorf("domains share their default regions")
				}
			}},
		{"failover in any case", fedPrelude + "  - {name: d, kind: regional, shards: 2, failover: MANUAL}\n  - {name: e, kind: regional, shards: 2, failover: Auto}\n",
			func(t *testing.T, f *File) {
				if f.Domains[0].Failover != FailoverManual || f.Domains[1].Failover != FailoverAuto {
					t.Errorf("failover = %v, %v", f.Domains[0].Failover, f.Domains[1].Failover)
				}
			}},
		{"kind after placement fields", fedPrelude + "  - name: u\n    pins: [{region: b}]\n    kind: unit\n  - {regions: [c], name: r, shards: 1, kind: regional}\n",
			func(t *testing.T, f *File) {
				if p := f.Domains[0].Pins; len(p) != 1 || p[0] != (Pin{Range: Full, Region: "b"}) {
					t.Errorf("unit pins = %+v", p)
				}
				if r := f.Domains[1].Regions; !slices.Equal(r, []string{"c"}) {
					t.Errorf("regions = %q", r)
				}
			}},
		{"empty pins", fedPrelude + global4 + ", pins: []}\n  - {name: u, kind: unit, pins: }\n",
			func(t *testing.T, f *File) {
				if len(f.Domains[0].Pins) != 0 || len(f.Domains[1].Pins) != 0 {
					t.Errorf("pins = %+v, %+v", f.Domains[0].Pins, f.Domains[1].Pins)
				}
			}},
		{"adjacent pins tile the space", fedPrelude + global4 + ", pins: [{from: " + keyHalf + ", to: end, region: a}, {from: " + keyZero + ", to: " + keyHalf + ", region: a}]}\n",
			func(t *testing.T, f *File) {
				if p := f.Domains[0].Pins; len(p) != 2 || p[0].Range.To != End || p[1].Range.From != Start {
					t.Errorf("pins = %+v", p)
				}
			}},
		{"pin on boundaries of many shards", fedPrelude + "  - {name: g, kind: global, shards: 1048576, pins: [{from: 00001000-0000-0000-0000-000000000000, to: fffff000-0000-0000-0000-000000000000, region: c}]}\n",
			func(t *testing.T, f *File) {
				if r := f.Domains[0].Pins[0].Range; r.String() != "[00001000-0000-0000-0000-000000000000, fffff000-0000-0000-0000-000000000000)" {
					t.Errorf("pin range = %v", r)
				}
			}},
		{"pin on uneven boundaries", fedPrelude + "  - {name: g, kind: global, shards: 3, pins: [{from: 55555555-5555-5555-5555-555555555555, to: aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa, region: c}]}\n",
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("t.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Validate(); err != nil {
				t.Fatalf("Validate() of a parsed file = %v", err)
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

func TestFileValidateFederation(t *testing.T) {
	// A File built in code: region references are checked the same way,
	// and a REGIONAL domain with no Regions is in every region.
	base := func() *File {
		return &File{
			Regions: []Region{
				{Name: "a", Nodes: []Node{{ID: "a1", Raft: "127.0.0.1:1", GRPC: "127.0.0.1:2", Global: "127.0.0.1:3"}}},
				{Name: "b", Nodes: []Node{{ID: "b1", Raft: "127.0.0.1:11", GRPC: "127.0.0.1:12"}}},
			},
			Domains: []Domain{
				{Name: "r", Kind: KindRegional, Shards: 2, TTL: time.Second},
				{Name: "u", Kind: KindUnit, Shards: 1, TTL: time.Second, Pins: []Pin{{Range: Full, Region: "b"}}},
			},
		}
	}
	if err := base().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		change func(f *File)
		want   string
	}{
		{"no global voter", func(f *File) { f.Regions[0].Nodes[0].Global = "" },
			"regions: a file of several regions is a federation and needs at least one global voter"},
		{"bad global address", func(f *File) { f.Regions[1].Nodes[0].Global = "0.0.0.0:4" },
			"regions[1].nodes[0].global: invalid host:port: 0.0.0.0 is a wildcard"},
		{"failover to itself", func(f *File) { f.Regions[1].Failover = []string{"a", "b"} },
			`regions[1].failover[1]: a region cannot fail over to itself`},
		{"failover to nowhere", func(f *File) { f.Regions[1].Failover = []string{""} },
			`regions[1].failover[0]: required: a region of the file (a, b)`},
		{"failover duplicate", func(f *File) { f.Regions[0].Failover = []string{"b", "b"} },
			`regions[0].failover[1]: duplicate region, also regions[0].failover[0] (got "b")`},
		{"domain region unknown", func(f *File) { f.Domains[0].Regions = []string{"b", "c"} },
			`domains[0].regions[1]: unknown region: the file's regions are a, b (got "c")`},
		{"pin region unknown", func(f *File) { f.Domains[1].Pins[0].Region = "z" },
			`domains[1].pins[0].region: unknown region: the file's regions are a, b (got "z")`},
		{"unit pin without range", func(f *File) { f.Domains[1].Pins[0].Range = Range{} },
			"domains[1].pins[0]: a unit domain's pin covers the whole domain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			tt.change(f)
			wantFieldErr(t, f.Validate(), tt.want)
		})
	}
}

func TestUnknownRegionListIsBounded(t *testing.T) {
	f := &File{}
	for i := range 12 {
		f.Regions = append(f.Regions, Region{Name: string(rune('a' + i))})
	}
	got := f.unknownRegion("x", "zz").Error()
	want := `x: unknown region: the file's regions are a, b, c, d, e, f, g, h, i, j, … (12 in all) (got "zz")`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestDomainValidatePlacement(t *testing.T) {
	quarter := Bound{hi: 1 << 62}
	half := Bound{hi: 1 << 63}
	g := func(pins ...Pin) Domain {
		return Domain{Name: "g", Kind: KindGlobal, Shards: 4, TTL: time.Second, Pins: pins}
	}
	tests := []struct {
		name string
		d    Domain
		want []string // nil: valid
	}{
		{"regional in every region", Domain{Name: "r", Kind: KindRegional, Shards: 4, TTL: time.Second}, nil},
		{"regional manual", Domain{Name: "r", Kind: KindRegional, Shards: 4, TTL: time.Second, Regions: []string{"a", "b"}, Failover: FailoverManual}, nil},
		{"regional duplicate region", Domain{Name: "r", Kind: KindRegional, Shards: 4, TTL: time.Second, Regions: []string{"a", "a"}},
			[]string{`regions[1]: duplicate region, also regions[0] (got "a")`}},
		{"regional bad region", Domain{Name: "r", Kind: KindRegional, Shards: 4, TTL: time.Second, Regions: []string{"a b"}},
			[]string{"regions[0]: invalid character ' '"}},
		{"regional pinned", Domain{Name: "r", Kind: KindRegional, Shards: 4, TTL: time.Second, Pins: []Pin{{Range: Full, Region: "a"}}},
			[]string{"pins: a regional domain cannot be pinned"}},
		{"unknown failover", Domain{Name: "r", Kind: KindRegional, Shards: 4, TTL: time.Second, Failover: 7},
			[]string{"failover: unknown failover: want one of auto, manual (got 7)"}},
		{"global with regions", Domain{Name: "g", Kind: KindGlobal, Shards: 4, TTL: time.Second, Regions: []string{"a"}},
			[]string{"regions: only a regional domain has regions"}},
		{"unit with manual failover", Domain{Name: "u", Kind: KindUnit, Shards: 1, TTL: time.Second, Failover: FailoverManual},
			[]string{"failover: only a regional domain has a failover setting"}},
		{"unit pinned", Domain{Name: "u", Kind: KindUnit, Shards: 1, TTL: time.Second, Pins: []Pin{{Range: Full, Region: "a"}}}, nil},
		{"unit pinned twice", Domain{Name: "u", Kind: KindUnit, Shards: 1, TTL: time.Second, Pins: []Pin{{Range: Full, Region: "a"}, {Range: Full, Region: "a"}}},
			[]string{"pins[1]: a unit domain takes at most one pin"}},
		{"unit pin of a part", Domain{Name: "u", Kind: KindUnit, Shards: 1, TTL: time.Second, Pins: []Pin{{Range: Range{From: Start, To: half}, Region: "a"}}},
			[]string{"pins[0]: a unit domain's pin covers the whole domain: its range must be [00000000-0000-0000-0000-000000000000, end) (got [00000000-0000-0000-0000-000000000000, 80000000-0000-0000-0000-000000000000))"}},
		{"global pins", g(Pin{Range: Range{From: half, To: End}, Region: "a"}, Pin{Range: Range{From: Start, To: quarter}, Region: "b"}), nil},
		{"global pin without range", g(Pin{Region: "a"}),
			[]string{"pins[0].to: must be after from 00000000-0000-0000-0000-000000000000"}},
		{"global pin off boundary", g(Pin{Range: Range{From: Bound{hi: 1}, To: End}, Region: "a"}),
			[]string{"pins[0].from: must be a shard boundary", "inside shard 0"}},
		{"global pins overlap", g(Pin{Range: Range{From: quarter, To: End}, Region: "a"}, Pin{Range: Range{From: Start, To: half}, Region: "b"}),
			[]string{"pins[1]: overlaps pins[0]"}},
		{"global pin without region", g(Pin{Range: Full}),
			[]string{"pins[0].region: required: the region that holds the pinned range"}},
		{"pins checked after the existing fields", Domain{Name: "g", Kind: KindGlobal, Shards: 4, Pins: []Pin{{}}},
			[]string{"ttl: must be between"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.d.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantFieldErr(t, err, tt.want...)
		})
	}
}

func TestDomainNormalizeUnitPin(t *testing.T) {
	pins := []Pin{{Region: "a"}}
	d := Domain{Name: "u", Kind: KindUnit, Pins: pins}
	d.Normalize()
	if want := []Pin{{Range: Full, Region: "a"}}; !slices.Equal(d.Pins, want) {
		t.Errorf("Normalize: pins %+v, want %+v", d.Pins, want)
	}
	if pins[0].Range != (Range{}) {
		t.Errorf("Normalize changed the caller's pins in place")
	}
	if err := d.Validate(); err != nil {
		t.Error(err)
	}
	// Other kinds' pins are left for Validate to judge.
	g := Domain{Name: "g", Kind: KindGlobal, Shards: 2, Pins: []Pin{{Region: "a"}}}
	g.Normalize()
	if g.Pins[0].Range != (Range{}) {
		t.Errorf("Normalize filled a global pin: %+v", g.Pins)
	}
}

func TestDomainEqual(t *testing.T) {
	a := Domain{Name: "r", Kind: KindRegional, Shards: 2, TTL: time.Second, Regions: []string{"a"}}
	for _, tt := range []struct {
		b    Domain
		want bool
	}{
		{a, true},
		{Domain{Name: "r", Kind: KindRegional, Shards: 2, TTL: time.Second, Regions: []string{"a"}}, true},
		{Domain{Name: "r", Kind: KindRegional, Shards: 2, TTL: time.Second, Regions: []string{"b"}}, false},
		{Domain{Name: "r", Kind: KindRegional, Shards: 2, TTL: time.Second, Regions: []string{"a"}, Failover: FailoverManual}, false},
		{Domain{Name: "r", Kind: KindRegional, Shards: 2, TTL: time.Second, Regions: []string{"a"}, Pins: []Pin{{Region: "a"}}}, false},
		{Domain{Name: "r", Kind: KindRegional, Shards: 3, TTL: time.Second, Regions: []string{"a"}}, false},
	} {
		if got := a.Equal(tt.b); got != tt.want {
			t.Errorf("%+v.Equal(%+v) = %v", a, tt.b, got)
		}
	}
	if !(Domain{Regions: nil, Pins: nil}).Equal(Domain{Regions: []string{}, Pins: []Pin{}}) {
		t.Errorf("nil and empty slices differ")
	}
}

func TestFailover(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Failover
	}{{"auto", FailoverAuto}, {"AUTO", FailoverAuto}, {"manual", FailoverManual}, {"Manual", FailoverManual}} {
		got, err := ParseFailover(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseFailover(%q) = %v, %v", tt.in, got, err)
		}
		var u Failover
		if err := u.UnmarshalText([]byte(tt.in)); err != nil || u != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, %v", tt.in, u, err)
		}
		if text, _ := got.MarshalText(); string(text) != strings.ToLower(tt.in) {
			t.Errorf("MarshalText(%v) = %q", got, text)
		}
	}
	for _, in := range []string{"", "sometimes", "on"} {
		if _, err := ParseFailover(in); !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "failover: ") || !strings.Contains(err.Error(), "auto, manual") {
			t.Errorf("ParseFailover(%q) = %v", in, err)
		}
		var u Failover = FailoverManual
		if err := u.UnmarshalText([]byte(in)); err == nil || u != FailoverManual {
			t.Errorf("UnmarshalText(%q) = %v, left %v", in, err, u)
		}
	}
	if s := Failover(9).String(); s != "Failover(9)" {
		t.Errorf("Failover(9) = %q", s)
	}
	if (Domain{}).Failover != FailoverAuto {
		t.Errorf("the zero value is not auto")
	}
}

func TestShardAt(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 7, 64, 1000, 65537} {
		rs, err := SplitEven(n)
		if err != nil {
			t.Fatal(err)
		}
		step := max(1, n/50)
		for i := 0; i < n; i += step {
			r := rs[i]
			if s, ok := shardAt(r.From, n); s != i || !ok {
				t.Errorf("n=%d: shardAt(%v) = %d, %v; want %d, true", n, r.From, s, ok, i)
			}
			last := fromBig(t, new(big.Int).Sub(toBig(r.To), big.NewInt(1)))
			wantOK := last == r.From
			if s, ok := shardAt(last, n); s != i || ok != wantOK {
				t.Errorf("n=%d: shardAt(%v) = %d, %v; want %d, %v", n, last, s, ok, i, wantOK)
			}
		}
		if s, ok := shardAt(End, n); s != n || !ok {
			t.Errorf("n=%d: shardAt(End) = %d, %v", n, s, ok)
		}
	}
	// MaxShards without building its million ranges: boundary i is i·2^108.
	for _, i := range []uint64{0, 1, 12345, MaxShards - 1} {
		b := Bound{hi: i << 44}
		if s, ok := shardAt(b, MaxShards); s != int(i) || !ok {
			t.Errorf("MaxShards: shardAt(%v) = %d, %v", b, s, ok)
		}
		if s, ok := shardAt(Bound{hi: i << 44, lo: 1}, MaxShards); s != int(i) || ok {
			t.Errorf("MaxShards: shardAt(%v+1) = %d, %v", b, s, ok)
		}
	}
}

// FuzzShardAt checks shardAt against a binary search of SplitEven(n).
func FuzzShardAt(f *testing.F) {
	f.Add(uint32(3), uint64(0x5555555555555555), uint64(0x5555555555555555))
	f.Add(uint32(3), uint64(0x5555555555555555), uint64(0x5555555555555556))
	f.Add(uint32(7), ^uint64(0), ^uint64(0))
	f.Add(uint32(64), uint64(0x0400000000000000), uint64(0))
	f.Add(uint32(1000), uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, rawN uint32, hi, lo uint64) {
		n := 1 + int(rawN%(1<<12))
		rs, err := SplitEven(n)
		if err != nil {
			t.Fatal(err)
		}
		b := Bound{hi: hi, lo: lo}
		want := FindBound(rs, b)
		s, ok := shardAt(b, n)
		if s != want || ok != (rs[want].From == b) {
			t.Fatalf("shardAt(%v, %d) = %d, %v; SplitEven puts it in %d %v", b, n, s, ok, want, rs[want])
		}
		key, _ := b.Key()
		if Find(rs, uuid.UUID(key)) != s {
			t.Fatalf("Find disagrees")
		}
	})
}
