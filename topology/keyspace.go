package topology

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/google/uuid"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// Bound is a position in the key space [0, 2^128]: either a key (a UUID read
// as a 128-bit big-endian number) or End, the exclusive end 2^128 that no
// UUID can express. Having End as a value of its own is what lets the last
// range of a domain include ffffffff-ffff-ffff-ffff-ffffffffffff without an
// off-by-one or a special case at every comparison.
//
// The zero value is Start (key 0). Bounds are small, immutable and comparable
// with ==, so they can be map keys and struct fields of routing tables.
type Bound struct {
	hi, lo uint64 // the key, big-endian halves; both zero when end is set
	end    bool   // 2^128
}

var (
	// Start is the first position of the key space, the UUID 00000000-….
	Start Bound
	// End is the exclusive end of the key space, 2^128.
	End = Bound{end: true}
)

// BoundOf returns the position of key k.
func BoundOf(k uuid.UUID) Bound {
	return Bound{hi: binary.BigEndian.Uint64(k[:8]), lo: binary.BigEndian.Uint64(k[8:])}
}

// IsEnd reports whether b is End, 2^128.
func (b Bound) IsEnd() bool { return b.end }

// Key returns b as a UUID; false for End, which is not a key.
func (b Bound) Key() (uuid.UUID, bool) {
	var k uuid.UUID
	if b.end {
		return k, false
	}
	binary.BigEndian.PutUint64(k[:8], b.hi)
	binary.BigEndian.PutUint64(k[8:], b.lo)
	return k, true
}

// Compare returns -1, 0 or +1 as b is before, at or after o. End is after
// every key.
func (b Bound) Compare(o Bound) int {
	switch {
	case b.end || o.end:
		switch {
		case b.end == o.end:
			return 0
		case b.end:
			return 1
		default:
			return -1
		}
	case b.hi != o.hi:
		if b.hi < o.hi {
			return -1
		}
		return 1
	case b.lo != o.lo:
		if b.lo < o.lo {
			return -1
		}
		return 1
	}
	return 0
}

// Less reports whether b is before o.
func (b Bound) Less(o Bound) bool { return b.Compare(o) < 0 }

// String returns the UUID form of b, or "end" for End.
func (b Bound) String() string {
	k, ok := b.Key()
	if !ok {
		return "end"
	}
	return k.String()
}

// MarshalText encodes b as String does, so bounds (and ranges) come out
// readable in JSON and YAML output instead of as empty objects.
func (b Bound) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText accepts what MarshalText produces.
func (b *Bound) UnmarshalText(p []byte) error {
	v, err := ParseBound("bound", string(p))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// ParseBound parses a UUID or "end" (the form String produces); errors name
// field.
func ParseBound(field, s string) (Bound, error) {
	b, err := parseBound(field, s)
	if err != nil {
		return Bound{}, err
	}
	return b, nil
}

func parseBound(field, s string) (Bound, *FieldError) {
	if strings.EqualFold(s, "end") {
		return End, nil
	}
	k, err := uuid.Parse(s)
	if err != nil {
		return Bound{}, Invalid(field, quote(s), "invalid UUID: %v", err)
	}
	return BoundOf(k), nil
}

// ParseKey parses a UUID; the error names field and echoes the input, which
// uuid.Parse alone does not.
func ParseKey(field, s string) (uuid.UUID, error) {
	k, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, Invalid(field, quote(s), "invalid UUID: %v", err)
	}
	return k, nil
}

// Bytes returns b as 16 bytes in UUID (big-endian) order, or nil for End:
// the wire form of KeyRange, where an empty "to" means the end of the space.
func (b Bound) Bytes() []byte {
	if b.end {
		return nil
	}
	p := make([]byte, 16)
	binary.BigEndian.PutUint64(p[:8], b.hi)
	binary.BigEndian.PutUint64(p[8:], b.lo)
	return p
}

// BoundFromBytes decodes what Bytes produces: 16 bytes are a key, empty is
// End. Any other length is a FieldError naming field; the bytes themselves
// are not echoed since they come from the wire and are not readable anyway.
func BoundFromBytes(field string, p []byte) (Bound, error) {
	switch len(p) {
	case 0:
		return End, nil
	case 16:
		return Bound{hi: binary.BigEndian.Uint64(p[:8]), lo: binary.BigEndian.Uint64(p[8:])}, nil
	}
	return Bound{}, Invalid(field, lenValue(p), "must be 16 bytes (a UUID) or empty (the end of the key space)")
}

// KeyFromBytes decodes a bound that must be a key, such as a range start:
// unlike BoundFromBytes, empty input (End) is rejected, because a range can
// not start at the end of the key space.
func KeyFromBytes(field string, p []byte) (Bound, error) {
	if len(p) != 16 {
		return Bound{}, Invalid(field, lenValue(p), "must be exactly 16 bytes (a UUID)")
	}
	return BoundFromBytes(field, p)
}

