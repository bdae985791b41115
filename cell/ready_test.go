package cell_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/internal/celltest"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

func readyz(t *testing.T, n *cell.Node) (int, string) {
	t.Helper()
	res, err := http.Get("http://" + n.HTTPAddr() + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	k, _ := res.Body.Read(buf)
	b.Write(buf[:k])
	return res.StatusCode, b.String()
}

func nodeStatus(t *testing.T, c *celltest.Cluster, i int) *wdsv1.StatusResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := c.Admin(i).Status(ctx, &wdsv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestReadyMeansCaughtUp: /readyz of a restarted follower is 200 only once
// it has applied what the leader had committed (checked against the
// leader's commit index read before each probe), never while it shows a
// partial log; a follower cut off from the leader is not ready; Status says
// why and lists a stopped node as unreachable.
func TestReadyMeansCaughtUp(t *testing.T) {
	c := celltest.New(t, 3, func(cfg *cell.Config) { cfg.HTTPBind = "127.0.0.1:0" })
	l := c.Leader()
	f := (l + 1) % 3
	c.Kill(f)
	// The stopped follower is listed, as unreachable.
	celltest.Eventually(t, 5*time.Second, func() error {
		st := nodeStatus(t, c, l)
		found := false
		for _, n := range st.GetNodes() {
			if n.GetId() == c.Configs[f].NodeID {
				found = true
				if !strings.HasPrefix(n.GetHealth(), "unreachable") {
					return fmt.Errorf("stopped node %s health %q, want unreachable", n.GetId(), n.GetHealth())
				}
			} else if n.GetHealth() != "ok" {
				return fmt.Errorf("node %s health %q, want ok", n.GetId(), n.GetHealth())
			}
		}
		if !found || !st.GetReady() {
			return fmt.Errorf("status: %v", st)
		}
		return nil
	})
	// Entries the stopped follower misses.
	for i := 0; i < 200; i++ {
		c.CreateDomain(fmt.Sprintf("d%03d", i), topology.KindUnit, 1, 3*time.Second)
	}
	c.Configs[f].HTTPBind = "127.0.0.1:0"
	c.Start(f)
	sawNotReady := false
	for deadline := time.Now().Add(10 * time.Second); ; {
		want := c.Nodes[l].RaftStatus().CommitIndex
		code, body := readyz(t, c.Nodes[f])
		if code == http.StatusOK {
			if got := c.Nodes[f].RaftStatus().AppliedIndex; got < want {
				t.Fatalf("restarted follower ready at applied index %d, below the %d the leader had committed before the probe", got, want)
			}
			break
		}
		sawNotReady = true
		if time.Now().After(deadline) {
			t.Fatalf("restarted follower not ready after 10 s: %d %s", code, body)
		}
		time.Sleep(time.Millisecond)
	}
	if !sawNotReady {
		t.Log("the restarted follower was ready at the first probe")
	}

	// Cut off from the others: not ready, and Status says why.
	c.Faults[f].Isolate()
	celltest.Eventually(t, 5*time.Second, func() error {
		if code, body := readyz(t, c.Nodes[f]); code == http.StatusOK {
			return fmt.Errorf("isolated follower ready: %s", body)
		}
		st := nodeStatus(t, c, f)
		if st.GetReady() || !strings.Contains(st.GetReadyReason(), "no leader known") {
			return fmt.Errorf("isolated follower status ready=%v %q", st.GetReady(), st.GetReadyReason())
		}
		return nil
	})
	c.Faults[f].Heal()
	celltest.Eventually(t, 10*time.Second, func() error {
		if code, body := readyz(t, c.Nodes[f]); code != http.StatusOK {
			return fmt.Errorf("healed follower: %d %s", code, body)
		}
		return nil
	})
}
