package proto_test

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsCurrent fails when the committed *.pb.go files differ
// from what `make proto` would generate from the .proto sources.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH: cannot run `go run ./internal/tools/protogen -check`")
	}
	root := moduleRoot(t, gobin)
	cmd := exec.Command(gobin, "run", "./internal/tools/protogen", "-check")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("generated protobuf code is stale or cannot be generated (run `make proto` and commit the result):\n"+
			"$ cd %s && go run ./internal/tools/protogen -check\n%s(%v)", root, out.String(), err)
	}
}

// moduleRoot is the directory of the module's go.mod.
func moduleRoot(t *testing.T, gobin string) string {
	t.Helper()
	out, err := exec.Command(gobin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == "/dev/null" {
		t.Fatalf("go env GOMOD = %q: not inside the module", gomod)
	}
	return filepath.Dir(gomod)
}
