package topology

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

var (
	two128  = new(big.Int).Lsh(big.NewInt(1), 128)
	maxKey  = uuid.MustParse("ffffffff-ffff-ffff-ffff-ffffffffffff")
	halfKey = uuid.MustParse("80000000-0000-0000-0000-000000000000")
)

// toBig returns b as an integer in [0, 2^128], the reference model the tests
// check the uint64 arithmetic against.
func toBig(b Bound) *big.Int {
	if b.IsEnd() {
		return new(big.Int).Set(two128)
	}
	k, _ := b.Key()
	return new(big.Int).SetBytes(k[:])
}

// fromBig is the inverse of toBig.
func fromBig(t testing.TB, x *big.Int) Bound {
	t.Helper()
	switch {
	case x.Sign() < 0 || x.Cmp(two128) > 0:
		t.Fatalf("fromBig(%v): out of the key space", x)
	case x.Cmp(two128) == 0:
		return End
	}
	var k uuid.UUID
	x.FillBytes(k[:])
	return BoundOf(k)
}

func bound(t testing.TB, s string) Bound {
	t.Helper()
	b, err := ParseBound("test", s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randKey(r *rand.Rand) uuid.UUID {
	var k uuid.UUID
	for i := range k {
		k[i] = byte(r.Uint32())
	}
	return k
}

// wantFieldErr fails unless err is a *FieldError matching ErrInvalid whose
// message contains every one of wants.
func wantFieldErr(t *testing.T, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", wants)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %q (%T) is not a *FieldError", err, err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error %q does not match ErrInvalid", err)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestBoundCompare(t *testing.T) {
	one := bound(t, "00000000-0000-0000-0000-000000000001")
	loMax := bound(t, "00000000-0000-0000-ffff-ffffffffffff")
	hiOne := bound(t, "00000000-0000-0001-0000-000000000000")
	top := BoundOf(maxKey)
	// Ascending; every pair must compare as its positions do.
	order := []Bound{Start, one, loMax, hiOne, BoundOf(halfKey), top, End}
	for i, a := range order {
		for j, b := range order {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", a, b, got, want)
			}
			if got := a.Less(b); got != (want < 0) {
				t.Errorf("%v.Less(%v) = %v", a, b, got)
			}
			if (a == b) != (i == j) {
				t.Errorf("%v == %v is %v", a, b, a == b)
			}
		}
	}
	var zero Bound
	if zero != Start || zero.IsEnd() || !End.IsEnd() {
		t.Errorf("zero value must be Start and only End must be the end")
	}
}

func TestBoundStringKeyBytes(t *testing.T) {
	tests := []struct {
		name string
		b    Bound
		str  string
	}{
		{"start", Start, "00000000-0000-0000-0000-000000000000"},
		{"half", BoundOf(halfKey), "80000000-0000-0000-0000-000000000000"},
		{"max key", BoundOf(maxKey), "ffffffff-ffff-ffff-ffff-ffffffffffff"},
		{"mixed", bound(t, "0123abcd-4567-89ab-cdef-0123456789ab"), "0123abcd-4567-89ab-cdef-0123456789ab"},
		{"end", End, "end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			k, ok := tt.b.Key()
			if ok == tt.b.IsEnd() {
				t.Fatalf("Key() ok = %v for %v", ok, tt.b)
			}
			if ok && BoundOf(k) != tt.b {
				t.Errorf("BoundOf(Key()) = %v, want %v", BoundOf(k), tt.b)
			}
			p := tt.b.Bytes()
			if tt.b.IsEnd() != (p == nil) {
				t.Fatalf("Bytes() = %x", p)
			}
			if ok && string(p) != string(k[:]) {
				t.Errorf("Bytes() = %x, want the UUID's bytes %x", p, k[:])
			}
			back, err := BoundFromBytes("b", p)
			if err != nil || back != tt.b {
				t.Errorf("BoundFromBytes(Bytes()) = %v, %v; want %v", back, err, tt.b)
			}
			back, err = KeyFromBytes("b", p)
			if tt.b.IsEnd() {
				wantFieldErr(t, err, "b:", "16 bytes", "got 0 bytes")
			} else if err != nil || back != tt.b {
				t.Errorf("KeyFromBytes(Bytes()) = %v, %v; want %v", back, err, tt.b)
			}
			parsed, err := ParseBound("b", tt.str)
			if err != nil || parsed != tt.b {
				t.Errorf("ParseBound(%q) = %v, %v", tt.str, parsed, err)
			}
			text, _ := tt.b.MarshalText()
			var un Bound
			if err := un.UnmarshalText(text); err != nil || un != tt.b {
				t.Errorf("text round trip: %v, %v", un, err)
			}
		})
	}
}

