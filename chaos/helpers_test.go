package chaos

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/wdsio/wds/topology"
)

// Positions in tests are uint64 units of 2^66 keys: unit x is the key with high 64 bits x<<2, and
// full (2^62 units) is topology.End.
const full uint64 = 1 << 62

func bnd(x uint64) topology.Bound {
	if x >= full {
		return topology.End
	}
	var k uuid.UUID
	binary.BigEndian.PutUint64(k[:8], x<<2)
	return topology.BoundOf(k)
}

func rng(from, to uint64) topology.Range { return topology.Range{From: bnd(from), To: bnd(to)} }

func tok(g, i uint64) topology.Token { return topology.Token{Generation: g, Index: i} }

var t0 = time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// ms is shorthand for milliseconds since t0.
func ms(n int) time.Time { return at(time.Duration(n) * time.Millisecond) }

// open marks an interval still owned at the end of the history.
var open time.Time

func iv(consumer, domain string, r topology.Range, tk topology.Token, start, end time.Time) Interval {
	return Interval{Consumer: consumer, Domain: domain, Range: r, Token: tk, Start: start, End: end}
}

// ivIn is iv in the key space of region of a REGIONAL domain.
func ivIn(consumer, domain, region string, r topology.Range, tk topology.Token, start, end time.Time) Interval {
	x := iv(consumer, domain, r, tk, start, end)
	x.Region = region
	return x
}

// simRegions are the regions the simulation's key spaces cycle through: a domain's key spaces
// share its name, with numerically equal ranges and tokens counted apart.
var simRegions = []string{"", "us-east", "eu-west"}

// sim builds a valid ownership history: consumers take over, resume, release, split and merge
// the shards of several key spaces, with tokens that increase per key space, on a clock that only
// moves forward. Key spaces come in threes sharing a domain name (regions "", "us-east" and
// "eu-west"), so the same ranges and tokens appear in several at once. It remembers which
// interval followed which on intersecting keys, for fault injection.
type sim struct {
	rnd       *rand.Rand
	now       time.Time
	out       []Interval
	domains   []*simDomain
	consumers []string
	// succ lists pairs (earlier, later) of intervals that followed each other on some key.
	succ [][2]int
}

// simDomain is one key space: (name, region).
type simDomain struct {
	name     string
	region   string
	shards   []*simShard // tiling of [0, full), sorted
	gen, idx uint64
}

type simShard struct {
	from, to uint64
	owner    int // index in out of the open interval, -1 if unowned
	last     int // index in out of the last interval of this shard, -1 if none
}

func newSim(seed uint64, domains, shards, consumers int) *sim {
	s := &sim{rnd: rand.New(rand.NewPCG(seed, seed^0x5eed)), now: t0}
	for c := range consumers {
		s.consumers = append(s.consumers, "consumer-"+string(rune('a'+c%26))+string(rune('0'+c/26)))
	}
	for d := range domains {
		dom := &simDomain{name: "domain-" + string(rune('A'+d/len(simRegions))), region: simRegions[d%len(simRegions)], gen: 1}
		step := full / uint64(shards)
		for i := range shards {
			to := uint64(i+1) * step
			if i == shards-1 {
				to = full
			}
			dom.shards = append(dom.shards, &simShard{from: uint64(i) * step, to: to, owner: -1, last: -1})
		}
		s.domains = append(s.domains, dom)
	}
	return s
}

func (d *simDomain) next(r *rand.Rand) topology.Token {
	if r.IntN(500) == 0 { // a re-delegation: new generation, the index starts over
		d.gen++
		d.idx = uint64(r.IntN(3))
	}
	d.idx++
	return tok(d.gen, d.idx)
}

// grant opens an interval of sh for consumer c from now, following the given earlier intervals.
func (s *sim) grant(d *simDomain, sh *simShard, c string, tk topology.Token, start time.Time, after ...int) {
	s.out = append(s.out, ivIn(c, d.name, d.region, rng(sh.from, sh.to), tk, start, open))
	i := len(s.out) - 1
	for _, a := range after {
		if a >= 0 {
			s.succ = append(s.succ, [2]int{a, i})
		}
	}
	sh.owner, sh.last = i, i
}

func (s *sim) end(sh *simShard) {
	if sh.owner >= 0 {
		s.out[sh.owner].End = s.now
		sh.owner = -1
	}
}

func (s *sim) consumer() string { return s.consumers[s.rnd.IntN(len(s.consumers))] }

// step advances the clock by 1µs to 1ms and performs one random action.
func (s *sim) step() {
	s.now = s.now.Add(time.Microsecond + time.Duration(s.rnd.Int64N(int64(time.Millisecond))))
	d := s.domains[s.rnd.IntN(len(s.domains))]
	k := s.rnd.IntN(len(d.shards))
	sh := d.shards[k]
	switch a := s.rnd.IntN(100); {
	case a < 55: // handover (or first grant) at this very instant
		prev := sh.last
		s.end(sh)
		s.grant(d, sh, s.consumer(), d.next(s.rnd), s.now, prev)
	case a < 70: // resume: the owner re-records its grant, possibly a little later
		if sh.owner < 0 {
			return
		}
		prev := s.out[sh.owner]
		s.end(sh)
		s.grant(d, sh, prev.Consumer, prev.Token, s.now.Add(time.Duration(s.rnd.IntN(500))), sh.last)
	case a < 85: // release: nobody owns the shard for a while
		s.end(sh)
	case a < 93: // split: both halves go to the owner, with new tokens
		if sh.to-sh.from < 2 {
			return
		}
		prev, last := sh.owner, sh.last
		mid := sh.from + (sh.to-sh.from)/2
		lo := &simShard{from: sh.from, to: mid, owner: -1, last: last}
		hi := &simShard{from: mid, to: sh.to, owner: -1, last: last}
		s.end(sh)
		if prev >= 0 {
			c := s.out[prev].Consumer
			s.grant(d, lo, c, d.next(s.rnd), s.now, last)
			s.grant(d, hi, c, d.next(s.rnd), s.now, last)
		}
		d.shards = append(d.shards[:k], append([]*simShard{lo, hi}, d.shards[k+1:]...)...)
	default: // merge with the right neighbour, granted to a random consumer
		if k+1 >= len(d.shards) {
			return
		}
		right := d.shards[k+1]
		m := &simShard{from: sh.from, to: right.to, owner: -1, last: -1}
		a, b := sh.last, right.last
		s.end(sh)
		s.end(right)
		s.grant(d, m, s.consumer(), d.next(s.rnd), s.now, a, b)
		d.shards = append(d.shards[:k], append([]*simShard{m}, d.shards[k+2:]...)...)
	}
}

// history runs the simulation until it recorded at least n intervals.
func (s *sim) history(n int) []Interval {
	for len(s.out) < n {
		s.step()
	}
	return s.out
}

// below returns the token just before t.
func below(t topology.Token) topology.Token {
	if t.Index > 0 {
		return tok(t.Generation, t.Index-1)
	}
	return tok(t.Generation-1, math.MaxUint64)
}
