package importcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
)

// pkg is one package as `go list -json` describes it.
type pkg struct {
	ImportPath   string
	Imports      []string // non-test imports
	TestImports  []string // imports of _test.go files in the package
	XTestImports []string // imports of _test.go files in package x_test
	Deps         []string // transitive non-test dependencies
	DepOnly      bool     // listed only as a dependency of a matched package
}

// graph is the module's packages and everything they depend on.
type graph struct {
	module string          // module path
	pkgs   map[string]*pkg // by import path
}

// forbiddenForClient are modules the client library must never depend on.
var forbiddenForClient = []string{
	"github.com/hashicorp/raft",
	"github.com/hashicorp/raft-wal",
	"github.com/hashicorp/memberlist",
}

// within reports whether path is root or below it (root "a/b" holds "a/b"
// and "a/b/c", not "a/bc").
func within(path, root string) bool {
	return path == root || strings.HasPrefix(path, root+"/")
}

func (g *graph) rel(name string) string { return g.module + "/" + name }

// own reports whether path is a package of the module.
func (g *graph) own(path string) bool { return within(path, g.module) }

// ownPkgs returns the module's packages below rel (sorted).
func (g *graph) ownPkgs(rel string) []*pkg {
	var out []*pkg
	for path, p := range g.pkgs {
		if !p.DepOnly && within(path, g.rel(rel)) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ImportPath < out[j].ImportPath })
	return out
}

