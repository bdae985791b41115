package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wdsio/wds/internal/celltest"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	"github.com/wdsio/wds/topology"
)

// wdsIn runs the binary with stdin as its standard input.
func wdsIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wdsBin, args...)
	cmd.Env = env()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code := 0
	if err := cmd.Run(); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("wds %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// wantFail checks that r exited 1 with a one-line error on stderr holding
// every one of want, and nothing on stdout.
func wantFail(t *testing.T, what string, r result, want ...string) {
	t.Helper()
	if r.code != 1 {
		t.Errorf("%s: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", what, r.code, r.stdout, r.stderr)
		return
	}
	if !strings.HasPrefix(r.stderr, "wds: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("%s: stderr is not one line starting with \"wds: \":\n%s", what, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("%s: stderr does not say %q:\n%s", what, w, r.stderr)
		}
	}
	if r.stdout != "" {
		t.Errorf("%s: stdout not empty:\n%s", what, r.stdout)
	}
}

// fedFileText is a federation's topology file of 3 regions with global
// voters on ports nothing listens on: enough to validate.
const fedFileText = `regions:
  - name: us-east
    failover: [eu-west]
    nodes:
      - {id: u1, raft: "127.0.0.1:1", grpc: "127.0.0.1:2", global: "127.0.0.1:3"}
  - name: eu-west
    nodes:
      - {id: e1, raft: "127.0.0.1:4", grpc: "127.0.0.1:5", global: "127.0.0.1:6"}
  - name: ap-south
    nodes:
      - {id: a1, raft: "127.0.0.1:7", grpc: "127.0.0.1:8", global: "127.0.0.1:9"}
domains:
  - name: orders
    kind: global
    shards: 4
    pins:
      - {from: 00000000-0000-0000-0000-000000000000, to: 40000000-0000-0000-0000-000000000000, region: us-east}
  - name: scheduler
    kind: unit
`

