package topology

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const exampleFile = `# example
regions:
  - name: local            # region name, same rules as domain names
    nodes:
      - id: n1             # node id (consumer-id rules)
        raft: 127.0.0.1:7200   # host:port, Raft transport
        grpc: 127.0.0.1:7100   # host:port, client/admin endpoint
        http: 127.0.0.1:7300   # host:port, optional: /metrics /healthz /readyz
  - name: eu-west
    nodes:
      - {id: e1, raft: "e1.wds.internal:7200", grpc: "e1.wds.internal:7100", global: "e1.wds.internal:7400"}
      - {id: e2, raft: "[fd00::2]:7200", grpc: "[fd00::2]:7100", http: "0.0.0.0:7300"}
domains:
  - name: orders
    kind: global            # unit | global | regional
    shards: 64              # default 1 for unit, required otherwise
    ttl: 10s                # Go duration, default 10s
  - name: leader
    kind: UNIT
  - name: carts
    kind: regional
    shards: 1048576
    ttl: 1m30s
`

func TestParseExample(t *testing.T) {
	f, err := Parse("topo.yaml", []byte(exampleFile))
	if err != nil {
		t.Fatal(err)
	}
	want := &File{
		Regions: []Region{
			{Name: "local", Nodes: []Node{{ID: "n1", Raft: "127.0.0.1:7200", GRPC: "127.0.0.1:7100", HTTP: "127.0.0.1:7300"}}},
			{Name: "eu-west", Nodes: []Node{
				{ID: "e1", Raft: "e1.wds.internal:7200", GRPC: "e1.wds.internal:7100", Global: "e1.wds.internal:7400"},
				{ID: "e2", Raft: "[fd00::2]:7200", GRPC: "[fd00::2]:7100", HTTP: "0.0.0.0:7300"},
			}},
		},
		Domains: []Domain{
			{Name: "orders", Kind: KindGlobal, Shards: 64, TTL: 10 * time.Second},
			{Name: "leader", Kind: KindUnit, Shards: 1, TTL: DefaultTTL},
			{Name: "carts", Kind: KindRegional, Shards: MaxShards, TTL: 90 * time.Second, Regions: []string{"local", "eu-west"}},
		},
	}
	if !equalFiles(f, want) {
		t.Fatalf("Parse = %+v\nwant %+v", f, want)
	}
	if err := f.Validate(); err != nil {
		t.Errorf("Validate() of a parsed file = %v", err)
	}

	r, ok := f.Region("eu-west")
	if !ok || r.Name != "eu-west" || len(r.Nodes) != 2 {
		t.Errorf("Region(eu-west) = %+v, %v", r, ok)
	}
	if _, ok := f.Region("nowhere"); ok {
		t.Errorf("Region(nowhere) found")
	}
	r, n, ok := f.Node("e2")
	if !ok || r.Name != "eu-west" || n.Raft != "[fd00::2]:7200" {
		t.Errorf("Node(e2) = %+v, %+v, %v", r, n, ok)
	}
	if _, _, ok := f.Node("zz"); ok {
		t.Errorf("Node(zz) found")
	}
	// The lookups return pointers into f, so callers can annotate in place.
	n.HTTP = "127.0.0.1:1"
	if f.Regions[1].Nodes[1].HTTP != "127.0.0.1:1" {
		t.Errorf("Node does not point into the file")
	}
}

func equalFiles(a, b *File) bool {
	if len(a.Regions) != len(b.Regions) || len(a.Domains) != len(b.Domains) {
		return false
	}
	for i := range a.Regions {
		ra, rb := a.Regions[i], b.Regions[i]
		if ra.Name != rb.Name || len(ra.Nodes) != len(rb.Nodes) || !slices.Equal(ra.Failover, rb.Failover) {
			return false
		}
		for j := range ra.Nodes {
			if ra.Nodes[j] != rb.Nodes[j] {
				return false
			}
		}
	}
	for i := range a.Domains {
		if !a.Domains[i].Equal(b.Domains[i]) {
			return false
		}
	}
	return true
}

