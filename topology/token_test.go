package topology

import (
	"math"
	"testing"
)

func TestTokenOrder(t *testing.T) {
	// Ascending: generation dominates, then index.
	order := []Token{
		{},
		{0, 1},
		{0, math.MaxUint64},
		{1, 0},
		{1, 1234},
		{2, 1},
		{math.MaxUint64, math.MaxUint64},
	}
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
		}
		if a.IsZero() != (i == 0) {
			t.Errorf("%v.IsZero() = %v", a, a.IsZero())
		}
	}
}

func TestTokenString(t *testing.T) {
	tests := []struct {
		tok Token
		s   string
	}{
		{Token{}, "0.0"},
		{Token{1, 1234}, "1.1234"},
		{Token{math.MaxUint64, 7}, "18446744073709551615.7"},
	}
	for _, tt := range tests {
		t.Run(tt.s, func(t *testing.T) {
			if got := tt.tok.String(); got != tt.s {
				t.Errorf("String() = %q, want %q", got, tt.s)
			}
			back, err := ParseToken(tt.s)
			if err != nil || back != tt.tok {
				t.Errorf("ParseToken(%q) = %v, %v", tt.s, back, err)
			}
			if p := TokenFromProto(TokenToProto(tt.tok)); p != tt.tok {
				t.Errorf("proto round trip = %v", p)
			}
		})
	}
	if got := TokenFromProto(nil); !got.IsZero() {
		t.Errorf("TokenFromProto(nil) = %v, want zero", got)
	}
}

func TestParseTokenErrors(t *testing.T) {
	for _, s := range []string{"", "1", "1.", ".1", "1.2.3", "-1.2", "1.-2", "+1.2", "a.b", "1 .2", "18446744073709551616.0"} {
		t.Run(s, func(t *testing.T) {
			_, err := ParseToken(s)
			wantFieldErr(t, err, "token: must be generation.index", "(got "+quote(s)+")")
		})
	}
}