func lenValue(p []byte) string {
	if len(p) == 1 {
		return "1 byte"
	}
	return strconv.Itoa(len(p)) + " bytes"
}

// Range is the half-open interval [From, To) of the key space: one shard.
// Half-open ranges split and merge without gaps or double counting: the
// halves of a split share a bound, and adjacent ranges meet at one.
type Range struct {
	From, To Bound
}

// Full is the whole key space, the one shard of a UNIT domain.
var Full = Range{From: Start, To: End}

// Contains reports whether key k is in r.
func (r Range) Contains(k uuid.UUID) bool { return r.ContainsBound(BoundOf(k)) }

// ContainsBound reports whether position b is in r. End is in no range.
func (r Range) ContainsBound(b Bound) bool { return !b.Less(r.From) && b.Less(r.To) }

// Overlaps reports whether r and o share at least one key.
func (r Range) Overlaps(o Range) bool { return r.From.Less(o.To) && o.From.Less(r.To) }

// IsFull reports whether r is the whole key space.
func (r Range) IsFull() bool { return r.From == Bound{} && r.To.end }

// String returns "[from, to)".
func (r Range) String() string { return "[" + r.From.String() + ", " + r.To.String() + ")" }

// Validate checks that r holds at least one key. Errors name "from" or "to";
// callers prefix them with the field the range came from.
func (r Range) Validate() error {
	if err := r.validate(); err != nil {
		return err
	}
	return nil
}

func (r Range) validate() *FieldError {
	if r.From.IsEnd() {
		return Invalid("from", "end", "must be a key, not the end of the key space")
	}
	if !r.From.Less(r.To) {
		return Invalid("to", r.To.String(), "must be after from %s (a range holds at least one key)", r.From)
	}
	return nil
}

// Split cuts r at a into [From, at) and [at, To). a must be strictly inside
// r so that both halves hold at least one key.
func (r Range) Split(at Bound) (Range, Range, error) {
	if err := r.Validate(); err != nil {
		return Range{}, Range{}, withPrefix("range", err)
	}
	if !r.From.Less(at) || !at.Less(r.To) {
		return Range{}, Range{}, Invalid("at", at.String(), "must be strictly inside %s", r)
	}
	return Range{From: r.From, To: at}, Range{From: at, To: r.To}, nil
}

// Midpoint returns the bound that splits r into halves whose sizes differ by
// at most one key (the lower half is never the larger). For a range of one
// key it returns From, which Split rejects: such a range cannot be split.
// r must be valid; for an invalid range Midpoint returns From.
func (r Range) Midpoint() Bound {
	if r.Validate() != nil {
		return r.From
	}
	// Width To-From as a 129-bit number (top, hi, lo): To may be 2^128.
	var top uint64
	toHi, toLo := r.To.hi, r.To.lo
	if r.To.end {
		top = 1
	}
	lo, borrow := bits.Sub64(toLo, r.From.lo, 0)
	hi, borrow := bits.Sub64(toHi, r.From.hi, borrow)
	top -= borrow
	// Half the width, then From + half: less than To, so no carry out.
	halfLo := lo>>1 | hi<<63
	halfHi := hi>>1 | top<<63
	midLo, carry := bits.Add64(r.From.lo, halfLo, 0)
	midHi, _ := bits.Add64(r.From.hi, halfHi, carry)
	return Bound{hi: midHi, lo: midLo}
}

// Merge joins adjacent ranges a and b (a.To == b.From) into one, the inverse
// of Split.
func Merge(a, b Range) (Range, error) {
	if err := a.Validate(); err != nil {
		return Range{}, withPrefix("a", err)
	}
	if err := b.Validate(); err != nil {
		return Range{}, withPrefix("b", err)
	}
	if a.To != b.From {
		return Range{}, Invalid("b.from", b.From.String(), "must equal a.to %s: only adjacent ranges merge", a.To)
	}
	return Range{From: a.From, To: b.To}, nil
}

// SplitEven tiles the key space with n ranges whose sizes differ by at most
// one key: boundary i is exactly floor(i·2^128/n). Exact integer boundaries
// (not floating point) make the layout a pure function of n, so every node
// and client computes the same shards for a domain without exchanging them.
func SplitEven(n int) ([]Range, error) {
	if n < 1 || n > MaxShards {
		return nil, Invalid("shards", strconv.Itoa(n), "must be between 1 and %d", MaxShards)
	}
	out := make([]Range, n)
	from := Start
	for i := range n {
		to := evenBoundary(uint64(i+1), uint64(n))
		out[i] = Range{From: from, To: to}
		from = to
	}
	return out, nil
}

// evenBoundary returns floor(i·2^128/n) for 0 <= i <= n, n > 0, by long
// division of the three 64-bit words (i, 0, 0) by n. The top word's quotient
// is zero since i < n, and each remainder is below n, as bits.Div64 requires.
func evenBoundary(i, n uint64) Bound {
	switch {
	case i == 0:
		return Start
	case i >= n:
		return End
	}
	hi, rem := bits.Div64(i, 0, n)
	lo, _ := bits.Div64(rem, 0, n)
	return Bound{hi: hi, lo: lo}
}

