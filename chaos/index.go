package chaos

import "math/bits"

// The sweep of Check works on ranks: the positions of a key space's distinct bounds, 0..width-1.
// Two small index structures over ranks make each step O(log width).

// bitset is a set of ranks with fast predecessor and successor queries: level 0 has one bit per
// rank, each further level one bit per non-zero word of the level below, up to a single word.
type bitset struct {
	lv [][]uint64
}

func (s *bitset) reset(n int) {
	words := max((n+63)/64, 1)
	l := 0
	for ; ; l++ {
		if l == len(s.lv) {
			s.lv = append(s.lv, nil)
		}
		if cap(s.lv[l]) < words {
			s.lv[l] = make([]uint64, words)
		} else {
			s.lv[l] = s.lv[l][:words]
			clear(s.lv[l])
		}
		if words == 1 {
			break
		}
		words = (words + 63) / 64
	}
	s.lv = s.lv[:l+1]
}

func (s *bitset) has(i int32) bool { return s.lv[0][i>>6]&(1<<(i&63)) != 0 }

func (s *bitset) set(i int32) {
	for _, lv := range s.lv {
		w := i >> 6
		was := lv[w]
		lv[w] |= 1 << (i & 63)
		if was != 0 {
			return
		}
		i = w
	}
}

func (s *bitset) unset(i int32) {
	for _, lv := range s.lv {
		w := i >> 6
		lv[w] &^= 1 << (i & 63)
		if lv[w] != 0 {
			return
		}
		i = w
	}
}

// prev returns the largest member <= i, or -1.
func (s *bitset) prev(i int32) int32 {
	l := 0
	for ; ; l++ {
		if l == len(s.lv) || i < 0 {
			return -1
		}
		if w := s.lv[l][i>>6] & (^uint64(0) >> (63 - i&63)); w != 0 {
			i = i&^63 | int32(63-bits.LeadingZeros64(w))
			break
		}
		i = i>>6 - 1
	}
	for l--; l >= 0; l-- {
		i = i<<6 | int32(63-bits.LeadingZeros64(s.lv[l][i]))
	}
	return i
}

// next returns the smallest member >= i, or -1.
func (s *bitset) next(i int32) int32 {
	l := 0
	for ; ; l++ {
		if l == len(s.lv) || int(i>>6) >= len(s.lv[l]) {
			return -1
		}
		if w := s.lv[l][i>>6] & (^uint64(0) << (i & 63)); w != 0 {
			i = i&^63 | int32(bits.TrailingZeros64(w))
			break
		}
		i = i>>6 + 1
	}
	for l--; l >= 0; l-- {
		i = i<<6 | int32(bits.TrailingZeros64(s.lv[l][i]))
	}
	return i
}

// maxTree holds a value per rank (0 when unset) in a segment tree of maxima, to find the ranks
// whose value exceeds a threshold, from right to left, in O(log width) each.
type maxTree struct {
	size int32 // leaves, a power of two
	t    []int32
}

func (m *maxTree) reset(n int) {
	m.size = 1
	for int(m.size) < n {
		m.size <<= 1
	}
	if cap(m.t) < int(2*m.size) {
		m.t = make([]int32, 2*m.size)
	} else {
		m.t = m.t[:2*m.size]
		clear(m.t)
	}
}

func (m *maxTree) get(i int32) int32 { return m.t[m.size+i] }

func (m *maxTree) set(i, v int32) {
	i += m.size
	m.t[i] = v
	for i > 1 {
		i >>= 1
		v = max(m.t[2*i], m.t[2*i+1])
		if m.t[i] == v {
			return
		}
		m.t[i] = v
	}
}

// prevAbove returns the largest rank <= i whose value exceeds a, or -1. It climbs from leaf i
// only as far as it must, so nearby ranks are found in O(log distance).
func (m *maxTree) prevAbove(i, a int32) int32 {
	if i < 0 {
		return -1
	}
	x := i + m.size
	if m.t[x] > a {
		return i
	}
	for {
		if x == 1 {
			return -1
		}
		if x&1 == 1 && m.t[x-1] > a {
			x--
			break
		}
		x >>= 1
	}
	for x < m.size {
		x = 2*x + 1
		if m.t[x] <= a {
			x--
		}
	}
	return x - m.size
}