func TestBoundFromBytesErrors(t *testing.T) {
	tests := []struct {
		name string
		p    []byte
		key  bool // KeyFromBytes instead of BoundFromBytes
		want string
	}{
		{"one byte", []byte{1}, false, "got 1 byte)"},
		{"15 bytes", make([]byte, 15), false, "got 15 bytes"},
		{"17 bytes", make([]byte, 17), false, "got 17 bytes"},
		{"key empty", nil, true, "got 0 bytes"},
		{"key 15 bytes", make([]byte, 15), true, "got 15 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.key {
				_, err = KeyFromBytes("shard.range.from", tt.p)
			} else {
				_, err = BoundFromBytes("shard.range.from", tt.p)
			}
			wantFieldErr(t, err, "shard.range.from: ", tt.want)
		})
	}
}

func TestParseKey(t *testing.T) {
	if k, err := ParseKey("key", "80000000-0000-0000-0000-000000000000"); err != nil || k != halfKey {
		t.Fatalf("ParseKey = %v, %v", k, err)
	}
	for _, s := range []string{"", "nope", "80000000-0000-0000-0000-00000000000g", strings.Repeat("a", 500)} {
		_, err := ParseKey("hello.key", s)
		want := quote(s)
		wantFieldErr(t, err, "hello.key: invalid UUID", want)
	}
	_, err := ParseBound("to", "ended")
	wantFieldErr(t, err, `to: invalid UUID`, `"ended"`)
}

