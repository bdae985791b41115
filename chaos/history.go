package chaos

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/wdsio/wds/topology"
)

// Interval is one period during which Consumer believed it owned Range of the key space (Domain,
// Region) under Token. It is half-open in time: [Start, End). A zero End means the consumer still
// owned the range when the history ended, and counts as +infinity.
//
// Region is the key space's region for a REGIONAL domain, empty for GLOBAL and UNIT domains: after
// a regional failover one cell serves two key spaces of a REGIONAL domain, whose ranges overlap
// numerically but hold different keys. Check judges each key space on its own.
type Interval struct {
	Consumer string
	Domain   string
	Region   string
	Range    topology.Range
	Token    topology.Token
	Start    time.Time
	End      time.Time
}

// Open reports whether the interval has no End: the belief lasted until the history ended.
func (iv Interval) Open() bool { return iv.End.IsZero() }

// String formats the interval for test failures, e.g.
// `"c1" owned "orders" [00000000-…, 80000000-…) token 1.42 during [18:00:00.1, 18:00:02.5)`,
// or with a region `"c1" owned "orders" region "us-east" [00000000-…, …`.
func (iv Interval) String() string {
	return fmt.Sprintf("%q owned %s %s token %s during [%s, %s)",
		iv.Consumer, keySpaceString(iv.Domain, iv.Region), iv.Range, iv.Token, formatTime(iv.Start), formatEnd(iv.End))
}

// keySpaceString names a key space: `"orders"`, or `"orders" region "us-east"`.
func keySpaceString(domain, region string) string {
	if region == "" {
		return fmt.Sprintf("%q", domain)
	}
	return fmt.Sprintf("%q region %q", domain, region)
}

func formatTime(t time.Time) string { return t.Format(time.RFC3339Nano) }

func formatEnd(t time.Time) string {
	if t.IsZero() {
		return "end of history"
	}
	return formatTime(t)
}

// History records the ownership beliefs of test consumers. It is safe for concurrent use by many
// goroutines; the zero value is an empty history ready to use.
//
// Times should come from time.Now in one process: Check compares them with Time.Sub, which uses
// the monotonic clock when both times carry a reading.
type History struct {
	mu        sync.Mutex
	intervals []Interval
	ended     []bool
}

// Ownership is one open belief recorded in a History, closed by End.
type Ownership struct {
	h   *History
	idx int
}

// Begin records that consumer started, at at, to believe it owns r of the key space (domain,
// region) under tok; region is the key space's region for a REGIONAL domain, "" for GLOBAL and
// UNIT. The belief lasts until End is called on the returned Ownership (or the history ends).
func (h *History) Begin(consumer, domain, region string, r topology.Range, tok topology.Token, at time.Time) *Ownership {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.intervals = append(h.intervals, Interval{
		Consumer: consumer,
		Domain:   domain,
		Region:   region,
		Range:    r,
		Token:    tok,
		Start:    at,
	})
	h.ended = append(h.ended, false)
	return &Ownership{h: h, idx: len(h.intervals) - 1}
}

// End records that the belief stopped at at. It is idempotent: the first call wins, later calls
// are ignored. The instant at itself is no longer owned (intervals are half-open).
func (o *Ownership) End(at time.Time) {
	o.h.mu.Lock()
	defer o.h.mu.Unlock()
	if o.h.ended[o.idx] {
		return
	}
	o.h.ended[o.idx] = true
	o.h.intervals[o.idx].End = at
}

// Intervals returns a copy of the recorded intervals in the order Begin was called.
func (h *History) Intervals() []Interval {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Interval, len(h.intervals))
	copy(out, h.intervals)
	return out
}

// Len returns the number of recorded intervals.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.intervals)
}

// Check checks a snapshot of the history; see the package function Check.
func (h *History) Check() []Violation { return Check(h.Intervals()) }

// HandoverGaps returns, per shard of the key space (domain, region), the
// gap between the end of the last ownership by a consumer that from
// selects and the start of the first ownership after it by a consumer
// that to selects, sorted: how long each shard was unserved while it moved
// (a fail-back, a graceful move between cells). Shards that did not move
// that way have no gap.
func HandoverGaps(ivs []Interval, domain, region string, from, to func(consumer string) bool) []time.Duration {
	ended := map[topology.Range]time.Time{}
	starts := map[topology.Range][]time.Time{}
	for _, iv := range ivs {
		if iv.Domain != domain || iv.Region != region {
			continue
		}
		switch {
		case from(iv.Consumer):
			if !iv.Open() && iv.End.After(ended[iv.Range]) {
				ended[iv.Range] = iv.End
			}
		case to(iv.Consumer):
			starts[iv.Range] = append(starts[iv.Range], iv.Start)
		}
	}
	var gaps []time.Duration
	for r, e := range ended {
		var first time.Time
		for _, s := range starts[r] {
			if s.After(e) && (first.IsZero() || s.Before(first)) {
				first = s
			}
		}
		if !first.IsZero() {
			gaps = append(gaps, first.Sub(e))
		}
	}
	slices.Sort(gaps)
	return gaps
}
