package globalstate

import (
	"sort"
	"time"

	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Placement: which region's cell should hold each shard, and the ops that
// get it there. It only reads the state; the global leader proposes what
// it returns, and the FSM re-checks every op when it applies.
//
// Moves are graceful: a shard held by a live region that should be
// elsewhere is withdrawn (Withdraw); its cell relinquishes it and reports
// it released (Released frees it); the next round delegates it to its
// target. Shards held by a region that is not live are left alone: the
// leader expires them once their deadline has passed (Expire), never
// earlier. Free shards are delegated at once.

// PlaceInput is what placement decides from besides the state.
type PlaceInput struct {
	// Live are the regions whose delegations the leader holds as renewed
	// (covered). Only live regions are given anything.
	Live map[string]bool
	// Consumers are the live consumers per region and domain, from the
	// cells' load reports.
	Consumers map[string]map[string]int
	// MaxMoves caps the shards being withdrawn at once per key space.
	MaxMoves int
	// LiveFor is how long each live region has renewed without a lapse
	// (as far as the leader knows: at most since its accession). A
	// REGIONAL key space served by its failover region moves back home
	// once its region has been live for the domain's FailbackAfter.
	LiveFor map[string]time.Duration
	// Lapsed reports whether a region that is not live has gone without
	// renewals past the deadline its delegations of domain would have
	// (D·(1+ε) after its last renewal, or after the leader's accession
	// and grace): only then is a REGIONAL key space of it failed over,
	// even one it holds nothing of (a region slow to start, or not yet
	// heard by a new leader, is not down). Nil: every region that is not
	// live has lapsed.
	Lapsed func(region, domain string) bool
}

// Place returns one round of placement ops.
func (s *State) Place(in PlaceInput) []*globalv1.Op {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if in.MaxMoves <= 0 {
		in.MaxMoves = 1
	}
	live := make([]string, 0, len(in.Live))
	for _, r := range s.regions {
		if in.Live[r.Name] {
			live = append(live, r.Name)
		}
	}
	sort.Strings(live)
	var ops []*globalv1.Op
	for _, name := range sortedNames(s) {
		d := s.domains[name]
		if d.deleting {
			if d.allFree() {
				ops = append(ops, &globalv1.Op{Op: &globalv1.Op_DeleteDomain{DeleteDomain: &globalv1.DeleteDomain{Name: name, Purge: true}}})
				continue
			}
			for _, ks := range d.spaces {
				ops = append(ops, withdrawAll(ks)...)
			}
			continue
		}
		for _, ks := range d.spaces {
			if ks.retired {
				ops = append(ops, withdrawAll(ks)...)
				continue
			}
			ops = append(ops, ks.moves(ks.targets(in, live, s.failoverOf(ks.region)), in)...)
		}
	}
	return ops
}

// withdrawAll withdraws every delegation of ks not already withdrawing.
func withdrawAll(ks *keySpace) []*globalv1.Op {
	var ops []*globalv1.Op
	for _, dl := range ks.delegations("") {
		if !dl.Withdrawing {
			ops = append(ops, &globalv1.Op{Op: &globalv1.Op_Withdraw{Withdraw: &globalv1.Withdraw{
				Domain: dl.Domain, Region: dl.Region, Holder: dl.Holder, Generation: dl.Generation,
			}}})
		}
	}
	return ops
}

// targets returns the region each shard of ks should be held by ("" for
// no decision: leave it as it is). failover is the failover order of a
// REGIONAL key space's region.
func (ks *keySpace) targets(in PlaceInput, live []string, failover []string) []string {
	t := make([]string, len(ks.shards))
	d := ks.d
	switch d.spec.Kind {
	case topology.KindRegional:
		if r := regionalTarget(ks, in, failover); r != "" {
			for i := range t {
				t[i] = r
			}
		}
	case topology.KindUnit:
		t[0] = unitTarget(ks, in, live)
	default:
		globalTargets(ks, in, live, t)
	}
	return t
}

// regionalTarget is the region that should serve a REGIONAL key space:
//
//   - its own region while that is live, unless the key space is served
//     elsewhere (failed over) and its region has not yet been live for the
//     domain's FailbackAfter: then it stays where it is until it has
//     (fail-back, a graceful move, once the region is stable);
//   - while its region is down (not live, and lapsed: see
//     PlaceInput.Lapsed), with failover: auto, the live region that serves
//     it already, else the first live region of the failover list with
//     consumers of the domain, else the first live one. Its shards
//     still held by the down region are left alone until the leader
//     expires them (placement never moves what a region that stopped
//     renewing holds), so the failover region gets each once its
//     delegation's deadline has passed;
//   - with failover: manual, the region an operator moved it to
//     (SetFailover) while that is live, else its own region while live;
//     else "" (it stays as it is: unserved while its region is down).
func regionalTarget(ks *keySpace, in PlaceInput, failover []string) string {
	home := ks.region
	name := ks.d.spec.Name
	if ks.d.failover == wdsv1.Failover_FAILOVER_MANUAL {
		switch {
		case ks.failoverTo != "":
			if in.Live[ks.failoverTo] {
				return ks.failoverTo
			}
			return ""
		case in.Live[home]:
			return home
		}
		return ""
	}
	// away is the live region other than home serving the key space now.
	away := ""
	for i := range ks.shards {
		if h := ks.shards[i].holder; h != "" && h != home && in.Live[h] {
			away = h
			break
		}
	}
	if in.Live[home] {
		if away == "" || in.LiveFor[home] >= ks.d.spec.FailbackAfterOrDefault() {
			return home
		}
		return away
	}
	if away != "" {
		return away
	}
	if in.Lapsed != nil && !in.Lapsed(home, name) {
		return "" // not down for long enough: wait, as for what it holds
	}
	for _, r := range failover {
		if in.Live[r] && consumersOf(in, r, name) > 0 {
			return r
		}
	}
	for _, r := range failover {
		if in.Live[r] {
			return r
		}
	}
	return ""
}

// failoverOf is the failover order of region: its list, or every other
// region in order when the topology gives none. Under s.mu.
func (s *State) failoverOf(region string) []string {
	var others []string
	for _, r := range s.regions {
		if r.Name == region {
			if len(r.Failover) > 0 {
				return r.Failover
			}
		} else {
			others = append(others, r.Name)
		}
	}
	return others
}

// consumersOf is the live consumers of domain in region.
func consumersOf(in PlaceInput, region, domain string) int {
	return in.Consumers[region][domain]
}

// unitTarget: the pinned region while it is live; else the holder while
// it is live and has consumers (or nobody has); else the live region with
// the most consumers; with none anywhere, the holder or the first live
// region.
func unitTarget(ks *keySpace, in PlaceInput, live []string) string {
	name := ks.d.spec.Name
	if len(ks.d.pins) > 0 && in.Live[ks.d.pins[0].region] {
		return ks.d.pins[0].region
	}
	if len(live) == 0 {
		return ""
	}
	best, most := "", 0
	for _, r := range live {
		if c := consumersOf(in, r, name); c > most {
			best, most = r, c
		}
	}
	h := ks.shards[0].holder
	if in.Live[h] && (consumersOf(in, h, name) > 0 || most == 0) {
		return h
	}
	if best != "" {
		return best
	}
	return live[0]
}

// globalTargets apportions a GLOBAL key space: pinned shards to their
// live region; the others so that every live consumer of the domain,
// federation-wide, ends with ⌊n/c⌋ or ⌈n/c⌉ of them once each cell
// balances its share over its own consumers: a region with c_r consumers
// gets c_r·⌊n/c⌋ plus at most c_r of the remainder. Without consumers
// anywhere the shards are spread evenly over the live regions. Shards stay
// where they are as far as the quotas allow.
func globalTargets(ks *keySpace, in PlaceInput, live []string, t []string) {
	name := ks.d.spec.Name
	pool := make([]int, 0, len(ks.shards))
	pinned := make([]bool, len(ks.shards))
	for _, p := range ks.d.pins {
		if !in.Live[p.region] {
			continue // the pin's region is down: its shards join the pool meanwhile
		}
		for i := p.from; i < p.to; i++ {
			t[i], pinned[i] = p.region, true
		}
	}
	for i := range ks.shards {
		if !pinned[i] {
			pool = append(pool, i)
		}
	}
	if len(live) == 0 || len(pool) == 0 {
		return
	}
	// What each live region holds of the pool now (renewed, not moving).
	held := map[string]int{}
	for _, i := range pool {
		if sh := &ks.shards[i]; in.Live[sh.holder] && !sh.withdrawing {
			held[sh.holder]++
		}
	}
	// Weights: consumers per live region, or one each when nobody has any.
	weight := map[string]int{}
	total := 0
	for _, r := range live {
		weight[r] = consumersOf(in, r, name)
		total += weight[r]
	}
	if total == 0 {
		for _, r := range live {
			weight[r] = 1
		}
		total = len(live)
	}
	n := len(pool)
	quota := map[string]int{}
	q, rem := n/total, n%total
	// The remainder goes to the regions holding most above their base
	// share first (fewest moves), then by name.
	order := append([]string(nil), live...)
	sort.SliceStable(order, func(a, b int) bool {
		ea, eb := held[order[a]]-weight[order[a]]*q, held[order[b]]-weight[order[b]]*q
		if ea != eb {
			return ea > eb
		}
		return order[a] < order[b]
	})
	for _, r := range order {
		quota[r] = weight[r] * q
		if e := min(weight[r], rem); e > 0 && weight[r] > 0 {
			quota[r] += e
			rem -= e
		}
	}
	// Keep what may stay, then fill the deficits in key order, one region
	// after another (so delegations are few, long runs).
	kept := map[string]int{}
	var rest []int
	for _, i := range pool {
		sh := &ks.shards[i]
		if in.Live[sh.holder] && !sh.withdrawing && kept[sh.holder] < quota[sh.holder] {
			t[i] = sh.holder
			kept[sh.holder]++
			continue
		}
		rest = append(rest, i)
	}
	j := 0
	for _, r := range live {
		for kept[r] < quota[r] && j < len(rest) {
			t[rest[j]] = r
			kept[r]++
			j++
		}
	}
}

// moves turns targets into ops: free shards are delegated to their target
// (one Delegate per target, in runs), shards of a live holder that should
// be elsewhere are withdrawn, at most MaxMoves in flight.
func (ks *keySpace) moves(t []string, in PlaceInput) []*globalv1.Op {
	var ops []*globalv1.Op
	inflight := 0
	for i := range ks.shards {
		if ks.shards[i].withdrawing {
			inflight++
		}
	}
	delegate := map[string][]topology.Range{}
	var targets []string
	type wkey struct {
		holder string
		gen    uint64
	}
	withdraw := map[wkey][]topology.Range{}
	var wkeys []wkey
	for i := range ks.shards {
		sh := &ks.shards[i]
		want := t[i]
		if want == "" {
			continue
		}
		switch {
		case sh.free():
			if _, ok := delegate[want]; !ok {
				targets = append(targets, want)
			}
			delegate[want] = topology.AppendRun(delegate[want], ks.ranges[i])
		case sh.holder != want && !sh.withdrawing && in.Live[sh.holder] && inflight < in.MaxMoves:
			k := wkey{sh.holder, sh.generation}
			if _, ok := withdraw[k]; !ok {
				wkeys = append(wkeys, k)
			}
			withdraw[k] = topology.AppendRun(withdraw[k], ks.ranges[i])
			inflight++
		}
	}
	for _, k := range wkeys {
		ops = append(ops, &globalv1.Op{Op: &globalv1.Op_Withdraw{Withdraw: &globalv1.Withdraw{
			Domain: ks.d.spec.Name, Region: ks.region, Holder: k.holder, Generation: k.gen, Ranges: rangesProto(withdraw[k]),
		}}})
	}
	sort.Strings(targets)
	for _, r := range targets {
		ops = append(ops, &globalv1.Op{Op: &globalv1.Op_Delegate{Delegate: &globalv1.Delegate{
			Domain: ks.d.spec.Name, Region: ks.region, Holder: r, Ranges: rangesProto(delegate[r]),
		}}})
	}
	return ops
}

func rangesProto(rs []topology.Range) []*wdsv1.KeyRange {
	out := make([]*wdsv1.KeyRange, len(rs))
	for i, r := range rs {
		out[i] = topology.RangeToProto(r)
	}
	return out
}