// chain returns the shortest import chain from -> ... -> to over non-test
// imports, as "a -> b -> c", or "from -> ... -> to" when the graph lacks it.
func (g *graph) chain(from, to string) string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var path []string
			for p := to; p != ""; p = prev[p] {
				path = append(path, p)
			}
			slices.Reverse(path)
			return strings.Join(path, " -> ")
		}
		p := g.pkgs[cur]
		if p == nil {
			continue
		}
		for _, next := range p.Imports {
			if _, seen := prev[next]; !seen {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return from + " -> ... -> " + to
}

func allImports(p *pkg) []string {
	var out []string
	for _, list := range [][]string{p.Imports, p.TestImports, p.XTestImports} {
		for _, imp := range list {
			if imp != p.ImportPath && !slices.Contains(out, imp) {
				out = append(out, imp)
			}
		}
	}
	sort.Strings(out)
	return out
}

// violations applies every rule and returns one message per forbidden edge.
func (g *graph) violations() []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	// client: only proto/..., topology and internal/rpcerr among module
	// packages, directly and transitively; never raft, raft-wal or
	// memberlist.
	clientOK := func(path string) bool {
		return within(path, g.rel("client")) || within(path, g.rel("proto")) || within(path, g.rel("topology")) ||
			// The status vocabulary the cell sends (reasons, ErrorInfo
			// parsing): shared so the client cannot drift from the
			// server. It imports only gRPC's status packages and
			// topology; the dependency rule below keeps it so.
			path == g.rel("internal/rpcerr")
	}
	for _, p := range g.ownPkgs("client") {
		for _, imp := range p.Imports {
			if g.own(imp) && !clientOK(imp) {
				add("forbidden import %s -> %s: client may import only proto/..., topology and internal/rpcerr among module packages", p.ImportPath, imp)
			}
		}
		for _, dep := range p.Deps {
			if g.own(dep) && !clientOK(dep) && !slices.Contains(p.Imports, dep) {
				add("forbidden dependency %s: client may depend only on proto/..., topology and internal/rpcerr among module packages", g.chain(p.ImportPath, dep))
			}
		}
		// One message per forbidden module: the chain to its root package
		// if that is a dependency, else to its first package.
		for _, bad := range forbiddenForClient {
			hit := ""
			for _, dep := range p.Deps {
				if within(dep, bad) && (hit == "" || dep == bad) {
					hit = dep
				}
			}
			if hit != "" {
				add("forbidden dependency %s: client must not depend on %s", g.chain(p.ImportPath, hit), bad)
			}
		}
	}

	// cell and global never import each other, tests included.
	for _, pair := range [][2]string{{"cell", "global"}, {"global", "cell"}} {
		from, to := pair[0], pair[1]
		for _, p := range g.ownPkgs(from) {
			for _, imp := range allImports(p) {
				if within(imp, g.rel(to)) {
					add("forbidden import %s -> %s: %s and %s never import each other", p.ImportPath, imp, from, to)
				}
			}
			for _, dep := range p.Deps {
				if within(dep, g.rel(to)) && !slices.Contains(p.Imports, dep) {
					add("forbidden dependency %s: %s and %s never depend on each other", g.chain(p.ImportPath, dep), from, to)
				}
			}
		}
	}

	// internal/serve, the process's network front (gRPC server, HTTP
	// admin port) on which the cell node and, later, the global group's
	// member both register: it must depend on neither, so it may import
	// only the plumbing it is made of, tests included.
	serveOK := []string{"internal/serve", "internal/telemetry", "internal/logging"}
	for _, p := range g.ownPkgs("internal/serve") {
		for _, imp := range allImports(p) {
			if g.own(imp) && !slices.ContainsFunc(serveOK, func(rel string) bool { return within(imp, g.rel(rel)) }) {
				add("forbidden import %s -> %s: internal/serve may import only internal/telemetry and internal/logging among module packages (cell and global register on it)", p.ImportPath, imp)
			}
		}
		for _, dep := range p.Deps {
			if within(dep, g.rel("cell")) || within(dep, g.rel("global")) {
				add("forbidden dependency %s: internal/serve must not depend on cell or global", g.chain(p.ImportPath, dep))
			}
		}
	}

	// cell/cellstate and global/globalstate, the replicated states: pure
	// state machines over their logs, so they may import only the
	// vocabulary they are written in (proto, topology, the lease arithmetic
	// and the error sentinels), tests included: never a node, its sessions
	// or the network.
	for _, root := range []string{"cell/cellstate", "global/globalstate"} {
		stateOK := []string{root, "proto", "topology", "internal/lease", "internal/rpcerr", "internal/fsmshell"}
		for _, p := range g.ownPkgs(root) {
			for _, imp := range allImports(p) {
				if g.own(imp) && !slices.ContainsFunc(stateOK, func(rel string) bool { return within(imp, g.rel(rel)) }) {
					add("forbidden import %s -> %s: %s may import only proto/..., topology, internal/lease, internal/rpcerr and internal/fsmshell among module packages", p.ImportPath, imp, root)
				}
			}
		}
	}

	// topology and proto/...: no module package but proto/...
	for _, root := range []string{"topology", "proto"} {
		for _, p := range g.ownPkgs(root) {
			for _, imp := range p.Imports {
				if g.own(imp) && !within(imp, g.rel("proto")) && !within(imp, g.rel(root)) {
					add("forbidden import %s -> %s: %s may import no module package but proto/...", p.ImportPath, imp, root)
				}
			}
		}
	}

	// Nothing imports cmd/..., tests included.
	for path, p := range g.pkgs {
		if p.DepOnly || !g.own(path) {
			continue
		}
		for _, imp := range allImports(p) {
			if within(imp, g.rel("cmd")) {
				add("forbidden import %s -> %s: nothing imports cmd/...", path, imp)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// goList runs `go list -deps -json` over the whole module and builds the
// graph. It skips the test when no go command is on PATH.
func goList(t *testing.T) *graph {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH: cannot run `go list` to check the import rules")
	}
	run := func(args ...string) []byte {
		cmd := exec.Command(gobin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	var mod struct{ Path, Dir string }
	if err := json.Unmarshal(run("list", "-m", "-json"), &mod); err != nil {
		t.Fatalf("go list -m -json: %v", err)
	}
	out := run("list", "-C", mod.Dir, "-deps",
		"-json=ImportPath,Imports,TestImports,XTestImports,Deps,DepOnly", "./...")
	g := &graph{module: mod.Path, pkgs: map[string]*pkg{}}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := &pkg{}
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		g.pkgs[p.ImportPath] = p
	}
	return g
}

func TestImportRules(t *testing.T) {
	g := goList(t)
	// The rules pass vacuously if the listing misses the packages they are
	// about: make sure it does not.
	for _, rel := range []string{"client", "cell", "cell/cellstate", "topology", "proto/wds/v1", "cmd/wds"} {
		if p := g.pkgs[g.rel(rel)]; p == nil || p.DepOnly {
			t.Fatalf("go list did not report package %s: the import rules cannot be checked", g.rel(rel))
		}
	}
	if len(g.ownPkgs("global")) == 0 {
		t.Logf("no package %s yet: the cell/global rule has nothing to check", g.rel("global"))
	}
	for _, v := range g.violations() {
		t.Error(v)
	}
}

// TestRulesCatchViolations runs the rules on a made-up graph holding one
// violation of each, so a rule that silently stopped matching fails here.
func TestRulesCatchViolations(t *testing.T) {
	const m = "example.com/wds"
	g := &graph{module: m, pkgs: map[string]*pkg{}}
	add := func(path string, imports ...string) *pkg {
		p := &pkg{ImportPath: path, Imports: imports}
		g.pkgs[path] = p
		return p
	}
	add(m+"/proto/wds/v1", "google.golang.org/protobuf/proto")
	add(m+"/proto/wds/cell/v1", m+"/proto/wds/v1", m+"/internal/lease") // proto -> internal
	add(m+"/internal/lease", "time")
	add(m+"/topology", m+"/proto/wds/v1", m+"/internal/raftnode") // topology -> internal
	add(m+"/internal/raftnode", "github.com/hashicorp/raft")
	add("github.com/hashicorp/raft", "io")
	add(m+"/client", m+"/topology", m+"/cell", m+"/internal/rpcerr") // client -> cell, and raft through topology
	add(m+"/internal/rpcerr", m+"/topology")                         // allowed
	add(m+"/cell", m+"/global", m+"/internal/raftnode")              // cell -> global
	add(m+"/cell/cellstate", m+"/topology", m+"/internal/raftnode")  // cellstate -> raftnode
	add(m + "/global")
	add(m+"/global/globalstate", m+"/cell")                      // globalstate -> cell
	add(m+"/internal/serve", m+"/internal/telemetry", m+"/cell") // serve -> cell
	add(m + "/internal/telemetry")
	add(m+"/cmd/wds", m+"/cell", m+"/client")
	add(m + "/chaos").XTestImports = []string{m + "/cmd/wds"} // a test importing cmd
	// Deps is the transitive closure of Imports.
	for _, p := range g.pkgs {
		seen := map[string]bool{}
		var walk func(string)
		walk = func(path string) {
			q := g.pkgs[path]
			if q == nil {
				return
			}
			for _, imp := range q.Imports {
				if !seen[imp] {
					seen[imp] = true
					p.Deps = append(p.Deps, imp)
					walk(imp)
				}
			}
		}
		walk(p.ImportPath)
		sort.Strings(p.Deps)
	}

	got := strings.Join(g.violations(), "\n")
	for _, want := range []string{
		"forbidden import " + m + "/client -> " + m + "/cell: client may import only proto/..., topology and internal/rpcerr",
		"forbidden dependency " + m + "/client -> " + m + "/topology -> " + m + "/internal/raftnode: client may depend only on",
		"forbidden dependency " + m + "/client -> " + m + "/topology -> " + m + "/internal/raftnode -> github.com/hashicorp/raft: client must not depend on github.com/hashicorp/raft",
		"forbidden import " + m + "/cell -> " + m + "/global: cell and global never import each other",
		"forbidden import " + m + "/topology -> " + m + "/internal/raftnode: topology may import no module package but proto/...",
		"forbidden import " + m + "/proto/wds/cell/v1 -> " + m + "/internal/lease: proto may import no module package but proto/...",
		"forbidden import " + m + "/chaos -> " + m + "/cmd/wds: nothing imports cmd/...",
		"forbidden import " + m + "/cell/cellstate -> " + m + "/internal/raftnode: cell/cellstate may import only",
		"forbidden import " + m + "/global/globalstate -> " + m + "/cell: global/globalstate may import only",
		"forbidden import " + m + "/internal/serve -> " + m + "/cell: internal/serve may import only internal/telemetry and internal/logging",
		"forbidden dependency " + m + "/internal/serve -> " + m + "/cell -> " + m + "/global: internal/serve must not depend on cell or global",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("violations lack %q; got:\n%s", want, got)
		}
	}
	if strings.Contains(got, "-> "+m+"/internal/rpcerr:") {
		t.Errorf("client -> internal/rpcerr is allowed; got:\n%s", got)
	}
	// raft-wal must not match github.com/hashicorp/raft's rule by prefix
	// (and the other way round).
	if within("github.com/hashicorp/raft-wal", "github.com/hashicorp/raft") {
		t.Error(`within("github.com/hashicorp/raft-wal", "github.com/hashicorp/raft") = true`)
	}
}
