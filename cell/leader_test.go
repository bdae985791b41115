package cell

import (
	"testing"
	"time"

	"github.com/wdsio/wds/topology"
)

// TestFrozenDeadlinesArePerGrant: a revocation sent to a shard's ALLOCATED
// successor (zero token) must not freeze anything: the deadline that
// matters is the holder's, and freezing it at the successor's lease could
// expire the holder's grant early.
func TestFrozenDeadlinesArePerGrant(t *testing.T) {
	l := &leader{n: &Node{cfg: Config{Drift: 0.01}}, frozen: map[grantKey]time.Time{}}
	anchor := time.Now()
	succ := &consumerOwner{l: l, cl: &consumerLease{anchor: anchor}, ttls: map[string]time.Duration{"d": 3 * time.Second}}
	succ.beforeRevoke(nil, []grantKey{{Domain: "d", From: topology.Start}})
	if len(l.frozen) != 0 {
		t.Fatalf("a successor's revocation froze %v", l.frozen)
	}
	holder := &consumerOwner{l: l, cl: &consumerLease{anchor: anchor}, ttls: map[string]time.Duration{"d": 3 * time.Second}}
	tok := topology.Token{Generation: 1, Index: 5}
	holder.beforeRevoke(nil, []grantKey{{Domain: "d", From: topology.Start, Token: tok}})
	got, ok := l.frozen[grantKey{Domain: "d", From: topology.Start, Token: tok}]
	if want := anchor.Add(3030 * time.Millisecond); !ok || !got.Equal(want) {
		t.Fatalf("holder frozen at %v (%v), want %v", got, ok, want)
	}
	// Another grant of the same shard is a different key.
	if _, ok := l.frozen[grantKey{Domain: "d", From: topology.Start, Token: topology.Token{Generation: 1, Index: 9}}]; ok {
		t.Fatal("frozen deadline leaked to another grant of the shard")
	}
}
