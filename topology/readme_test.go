package topology

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeExamplesParse: every topology file the README shows (a yaml
// block starting with "regions:") parses and validates, so the examples
// operators copy never fail.
func TestReadmeExamplesParse(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Skipf("no README: %v", err)
	}
	blocks := strings.Split(string(data), "```yaml\n")
	n := 0
	for _, b := range blocks[1:] {
		body, _, _ := strings.Cut(b, "```")
		if !strings.HasPrefix(body, "regions:") {
			continue
		}
		n++
		if _, err := Parse("README.md example", []byte(body)); err != nil {
			t.Errorf("README topology example %d does not parse: %v\n%s", n, err, body)
		}
	}
	if n == 0 {
		t.Fatal("found no topology example in the README")
	}
	t.Logf("%d README topology examples parse", n)
}
