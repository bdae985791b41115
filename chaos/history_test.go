package chaos

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestOwnershipEndFirstWins(t *testing.T) {
	var h History
	o := h.Begin("c1", "d", "", rng(0, 4), tok(1, 1), ms(0))
	h.Begin("c2", "d", "", rng(4, 8), tok(1, 2), ms(1))
	o.End(ms(10))
	o.End(ms(20))
	got := h.Intervals()
	want := []Interval{
		iv("c1", "d", rng(0, 4), tok(1, 1), ms(0), ms(10)),
		iv("c2", "d", rng(4, 8), tok(1, 2), ms(1), open),
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Intervals() = %v, want %v", got, want)
	}
	got[0].Consumer = "changed"
	if h.Intervals()[0].Consumer != "c1" {
		t.Error("Intervals() returned the history's own slice, not a copy")
	}
	if h.Len() != 2 {
		t.Errorf("Len() = %d, want 2", h.Len())
	}
}

// TestHistoryConcurrent has many consumers hand shards to each other under a per-shard lock, as
// a correct lease service would, while others read the history; run it with -race.
func TestHistoryConcurrent(t *testing.T) {
	const (
		consumers = 16
		shards    = 8
		rounds    = 200
	)
	var h History
	type shard struct {
		sync.Mutex
		next uint64 // the next token index
	}
	var ss [shards]shard
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 2 { // readers
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				_ = h.Intervals()
				_ = h.Len()
				if vs := h.Check(); len(vs) != 0 {
					t.Errorf("violations while recording:\n%s", join(vs))
					return
				}
				runtime.Gosched()
			}
		})
	}
	var writers sync.WaitGroup
	for c := range consumers {
		writers.Go(func() {
			id := fmt.Sprintf("c%d", c)
			for i := range rounds {
				k := (c + i) % shards
				s := &ss[k]
				s.Lock()
				s.next++
				o := h.Begin(id, "d", "", rng(uint64(k), uint64(k+1)), tok(1, s.next), time.Now())
				runtime.Gosched()
				now := time.Now()
				o.End(now)
				o.End(now.Add(time.Hour)) // ignored: the first End wins
				s.Unlock()
			}
		})
	}
	writers.Wait()
	close(done)
	wg.Wait()
	if got, want := h.Len(), consumers*rounds; got != want {
		t.Fatalf("Len() = %d, want %d", got, want)
	}
	for _, x := range h.Intervals() {
		if x.End.IsZero() || x.End.Sub(x.Start) > time.Minute {
			t.Fatalf("interval not ended by its first End: %s", x)
		}
	}
	if vs := h.Check(); len(vs) != 0 {
		t.Fatalf("%d violations in a correct history:\n%s", len(vs), join(vs))
	}

	// One consumer that keeps a shard past its handover is caught.
	late := h.Begin("late", "d", "", rng(0, 1), tok(1, ss[0].next+1), time.Now())
	h.Begin("c0", "d", "", rng(0, shards), tok(2, 1), time.Now())
	late.End(time.Now())
	vs := h.Check()
	if len(vs) != 1 || vs[0].Kind != Overlap || vs[0].A.Consumer != "late" || vs[0].B.Consumer != "c0" {
		t.Fatalf("want one overlap of late and c0, got:\n%s", join(vs))
	}
}

// TestHistoryKeySpaces: Begin records the key space's region, and the history's check judges each
// key space (domain, region) on its own.
func TestHistoryKeySpaces(t *testing.T) {
	var h History
	h.Begin("c1", "orders", "us-east", rng(0, full), tok(1, 1), ms(0))
	h.Begin("c2", "orders", "eu-west", rng(0, full), tok(1, 1), ms(1))
	if got := h.Intervals(); got[0].Region != "us-east" || got[1].Region != "eu-west" {
		t.Fatalf("Intervals() = %v, want regions us-east and eu-west", got)
	}
	if vs := h.Check(); len(vs) != 0 {
		t.Fatalf("one owner per key space, yet violations:\n%s", join(vs))
	}
	h.Begin("c3", "orders", "eu-west", rng(4, 8), tok(1, 2), ms(2))
	vs := h.Check()
	if len(vs) != 1 || vs[0].Kind != Overlap || vs[0].A.Consumer != "c2" || vs[0].B.Consumer != "c3" {
		t.Fatalf("want one overlap of c2 and c3 in eu-west, got:\n%s", join(vs))
	}
}

// TestHandoverGaps: per shard of one key space, the gap from the last
// ownership by a "from" consumer to the first by a "to" consumer after it;
// other key spaces, shards that did not move that way and earlier "to"
// ownerships do not count.
func TestHandoverGaps(t *testing.T) {
	ivs := []Interval{
		ivIn("b1", "d", "us-east", rng(0, 4), tok(2, 1), ms(0), ms(100)),
		ivIn("a1", "d", "us-east", rng(0, 4), tok(1, 1), ms(-50), ms(-10)), // before: not the handover
		ivIn("a1", "d", "us-east", rng(0, 4), tok(3, 1), ms(130), open),    // 30 ms
		ivIn("b1", "d", "us-east", rng(4, 8), tok(2, 2), ms(0), ms(200)),
		ivIn("a2", "d", "us-east", rng(4, 8), tok(3, 2), ms(210), ms(300)), // 10 ms
		ivIn("b1", "d", "us-east", rng(8, 12), tok(2, 3), ms(0), open),     // never moved
		ivIn("b1", "d", "eu-west", rng(0, 4), tok(2, 4), ms(0), ms(100)),   // another key space
		ivIn("a1", "d", "eu-west", rng(0, 4), tok(3, 3), ms(500), open),
	}
	isB := func(c string) bool { return c[0] == 'b' }
	isA := func(c string) bool { return c[0] == 'a' }
	got := HandoverGaps(ivs, "d", "us-east", isB, isA)
	want := []time.Duration{10 * time.Millisecond, 30 * time.Millisecond}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("HandoverGaps = %v, want %v", got, want)
	}
}
