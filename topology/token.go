package topology

import (
	"strconv"
	"strings"
)

// Token is a fencing token: (delegation generation from the global log, grant
// index from the cell log), compared lexicographically. Every grant of a key
// gets a larger token than any earlier grant of that key, across regions and
// leader changes, so a database that remembers the largest token it has seen
// can reject writes from a stale owner.
type Token struct {
	// Generation of the delegation the grant was made under; it increases
	// whenever the global group re-delegates key space to another cell.
	Generation uint64
	// Index of the cell log entry that activated the grant.
	Index uint64
}

// Compare returns -1, 0 or +1 as t is older than, equal to or newer than o.
func (t Token) Compare(o Token) int {
	switch {
	case t.Generation < o.Generation:
		return -1
	case t.Generation > o.Generation:
		return 1
	case t.Index < o.Index:
		return -1
	case t.Index > o.Index:
		return 1
	}
	return 0
}

// Less reports whether t is older than o.
func (t Token) Less(o Token) bool { return t.Compare(o) < 0 }

// IsZero reports whether t is the zero token, which no grant carries: it
// stands for "no token" (e.g. a shard never granted).
func (t Token) IsZero() bool { return t == Token{} }

// String returns "generation.index", e.g. "1.1234": short enough for logs
// and for services to store next to their rows.
func (t Token) String() string {
	return strconv.FormatUint(t.Generation, 10) + "." + strconv.FormatUint(t.Index, 10)
}

// ParseToken parses the form String produces. Errors name the field "token".
func ParseToken(s string) (Token, error) {
	g, i, ok := strings.Cut(s, ".")
	if !ok {
		return Token{}, Invalid("token", quote(s), "must be generation.index, e.g. 1.1234")
	}
	gen, err1 := strconv.ParseUint(g, 10, 64)
	idx, err2 := strconv.ParseUint(i, 10, 64)
	if err1 != nil || err2 != nil {
		return Token{}, Invalid("token", quote(s), "must be generation.index, two unsigned 64-bit decimal numbers, e.g. 1.1234")
	}
	return Token{Generation: gen, Index: idx}, nil
}
