package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wdsio/wds/federation"
	"github.com/wdsio/wds/internal/celltest"
)

// TestFailoverCommand: the operator's side of a manual failover, with the
// wds binary against a federation whose us-east node has crashed. wds
// failover is refused until the global group has expired us-east's
// delegation of its ledger key space, then moves it to eu-west; wds
// status says who serves whose key space; wds shards from a third region
// lists us-east's shards as delegated to eu-west; --to us-east is the way
// home.
func TestFailoverCommand(t *testing.T) {
	f := newTestFed(t, `  - {name: ledger, kind: regional, shards: 2, ttl: 1s, failover: manual}
`, func(c *federation.Config) { c.Global.Outage = 2 * time.Second })
	eu, ap := f.endpoint(1), f.endpoint(2)
	f.stop(0) // us-east crashes

	// Refused while us-east may still hold its key space; accepted once
	// the global group has expired it (D·(1+ε) ≈ 3 s after its last
	// renewal, plus an election if us-east led the global group).
	var out string
	celltest.Eventually(t, 30*time.Second, func() error {
		r := wds(t, eu, "failover", "ledger", "--region", "us-east", "--to", "eu-west")
		if r.code != 0 {
			if !strings.Contains(r.stderr, "FailedPrecondition") {
				t.Fatalf("failover before us-east's delegation expired: exit %d, %s", r.code, r.stderr)
			}
			return fmt.Errorf("refused: %s", strings.TrimSpace(r.stderr))
		}
		out = r.stdout
		return nil
	})
	if !strings.Contains(out, "domain ledger: key space us-east is served by eu-west") || !strings.Contains(out, "wds failover ledger --region us-east --to us-east") {
		t.Errorf("failover printed %q", out)
	}

	// Status, from eu-west's endpoint (its voter asks the global leader).
	celltest.Eventually(t, 10*time.Second, func() error {
		var st statusJSON
		if err := json.Unmarshal([]byte(mustWDS(t, eu, "status", "-o", "json")), &st); err != nil {
			return err
		}
		if st.Global == nil {
			return fmt.Errorf("no global section")
		}
		by := map[string]regionStatusJSON{}
		for _, r := range st.Global.Regions {
			by[r.Name] = r
		}
		us, euw := by["us-east"], by["eu-west"]
		if us.Renewing || us.RenewingForMillis != -1 || len(us.Away) != 1 || us.Away[0].Domain != "ledger" ||
			fmt.Sprint(us.Away[0].ServedBy) != "[eu-west]" || !us.Away[0].Manual || us.Away[0].FailbackInMillis != -1 {
			return fmt.Errorf("us-east: %+v", us)
		}
		if len(euw.ServingForOthers) != 1 || euw.ServingForOthers[0] != (keySpaceRefJSON{Domain: "ledger", KeySpace: "us-east"}) {
			return fmt.Errorf("eu-west: %+v", euw)
		}
		return nil
	})
	text := mustWDS(t, eu, "status")
	for _, w := range []string{
		"\nFailover:\n",
		"  eu-west serves us-east's key space of ledger\n",
		"  us-east's key space of ledger is served by eu-west; failover manual: wds failover ledger --region us-east --to us-east moves it home\n",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("status does not say %q:\n%s", w, text)
		}
	}

	// us-east is not renewing: lapsed, or (when it hosted the global
	// leader) never heard by the new one.
	if !regexp.MustCompile(`\nus-east +\S+ +(lapsed|no) `).MatchString(text) {
		t.Errorf("status does not show us-east lapsed:\n%s", text)
	}

	// The shard map from ap-south: us-east's key space, delegated to eu-west.
	celltest.Eventually(t, 10*time.Second, func() error {
		var shards []struct {
			Region      string `json:"region"`
			DelegatedTo string `json:"delegated_to"`
		}
		if err := json.Unmarshal([]byte(mustWDS(t, ap, "shards", "ledger", "--region", "us-east", "-o", "json")), &shards); err != nil {
			return err
		}
		if len(shards) != 2 || shards[0].Region != "us-east" || shards[0].DelegatedTo != "eu-west" || shards[1].DelegatedTo != "eu-west" {
			return fmt.Errorf("shards of ledger/us-east from ap-south: %+v", shards)
		}
		return nil
	})

	// Home: accepted at once (the key space waits for us-east to come back).
	if out := mustWDS(t, eu, "failover", "ledger", "--region", "us-east", "--to", "us-east"); !strings.Contains(out, "key space us-east moves home to us-east") {
		t.Errorf("failover home printed %q", out)
	}
}
