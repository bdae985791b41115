package chaos

import (
	"math/rand/v2"
	"testing"
)

// TestBitset checks the bitset's queries against a plain []bool over random operations, at sizes
// that need one to four levels.
func TestBitset(t *testing.T) {
	var s bitset
	for _, n := range []int{1, 2, 63, 64, 65, 4095, 4096, 4097, 300_000} {
		s.reset(n)
		ref := make([]bool, n)
		r := rand.New(rand.NewPCG(uint64(n), 1))
		for range 3000 {
			i := int32(r.IntN(n))
			if r.IntN(3) == 0 {
				s.unset(i)
				ref[i] = false
			} else {
				s.set(i)
				ref[i] = true
			}
			q := int32(r.IntN(n))
			want := int32(-1)
			for k := q; k >= 0; k-- {
				if ref[k] {
					want = k
					break
				}
			}
			if got := s.prev(q); got != want {
				t.Fatalf("n=%d: prev(%d) = %d, want %d", n, q, got, want)
			}
			want = -1
			for k := q; k < int32(n); k++ {
				if ref[k] {
					want = k
					break
				}
			}
			if got := s.next(q); got != want {
				t.Fatalf("n=%d: next(%d) = %d, want %d", n, q, got, want)
			}
			if s.has(q) != ref[q] {
				t.Fatalf("n=%d: has(%d) = %v", n, q, !ref[q])
			}
		}
		if s.next(int32(n)) != -1 {
			t.Fatalf("n=%d: next(n) = %d, want -1", n, s.next(int32(n)))
		}
	}
}

// TestMaxTree checks prevAbove against a plain slice of values.
func TestMaxTree(t *testing.T) {
	var m maxTree
	for _, n := range []int{1, 2, 3, 64, 1000, 5000} {
		m.reset(n)
		ref := make([]int32, n)
		r := rand.New(rand.NewPCG(uint64(n), 2))
		for range 3000 {
			i, v := int32(r.IntN(n)), int32(r.IntN(n+1))
			m.set(i, v)
			ref[i] = v
			q, a := int32(r.IntN(n+1))-1, int32(r.IntN(n+1))
			want := int32(-1)
			for k := q; k >= 0; k-- {
				if ref[k] > a {
					want = k
					break
				}
			}
			if got := m.prevAbove(q, a); got != want {
				t.Fatalf("n=%d: prevAbove(%d, %d) = %d, want %d", n, q, a, got, want)
			}
			if m.get(i) != v {
				t.Fatalf("n=%d: get(%d) = %d, want %d", n, i, m.get(i), v)
			}
		}
	}
}