// TestTopologyValidate: `wds topology validate` checks a file offline and
// counts it; every error names file:line:field and exits 1; plan and
// apply refuse the same files before contacting anyone.
func TestTopologyValidate(t *testing.T) {
	t.Parallel()
	good := writeTopology(t, "wds.yaml", fedFileText)
	if out := mustWDS(t, "topology", "validate", good); out != good+": ok — 3 regions, 2 domains, 3 global voters\n" {
		t.Errorf("validate printed %q", out)
	}
	var v validateJSON
	if err := json.Unmarshal([]byte(mustWDS(t, "topology", "validate", good, "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if v != (validateJSON{File: good, OK: true, Regions: 3, Domains: 2, GlobalVoters: 3, Federation: true}) {
		t.Errorf("validate -o json: %+v", v)
	}
	lone := writeTopology(t, "lone.yaml", "regions:\n  - name: r1\n    nodes:\n      - {id: n1, raft: \"127.0.0.1:1\", grpc: \"127.0.0.1:2\"}\ndomains:\n  - {name: d, kind: unit}\n")
	if out := mustWDS(t, "topology", "validate", lone); out != lone+": ok — 1 region, 1 domain, 0 global voters (a lone cell)\n" {
		t.Errorf("validate of a lone cell printed %q", out)
	}

	bad := func(name, from, to string) string {
		if !strings.Contains(fedFileText, from) {
			t.Fatalf("%q is not in the file", from)
		}
		return writeTopology(t, name, strings.Replace(fedFileText, from, to, 1))
	}
	for _, tc := range []struct {
		name string
		file string
		want []string
	}{
		{"shards", bad("shards.yaml", "shards: 4", "shards: 0"), []string{"shards.yaml:15: domains[0].shards: must be between 1 and 1048576 (got 0)"}},
		{"pin off a shard boundary", bad("pin.yaml", "to: 40000000-", "to: 30000000-"),
			[]string{"pin.yaml:17: domains[0].pins[0].to: must be a shard boundary"}},
		{"typo", bad("typo.yaml", "kind: unit", "knid: unit"), []string{"typo.yaml:19: domains[1].knid: unknown field"}},
		{"failover", bad("failover.yaml", "failover: [eu-west]", "failover: [mars]"), []string{"failover.yaml:3: regions[0].failover[0]: unknown region"}},
		{"pin region", bad("pinregion.yaml", "region: us-east}", "region: mars}"), []string{"pinregion.yaml:17: domains[0].pins[0].region: unknown region"}},
		{"missing", good + ".missing", []string{"wds.yaml.missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantFail(t, "validate", wds(t, "topology", "validate", tc.file), tc.want...)
			// plan and apply stop at the same error: no endpoint is
			// asked (nothing listens on these anyway).
			wantFail(t, "plan", wds(t, "--endpoint=127.0.0.1:1", "topology", "plan", tc.file), tc.want...)
			wantFail(t, "apply", wds(t, "topology", "apply", "--yes", tc.file), tc.want...)
		})
	}
	wantFail(t, "plan of a lone cell's file", wds(t, "--endpoint=127.0.0.1:1", "topology", "plan", lone), lone+": the file has no global voter: it describes a lone cell")
	wantFail(t, "validate without FILE", wds(t, "topology", "validate"), "missing argument: the topology FILE", "(see 'wds topology validate --help')")
	wantFail(t, "show with an argument", wds(t, "topology", "show", "x"), `unexpected argument "x"`)
	wantFail(t, "unknown subcommand", wds(t, "topology", "bogus"), `unknown command "bogus" for "wds topology"`)
}

// fedDomains is the test federation's topology file's domains section.
const fedDomains = `  - name: orders
    kind: global
    shards: 12
    ttl: 2s
  - name: carts
    kind: regional
    shards: 4
    regions: [us-east, eu-west]
    failover: manual
  - name: leader
    kind: unit
    pins: [{region: ap-south}]
`

// TestTopologyFederation: plan, apply, show, status and shards against a
// federation of three regions started from a topology file. The file
// itself plans no change; adding a domain and a pin plans them (with the
// moves); a file only the global group can refuse (a changed shard count)
// and an answer other than yes apply nothing; apply of a good file
// changes the topology, which then plans no change; show prints a
// topology file that parses back to the same regions and domains once
// nodes are added.
func TestTopologyFederation(t *testing.T) {
	f := newTestFed(t, fedDomains)
	ep := f.endpoint(1)

	if out := mustWDS(t, "topology", "validate", f.file); out != f.file+": ok — 3 regions, 3 domains, 3 global voters\n" {
		t.Errorf("validate: %q", out)
	}
	// The file the federation started from: nothing to change, whichever
	// endpoints are asked.
	for _, args := range [][]string{{}, {ep}, {"--endpoint=127.0.0.1:1," + f.grpc[2]}} {
		if out := mustWDS(t, append(args, "topology", "plan", f.file)...); out != f.file+": no changes\n" {
			t.Errorf("plan %v of the unchanged file:\n%s", args, out)
		}
	}
	var plan planJSON
	if err := json.Unmarshal([]byte(mustWDS(t, "topology", "plan", f.file, "-o", "json")), &plan); err != nil {
		t.Fatal(err)
	}
	if plan.Changes || len(plan.DomainsCreated)+len(plan.DomainsChanged)+len(plan.DomainsDeleted)+len(plan.Moves)+len(plan.RegionsAdded)+len(plan.RegionsChanged)+len(plan.RegionsRemoved) != 0 || plan.Moves == nil {
		t.Errorf("plan -o json of the unchanged file: %+v", plan)
	}
	if out := mustWDS(t, "topology", "apply", f.file); out != f.file+": no changes\nnothing to apply\n" {
		t.Errorf("apply of the unchanged file:\n%s", out)
	}

	t.Run("show round trip", func(t *testing.T) { checkShowRoundTrip(t, f, ep) })
	t.Run("status", func(t *testing.T) { checkFedStatus(t, f) })
	t.Run("shards delegated_to", func(t *testing.T) { checkDelegatedTo(t, f) })
	t.Run("failover refused", func(t *testing.T) {
		// carts fails over by hand; us-east renews: refused. The GLOBAL
		// and auto domains, an unknown region and a key space the domain
		// does not have are refused too, each saying why.
		wantFail(t, "failover of a renewing region", wds(t, ep, "failover", "carts", "--region", "us-east", "--to", "eu-west"),
			"FailedPrecondition", "region us-east is renewing its delegations")
		wantFail(t, "failover of a global domain", wds(t, ep, "failover", "orders", "--region", "us-east", "--to", "eu-west"),
			`domain "orders" has no key space of region "us-east"`)
		wantFail(t, "failover to an unknown region", wds(t, ep, "failover", "carts", "--region", "ap-south", "--to", "eu-west"),
			`domain "carts" has no key space of region "ap-south"`)
		wantFail(t, "failover without --to", wds(t, ep, "failover", "carts", "--region", "us-east"), "--to: required: the region to serve the key space")
		// Home is always allowed (nothing to wait for): a no-op here.
		if out := mustWDS(t, ep, "failover", "carts", "--region", "us-east", "--to", "us-east"); !strings.Contains(out, "key space us-east moves home to us-east") {
			t.Errorf("failover home: %q", out)
		}
	})

	// A new domain and a pin.
	grownDomains := strings.Replace(fedDomains, "    ttl: 2s\n",
		"    ttl: 2s\n    pins:\n      - {from: 00000000-0000-0000-0000-000000000000, to: 40000000-0000-0000-0000-000000000000, region: eu-west}\n", 1) +
		"  - {name: prices, kind: global, shards: 4}\n"
	grown := f.writeFile("grown.yaml", grownDomains)
	out := mustWDS(t, "topology", "plan", grown)
	for _, w := range []string{
		"+ prices: global, 4 shards, ttl 10s",
		"~ orders: pins none → [00000000-0000-0000-0000-000000000000, 40000000-0000-0000-0000-000000000000) in eu-west",
		"DOMAIN  KEY SPACE",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("plan of the grown file does not say %q:\n%s", w, out)
		}
	}
	if err := json.Unmarshal([]byte(mustWDS(t, "topology", "plan", grown, "-o", "json")), &plan); err != nil {
		t.Fatal(err)
	}
	if !plan.Changes || len(plan.DomainsCreated) != 1 || plan.DomainsCreated[0].Name != "prices" || plan.DomainsCreated[0].Shards != 4 ||
		len(plan.DomainsChanged) != 1 || plan.DomainsChanged[0].Name != "orders" || len(plan.DomainsChanged[0].Pins) != 1 ||
		plan.DomainsChanged[0].Pins[0] != (pinJSON{From: "00000000-0000-0000-0000-000000000000", To: "40000000-0000-0000-0000-000000000000", Region: "eu-west"}) ||
		len(plan.DomainsDeleted) != 0 {
		t.Errorf("plan -o json of the grown file: %+v", plan)
	}
	// 12 shards spread over 3 regions, 3 of them pinned to eu-west: it
	// ends with 3 pinned plus 3 of the other 9, so some move.
	moved := uint32(0)
	for _, m := range plan.Moves {
		if m.Domain != "orders" || m.Region != "" || m.FromRegion == m.ToRegion || !slices.Contains(f.regions, m.FromRegion) || !slices.Contains(f.regions, m.ToRegion) || m.Shards == 0 {
			t.Errorf("planned move %+v", m)
		}
		moved += m.Shards
	}
	if moved == 0 {
		t.Errorf("pinning a quarter of orders plans no move: %+v", plan.Moves)
	}

	// Only the global group knows that orders exists with 12 shards: the
	// file is valid, and plan and apply refuse it, naming the file, the
	// line and the domain; nothing changes.
	before := f.topology()
	resharded := f.writeFile("resharded.yaml", strings.Replace(fedDomains, "shards: 12", "shards: 16", 1))
	mustWDS(t, "topology", "validate", resharded)
	refused := []string{"FailedPrecondition", resharded + ":12: domains[0]: ", `domain "orders" exists as global, 12 shards, ttl 2s`, "cannot change"}
	wantFail(t, "plan of a resharded domain", wds(t, "topology", "plan", resharded), refused...)
	wantFail(t, "apply of a resharded domain", wds(t, "topology", "apply", "--yes", resharded), refused...)
	// A pin off a shard boundary is caught before anything is sent.
	offPin := f.writeFile("offpin.yaml", strings.Replace(fedDomains, "    ttl: 2s\n",
		"    ttl: 2s\n    pins: [{from: 00000000-0000-0000-0000-000000000000, to: 30000000-0000-0000-0000-000000000000, region: eu-west}]\n", 1))
	wantFail(t, "apply of a pin off a shard boundary", wds(t, "topology", "apply", "--yes", offPin), offPin+":16: domains[0].pins[0].to: must be a shard boundary")
	// No answer, or another answer than yes.
	r := wdsIn(t, "n\n", "topology", "apply", grown)
	if r.code != 1 || !strings.Contains(r.stdout, "+ prices") || !strings.Contains(r.stderr, "apply? [y/N] ") || !strings.Contains(r.stderr, "wds: not applied: the answer was not yes") {
		t.Errorf("apply answered n: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	r = wdsIn(t, "", "topology", "apply", grown)
	if r.code != 1 || !strings.Contains(r.stderr, "wds: not applied: no answer on stdin (--yes applies without asking)") {
		t.Errorf("apply without an answer: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if after := f.topology(); !sameTopology(before, after) {
		t.Errorf("refused applies changed the topology:\nbefore %v\nafter  %v", before, after)
	}

	// Applied: yes on stdin.
	r = wdsIn(t, "yes\n", "topology", "apply", grown)
	if r.code != 0 || !strings.Contains(r.stdout, "+ prices") || !strings.Contains(r.stdout, "applied "+grown+" at global index ") {
		t.Fatalf("apply answered yes: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	after := f.topology()
	if sameTopology(before, after) || len(after.GetDomains()) != 4 {
		t.Errorf("apply did not change the topology: %v", after)
	}
	// (Placement may still be moving the pinned shards: moves alone are
	// no change of the file's.)
	if out := mustWDS(t, "topology", "plan", grown); !strings.HasPrefix(out, grown+": no changes") {
		t.Errorf("plan of the applied file:\n%s", out)
	}

	// Global voters: a node given a global address is added (it joins
	// once started), a node that loses it is removed. Planned only.
	voters := strings.Replace(f.regionsYAML, `global: "`+f.globalAddr("ap-south")+`"}`, "}", 1)
	voters = strings.Replace(voters, "  - name: eu-west\n", `      - {id: us-east-2, raft: "127.0.0.1:1", grpc: "127.0.0.1:2", global: "127.0.0.1:3"}`+"\n  - name: eu-west\n", 1)
	votersFile := writeTopology(t, "voters.yaml", voters+"domains:\n"+grownDomains)
	out = mustWDS(t, "topology", "plan", votersFile)
	for _, w := range []string{"\nGlobal voters:\n", "  + us-east-2 (global 127.0.0.1:3, grpc 127.0.0.1:2): joins the global group once started with this file\n",
		"  - ap-south-1 (global " + f.globalAddr("ap-south") + "): the global leader removes it from the group\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("plan of the voter changes does not say %q:\n%s", w, out)
		}
	}
	var vplan planJSON
	if err := json.Unmarshal([]byte(mustWDS(t, "topology", "plan", votersFile, "-o", "json")), &vplan); err != nil {
		t.Fatal(err)
	}
	if !vplan.Changes || !slices.Equal(vplan.VotersAdded, []string{"us-east-2"}) || !slices.Equal(vplan.VotersRemoved, []string{"ap-south-1"}) {
		t.Errorf("plan -o json of the voter changes: %+v", vplan)
	}

	// A voter moved to another global address is refused, naming the
	// file's field; so is a file that keeps none of the group's voters.
	movedVoter := strings.Replace(f.regionsYAML, `global: "`+f.globalAddr("us-east")+`"`, `global: "127.0.0.1:4"`, 1)
	movedFile := writeTopology(t, "moved.yaml", movedVoter+"domains:\n"+grownDomains)
	wantFail(t, "plan of a moved voter", wds(t, "topology", "plan", movedFile),
		"FailedPrecondition", movedFile+":4: regions[0].nodes[0].global: voter \"us-east-1\" is in the global group at "+f.globalAddr("us-east"), "cannot change")
	swapped := f.regionsYAML
	for _, r := range f.regions {
		swapped = strings.Replace(swapped, `global: "`+f.globalAddr(r)+`"}`, "}", 1)
	}
	swapped = strings.Replace(swapped, "  - name: eu-west\n", `      - {id: us-east-2, raft: "127.0.0.1:1", grpc: "127.0.0.1:2", global: "127.0.0.1:3"}`+"\n  - name: eu-west\n", 1)
	swappedFile := writeTopology(t, "swapped.yaml", swapped+"domains:\n"+grownDomains)
	wantFail(t, "apply of a file that keeps no voter", wds(t, "--endpoint", f.grpc[0], "topology", "apply", "--yes", swappedFile),
		"FailedPrecondition", "keeps none of the voters in the global group's configuration (")

	// A region's failover order and a domain left out, applied with --yes.
	regions := strings.Replace(f.regionsYAML, "  - name: us-east\n", "  - name: us-east\n    failover: [ap-south]\n", 1)
	shrunk := writeTopology(t, "shrunk.yaml", regions+"domains:\n"+strings.Replace(fedDomains, "  - name: leader\n    kind: unit\n    pins: [{region: ap-south}]\n", "", 1))
	out = mustWDS(t, "topology", "plan", shrunk)
	for _, w := range []string{"~ us-east: failover eu-west, ap-south → ap-south", "- leader (starts deleting", "- prices (starts deleting", "~ orders: pins [00000000-0000-0000-0000-000000000000, 40000000-0000-0000-0000-000000000000) in eu-west → none"} {
		if !strings.Contains(out, w) {
			t.Errorf("plan of the shrunk file does not say %q:\n%s", w, out)
		}
	}
	var applied applyJSON
	if err := json.Unmarshal([]byte(mustWDS(t, "topology", "apply", shrunk, "--yes", "-o", "json")), &applied); err != nil {
		t.Fatal(err)
	}
	if !applied.Applied || applied.Index <= after.GetIndex() || !slices.Equal(applied.Plan.RegionsChanged, []string{"us-east"}) || !slices.Equal(applied.Plan.DomainsDeleted, []string{"leader", "prices"}) {
		t.Errorf("apply -o json: %+v", applied)
	}
	if out := mustWDS(t, "topology", "plan", shrunk); !strings.HasPrefix(out, shrunk+": no changes") {
		t.Errorf("plan of the applied shrunk file:\n%s", out)
	}
	if out := mustWDS(t, ep, "topology", "show"); !regexp.MustCompile(`\n  - name: us-east # global voters: us-east-1 \(grpc [0-9.:]+, global [0-9.:]+\)\n    failover: \[ap-south\]\n`).MatchString(out) || strings.Contains(out, "name: prices") {
		t.Errorf("show after apply:\n%s", out)
	}

	// wds domain create with placement flags, through a region's cell.
	var created domainJSON
	if err := json.Unmarshal([]byte(mustWDS(t, f.endpoint(0), "-o", "json", "domain", "create", "baskets", "--kind", "regional", "--shards", "2", "--regions", "us-east", "--failover", "manual")), &created); err != nil {
		t.Fatal(err)
	}
	if created.Name != "baskets" || created.Kind != "regional" || !slices.Equal(created.Regions, []string{"us-east"}) || created.Failover != "manual" {
		t.Errorf("domain create --regions --failover: %+v", created)
	}
	// The cell handed it to the global group, which checks the regions.
	var baskets *topology.Domain
	for _, d := range f.topology().GetDomains() {
		if d.GetName() == "baskets" {
			spec, err := topology.DomainFromProto(d)
			if err != nil {
				t.Fatal(err)
			}
			baskets = &spec
		}
	}
	if baskets == nil || !slices.Equal(baskets.Regions, []string{"us-east"}) || baskets.Failover != topology.FailoverManual {
		t.Errorf("the global group's baskets: %+v", baskets)
	}
	wantFail(t, "domain create in an unknown region", wds(t, f.endpoint(2), "domain", "create", "b2", "--kind", "regional", "--shards", "2", "--regions", "us-east,mars"),
		`wds: InvalidArgument: --regions "mars": unknown region`)
	if out := mustWDS(t, "topology", "plan", shrunk); !strings.Contains(out, "- baskets (starts deleting") {
		t.Errorf("plan of a file without a domain created since:\n%s", out)
	}
}

// sameTopology compares regions and domains (not the index, which
// placement moves on).
func sameTopology(a, b *globalv1.GetTopologyResponse) bool {
	return proto.Equal(&globalv1.GetTopologyResponse{Regions: a.GetRegions(), Domains: a.GetDomains()},
		&globalv1.GetTopologyResponse{Regions: b.GetRegions(), Domains: b.GetDomains()})
}

// checkShowRoundTrip: `wds topology show` prints the file's regions and
// domains as a topology file, which parses back to them once each region
// gets its nodes; -o json says the same.
func checkShowRoundTrip(t *testing.T, f *testFed, ep string) {
	out := mustWDS(t, ep, "topology", "show")
	if !strings.HasPrefix(out, "# The global group's topology at global index ") || !strings.Contains(out, "# The global state knows only the global voters") ||
		!strings.Contains(out, "name: us-east # global voters: us-east-1 (grpc "+f.grpc[0]+", global ") {
		t.Errorf("show has no header comment:\n%s", out)
	}
	if _, err := topology.Parse("show.yaml", []byte(out)); err == nil || !strings.Contains(err.Error(), "regions[0].nodes: required") {
		t.Errorf("show without nodes parses: %v", err)
	}
	// Add the nodes of the file's regions.
	var fileDoc, showDoc yaml.Node
	if err := yaml.Unmarshal([]byte(f.regionsYAML), &fileDoc); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(out), &showDoc); err != nil {
		t.Fatalf("show is not YAML: %v\n%s", err, out)
	}
	nodes := map[string]*yaml.Node{}
	for _, r := range mappingValue(fileDoc.Content[0], "regions").Content {
		nodes[mappingValue(r, "name").Value] = mappingValue(r, "nodes")
	}
	for _, r := range mappingValue(showDoc.Content[0], "regions").Content {
		name := mappingValue(r, "name").Value
		r.Content = append(r.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "nodes"}, nodes[name])
	}
	data, err := yaml.Marshal(&showDoc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := topology.Parse("show.yaml", data)
	if err != nil {
		t.Fatalf("show with nodes added does not parse: %v\n%s", err, data)
	}
	want, err := topology.Load(f.file)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Regions) != len(want.Regions) {
		t.Fatalf("show has %d regions, the file %d", len(got.Regions), len(want.Regions))
	}
	for i, r := range want.Regions {
		if got.Regions[i].Name != r.Name || !slices.Equal(got.FailoverOf(r.Name), want.FailoverOf(r.Name)) {
			t.Errorf("region %d: show %+v, file %+v", i, got.Regions[i], r)
		}
	}
	byName := map[string]topology.Domain{}
	for _, d := range got.Domains {
		byName[d.Name] = d
	}
	for _, d := range want.Domains {
		if !byName[d.Name].Equal(d) {
			t.Errorf("domain %s: show %+v, file %+v", d.Name, byName[d.Name], d)
		}
	}
	if len(got.Domains) != len(want.Domains) {
		t.Errorf("show has %d domains, the file %d", len(got.Domains), len(want.Domains))
	}

	var tj topologyJSON
	if err := json.Unmarshal([]byte(mustWDS(t, ep, "topology", "show", "-o", "json")), &tj); err != nil {
		t.Fatal(err)
	}
	cur := f.topology()
	if len(tj.Regions) != 3 || tj.Regions[0].Name != "us-east" || !slices.Equal(tj.Regions[0].Failover, cur.GetRegions()[0].GetFailover()) || len(tj.Domains) != len(cur.GetDomains()) {
		t.Errorf("show -o json: %+v", tj)
	}
	for _, d := range tj.Domains {
		switch d.Name {
		case "carts":
			if d.Kind != "regional" || d.Shards != 4 || !slices.Equal(d.Regions, []string{"us-east", "eu-west"}) || d.Failover != "manual" || d.Pins != nil {
				t.Errorf("show -o json: %+v", d)
			}
		case "leader":
			if d.Kind != "unit" || len(d.Pins) != 1 || d.Pins[0] != (pinJSON{Region: "ap-south"}) {
				t.Errorf("show -o json: %+v", d)
			}
		case "orders":
			if d.Kind != "global" || d.Shards != 12 || d.TTL != "2s" || d.Regions != nil || d.Failover != "" {
				t.Errorf("show -o json: %+v", d)
			}
		}
	}
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return &yaml.Node{}
}

// checkFedStatus: `wds status` on a federation node adds the global
// group: voters, leader, regions renewing, delegations.
func checkFedStatus(t *testing.T, f *testFed) {
	var st statusJSON
	celltest.Eventually(t, 20*time.Second, func() error {
		st = statusJSON{}
		if err := json.Unmarshal([]byte(mustWDS(t, f.endpoint(0), "status", "-o", "json")), &st); err != nil {
			return err
		}
		g := st.Global
		if g == nil {
			return fmt.Errorf("no global object")
		}
		if len(g.Voters) != 3 || g.Leader == "" || g.RegionsFrom != g.Leader || len(g.Regions) != 3 {
			return fmt.Errorf("global %+v", g)
		}
		for _, r := range g.Regions {
			if !r.Renewing || r.LastRenewalAgoMillis < 0 || r.LastRenewalAgo == "" || r.CellLeader != fedNode(r.Name) || r.RenewingForMillis < 0 || r.RenewingFor == "" || len(r.Away) != 0 || len(r.ServingForOthers) != 0 {
				return fmt.Errorf("region %+v", r)
			}
		}
		// orders over the three regions, carts in two, leader in one.
		holders := map[string]bool{}
		for _, d := range g.Delegations {
			if len(d.Ranges) == 0 || d.ExpiresInMillis <= 0 || d.ExpiresIn == "" || !slices.Contains(f.regions, d.Holder) {
				return fmt.Errorf("delegation %+v", d)
			}
			holders[d.Domain+"/"+d.Region+"@"+d.Holder] = true
		}
		for _, w := range []string{"orders/@us-east", "orders/@eu-west", "orders/@ap-south", "carts/us-east@us-east", "carts/eu-west@eu-west", "leader/@ap-south"} {
			if !holders[w] {
				return fmt.Errorf("no delegation %s: %v", w, holders)
			}
		}
		return nil
	})
	if st.Node != fedNode("us-east") || st.Global.Node != fedNode("us-east") {
		t.Errorf("status of %s: node %s, global node %s", f.grpc[0], st.Node, st.Global.Node)
	}
	out := mustWDS(t, f.endpoint(0), "status")
	for _, w := range []string{"\nGlobal group (voter us-east-1, ", "\nLeader:   " + st.Global.Leader + " (", "VOTER       REGION    RAFT", "\nap-south-1  ", "REGION    CELL LEADER  RENEWING  ", "\nus-east   us-east-1    yes, for ",
		"DOMAIN  KEY SPACE  HOLDER    GENERATION  RANGES  WITHDRAWING  EXPIRES IN", "\ncarts   us-east    us-east   "} {
		if !strings.Contains(out, w) {
			t.Errorf("status does not say %q:\n%s", w, out)
		}
	}
}

// checkDelegatedTo: in a federation `wds shards -o json` lists every
// shard federation-wide from any endpoint, each naming the region holding
// its delegation, and every endpoint says the same.
func checkDelegatedTo(t *testing.T, f *testFed) {
	holders := func(i int) (map[string]string, error) {
		out := map[string]string{}
		for _, s := range shardsJSON(t, f.endpoint(i), "orders") {
			if s.DelegatedTo == nil || *s.DelegatedTo == "" {
				return nil, fmt.Errorf("%s: shard %+v names no delegation holder", f.regions[i], s)
			}
			out[s.Region+"/"+s.From] = *s.DelegatedTo
		}
		return out, nil
	}
	celltest.Eventually(t, 20*time.Second, func() error {
		first, err := holders(0)
		if err != nil {
			return err
		}
		if len(first) == 0 {
			return fmt.Errorf("%s lists no shard of orders", f.regions[0])
		}
		for i := 1; i < len(f.regions); i++ {
			h, err := holders(i)
			if err != nil {
				return err
			}
			if !maps.Equal(h, first) {
				return fmt.Errorf("%s's shard map says %v, %s's %v", f.regions[i], h, f.regions[0], first)
			}
		}
		return nil
	})
	// A REGIONAL domain: every key space listed, each held by its region
	// (4 shards per region with a key space of carts).
	shards := shardsJSON(t, f.endpoint(0), "carts")
	perRegion := map[string]int{}
	for _, s := range shards {
		if s.DelegatedTo == nil || *s.DelegatedTo != s.Region {
			t.Errorf("carts shard %+v of key space %s delegated to %v", s, s.Region, s.DelegatedTo)
		}
		perRegion[s.Region]++
	}
	if perRegion["us-east"] != 4 {
		t.Errorf("us-east's endpoint lists carts shards per key space %v", perRegion)
	}
	// The table stays as it is.
	if out := mustWDS(t, f.endpoint(0), "shards", "orders"); strings.Contains(out, "DELEGATED") || !strings.HasPrefix(out, "FROM ") {
		t.Errorf("shards table:\n%s", out)
	}
}

// TestTopologyLoneCell: a lone cell has no global voter: the topology
// commands say so and exit 1; status and shards print what they always
// did, without a global section or delegated_to.
func TestTopologyLoneCell(t *testing.T) {
	t.Parallel()
	c := celltest.New(t, 1)
	ep := "--endpoint=" + c.Endpoints()[0]
	c.CreateDomain("tiles", topology.KindGlobal, 4, 2*time.Second)
	noVoter := []string{"wds: --endpoint: no global voter among the endpoints (is this a lone cell? topology commands need a federation): " + c.Endpoints()[0] + ": not a global voter"}
	wantFail(t, "show", wds(t, ep, "topology", "show"), noVoter...)
	fed := writeTopology(t, "wds.yaml", fedFileText)
	wantFail(t, "plan", wds(t, ep, "topology", "plan", fed), noVoter...)
	wantFail(t, "apply", wds(t, ep, "topology", "apply", "--yes", fed), noVoter...)
	// An unreachable endpoint is skipped; with only those, it says so.
	wantFail(t, "show through a dead endpoint", wds(t, "--endpoint=127.0.0.1:1,"+c.Endpoints()[0], "topology", "show"),
		"127.0.0.1:1: unreachable", c.Endpoints()[0]+": not a global voter", "is this a lone cell?")
	wantFail(t, "plan of the file's voters", wds(t, "topology", "plan", fed), "Unavailable: cannot reach the global group ("+fed+"'s global voters): 127.0.0.1:2: unreachable")

	out := mustWDS(t, ep, "status")
	if strings.Contains(out, "Global") || !strings.HasSuffix(out, "ok\n") {
		t.Errorf("lone cell's status:\n%s", out)
	}
	if out := mustWDS(t, ep, "status", "-o", "json"); strings.Contains(out, `"global"`) {
		t.Errorf("lone cell's status -o json:\n%s", out)
	}
	if out := mustWDS(t, ep, "shards", "tiles", "-o", "json"); strings.Contains(out, "delegated_to") || !strings.Contains(out, `"from"`) {
		t.Errorf("lone cell's shards -o json:\n%s", out)
	}
}

// TestTopologyHelp: every topology command has --help with examples.
func TestTopologyHelp(t *testing.T) {
	t.Parallel()
	for _, sub := range []string{"", "validate", "plan", "apply", "show"} {
		args := []string{"topology"}
		if sub != "" {
			args = append(args, sub)
		}
		out := mustWDS(t, append(args, "--help")...)
		if !strings.Contains(out, "Examples:") || !strings.Contains(out, "wds topology "+sub) {
			t.Errorf("wds %s --help:\n%s", strings.Join(args, " "), out)
		}
	}
	if out := mustWDS(t, "--help"); !strings.Contains(out, "topology") {
		t.Errorf("wds --help does not list topology:\n%s", out)
	}
}

// TestConfirm: only y or yes (any case) confirms.
func TestConfirm(t *testing.T) {
	for in, want := range map[string]bool{"y\n": true, "YES\n": true, " yes \n": true, "y": true, "n\n": false, "\n": false, "yep\n": false, "no\n": false} {
		var w strings.Builder
		got, err := confirm(strings.NewReader(in), &w, "apply? [y/N] ")
		if err != nil || got != want || w.String() != "apply? [y/N] " {
			t.Errorf("confirm(%q) = %v, %v (asked %q), want %v", in, got, err, w.String(), want)
		}
	}
	if ok, err := confirm(strings.NewReader(""), &strings.Builder{}, "? "); ok || err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("confirm without an answer: %v, %v", ok, err)
	}
}

// TestLocateField: the global group's field paths point into the file.
func TestLocateField(t *testing.T) {
	data := []byte(fedFileText)
	for _, tc := range []struct {
		field, want string
		line        int
	}{
		{"domains[0]", "domains[0]", 13},
		{"domains[0].shards", "domains[0].shards", 15},
		{"domains[0].pins[0].range.from", "domains[0].pins[0].from", 17},
		{"domains[1].ttl_millis", "domains[1].ttl", 18}, // absent: its domain's line
		{"regions[0].failover[0]", "regions[0].failover[0]", 3},
		{"regions[2]", "regions[2]", 9},
		{"domains[7].shards", "domains[7].shards", 12}, // no such domain: the list
	} {
		line, field := locateField(data, tc.field)
		if line != tc.line || field != tc.want {
			t.Errorf("locateField(%s) = %d, %s; want %d, %s", tc.field, line, field, tc.line, tc.want)
		}
	}
}
