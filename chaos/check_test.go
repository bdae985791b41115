package chaos

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// found is a violation reduced to its kind and the input positions of A and B (-1 for none).
type found struct {
	kind ViolationKind
	a, b int
}

func (f found) String() string { return fmt.Sprintf("%s(%d, %d)", f.kind, f.a, f.b) }

// reduce maps violations back to positions in in; it fails the test on an interval not in in.
func reduce(t *testing.T, in []Interval, vs []Violation) []found {
	t.Helper()
	pos := func(x Interval) int {
		if x == (Interval{}) {
			return -1
		}
		for i := range in {
			if in[i] == x {
				return i
			}
		}
		t.Fatalf("violation names an interval that is not in the input: %s", x)
		return -2
	}
	out := make([]found, 0, len(vs))
	for _, v := range vs {
		out = append(out, found{v.Kind, pos(v.A), pos(v.B)})
	}
	slices.SortFunc(out, compareFound)
	return out
}

func compareFound(x, y found) int {
	return cmp.Or(cmp.Compare(x.kind, y.kind), cmp.Compare(x.a, y.a), cmp.Compare(x.b, y.b))
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		in   []Interval
		want []found
	}{
		{
			name: "disjoint ranges at the same time",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(1, 1), ms(0), ms(10)),
				iv("c2", "d", rng(4, 8), tok(1, 2), ms(0), ms(10)),
				iv("c3", "d", rng(8, full), tok(1, 3), ms(5), open),
			},
		},
		{
			name: "same range in different domains",
			in: []Interval{
				iv("c1", "d1", rng(0, full), tok(1, 1), ms(0), ms(10)),
				iv("c2", "d2", rng(0, full), tok(1, 1), ms(0), ms(10)),
			},
		},
		{
			name: "same range back to back",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(1, 1), ms(0), ms(10)),
				iv("c2", "d", rng(0, 4), tok(1, 2), ms(10), ms(20)),
				iv("c1", "d", rng(0, 4), tok(1, 3), ms(20), open),
			},
		},
		{
			name: "same range overlapping by 1ns",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(1, 1), ms(0), ms(10).Add(time.Nanosecond)),
				iv("c2", "d", rng(0, 4), tok(1, 2), ms(10), ms(20)),
			},
			want: []found{{Overlap, 0, 1}},
		},
		{
			name: "partially intersecting ranges after a split",
			in: []Interval{
				iv("c1", "d", rng(0, 8), tok(1, 1), ms(0), ms(10)),
				iv("c1", "d", rng(0, 4), tok(1, 2), ms(10), open),
				iv("c2", "d", rng(4, 8), tok(1, 3), ms(9), open),
			},
			want: []found{{Overlap, 0, 2}},
		},
		{
			name: "open interval and a later owner",
			in: []Interval{
				iv("c1", "d", rng(0, full), tok(1, 1), ms(0), open),
				iv("c2", "d", rng(3, 5), tok(1, 2), ms(100), ms(200)),
			},
			want: []found{{Overlap, 0, 1}},
		},
		{
			name: "two open intervals up to the end of the key space",
			in: []Interval{
				iv("c1", "d", rng(0, full), tok(1, 1), ms(0), open),
				iv("c2", "d", rng(full-1, full), tok(1, 2), ms(100), open),
			},
			want: []found{{Overlap, 0, 1}},
		},
		{
			name: "same start",
			in: []Interval{
				iv("c2", "d", rng(0, 4), tok(1, 2), ms(0), ms(10)),
				iv("c1", "d", rng(2, 6), tok(1, 1), ms(0), ms(10)),
			},
			want: []found{{Overlap, 1, 0}},
		},
		{
			name: "touching ranges",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(1, 1), ms(0), ms(10)),
				iv("c2", "d", rng(4, 8), tok(1, 2), ms(0), ms(10)),
			},
		},
		{
			name: "empty period inside another owner's",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(1, 1), ms(0), ms(10)),
				iv("c2", "d", rng(0, 4), tok(1, 2), ms(5), ms(5)),
			},
		},
		{
			name: "equal token across consumers",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(1, 7), ms(0), ms(10)),
				iv("c2", "d", rng(0, 4), tok(1, 7), ms(10), ms(20)),
			},
			want: []found{{TokenOrder, 0, 1}},
		},
		{
			name: "token decreasing",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(2, 1), ms(0), ms(10)),
				iv("c2", "d", rng(2, 8), tok(1, 9), ms(10), ms(20)),
			},
			want: []found{{TokenOrder, 0, 1}},
		},
		{
			name: "token decreasing for the same consumer",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(1, 5), ms(0), ms(10)),
				iv("c1", "d", rng(0, 4), tok(1, 4), ms(20), ms(30)),
			},
			want: []found{{TokenOrder, 0, 1}},
		},
		{
			name: "same consumer resumes with the same token",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(1, 5), ms(0), ms(10)),
				iv("c1", "d", rng(0, 4), tok(1, 5), ms(12), ms(30)),
				iv("c1", "d", rng(0, 4), tok(1, 5), ms(30), open),
				iv("c2", "d", rng(4, 8), tok(1, 5), ms(0), open),
			},
		},
		{
			name: "resume after another owner",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(1, 5), ms(0), ms(10)),
				iv("c2", "d", rng(0, 4), tok(1, 6), ms(10), ms(20)),
				iv("c1", "d", rng(0, 4), tok(1, 5), ms(20), ms(30)),
			},
			want: []found{{TokenOrder, 1, 2}},
		},
		{
			name: "every later token is checked against the highest",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(1, 5), ms(0), ms(10)),
				iv("c2", "d", rng(0, 4), tok(1, 3), ms(10), ms(20)),
				iv("c3", "d", rng(0, 4), tok(1, 4), ms(20), ms(30)),
				iv("c4", "d", rng(0, 4), tok(1, 6), ms(30), ms(40)),
			},
			want: []found{{TokenOrder, 0, 1}, {TokenOrder, 0, 2}},
		},
		{
			name: "same consumer overlapping itself across a split and a merge",
			in: []Interval{
				iv("c1", "d", rng(0, 8), tok(1, 1), ms(0), ms(11)),
				iv("c1", "d", rng(0, 4), tok(1, 2), ms(10), ms(20)),
				iv("c1", "d", rng(4, 8), tok(1, 3), ms(10), ms(21)),
				iv("c1", "d", rng(0, 8), tok(1, 4), ms(20), open),
			},
		},
		{
			name: "overlap and token order in one pair",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(1, 5), ms(0), ms(10)),
				iv("c2", "d", rng(0, 4), tok(1, 5), ms(5), ms(20)),
			},
			want: []found{{Overlap, 0, 1}, {TokenOrder, 0, 1}},
		},
		{
			name: "same range in two key spaces of one domain",
			in: []Interval{
				ivIn("c1", "d", "us-east", rng(0, full), tok(1, 1), ms(0), ms(10)),
				ivIn("c2", "d", "eu-west", rng(0, full), tok(1, 1), ms(0), ms(10)),
				iv("c3", "d", rng(2, 6), tok(1, 1), ms(5), open),
				ivIn("c4", "d", "eu-west", rng(0, 4), tok(1, 2), ms(10), open),
				ivIn("c5", "d", "us-east", rng(4, 8), tok(1, 2), ms(10), open),
			},
		},
		{
			name: "same range in one key space",
			in: []Interval{
				ivIn("c1", "d", "us-east", rng(0, 4), tok(1, 1), ms(0), ms(10)),
				ivIn("c2", "d", "eu-west", rng(0, 4), tok(1, 1), ms(0), ms(10)),
				ivIn("c3", "d", "us-east", rng(2, 6), tok(1, 2), ms(5), ms(15)),
			},
			want: []found{{Overlap, 0, 2}},
		},
		{
			name: "tokens increase per key space",
			in: []Interval{
				ivIn("c1", "d", "us-east", rng(0, 4), tok(2, 5), ms(0), ms(10)),
				ivIn("c2", "d", "eu-west", rng(0, 4), tok(1, 3), ms(10), ms(20)),
				ivIn("c3", "d", "eu-west", rng(0, 4), tok(1, 4), ms(20), ms(30)),
				ivIn("c4", "d", "us-east", rng(0, 4), tok(2, 6), ms(20), ms(30)),
			},
		},
		{
			name: "token regression in one key space",
			in: []Interval{
				ivIn("c1", "d", "eu-west", rng(0, 4), tok(1, 5), ms(0), ms(10)),
				ivIn("c2", "d", "us-east", rng(0, 4), tok(2, 9), ms(5), ms(15)),
				ivIn("c3", "d", "eu-west", rng(2, 6), tok(1, 4), ms(10), ms(20)),
				ivIn("c4", "d", "us-east", rng(0, 4), tok(2, 9), ms(15), ms(25)),
			},
			want: []found{{TokenOrder, 0, 2}, {TokenOrder, 1, 3}},
		},
		{
			name: "malformed intervals are reported and skipped",
			in: []Interval{
				iv("c1", "d", rng(0, 4), tok(1, 1), ms(10), ms(5)),
				iv("c2", "d", rng(4, 4), tok(1, 1), ms(0), ms(5)),
				iv("", "d", rng(0, 4), tok(1, 1), ms(0), ms(5)),
				iv("c3", "", rng(0, 4), tok(1, 1), ms(0), ms(5)),
				iv("c4", "d", rng(0, 4), tok(1, 1), open, ms(5)),
				iv("c5", "d", rng(0, 4), tok(1, 1), ms(0), ms(5)),
			},
			want: []found{{Malformed, 0, -1}, {Malformed, 1, -1}, {Malformed, 2, -1}, {Malformed, 3, -1}, {Malformed, 4, -1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := Check(tt.in)
			got := reduce(t, tt.in, vs)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Check = %v, want %v; violations:\n%s", got, tt.want, join(vs))
			}
			// The order of the input must not matter.
			shuffled := slices.Clone(tt.in)
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if got2 := reduce(t, tt.in, Check(shuffled)); !slices.Equal(got2, got) {
				t.Errorf("Check of shuffled input = %v, want %v", got2, got)
			}
		})
	}
}

