package chaos

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/wdsio/wds/topology"
)

// ViolationKind says which part of the guarantee a Violation breaks.
type ViolationKind int

const (
	// Overlap: two different consumers believed they owned intersecting ranges of one key space
	// (domain, region) at a common instant.
	Overlap ViolationKind = iota + 1
	// TokenOrder: for some key of a key space, a later owner's token is not strictly greater than
	// an earlier owner's (a consumer resuming its own grant with the same token is not a
	// violation).
	TokenOrder
	// Malformed: an interval that cannot be judged (no consumer or domain, a zero Start, an End
	// before its Start, or an empty range). It is reported in A and left out of every other check.
	Malformed
)

func (k ViolationKind) String() string {
	switch k {
	case Overlap:
		return "overlap"
	case TokenOrder:
		return "token order"
	case Malformed:
		return "malformed interval"
	default:
		return fmt.Sprintf("ViolationKind(%d)", int(k))
	}
}

// Violation is one breach of the guarantee by a pair of intervals. A began no later than B (for
// equal Starts, A has the smaller token). A Malformed violation has only A.
type Violation struct {
	Kind   ViolationKind
	A, B   Interval
	Detail string
}

// String formats the violation for a test failure: what went wrong, then both intervals.
func (v Violation) String() string {
	if v.Kind == Malformed {
		return fmt.Sprintf("%s: %s\n\t%s", v.Kind, v.Detail, v.A)
	}
	return fmt.Sprintf("%s in domain %s: %s\n\tA: %s\n\tB: %s", v.Kind, keySpaceString(v.A.Domain, v.A.Region), v.Detail, v.A, v.B)
}

// Check returns every violation of the guarantee in intervals, in any order of input. Keys are
// judged per key space (Domain, Region): the same numeric range in (d, "us-east") and in
// (d, "eu-west") holds different keys, so two owners of it there at once are no overlap, and
// tokens need only increase within each key space. An interval without Region is of the key
// space (Domain, ""), as a GLOBAL or UNIT domain's are.
//
//   - Overlap: two intervals of different consumers whose ranges of one key space intersect and
//     whose periods [Start, End) intersect. Periods that only touch (End == the other's Start) do
//     not.
//   - TokenOrder: order the intervals of a key space by Start (then by token). For every key, each
//     interval's token must be strictly greater than the highest token an earlier interval held
//     on that key, except that the consumer holding that highest token may record it again
//     (a resumed grant). A violation pairs the interval with the earlier holder of that token.
//   - Malformed: an interval that cannot be judged (see Malformed).
//
// Each violating pair is reported once per kind: malformed intervals first, then key space by key
// space in order of domain name and region, by the Start of B. Intervals are compared only with
// intervals whose ranges intersect theirs, in one sweep over time per key space, so Check takes
// O(n log n) time for a
// history without violations. Times are compared with Time.Sub: on the monotonic clock for times
// taken by time.Now in one process, on the wall clock otherwise.
func Check(intervals []Interval) []Violation {
	var out []Violation
	c := &checker{
		in:        intervals,
		consumers: make(map[string]int32),
		spaces:    make(map[keySpace]int32),
		bounds:    make(map[spaceBound]int32),
	}
	// One pass over the input, in its order: reduce each interval to a rec.
	recs := make([]rec, 0, len(intervals))
	haveBase := false
	for i := range intervals {
		iv := &intervals[i]
		if why := malformed(iv); why != "" {
			out = append(out, Violation{Kind: Malformed, A: *iv, Detail: why})
			continue
		}
		if !haveBase {
			c.base, haveBase = iv.Start, true
		}
		d := c.space(iv.Domain, iv.Region)
		recs = append(recs, rec{
			start: c.since(iv.Start),
			end:   c.since(iv.End),
			tok:   iv.Token,
			from:  c.bound(d, iv.Range.From),
			to:    c.bound(d, iv.Range.To),
			cons:  c.consumer(iv.Consumer),
			dom:   d,
			idx:   int32(i),
		})
	}

	// Rank the bounds within each key space: equal bounds get equal ranks, so ranges intersect iff
	// their ranks do.
	order := make([]int32, len(c.boundList))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		x, y := &c.boundList[a], &c.boundList[b]
		return cmp.Or(cmp.Compare(x.dom, y.dom), x.b.Compare(y.b))
	})
	rank := make([]int32, len(order))
	width := make([]int32, len(c.spaceList))
	for _, id := range order {
		d := c.boundList[id].dom
		rank[id] = width[d]
		width[d]++
	}

	// Group the recs by key space, in order of domain name and region, keeping the input order
	// within each (often nearly sorted by Start already, which the sweep's sort is quick to
	// finish).
	byName := make([]int32, len(c.spaceList))
	for i := range byName {
		byName[i] = int32(i)
	}
	slices.SortFunc(byName, func(a, b int32) int {
		x, y := c.spaceList[a], c.spaceList[b]
		return cmp.Or(cmp.Compare(x.domain, y.domain), cmp.Compare(x.region, y.region))
	})
	next := make([]int, len(c.spaceList)) // where the next rec of each key space goes
	for _, r := range recs {
		next[r.dom]++
	}
	first := make([]int, len(c.spaceList)+1) // where each key space starts, in name order
	for i, d := range byName {
		first[i+1] = first[i] + next[d]
		next[d] = first[i]
	}
	grouped := make([]rec, len(recs))
	for _, r := range recs {
		r.from, r.to = rank[r.from], rank[r.to]
		grouped[next[r.dom]] = r
		next[r.dom]++
	}
	for i, d := range byName {
		out = c.sweep(grouped[first[i]:first[i+1]], width[d], out)
	}
	return out
}