func TestParseEdgeCasesValid(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"no domains", "regions:\n  - name: r\n    nodes:\n      - {id: n, raft: 'h:1', grpc: 'h:2'}\n"},
		{"null domains", "regions:\n  - name: r\n    nodes:\n      - {id: n, raft: 'h:1', grpc: 'h:2'}\ndomains:\n"},
		{"seven nodes", "regions:\n  - name: r\n    nodes:\n" + nodes(7)},
		{"document marker", "---\nregions:\n  - name: r\n    nodes:\n      - {id: n, raft: 'h:1', grpc: 'h:2'}\n"},
		{"crlf", "regions:\r\n  - name: r\r\n    nodes:\r\n      - {id: n, raft: 'h:1', grpc: 'h:2'}\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse("t.yaml", []byte(tt.in)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// nodes returns n node entries with distinct ids and addresses.
func nodes(n int) string {
	var b strings.Builder
	for i := range n {
		p := strconv.Itoa(i)
		b.WriteString("      - {id: n" + p + ", raft: 'h:1" + p + "', grpc: 'h:2" + p + "'}\n")
	}
	return b.String()
}

// prelude is a valid first region (lines 1-5) for inputs that test domains.
const prelude = `regions:
  - name: r
    nodes:
      - {id: n1, raft: "10.0.0.1:7200", grpc: "10.0.0.1:7100"}
domains:
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		line  int    // 0: no line expected
		field string // "" for errors of the file as a whole
		want  []string
	}{
		{"empty", "", 0, "", []string{"empty topology file"}},
		{"comments only", "# nothing\n", 0, "", []string{"empty topology file"}},
		{"null document", "---\n", 2, "", []string{"empty topology file"}},
		{"list root", "- a\n- b\n", 1, "", []string{"top level must be a mapping", "not a list"}},
		{"scalar root", "hello\n", 1, "", []string{"top level must be a mapping", `not the value "hello"`}},
		{"two documents", prelude + "---\nregions: []\n", 6, "", []string{"one YAML document"}},
		{"syntax in second document", prelude + "--- [\n", 6, "", []string{"invalid YAML"}},
		{"bad indentation", "regions:\n  - name: local\n    nodes:\n      - id: n1\n        raft: 127.0.0.1:7200\n       grpc: 127.0.0.1:7100\n", 3, "", []string{"invalid YAML: did not find expected '-' indicator"}},
		{"bad indentation of a field", prelude + "  - name: orders\n    kind: global\n   shards: 4\n", 5, "", []string{"invalid YAML"}},
		{"tab indentation", "regions:\n\t- name: r\n", 2, "", []string{"invalid YAML: found character that cannot start any token"}},
		{"unknown top field", prelude + "region: x\n", 6, "region", []string{"unknown field; known fields here: regions, domains"}},
		{"unknown node field", "regions:\n  - name: r\n    nodes:\n      - id: n1\n        rafts: 10.0.0.1:7200\n", 5, "regions[0].nodes[0].rafts", []string{"unknown field; known fields here: id, raft, grpc, http"}},
		{"unknown domain field", prelude + "  - name: orders\n    kind: global\n    shards: 4\n    replicas: 3\n", 9, "domains[0].replicas", []string{"known fields here: name, kind, shards, ttl"}},
		{"duplicate key", prelude + "  - name: orders\n    kind: global\n    kind: unit\n", 8, "domains[0].kind", []string{"duplicate field (first at line 7)"}},
		{"bad duration", prelude + "  - name: orders\n    kind: global\n    shards: 4\n    ttl: 10 seconds\n", 9, "domains[0].ttl", []string{"must be a duration with a unit", `got "10 seconds"`}},
		{"duration without unit", prelude + "  - name: orders\n    kind: global\n    shards: 4\n    ttl: 10\n", 9, "domains[0].ttl", []string{"must be a duration", `got "10"`}},
		{"ttl 500ms", prelude + "  - name: orders\n    kind: global\n    shards: 4\n    ttl: 500ms\n", 9, "domains[0].ttl", []string{"must be between 1s and 24h0m0s", "got 500ms"}},
		{"ttl zero", prelude + "  - name: orders\n    kind: global\n    shards: 4\n    ttl: 0s\n", 9, "domains[0].ttl", []string{"must be between 1s", "got 0s"}},
		{"ttl 25h", prelude + "  - name: orders\n    kind: global\n    shards: 4\n    ttl: 25h\n", 9, "domains[0].ttl", []string{"must be between 1s and 24h0m0s", "got 25h0m0s"}},
		{"shards 0", prelude + "  - name: orders\n    kind: global\n    shards: 0\n", 8, "domains[0].shards", []string{"must be between 1 and 1048576", "got 0"}},
		{"shards 1048577", prelude + "  - name: orders\n    kind: global\n    shards: 1048577\n", 8, "domains[0].shards", []string{"must be between 1 and 1048576", "got 1048577"}},
		{"shards huge", prelude + "  - name: orders\n    kind: global\n    shards: 99999999999999999999999\n", 8, "domains[0].shards", []string{"must be a whole number"}},
		{"shards text", prelude + "  - name: orders\n    kind: global\n    shards: many\n", 8, "domains[0].shards", []string{"must be a whole number", `got "many"`}},
		{"shards quoted", prelude + "  - name: orders\n    kind: global\n    shards: \"4\"\n", 8, "domains[0].shards", []string{"must be a whole number", `got "4"`}},
		{"shards missing", prelude + "  - name: orders\n    kind: global\n", 6, "domains[0].shards", []string{"required for global domains"}},
		{"unit shards 2", prelude + "  - name: leader\n    kind: unit\n    shards: 2\n", 8, "domains[0].shards", []string{"must be 1 for a unit domain", "got 2"}},
		{"unknown kind", prelude + "  - name: orders\n    kind: planetary\n    shards: 4\n", 7, "domains[0].kind", []string{"unknown kind: want one of unit, global, regional", `got "planetary"`}},
		{"missing kind", prelude + "  - name: orders\n    shards: 4\n", 6, "domains[0].kind", []string{"required: one of unit, global, regional"}},
		{"bad domain name", prelude + "  - name: Orders\n    kind: global\n    shards: 4\n", 6, "domains[0].name", []string{"must start with a lowercase", `got "Orders"`}},
		{"duplicate domain", prelude + "  - {name: a, kind: unit}\n  - {name: b, kind: unit}\n  - {name: a, kind: unit}\n", 8, "domains[2].name", []string{"duplicate domain name, also domains[0].name", `got "a"`}},
		{"domain not a mapping", prelude + "  - orders\n", 6, "domains[0]", []string{"must be a mapping with fields name, kind, shards, ttl", `not the value "orders"`}},
		{"domains not a list", "regions:\n  - name: r\n    nodes:\n      - {id: n1, raft: 'h:1', grpc: 'h:2'}\ndomains: {a: 1}\n", 5, "domains", []string{"must be a list, not a mapping"}},
		{"no regions", "domains: []\n", 1, "regions", []string{"required: at least one region"}},
		{"empty regions", "regions: []\n", 1, "regions", []string{"required: at least one region"}},
		{"region without nodes", "regions:\n  - name: r\n", 2, "regions[0].nodes", []string{"required: a region needs at least one node"}},
		{"region with null nodes", "regions:\n  - name: r\n    nodes:\n", 3, "regions[0].nodes", []string{"required: a region needs at least one node"}},
		{"eight nodes", "regions:\n  - name: r\n    nodes:\n" + nodes(8), 3, "regions[0].nodes", []string{"at most 7 nodes per region", "got 8 nodes"}},
		{"bad region name", "regions:\n  - name: us east\n    nodes:\n      - {id: n1, raft: 'h:1', grpc: 'h:2'}\n", 2, "regions[0].name", []string{"invalid character ' '", `got "us east"`}},
		{"missing region name", "regions:\n  - nodes:\n      - {id: n1, raft: 'h:1', grpc: 'h:2'}\n", 2, "regions[0].name", []string{"required"}},
		{"duplicate region", "regions:\n  - name: r\n    nodes:\n      - {id: n1, raft: 'h:1', grpc: 'h:2'}\n  - name: r\n    nodes:\n      - {id: n2, raft: 'h:3', grpc: 'h:4'}\n", 5, "regions[1].name", []string{"duplicate region name, also regions[0].name", `got "r"`}},
		{"duplicate node id", "regions:\n  - name: a\n    nodes:\n      - {id: n1, raft: 'h:1', grpc: 'h:2'}\n  - name: b\n    nodes:\n      - {id: n1, raft: 'h:3', grpc: 'h:4'}\n", 7, "regions[1].nodes[0].id", []string{"duplicate node id, also regions[0].nodes[0].id", `got "n1"`}},
		{"bad node id", "regions:\n  - name: a\n    nodes:\n      - id: n 1\n        raft: h:1\n        grpc: h:2\n", 4, "regions[0].nodes[0].id", []string{"invalid character ' '", `got "n 1"`}},
		{"bad address", "regions:\n  - name: r\n    nodes:\n      - id: n1\n        raft: x\n        grpc: h:2\n", 5, "regions[0].nodes[0].raft", []string{"invalid host:port: missing port in address", `got "x"`}},
		{"address without host", "regions:\n  - name: r\n    nodes:\n      - id: n1\n        raft: :7200\n        grpc: h:2\n", 5, "regions[0].nodes[0].raft", []string{"the host is missing", `got ":7200"`}},
		{"wildcard raft", "regions:\n  - name: r\n    nodes:\n      - id: n1\n        raft: 0.0.0.0:7200\n        grpc: h:2\n", 5, "regions[0].nodes[0].raft", []string{"wildcard that nobody can dial", `got "0.0.0.0:7200"`}},
		{"bad port", "regions:\n  - name: r\n    nodes:\n      - id: n1\n        raft: h:1\n        grpc: h:70000\n", 6, "regions[0].nodes[0].grpc", []string{"the port must be a number from 1 to 65535", `got "h:70000"`}},
		{"named port", "regions:\n  - name: r\n    nodes:\n      - id: n1\n        raft: h:1\n        grpc: h:http\n", 6, "regions[0].nodes[0].grpc", []string{"the port must be a number"}},
		{"bad host", "regions:\n  - name: r\n    nodes:\n      - id: n1\n        raft: h:1\n        grpc: h:2\n        http: a..b:3\n", 7, "regions[0].nodes[0].http", []string{`"a..b" is neither an IP address nor a host name`}},
		{"missing grpc", "regions:\n  - name: r\n    nodes:\n      - id: n1\n        raft: h:1\n", 4, "regions[0].nodes[0].grpc", []string{"required: host:port"}},
		{"duplicate address", "regions:\n  - name: r\n    nodes:\n      - {id: n1, raft: 'h:1', grpc: 'h:2'}\n      - {id: n2, raft: 'H:01', grpc: 'h:3'}\n", 5, "regions[0].nodes[1].raft", []string{"address already used by regions[0].nodes[0].raft", `got "H:01"`}},
		{"duplicate address across kinds", "regions:\n  - name: r\n    nodes:\n      - {id: n1, raft: 'h:1', grpc: 'h:2', http: 'h:1'}\n", 4, "regions[0].nodes[0].http", []string{"address already used by regions[0].nodes[0].raft"}},
		{"node not a mapping", "regions:\n  - name: r\n    nodes:\n      - n1\n", 4, "regions[0].nodes[0]", []string{"must be a mapping with fields id, raft, grpc, http"}},
		{"nodes not a list", "regions:\n  - name: r\n    nodes: n1\n", 3, "regions[0].nodes", []string{"must be a list"}},
		{"name not a scalar", "regions:\n  - name: [a]\n", 2, "regions[0].name", []string{"must be a single value, not a list"}},
		{"alias", "regions: &r\n  - name: r\n    nodes:\n      - {id: n1, raft: 'h:1', grpc: 'h:2'}\ndomains: *r\n", 5, "", []string{"aliases are not supported", "got *r"}},
		{"complex key", "? [a]\n: 1\n", 1, "", []string{"field names must be plain strings"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("topo.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", f)
			}
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error %q (%T) is not a *FileError", err, err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not match ErrInvalid", err)
			}
			if fe.File != "topo.yaml" || fe.Line != tt.line || fe.Field != tt.field {
				t.Errorf("error %q at %s:%d field %q, want line %d field %q", err, fe.File, fe.Line, fe.Field, tt.line, tt.field)
			}
			prefix := "topo.yaml"
			if tt.line > 0 {
				prefix += ":" + strconv.Itoa(tt.line)
			}
			prefix += ": "
			if tt.field != "" {
				prefix += tt.field + ": "
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	data := make([]byte, MaxFileSize+1)
	_, err := Parse("big.yaml", data)
	if err == nil || !strings.HasPrefix(err.Error(), "big.yaml: file too large") || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Parse(huge) = %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte(exampleFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(prelude+"  - name: x\n    kind: unit\n    ttl: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(good)
	if err != nil || len(f.Domains) != 3 {
		t.Fatalf("Load(good) = %+v, %v", f, err)
	}
	_, err = Load(bad)
	if want := bad + ":8: domains[0].ttl: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Load(bad) = %v, want prefix %q", err, want)
	}
	missing := filepath.Join(dir, "missing.yaml")
	_, err = Load(missing)
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestFileValidate(t *testing.T) {
	// A File built in code (as wds dev does) is checked the same way, with
	// the same field paths, but no lines.
	f := &File{
		Regions: []Region{{Name: "a", Nodes: []Node{{ID: "n1", Raft: "127.0.0.1:1", GRPC: "127.0.0.1:2"}}}},
		Domains: []Domain{{Name: "d", Kind: KindUnit, Shards: 1, TTL: time.Second}},
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	f.Domains = append(f.Domains, Domain{Name: "e", Kind: KindGlobal, Shards: 4})
	wantFieldErr(t, f.Validate(), "domains[1].ttl: must be between 1s", "got 0s")
	f.Domains[1].Normalize()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	f.Regions[0].Nodes[0].GRPC = "127.0.0.1:1"
	wantFieldErr(t, f.Validate(), "regions[0].nodes[0].grpc: address already used by regions[0].nodes[0].raft")
}
