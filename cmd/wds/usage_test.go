package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInput: a wrong command line or invalid argument exits 1 with a
// one-line error naming the flag or field (command-line mistakes end with a
// hint to the command's --help, never the whole usage); nothing needs a
// cell for that.
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
		name string
		args []string
		want []string // substrings of stderr
		hint string   // the command whose --help the line points to, if any
	}{
		{"output", []string{noCell, "-o", "yaml", "status"}, []string{"-o/--output", `"yaml"`}, "wds status"},
		{"log level", []string{noCell, "--log-level", "loud", "status"}, []string{"--log-level", `"loud"`}, "wds status"},
		{"log format", []string{noCell, "--log-format", "xml", "status"}, []string{"--log-format", `"xml"`}, "wds status"},
		{"unknown flag", []string{"status", "--bogus"}, []string{`unknown flag --bogus for "wds status"`}, "wds status"},
		{"unknown command", []string{"bogus"}, []string{`unknown command "bogus"`}, "wds"},
		{"unknown subcommand", []string{"domain", "bogus"}, []string{`unknown command "bogus"`}, "wds domain"},
		{"missing arg", []string{"domain", "create"}, []string{"missing argument"}, "wds domain create"},
		{"shards 0", []string{noCell, "domain", "create", "d", "--kind", "global", "--shards", "0"}, []string{"wds: --shards:", "required", "(got 0)"}, ""},
		{"shards missing", []string{noCell, "domain", "create", "d", "--kind", "regional"}, []string{"shards:"}, ""},
		{"shards too many", []string{noCell, "domain", "create", "d", "--kind", "global", "--shards", "1048577"}, []string{"shards:", "1048576", "1048577"}, ""},
		{"unit shards", []string{noCell, "domain", "create", "d", "--kind", "unit", "--shards", "2"}, []string{"shards:", "unit"}, ""},
		{"ttl", []string{noCell, "domain", "create", "d", "--kind", "global", "--shards", "4", "--ttl", "500ms"}, []string{"wds: --ttl:", "500ms"}, ""},
		{"kind", []string{noCell, "domain", "create", "d", "--kind", "galactic", "--shards", "4"}, []string{"wds: --kind:", `"galactic"`}, ""},
		{"kind missing", []string{noCell, "domain", "create", "d", "--shards", "4"}, []string{"kind:", "required"}, ""},
		{"name", []string{noCell, "domain", "create", "Bad_Name!", "--kind", "global", "--shards", "4"}, []string{"wds: NAME:", `"Bad_Name!"`}, ""},
		{"regions not regional", []string{noCell, "domain", "create", "d", "--kind", "global", "--shards", "4", "--regions", "us-east"}, []string{"wds: --regions: only a regional domain has regions"}, ""},
		{"regions empty", []string{noCell, "domain", "create", "d", "--kind", "regional", "--shards", "4", "--regions", ""}, []string{"wds: --regions: empty"}, ""},
		{"regions bad name", []string{noCell, "domain", "create", "d", "--kind", "regional", "--shards", "4", "--regions", "us-east,EU"}, []string{`wds: --regions "EU": `, `(got "EU")`}, ""},
		{"regions duplicate", []string{noCell, "domain", "create", "d", "--kind", "regional", "--shards", "4", "--regions", "a,b,a"}, []string{`wds: --regions "a": duplicate region`}, ""},
		{"failover", []string{noCell, "domain", "create", "d", "--kind", "regional", "--shards", "4", "--failover", "sometimes"}, []string{`wds: --failover: unknown failover: want one of auto, manual (got "sometimes")`}, ""},
		{"failover not regional", []string{noCell, "domain", "create", "d", "--kind", "unit", "--failover", "auto"}, []string{"wds: --failover: only a regional domain has a failover setting"}, ""},
		{"shards bad domain", []string{noCell, "shards", "UPPER"}, []string{"DOMAIN:", `"UPPER"`}, ""},
		{"consume id", []string{noCell, "consume", "--domain", "d", "--id", "bad id"}, []string{"wds: --id:", `"bad id"`}, ""},
		{"consume no domain", []string{noCell, "consume", "--id", "c1"}, []string{"wds: --domain:", "required"}, ""},
		{"drain id", []string{noCell, "drain", "bad id"}, []string{"CONSUMER:"}, ""},
		{"dev nodes", []string{"dev", "--nodes", "2"}, []string{"--nodes"}, "wds dev"},
		{"server data dir", []string{"server", "--node", "n1"}, []string{"--data-dir"}, "wds server"},
		{"server peer", []string{"server", "--node", "n1", "--data-dir", dir, "--peer", "n1=x"}, []string{"--peer", "ID=RAFTADDR=GRPCADDR"}, "wds server"},
		{"server self not a peer", []string{"server", "--node", "n9", "--data-dir", dir, "--peer", "n1=127.0.0.1:1=127.0.0.1:2"}, []string{"wds: --node: must be one of the peers (got n9)"}, ""},
		{"topology file", []string{"server", "--topology", bad, "--node", "a1", "--data-dir", dir}, []string{bad + ":10:", "domains[0].shards"}, ""},
		{"topology missing", []string{"server", "--topology", bad + ".missing", "--node", "a1", "--data-dir", dir}, []string{"bad.yaml.missing"}, ""},
		{"flag typo", []string{"consume", "--domian", "x"}, []string{`wds: unknown flag --domian for "wds consume"; did you mean --domain? (see 'wds consume --help')`}, "wds consume"},
		{"inherited flag typo", []string{"status", "--endpont", "x"}, []string{"did you mean --endpoint?"}, "wds status"},
		{"flag typo short prefix", []string{"domain", "create", "d", "--shard", "4"}, []string{"did you mean --shards?"}, "wds domain create"},
		{"single dash", []string{"consume", "-domain", "x"}, []string{"did you mean --domain?"}, "wds consume"},
		{"flag value", []string{"domain", "create", "d", "--shards", "many"}, []string{`"many"`, "--shards"}, "wds domain create"},
		{"ttl without unit", []string{noCell, "domain", "create", "d", "--kind", "global", "--shards", "4", "--ttl", "5"}, []string{`wds: --ttl: must be a duration with a unit, such as 10s or 1m30s (got "5")`}, ""},
		{"timeout without unit", []string{noCell, "--timeout", "5", "status"}, []string{`--timeout: must be a duration with a unit, such as 10s or 1m30s (got "5")`}, "wds status"},
		{"drain timeout without unit", []string{noCell, "consume", "--domain", "d", "--id", "c1", "--drain-timeout", "30"}, []string{`wds: --drain-timeout: must be a duration with a unit, such as 10s or 1m30s (got "30")`}, ""},
		{"dev base port 0", []string{"dev", "--base-port", "0"}, []string{"wds: --base-port: must be between 1 and 65333 (HTTP uses base+200..base+202); got 0"}, "wds dev"},
		{"dev base port high", []string{"dev", "--base-port", "65334"}, []string{"must be between 1 and 65333", "got 65334"}, "wds dev"},
		{"dev base port one node", []string{"dev", "--regions", "local", "--nodes", "1", "--base-port", "65336"}, []string{"must be between 1 and 65335 (HTTP uses base+200); got 65336"}, "wds dev"},
		{"server 2nd peer", []string{"server", "--node", "n1", "--data-dir", dir, "--peer", "n1=127.0.0.1:1=127.0.0.1:2", "--peer", "n1=127.0.0.1:3=127.0.0.1:4"}, []string{`wds: the 2nd --peer "n1=127.0.0.1:3=127.0.0.1:4" (ID): duplicate node id`}, ""},
		{"server raft", []string{"server", "--node", "n1", "--data-dir", dir, "--raft", "nonsense"}, []string{"wds: --raft: must be host:port"}, ""},
		{"server drift", []string{"server", "--node", "n1", "--data-dir", dir, "--drift", "5"}, []string{"wds: --drift: ", "(got 5)"}, ""},
		{"server max moves", []string{"server", "--node", "n1", "--data-dir", dir, "--max-moves", "0"}, []string{"wds: --max-moves: must be at least 1 (got 0)"}, ""},
		{"server region", []string{"server", "--node", "n1", "--data-dir", dir, "--region", "Bad!"}, []string{"wds: --region: ", `"Bad!"`}, ""},
		{"server node id", []string{"server", "--node", "bad id", "--data-dir", dir}, []string{"wds: --node: ", `"bad id"`}, ""},
		{"version args", []string{"version", "x"}, []string{`unexpected argument "x"`}, "wds version"},
		{"unreachable", []string{noCell, "--timeout", "2s", "status"}, []string{"Unavailable", "127.0.0.1:1"}, ""},
		{"endpoint url", []string{"--endpoint", "http://127.0.0.1:7100", "status"}, []string{"--endpoint", "no scheme", "host:port"}, ""},
		{"endpoint no port", []string{"--endpoint", "nonsense", "watch", "d"}, []string{"--endpoint", `"nonsense"`, "host:port"}, ""},
		{"endpoint bad port", []string{"--endpoint", "127.0.0.1:99999", "consume", "--domain", "d", "--id", "c1"}, []string{"--endpoint", "65535"}, ""},
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
			if strings.Contains(r.stderr, "Usage:") || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr is not one line:\n%s", r.stderr)
			}
			hint := "(see '" + tc.hint + " --help')"
			if got := strings.HasSuffix(r.stderr, hint+"\n"); got != (tc.hint != "") {
				t.Errorf("ends with %q = %v, want %v:\n%s", hint, got, tc.hint != "", r.stderr)
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
	for _, sub := range [][]string{{"server"}, {"dev"}, {"domain", "create"}, {"domain", "list"}, {"domain", "describe"}, {"domain", "delete"}, {"shards"}, {"watch"}, {"consume"}, {"drain"}, {"status"}, {"version"}} {
		out := mustWDS(t, append(sub, "--help")...)
		if !strings.Contains(out, "Examples:") {
			t.Errorf("wds %s --help has no examples", strings.Join(sub, " "))
		}
	}
}