func malformed(iv *Interval) string {
	switch {
	case iv.Consumer == "":
		return "no consumer"
	case iv.Domain == "":
		return "no domain"
	case iv.Start.IsZero():
		return "no start time"
	case !iv.End.IsZero() && iv.End.Before(iv.Start):
		return fmt.Sprintf("ends at %s, %s before it starts", formatTime(iv.End), iv.Start.Sub(iv.End))
	case !iv.Range.From.Less(iv.Range.To):
		return fmt.Sprintf("empty range %s", iv.Range)
	}
	return ""
}

// rec is an interval reduced to integers: times in ns since the base, bounds as ranks among the
// distinct bounds of its key space, consumer and key space as interned ids.
type rec struct {
	start, end int64 // end is math.MaxInt64 for an open interval
	tok        topology.Token
	from, to   int32
	cons, dom  int32 // dom: the key space
	idx        int32 // index in the input
}

// keySpace is (domain, region): the keys of a GLOBAL or UNIT domain (region "") or of one
// region's key space of a REGIONAL domain.
type keySpace struct {
	domain, region string
}

type spaceBound struct {
	dom int32 // the key space
	b   topology.Bound
}

// checker holds the interning tables of one Check and the buffers its sweeps reuse.
type checker struct {
	in        []Interval
	base      time.Time
	consumers map[string]int32

	spaces    map[keySpace]int32
	spaceList []keySpace
	lastSpace int32 // most recent key space id, a cache for runs of one key space
	bounds    map[spaceBound]int32
	boundList []spaceBound

	recs  []rec // of the key space being swept
	stamp []int32

	// The active set: intervals whose period may contain the sweep's instant, in lists by From
	// rank (head, next, prev), with the largest To of each rank's list in reach.
	head, next, prev []int32
	reach            maxTree

	// The holders: run starts partition the ranks into runs; holder[s] is the position of the
	// interval that holds the highest token so far on the run starting at rank s (null if none).
	runs   bitset
	holder []int32
}

func (c *checker) since(t time.Time) int64 {
	if t.IsZero() {
		return math.MaxInt64
	}
	return int64(t.Sub(c.base))
}

func (c *checker) consumer(s string) int32 {
	id, ok := c.consumers[s]
	if !ok {
		id = int32(len(c.consumers))
		c.consumers[s] = id
	}
	return id
}

func (c *checker) space(domain, region string) int32 {
	k := keySpace{domain, region}
	if len(c.spaceList) > 0 && c.spaceList[c.lastSpace] == k {
		return c.lastSpace
	}
	id, ok := c.spaces[k]
	if !ok {
		id = int32(len(c.spaceList))
		c.spaces[k] = id
		c.spaceList = append(c.spaceList, k)
	}
	c.lastSpace = id
	return id
}

func (c *checker) bound(d int32, b topology.Bound) int32 {
	k := spaceBound{d, b}
	id, ok := c.bounds[k]
	if !ok {
		id = int32(len(c.boundList))
		c.bounds[k] = id
		c.boundList = append(c.boundList, k)
	}
	return id
}

