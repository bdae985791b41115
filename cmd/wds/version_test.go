package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: `wds version` and `wds --version` print what the binary was
// built from; -o json gives an object.
func TestVersion(t *testing.T) {
	t.Parallel()
	var v versionJSON
	if err := json.Unmarshal([]byte(mustWDS(t, "version", "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Version == "" || v.Go != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("version %+v", v)
	}
	table := mustWDS(t, "version")
	for _, w := range []string{"wds:", v.Version, "Revision:", "Go:", runtime.Version()} {
		if !strings.Contains(table, w) {
			t.Errorf("wds version does not show %q:\n%s", w, table)
		}
	}
	if got := mustWDS(t, "--version"); got != table {
		t.Errorf("wds --version:\n%s\nwds version:\n%s", got, table)
	}
	var v2 versionJSON
	if err := json.Unmarshal([]byte(mustWDS(t, "--version", "-o", "json")), &v2); err != nil || v2 != v {
		t.Errorf("wds --version -o json: %+v (%v), want %+v", v2, err, v)
	}

	// Built with VCS stamping (GOFLAGS may turn it off), it names the
	// commit it was built from.
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("no git checkout to build from: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "wds")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	if v.Revision != strings.TrimSpace(string(head)) || v.Time == "" {
		t.Errorf("version %+v, want revision %s", v, head)
	}
	dirty, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	if want := len(strings.TrimSpace(string(dirty))) > 0; v.Modified != want {
		t.Logf("modified %v, git status says %v (the tree may have changed meanwhile)", v.Modified, want)
	}
	text, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.Contains(string(text), v.Revision) {
		t.Errorf("wds --version (%v):\n%s", err, text)
	}
}