func join(vs []Violation) string {
	var b strings.Builder
	for _, v := range vs {
		b.WriteString(v.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func TestViolationString(t *testing.T) {
	in := []Interval{
		iv("c1", "orders", rng(0, full), tok(1, 5), ms(0), open),
		iv("c2", "orders", rng(full/2, full), tok(1, 5), ms(10), ms(20)),
	}
	vs := Check(in)
	if len(vs) != 2 {
		t.Fatalf("got %d violations, want 2:\n%s", len(vs), join(vs))
	}
	for _, v := range vs {
		s := v.String()
		for _, want := range []string{
			v.Kind.String(), `"c1"`, `"c2"`, `"orders"`, "1.5",
			"[80000000-0000-0000-0000-000000000000, end)", "2026-11-25T18:00:00.01Z", "end of history",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("%s violation String() lacks %q:\n%s", v.Kind, want, s)
			}
		}
	}
}

func TestViolationStringRegion(t *testing.T) {
	in := []Interval{
		ivIn("c1", "orders", "eu-west", rng(0, full), tok(1, 5), ms(0), open),
		ivIn("c2", "orders", "eu-west", rng(full/2, full), tok(1, 5), ms(10), ms(20)),
		ivIn("c3", "orders", "us-east", rng(0, full), tok(1, 5), ms(10), ms(20)),
	}
	vs := Check(in)
	if len(vs) != 2 {
		t.Fatalf("got %d violations, want 2:\n%s", len(vs), join(vs))
	}
	for _, v := range vs {
		s := v.String()
		if !strings.Contains(s, `in domain "orders" region "eu-west":`) || strings.Contains(s, "us-east") {
			t.Errorf("%s violation String() does not name key space eu-west (only):\n%s", v.Kind, s)
		}
		if got, want := v.A.String(), `"c1" owned "orders" region "eu-west" [`; !strings.HasPrefix(got, want) {
			t.Errorf("Interval.String() = %q, want prefix %q", got, want)
		}
	}
	if got := iv("c1", "orders", rng(0, full), tok(1, 5), ms(0), open).String(); !strings.HasPrefix(got, `"c1" owned "orders" [`) {
		t.Errorf("Interval.String() without region = %q", got)
	}
}

// reference is Check the slow way: every pair for overlaps, every elementary key segment for
// token order, per key space (domain, region).
func reference(in []Interval) []found {
	var out []found
	var good []int
	for i := range in {
		if malformed(&in[i]) != "" {
			out = append(out, found{Malformed, i, -1})
		} else {
			good = append(good, i)
		}
	}
	slices.SortStableFunc(good, func(a, b int) int {
		return cmp.Or(in[a].Start.Compare(in[b].Start), in[a].Token.Compare(in[b].Token))
	})
	end := func(t time.Time) time.Time {
		if t.IsZero() {
			return t0.Add(1000 * time.Hour)
		}
		return t
	}
	for x, i := range good {
		for _, j := range good[x+1:] {
			a, b := in[i], in[j]
			if a.Domain == b.Domain && a.Region == b.Region && a.Consumer != b.Consumer && a.Range.Overlaps(b.Range) &&
				a.Start.Before(end(b.End)) && b.Start.Before(end(a.End)) &&
				a.Start.Before(end(a.End)) && b.Start.Before(end(b.End)) {
				out = append(out, found{Overlap, i, j})
			}
		}
	}
	var bounds []Interval // only Range.From used: the distinct bounds
	for _, i := range good {
		bounds = append(bounds, Interval{Range: in[i].Range}, Interval{Range: in[i].Range})
		bounds[len(bounds)-1].Range.From = in[i].Range.To
	}
	slices.SortFunc(bounds, func(a, b Interval) int { return a.Range.From.Compare(b.Range.From) })
	seen := map[found]bool{}
	for k := 0; k+1 < len(bounds); k++ {
		seg := rng(0, 1)
		seg.From, seg.To = bounds[k].Range.From, bounds[k+1].Range.From
		if !seg.From.Less(seg.To) {
			continue
		}
		holders := map[[2]string]int{} // (domain, region) -> holder
		for _, j := range good {
			b := in[j]
			if !b.Range.Overlaps(seg) {
				continue
			}
			space := [2]string{b.Domain, b.Region}
			h, ok := holders[space]
			if !ok {
				holders[space] = j
				continue
			}
			a := in[h]
			if d := b.Token.Compare(a.Token); d > 0 || (d == 0 && a.Consumer == b.Consumer) {
				holders[space] = j
			} else if f := (found{TokenOrder, h, j}); !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	slices.SortFunc(out, compareFound)
	return out
}

// TestCheckAgainstReference compares Check with the quadratic reference on small random histories
// full of violations.
func TestCheckAgainstReference(t *testing.T) {
	shapes := []struct {
		seeds, intervals, grid, width, span, tokens int
	}{
		{seeds: 500, intervals: 40, grid: 8, width: 4, span: 20, tokens: 6},           // dense
		{seeds: 20, intervals: 400, grid: 300, width: 40, span: 4000, tokens: 10_000}, // many bounds
	}
	for _, sh := range shapes {
		for seed := range uint64(sh.seeds) {
			r := rand.New(rand.NewPCG(seed, uint64(sh.grid)))
			in := randomHistory(r, 1+r.IntN(sh.intervals), sh.grid, sh.width, sh.span, sh.tokens)
			got := reduce(t, in, Check(in))
			if want := reference(in); !slices.Equal(got, want) {
				t.Fatalf("seed %d: Check = %v\nreference = %v\ninput:\n%s", seed, got, want, dump(in))
			}
		}
	}
}

// randomHistory returns n random intervals of 3 consumers in 2 domains of 2 key spaces (regions ""
// and "us-east"), on ranges of up to width
// units of a grid of the key space, starting within span ms, with tokens below tokens: full of
// violations of every kind.
func randomHistory(r *rand.Rand, n, grid, width, span, tokens int) []Interval {
	in := make([]Interval, n)
	for i := range in {
		from := uint64(r.IntN(grid))
		to := from + 1 + uint64(r.IntN(width))
		if to > uint64(grid) {
			to = full
		}
		start := ms(r.IntN(span))
		end := open
		if r.IntN(5) > 0 {
			end = start.Add(time.Duration(r.IntN(8)) * time.Millisecond)
		}
		in[i] = ivIn(fmt.Sprint("c", r.IntN(3)), fmt.Sprint("d", r.IntN(2)), []string{"", "us-east"}[r.IntN(2)], rng(from, to), tok(1, uint64(r.IntN(tokens))), start, end)
		if r.IntN(50) == 0 {
			in[i].End = start.Add(-time.Millisecond)
		}
	}
	return in
}

func dump(in []Interval) string {
	var b strings.Builder
	for i, x := range in {
		fmt.Fprintf(&b, "%d: %s\n", i, x)
	}
	return b.String()
}

// TestCheckInjectedFault builds valid histories, checks that they pass, then breaks each in one
// place and checks that the fault is found, and nothing unrelated to it.
func TestCheckInjectedFault(t *testing.T) {
	type fault struct {
		name   string
		kind   ViolationKind
		differ bool // needs a pair of different consumers
		apply  func(h []Interval, a, b int) (bad int)
	}
	faults := []fault{
		{"end extended past the successor's start", Overlap, true, func(h []Interval, a, b int) int {
			h[a].End = h[b].Start.Add(time.Nanosecond)
			return a
		}},
		{"never ended", Overlap, true, func(h []Interval, a, b int) int {
			h[a].End = open
			return a
		}},
		{"started 1ns before the predecessor ended", Overlap, true, func(h []Interval, a, b int) int {
			h[b].Start = h[a].End.Add(-time.Nanosecond)
			return b
		}},
		{"token equal to the predecessor's", TokenOrder, true, func(h []Interval, a, b int) int {
			h[b].Token = h[a].Token
			return b
		}},
		{"token below the predecessor's", TokenOrder, false, func(h []Interval, a, b int) int {
			h[b].Token = below(h[a].Token)
			return b
		}},
	}
	for seed := range uint64(20) {
		s := newSim(seed, 3, 4+int(seed%5), 2+int(seed%4))
		valid := s.history(300 + int(seed)*40)
		if vs := Check(valid); len(vs) != 0 {
			t.Fatalf("seed %d: valid history has %d violations:\n%s", seed, len(vs), join(vs))
		}
		for _, f := range faults {
			t.Run(fmt.Sprintf("seed=%d/%s", seed, f.name), func(t *testing.T) {
				pairs := slices.DeleteFunc(slices.Clone(s.succ), func(p [2]int) bool {
					a, b := valid[p[0]], valid[p[1]]
					return (f.differ && a.Consumer == b.Consumer) || (f.kind == Overlap && a.End.IsZero())
				})
				if len(pairs) == 0 {
					t.Skip("no pair to break")
				}
				p := pairs[rand.New(rand.NewPCG(seed, 7)).IntN(len(pairs))]
				h := slices.Clone(valid)
				bad := f.apply(h, p[0], p[1])
				vs := Check(h)
				got := reduce(t, h, vs)
				if !slices.Contains(got, found{f.kind, p[0], p[1]}) {
					t.Fatalf("fault in %d not found: got %v, want %s(%d, %d)\nA: %s\nB: %s\n%s",
						bad, got, f.kind, p[0], p[1], h[p[0]], h[p[1]], join(vs))
				}
				for _, g := range got {
					if g.a != bad && g.b != bad {
						t.Errorf("violation %v does not involve the broken interval %d:\n%s", g, bad, join(vs))
					}
				}
			})
		}
	}
}

func TestCheckLargeValidHistory(t *testing.T) {
	h := newSim(42, 4, 64, 10).history(20_000)
	if vs := Check(h); len(vs) != 0 {
		t.Fatalf("valid history of %d intervals has %d violations, first:\n%s", len(h), len(vs), vs[0])
	}
}

// BenchmarkCheck checks a valid history of 200,000 intervals: 8 key spaces (of 3 domains) of 256
// shards at first, 32 consumers, handovers, resumes, releases, splits and merges (about 18,000
// distinct bounds).
func BenchmarkCheck(b *testing.B) {
	h := newSim(1, 8, 256, 32).history(200_000)[:200_000]
	b.ReportAllocs()
	for b.Loop() {
		if vs := Check(h); len(vs) != 0 {
			b.Fatalf("%d violations", len(vs))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(h)), "ns/interval")
}