// sweep checks the recs of one key space, whose bounds have ranks below width, and appends the
// violations to out.
func (c *checker) sweep(recs []rec, width int32, out []Violation) []Violation {
	n := len(recs)
	slices.SortFunc(recs, func(a, b rec) int {
		if a.start != b.start {
			return cmp.Compare(a.start, b.start)
		}
		if c := a.tok.Compare(b.tok); c != 0 {
			return c
		}
		return cmp.Compare(a.idx, b.idx)
	})
	c.recs = recs
	stamp := resize(&c.stamp, n)
	clear(stamp)
	head, next := resize(&c.head, int(width)), resize(&c.next, n)
	resize(&c.prev, n)
	for i := range head {
		head[i] = null
	}
	c.reach.reset(int(width))
	holder := resize(&c.holder, int(width))
	c.runs.reset(int(width))
	c.runs.set(0)
	holder[0] = null

	for p := range recs {
		r := &recs[p]

		// Overlap: compare r with the intervals active at r.start whose ranges intersect r's.
		// Intervals that ended by r.start leave the active set when a query meets them; the
		// sweep's instant only moves forward, so they can never matter again.
		if r.end > r.start {
			for f := c.reach.prevAbove(r.to-1, r.from); f >= 0; f = c.reach.prevAbove(f-1, r.from) {
				for q := head[f]; q != null; {
					a, after := &recs[q], next[q]
					switch {
					case a.end <= r.start:
						c.deactivate(q)
					case a.to > r.from && a.cons != r.cons:
						out = append(out, c.overlap(a, r))
					}
					q = after
				}
			}
			c.activate(int32(p))
		}

		// TokenOrder: r takes over the keys where it follows the holder; elsewhere the holder
		// stays and the pair is a violation.
		c.cut(r.from)
		if r.to < width {
			c.cut(r.to)
		}
		took := false // whether the run before s in [r.from, r.to) went to r
		for s := r.from; s >= 0 && s < r.to; {
			e := c.runs.next(s + 1)
			if h := holder[s]; h == null || follows(&recs[h], r) {
				if took {
					c.runs.unset(s) // join the previous run, also r's
				}
				holder[s], took = int32(p), true
			} else {
				took = false
				if stamp[h] != int32(p)+1 {
					stamp[h] = int32(p) + 1
					out = append(out, c.tokenOrder(&recs[h], r))
				}
			}
			s = e
		}
	}
	return out
}

// cut makes rank i the start of a run, splitting the run that contains it.
func (c *checker) cut(i int32) {
	if !c.runs.has(i) {
		c.holder[i] = c.holder[c.runs.prev(i)]
		c.runs.set(i)
	}
}

func (c *checker) activate(p int32) {
	r := &c.recs[p]
	c.prev[p], c.next[p] = null, c.head[r.from]
	if c.head[r.from] != null {
		c.prev[c.head[r.from]] = p
	}
	c.head[r.from] = p
	if r.to > c.reach.get(r.from) {
		c.reach.set(r.from, r.to)
	}
}

func (c *checker) deactivate(p int32) {
	r := &c.recs[p]
	if c.prev[p] != null {
		c.next[c.prev[p]] = c.next[p]
	} else {
		c.head[r.from] = c.next[p]
	}
	if c.next[p] != null {
		c.prev[c.next[p]] = c.prev[p]
	}
	if r.to == c.reach.get(r.from) {
		m := int32(0)
		for q := c.head[r.from]; q != null; q = c.next[q] {
			m = max(m, c.recs[q].to)
		}
		c.reach.set(r.from, m)
	}
}

// resize sets *buf to a slice of length n, reusing its array when large enough.
func resize[T any](buf *[]T, n int) []T {
	*buf = slices.Grow((*buf)[:0], n)[:n]
	return *buf
}

const null int32 = -1

// follows reports whether b may own keys after a: its token is greater, or it is a's consumer
// resuming the same grant.
func follows(a, b *rec) bool {
	d := b.tok.Compare(a.tok)
	return d > 0 || (d == 0 && a.cons == b.cons)
}

func (c *checker) overlap(a, b *rec) Violation {
	A, B := c.in[a.idx], c.in[b.idx]
	from, to := B.Start, A.End // B starts no earlier than A
	if to.IsZero() || (!B.End.IsZero() && B.End.Before(to)) {
		to = B.End
	}
	var long string
	if to.IsZero() {
		long = "until the end of the history"
	} else {
		long = "for " + to.Sub(from).String()
	}
	return Violation{
		Kind: Overlap,
		A:    A,
		B:    B,
		Detail: fmt.Sprintf("%q and %q both owned %s during [%s, %s), %s",
			A.Consumer, B.Consumer, intersect(A.Range, B.Range), formatTime(from), formatEnd(to), long),
	}
}

func (c *checker) tokenOrder(a, b *rec) Violation {
	A, B := c.in[a.idx], c.in[b.idx]
	what := "lower than"
	if b.tok.Compare(a.tok) == 0 {
		what = "equal to"
	}
	return Violation{
		Kind: TokenOrder,
		A:    A,
		B:    B,
		Detail: fmt.Sprintf("%q took %s at %s with token %s, %s token %s of earlier owner %q (from %s)",
			B.Consumer, intersect(A.Range, B.Range), formatTime(B.Start), B.Token, what,
			A.Token, A.Consumer, formatTime(A.Start)),
	}
}

func intersect(a, b topology.Range) topology.Range {
	r := a
	if r.From.Less(b.From) {
		r.From = b.From
	}
	if b.To.Less(r.To) {
		r.To = b.To
	}
	return r
}