// shardAt returns the index of the shard of SplitEven(n) that contains b,
// and whether b is that shard's first key, i.e. a boundary of the layout. End
// is boundary n (and in no shard). It computes in O(1) what a search of
// SplitEven(n) would find, without building the up to MaxShards ranges.
// n must be between 1 and MaxShards.
func shardAt(b Bound, n int) (int, bool) {
	if b.end {
		return n, true
	}
	// i = floor(b·n / 2^128), the top word of the 192-bit product. Then
	// boundary i, floor(i·2^128/n), is at most b, and boundary i+1 at least
	// b: b is in shard i, or is exactly boundary i+1.
	nn := uint64(n)
	loHi, _ := bits.Mul64(b.lo, nn)
	hiHi, hiLo := bits.Mul64(b.hi, nn)
	_, carry := bits.Add64(hiLo, loHi, 0)
	i := hiHi + carry
	if evenBoundary(i+1, nn) == b {
		return int(i + 1), true
	}
	return int(i), evenBoundary(i, nn) == b
}

// Find returns the index of the range containing k, or -1. ranges must be
// sorted and non-overlapping (as ValidateTiling ensures); the search is
// binary, O(log n), as routing does it for every request.
func Find(ranges []Range, k uuid.UUID) int { return FindBound(ranges, BoundOf(k)) }

// FindBound is Find for a position; End is in no range, so it returns -1.
func FindBound(ranges []Range, b Bound) int {
	// Smallest i with b < ranges[i].To; hand-rolled instead of sort.Search
	// to keep the closure call out of the routing hot path.
	lo, hi := 0, len(ranges)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if b.Less(ranges[m].To) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if lo < len(ranges) && !b.Less(ranges[lo].From) {
		return lo
	}
	return -1
}

// ValidateTiling checks that ranges cover the whole key space exactly once,
// in order: the first starts at Start, each starts where the previous ends,
// the last ends at End. This is the invariant of a domain's shards; any gap
// would be a key nobody can own, any overlap a key two consumers could own.
func ValidateTiling(ranges []Range) error {
	if len(ranges) == 0 {
		return Invalid("ranges", "", "must not be empty: the ranges must cover the key space")
	}
	for i, r := range ranges {
		field := "ranges[" + strconv.Itoa(i) + "]"
		if err := r.Validate(); err != nil {
			return withPrefix(field, err)
		}
		if i == 0 {
			if r.From != Start {
				return Invalid(field+".from", r.From.String(), "must be the start of the key space %s", Start)
			}
			continue
		}
		prev := ranges[i-1].To
		switch r.From.Compare(prev) {
		case -1:
			return Invalid(field+".from", r.From.String(), "overlaps ranges[%d], which ends at %s", i-1, prev)
		case 1:
			return Invalid(field+".from", r.From.String(), "leaves a gap after ranges[%d], which ends at %s", i-1, prev)
		}
	}
	last := ranges[len(ranges)-1]
	if !last.To.IsEnd() {
		return Invalid("ranges["+strconv.Itoa(len(ranges)-1)+"].to", last.To.String(), "must be the end of the key space")
	}
	return nil
}

// AppendRun appends r to runs, extending the last run instead when r
// starts where it ends: adjacent shards of a key space become one range
// (delegations and reports name few, long ranges).
func AppendRun(runs []Range, r Range) []Range {
	if n := len(runs); n > 0 && runs[n-1].To == r.From {
		runs[n-1].To = r.To
		return runs
	}
	return append(runs, r)
}

// ShardIndexes resolves ranges (wire form, as delegations and reports
// name them) to the indexes of the shards they cover among shards, a
// domain's tiling; every range must start and end on shard boundaries and
// none may repeat a shard. Empty ranges mean every shard. Errors name
// "ranges[i]" and the domain.
func ShardIndexes(domain string, shards []Range, ranges []*wdsv1.KeyRange) ([]int, error) {
	if len(ranges) == 0 {
		out := make([]int, len(shards))
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	var out []int
	seen := map[int]bool{}
	for j, rp := range ranges {
		f := fmt.Sprintf("ranges[%d]", j)
		r, err := RangeFromProto(f, rp)
		if err != nil {
			return nil, err
		}
		first := FindBound(shards, r.From)
		if first < 0 || shards[first].From != r.From {
			return nil, Invalid(f+".from", r.From.String(), "not a shard boundary of domain %q", domain)
		}
		last := first
		for last < len(shards) && shards[last].To.Less(r.To) {
			last++
		}
		if last == len(shards) || shards[last].To != r.To {
			return nil, Invalid(f+".to", r.To.String(), "not a shard boundary of domain %q", domain)
		}
		for i := first; i <= last; i++ {
			if seen[i] {
				return nil, Invalid(f, r.String(), "overlaps an earlier range")
			}
			seen[i] = true
			out = append(out, i)
		}
	}
	return out, nil
}