func TestBoundJSON(t *testing.T) {
	r := Range{From: BoundOf(halfKey), To: End}
	p, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"From":"80000000-0000-0000-0000-000000000000","To":"end"}`; string(p) != want {
		t.Errorf("json = %s, want %s", p, want)
	}
	var back Range
	if err := json.Unmarshal(p, &back); err != nil || back != r {
		t.Errorf("json round trip = %v, %v", back, err)
	}
}

func TestRange(t *testing.T) {
	a := bound(t, "10000000-0000-0000-0000-000000000000")
	b := bound(t, "20000000-0000-0000-0000-000000000000")
	c := bound(t, "30000000-0000-0000-0000-000000000000")
	r := Range{From: a, To: b}
	tail := Range{From: c, To: End}

	t.Run("contains", func(t *testing.T) {
		for _, tt := range []struct {
			r    Range
			b    Bound
			want bool
		}{
			{r, a, true},
			{r, bound(t, "1fffffff-ffff-ffff-ffff-ffffffffffff"), true},
			{r, b, false},
			{r, bound(t, "0fffffff-ffff-ffff-ffff-ffffffffffff"), false},
			{tail, BoundOf(maxKey), true},
			{tail, End, false},
			{Full, Start, true},
			{Full, BoundOf(maxKey), true},
			{Full, End, false},
		} {
			if got := tt.r.ContainsBound(tt.b); got != tt.want {
				t.Errorf("%v.ContainsBound(%v) = %v, want %v", tt.r, tt.b, got, tt.want)
			}
			if k, ok := tt.b.Key(); ok && tt.r.Contains(k) != tt.want {
				t.Errorf("%v.Contains(%v) = %v, want %v", tt.r, k, !tt.want, tt.want)
			}
		}
	})
	t.Run("overlaps", func(t *testing.T) {
		for _, tt := range []struct {
			x, y Range
			want bool
		}{
			{r, Range{b, c}, false}, // adjacent: half-open ranges share no key
			{r, Range{a, c}, true},
			{r, Range{Start, a}, false},
			{r, Full, true},
			{tail, Range{b, End}, true},
			{tail, Range{a, c}, false},
		} {
			if got := tt.x.Overlaps(tt.y); got != tt.want {
				t.Errorf("%v.Overlaps(%v) = %v, want %v", tt.x, tt.y, got, tt.want)
			}
			if got := tt.y.Overlaps(tt.x); got != tt.want {
				t.Errorf("%v.Overlaps(%v) = %v, want %v", tt.y, tt.x, got, tt.want)
			}
		}
	})
	t.Run("validate", func(t *testing.T) {
		for _, ok := range []Range{r, tail, Full, {Start, bound(t, "00000000-0000-0000-0000-000000000001")}, {BoundOf(maxKey), End}} {
			if err := ok.Validate(); err != nil {
				t.Errorf("%v.Validate() = %v", ok, err)
			}
		}
		wantFieldErr(t, Range{b, a}.Validate(), "to: must be after from "+b.String(), "got "+a.String())
		wantFieldErr(t, Range{a, a}.Validate(), "to: must be after from")
		wantFieldErr(t, Range{End, End}.Validate(), "from: must be a key", "got end")
	})
	t.Run("string and full", func(t *testing.T) {
		if got, want := tail.String(), "[30000000-0000-0000-0000-000000000000, end)"; got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
		if !Full.IsFull() || !(Range{Start, End}).IsFull() || r.IsFull() || (Range{Start, BoundOf(maxKey)}).IsFull() {
			t.Errorf("IsFull is wrong")
		}
	})
}

func TestSplitEven(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 64, 1000, 1 << 20} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			rs, err := SplitEven(n)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != n {
				t.Fatalf("got %d ranges", len(rs))
			}
			if err := ValidateTiling(rs); err != nil {
				t.Fatal(err)
			}
			// Sizes differ by at most one key: with floor boundaries they
			// are all q = floor(2^128/n) or q+1.
			q := new(big.Int).Div(two128, big.NewInt(int64(n)))
			q1 := new(big.Int).Add(q, big.NewInt(1))
			step := 1
			if n > 4096 {
				step = 997 // sample the big cases; the rest is the same arithmetic
			}
			for i := 0; i < n; i += step {
				size := new(big.Int).Sub(toBig(rs[i].To), toBig(rs[i].From))
				if size.Cmp(q) != 0 && size.Cmp(q1) != 0 {
					t.Fatalf("range %d %v has %v keys, want %v or %v", i, rs[i], size, q, q1)
				}
				// Boundary i+1 is exactly floor((i+1)·2^128/n).
				want := new(big.Int).Mul(big.NewInt(int64(i+1)), two128)
				want.Div(want, big.NewInt(int64(n)))
				if got := toBig(rs[i].To); got.Cmp(want) != 0 {
					t.Fatalf("boundary %d = %v, want %v", i+1, rs[i].To, fromBig(t, want))
				}
			}
		})
	}
	t.Run("exact small", func(t *testing.T) {
		rs, _ := SplitEven(1)
		if rs[0] != Full {
			t.Errorf("SplitEven(1) = %v, want [start, end)", rs)
		}
		rs, _ = SplitEven(2)
		if rs[0].To != BoundOf(halfKey) || rs[1].From != BoundOf(halfKey) {
			t.Errorf("SplitEven(2) = %v, want the split at 8000…", rs)
		}
		rs, _ = SplitEven(3)
		if got, want := rs[0].To.String(), "55555555-5555-5555-5555-555555555555"; got != want {
			t.Errorf("SplitEven(3) boundary 1 = %s, want %s", got, want)
		}
		if got, want := rs[1].To.String(), "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"; got != want {
			t.Errorf("SplitEven(3) boundary 2 = %s, want %s", got, want)
		}
	})
	t.Run("invalid n", func(t *testing.T) {
		for _, n := range []int{0, -1, MaxShards + 1} {
			_, err := SplitEven(n)
			wantFieldErr(t, err, "shards: must be between 1 and 1048576", "got "+strconv.Itoa(n))
		}
	})
}

// linearFind is the obviously correct reference for Find.
func linearFind(rs []Range, b Bound) int {
	for i, r := range rs {
		if r.ContainsBound(b) {
			return i
		}
	}
	return -1
}

func TestFind(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 7, 64, 1000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			rs, _ := SplitEven(n)
			keys := []uuid.UUID{uuid.Nil, maxKey, halfKey}
			for _, r := range rs {
				// Every boundary and the key just below it.
				k, _ := r.From.Key()
				keys = append(keys, k)
				below := new(big.Int).Sub(toBig(r.To), big.NewInt(1))
				kb, _ := fromBig(t, below).Key()
				keys = append(keys, kb)
			}
			for range 1000 {
				keys = append(keys, randKey(rnd))
			}
			for _, k := range keys {
				got, want := Find(rs, k), linearFind(rs, BoundOf(k))
				if got != want || got < 0 {
					t.Fatalf("Find(%v) = %d, linear scan = %d", k, got, want)
				}
			}
			if got := Find(rs, maxKey); got != n-1 {
				t.Errorf("Find(max key) = %d, want the last range %d", got, n-1)
			}
			if got := Find(rs, uuid.Nil); got != 0 {
				t.Errorf("Find(0) = %d, want 0", got)
			}
			if got := FindBound(rs, End); got != -1 {
				t.Errorf("FindBound(End) = %d, want -1", got)
			}
		})
	}
	t.Run("partial", func(t *testing.T) {
		// Not a tiling: keys in the gaps or outside are in no range.
		rs := []Range{
			{bound(t, "10000000-0000-0000-0000-000000000000"), bound(t, "20000000-0000-0000-0000-000000000000")},
			{bound(t, "30000000-0000-0000-0000-000000000000"), bound(t, "40000000-0000-0000-0000-000000000000")},
		}
		for _, tt := range []struct {
			k    string
			want int
		}{
			{"00000000-0000-0000-0000-000000000000", -1},
			{"10000000-0000-0000-0000-000000000000", 0},
			{"20000000-0000-0000-0000-000000000000", -1},
			{"3fffffff-ffff-ffff-ffff-ffffffffffff", 1},
			{"40000000-0000-0000-0000-000000000000", -1},
			{"ffffffff-ffff-ffff-ffff-ffffffffffff", -1},
		} {
			if got := Find(rs, uuid.MustParse(tt.k)); got != tt.want {
				t.Errorf("Find(%s) = %d, want %d", tt.k, got, tt.want)
			}
		}
		if got := Find(nil, halfKey); got != -1 {
			t.Errorf("Find(nil) = %d", got)
		}
	})
}

func TestSplitMerge(t *testing.T) {
	one := bound(t, "00000000-0000-0000-0000-000000000001")
	a := bound(t, "10000000-0000-0000-0000-000000000000")
	b := bound(t, "20000000-0000-0000-0000-000000000000")
	tests := []struct {
		name string
		r    Range
		at   Bound
	}{
		{"full at half", Full, BoundOf(halfKey)},
		{"full at 1", Full, one},
		{"full at max key", Full, BoundOf(maxKey)},
		{"tail", Range{a, End}, b},
		{"two keys", Range{Start, bound(t, "00000000-0000-0000-0000-000000000002")}, one},
		{"middle", Range{a, b}, Range{a, b}.Midpoint()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi, err := tt.r.Split(tt.at)
			if err != nil {
				t.Fatal(err)
			}
			if lo.From != tt.r.From || lo.To != tt.at || hi.From != tt.at || hi.To != tt.r.To {
				t.Fatalf("Split = %v, %v", lo, hi)
			}
			if err := lo.Validate(); err != nil {
				t.Error(err)
			}
			if err := hi.Validate(); err != nil {
				t.Error(err)
			}
			m, err := Merge(lo, hi)
			if err != nil || m != tt.r {
				t.Fatalf("Merge = %v, %v; want %v", m, err, tt.r)
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		r := Range{a, b}
		for _, at := range []Bound{a, b, Start, End, bound(t, "30000000-0000-0000-0000-000000000000")} {
			_, _, err := r.Split(at)
			wantFieldErr(t, err, "at: must be strictly inside "+r.String(), "got "+at.String())
		}
		_, _, err := Range{b, a}.Split(BoundOf(halfKey))
		wantFieldErr(t, err, "range.to:")
		_, err = Merge(Range{Start, a}, Range{b, End})
		wantFieldErr(t, err, "b.from: must equal a.to "+a.String(), "got "+b.String())
		_, err = Merge(Range{Start, b}, Range{a, End}) // overlapping
		wantFieldErr(t, err, "b.from:")
		_, err = Merge(Range{b, a}, Range{a, End})
		wantFieldErr(t, err, "a.to:")
		_, err = Merge(Range{Start, a}, Range{a, a})
		wantFieldErr(t, err, "b.to:")
	})
}

func TestMidpoint(t *testing.T) {
	tests := []struct {
		r    Range
		want string
	}{
		{Full, "80000000-0000-0000-0000-000000000000"},
		{Range{BoundOf(halfKey), End}, "c0000000-0000-0000-0000-000000000000"},
		{Range{BoundOf(maxKey), End}, "ffffffff-ffff-ffff-ffff-ffffffffffff"}, // one key: From
		{Range{Start, bound(t, "00000000-0000-0000-0000-000000000003")}, "00000000-0000-0000-0000-000000000001"},
		{Range{bound(t, "00000000-0000-0000-ffff-ffffffffffff"), bound(t, "00000000-0000-0001-0000-000000000001")}, "00000000-0000-0001-0000-000000000000"},
		{Range{bound(t, "ffffffff-ffff-ffff-ffff-fffffffffffd"), End}, "ffffffff-ffff-ffff-ffff-fffffffffffe"},
		{Range{End, Start}, "end"}, // invalid: From
	}
	for _, tt := range tests {
		t.Run(tt.r.String(), func(t *testing.T) {
			if got := tt.r.Midpoint().String(); got != tt.want {
				t.Errorf("Midpoint() = %s, want %s", got, tt.want)
			}
		})
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		x, y := BoundOf(randKey(rnd)), BoundOf(randKey(rnd))
		if rnd.IntN(4) == 0 {
			y = End
		}
		if y.Less(x) {
			x, y = y, x
		}
		if x == y {
			continue
		}
		want := new(big.Int).Add(toBig(x), toBig(y))
		want.Rsh(want, 1)
		if got := (Range{x, y}).Midpoint(); toBig(got).Cmp(want) != 0 {
			t.Fatalf("[%v, %v).Midpoint() = %v, want %v", x, y, got, fromBig(t, want))
		}
	}
}

func TestValidateTiling(t *testing.T) {
	a := bound(t, "40000000-0000-0000-0000-000000000000")
	b := bound(t, "80000000-0000-0000-0000-000000000000")
	c := bound(t, "c0000000-0000-0000-0000-000000000000")
	tests := []struct {
		name   string
		rs     []Range
		errors []string // empty: valid
	}{
		{"full", []Range{Full}, nil},
		{"three", []Range{{Start, a}, {a, c}, {c, End}}, nil},
		{"empty", nil, []string{"ranges: must not be empty"}},
		{"late start", []Range{{a, End}}, []string{"ranges[0].from: must be the start", "got " + a.String()}},
		{"short end", []Range{{Start, c}}, []string{"ranges[0].to: must be the end", "got " + c.String()}},
		{"gap", []Range{{Start, a}, {b, End}}, []string{"ranges[1].from: leaves a gap after ranges[0], which ends at " + a.String(), "got " + b.String()}},
		{"overlap", []Range{{Start, b}, {a, End}}, []string{"ranges[1].from: overlaps ranges[0]", "got " + a.String()}},
		{"unsorted", []Range{{Start, a}, {b, End}, {a, b}}, []string{"ranges[1].from: leaves a gap"}},
		{"empty range", []Range{{Start, a}, {a, a}, {a, End}}, []string{"ranges[1].to: must be after from"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTiling(tt.rs)
			if len(tt.errors) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantFieldErr(t, err, tt.errors...)
		})
	}
}

func BenchmarkFind(b *testing.B) {
	rs, err := SplitEven(1 << 20)
	if err != nil {
		b.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	keys := make([]uuid.UUID, 1024)
	for i := range keys {
		keys[i] = randKey(rnd)
	}
	i := 0
	for b.Loop() {
		if Find(rs, keys[i&1023]) < 0 {
			b.Fatal("key not found")
		}
		i++
	}
}

func TestAppendRun(t *testing.T) {
	rs, err := SplitEven(4)
	if err != nil {
		t.Fatal(err)
	}
	var runs []Range
	for _, i := range []int{0, 1, 3} {
		runs = AppendRun(runs, rs[i])
	}
	want := []Range{{From: rs[0].From, To: rs[1].To}, rs[3]}
	if len(runs) != 2 || runs[0] != want[0] || runs[1] != want[1] {
		t.Fatalf("runs %v, want %v", runs, want)
	}
}

func TestShardIndexes(t *testing.T) {
	rs, err := SplitEven(8)
	if err != nil {
		t.Fatal(err)
	}
	p := func(from, to int) *wdsv1.KeyRange {
		return RangeToProto(Range{From: rs[from].From, To: rs[to-1].To})
	}
	if got, err := ShardIndexes("d", rs, nil); err != nil || len(got) != 8 {
		t.Fatalf("no ranges: %v %v", got, err)
	}
	got, err := ShardIndexes("d", rs, []*wdsv1.KeyRange{p(0, 2), p(5, 8)})
	if err != nil || fmt.Sprint(got) != "[0 1 5 6 7]" {
		t.Fatalf("two ranges: %v %v", got, err)
	}
	if _, err := ShardIndexes("d", rs, []*wdsv1.KeyRange{p(0, 3), p(2, 4)}); err == nil {
		t.Fatal("overlapping ranges accepted")
	}
	mid := rs[0].Midpoint()
	var fe *FieldError
	if _, err := ShardIndexes("d", rs, []*wdsv1.KeyRange{RangeToProto(Range{From: rs[0].From, To: mid})}); !errors.As(err, &fe) || fe.Field != "ranges[0].to" {
		t.Fatalf("off a boundary: %v", err)
	}
}
