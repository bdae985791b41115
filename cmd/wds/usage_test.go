package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInput: a wrong command line or invalid argument exits 1 with a
// one-line error naming the flag or field (and the usage for command-line
// mistakes); nothing needs a cell for that.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("regions:\n  - name: r1\n    nodes:\n      - id: a1\n        raft: 127.0.0.1:1\n        grpc: 127.0.0.1:2\ndomains:\n  - name: d\n    kind: global\n    shards: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An endpoint nobody listens on: no test below may get as far as
	// calling it.
	noCell := "--endpoint=127.0.0.1:1"
	for _, tc := range []struct {
		name  string
		args  []string
		want  []string // substrings of stderr
		usage bool
	}{
		{"output", []string{noCell, "-o", "yaml", "status"}, []string{"-o/--output", `"yaml"`}, true},
		{"log level", []string{noCell, "--log-level", "loud", "status"}, []string{"--log-level", `"loud"`}, true},
		{"log format", []string{noCell, "--log-format", "xml", "status"}, []string{"--log-format", `"xml"`}, true},
		{"unknown flag", []string{"status", "--bogus"}, []string{"unknown flag: --bogus"}, true},
		{"unknown command", []string{"bogus"}, []string{`unknown command "bogus"`}, false},
		{"unknown subcommand", []string{"domain", "bogus"}, []string{`unknown command "bogus"`}, true},
		{"missing arg", []string{"domain", "create"}, []string{"missing argument"}, true},
		{"shards 0", []string{noCell, "domain", "create", "d", "--kind", "global", "--shards", "0"}, []string{"shards:", "required", "(got 0)"}, false},
		{"shards missing", []string{noCell, "domain", "create", "d", "--kind", "regional"}, []string{"shards:"}, false},
		{"shards too many", []string{noCell, "domain", "create", "d", "--kind", "global", "--shards", "1048577"}, []string{"shards:", "1048576", "1048577"}, false},
		{"unit shards", []string{noCell, "domain", "create", "d", "--kind", "unit", "--shards", "2"}, []string{"shards:", "unit"}, false},
		{"ttl", []string{noCell, "domain", "create", "d", "--kind", "global", "--shards", "4", "--ttl", "500ms"}, []string{"ttl:", "500ms"}, false},
		{"kind", []string{noCell, "domain", "create", "d", "--kind", "galactic", "--shards", "4"}, []string{"kind:", `"galactic"`}, false},
		{"kind missing", []string{noCell, "domain", "create", "d", "--shards", "4"}, []string{"kind:", "required"}, false},
		{"name", []string{noCell, "domain", "create", "Bad_Name!", "--kind", "global", "--shards", "4"}, []string{"name:"}, false},
		{"shards bad domain", []string{noCell, "shards", "UPPER"}, []string{"domain:"}, false},
		{"consume id", []string{noCell, "consume", "--domain", "d", "--id", "bad id"}, []string{"id:", `"bad id"`}, false},
		{"consume no domain", []string{noCell, "consume", "--id", "c1"}, []string{"domain:", "required"}, false},
		{"drain id", []string{noCell, "drain", "bad id"}, []string{"CONSUMER:"}, false},
		{"dev nodes", []string{"dev", "--nodes", "2"}, []string{"--nodes"}, true},
		{"server data dir", []string{"server", "--node", "n1"}, []string{"--data-dir"}, true},
		{"server peer", []string{"server", "--node", "n1", "--data-dir", dir, "--peer", "n1=x"}, []string{"--peer", "ID=RAFTADDR=GRPCADDR"}, true},
		{"server self not a peer", []string{"server", "--node", "n9", "--data-dir", dir, "--peer", "n1=127.0.0.1:1=127.0.0.1:2"}, []string{"node_id", "peers"}, false},
		{"topology file", []string{"server", "--topology", bad, "--node", "a1", "--data-dir", dir}, []string{bad + ":10:", "domains[0].shards"}, false},
		{"topology missing", []string{"server", "--topology", bad + ".missing", "--node", "a1", "--data-dir", dir}, []string{"bad.yaml.missing"}, false},
		{"unreachable", []string{noCell, "--timeout", "2s", "status"}, []string{"Unavailable", "127.0.0.1:1"}, false},
		{"endpoint url", []string{"--endpoint", "http://127.0.0.1:7100", "status"}, []string{"--endpoint", "no scheme", "host:port"}, false},
		{"endpoint no port", []string{"--endpoint", "nonsense", "watch", "d"}, []string{"--endpoint", `"nonsense"`, "host:port"}, false},
		{"endpoint bad port", []string{"--endpoint", "127.0.0.1:99999", "consume", "--domain", "d", "--id", "c1"}, []string{"--endpoint", "65535"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := wds(t, tc.args...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
			}
			first, _, _ := strings.Cut(r.stderr, "\n")
			if !strings.HasPrefix(first, "wds: ") {
				t.Errorf("first stderr line %q does not start with \"wds: \"", first)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not name %q:\n%s", w, r.stderr)
				}
			}
			if got := strings.Contains(r.stderr, "Usage:"); got != tc.usage {
				t.Errorf("usage shown = %v, want %v:\n%s", got, tc.usage, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty: %q", r.stdout)
			}
		})
	}
}

func TestHelpTeaches(t *testing.T) {
	out := mustWDS(t, "--help")
	for _, w := range []string{"Work Distribution Service", "wds dev", "server", "domain", "shards", "watch", "consume", "drain", "status", "WDS_ENDPOINT"} {
		if !strings.Contains(out, w) {
			t.Errorf("wds --help does not mention %q", w)
		}
	}
	for _, sub := range [][]string{{"server"}, {"dev"}, {"domain", "create"}, {"domain", "list"}, {"domain", "describe"}, {"domain", "delete"}, {"shards"}, {"watch"}, {"consume"}, {"drain"}, {"status"}} {
		out := mustWDS(t, append(sub, "--help")...)
		if !strings.Contains(out, "Examples:") {
			t.Errorf("wds %s --help has no examples", strings.Join(sub, " "))
		}
	}
}
