package client

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wdsio/wds/topology"
)

// The lease book is pure: these tables drive it with explicit instants and
// compare the actions it asks for. Leases: T = 3 s, ε = 1%, so an ack of a
// heartbeat sent at s makes a domain valid until s + 2.97 s.

var bookT0 = time.Unix(1_000_000, 0)

// bs is shard i (of testRanges) of domain in key space region, token index.
func bs(domain, region string, i int, index uint64) Shard {
	return Shard{Domain: domain, Region: region, Range: testRanges[i], Token: topology.Token{Generation: 1, Index: index}}
}

// name is a short name for a shard in wanted actions: d/0@7, d/a/0@7.
func bookName(s Shard) string {
	i := slices.Index(testRanges, s.Range)
	if s.Region != "" {
		return fmt.Sprintf("%s/%s/%d@%d", s.Domain, s.Region, i, s.Token.Index)
	}
	return fmt.Sprintf("%s/%d@%d", s.Domain, i, s.Token.Index)
}

// render writes actions as "start d/0@7", "lost d/0@7 at 2.97s",
// "revoke d/0@7 at 1s", "release d/0@7" (with event: "release! d/0@7"),
// sorted: the book starts and expires shards in map order.
func render(acts []action) []string {
	out := []string{}
	for _, a := range acts {
		switch a.op {
		case opStart:
			out = append(out, "start "+bookName(a.shard))
		case opStop:
			out = append(out, fmt.Sprintf("%s %s at %v", a.event, bookName(a.shard), a.time.Sub(bookT0)))
		case opRelease:
			if a.event == EventRelease {
				out = append(out, "release! "+bookName(a.shard))
			} else {
				out = append(out, "release "+bookName(a.shard))
			}
		}
	}
	slices.Sort(out)
	return out
}

type bookStep struct {
	at   time.Duration
	do   func(b *leaseBook, now time.Time) []action
	want []string
}

func hbAt(at time.Duration) bookStep {
	return bookStep{at: at, do: func(b *leaseBook, now time.Time) []action { b.heartbeat(now); return nil }}
}

func ackAt(at time.Duration, seq uint64, withheld []string, want ...string) bookStep {
	return bookStep{at: at, want: want, do: func(b *leaseBook, now time.Time) []action {
		acts, _ := b.ack(seq, withheld, now)
		return acts
	}}
}

func grantAt(at time.Duration, s []Shard, want ...string) bookStep {
	return bookStep{at: at, want: want, do: func(b *leaseBook, now time.Time) []action { return b.grant(s, now) }}
}

func revokeAt(at time.Duration, s []Shard, want ...string) bookStep {
	return bookStep{at: at, want: want, do: func(b *leaseBook, now time.Time) []action { return b.revoke(s, "rebalance", now) }}
}

func welcomeAt(at time.Duration, s []Shard, want ...string) bookStep {
	return bookStep{at: at, want: want, do: func(b *leaseBook, now time.Time) []action {
		return append(b.reconcile(s, now), b.grant(s, now)...)
	}}
}

// returnedAt: the handler running s returned.
func returnedAt(at time.Duration, s Shard, want ...string) bookStep {
	return bookStep{at: at, want: want, do: func(b *leaseBook, now time.Time) []action {
		for run, h := range b.runs {
			if h.shard.key() == s.key() {
				return b.returned(run, now)
			}
		}
		return []action{{op: opStart, shard: Shard{Domain: "no handler of " + bookName(s)}}}
	}}
}

func expireAt(at time.Duration, want ...string) bookStep {
	return bookStep{at: at, want: want, do: func(b *leaseBook, now time.Time) []action {
		acts, _ := b.expire(now)
		return acts
	}}
}

// checkAt checks the book's state.
func checkAt(at time.Duration, f func(b *leaseBook, now time.Time) string) bookStep {
	return bookStep{at: at, do: func(b *leaseBook, now time.Time) []action {
		if msg := f(b, now); msg != "" {
			return []action{{op: opStart, shard: Shard{Domain: "check: " + msg}}}
		}
		return nil
	}}
}

func validUntil(domain string, want time.Duration) func(*leaseBook, time.Time) string {
	return func(b *leaseBook, _ time.Time) string {
		if got := b.valid[domain].Sub(bookT0); got != want {
			return fmt.Sprintf("%s valid until %v, want %v", domain, got, want)
		}
		return ""
	}
}

func runningAre(names ...string) func(*leaseBook, time.Time) string {
	return func(b *leaseBook, _ time.Time) string {
		got := []string{}
		for _, s := range b.running() {
			got = append(got, bookName(s))
		}
		slices.Sort(got)
		slices.Sort(names)
		if !slices.Equal(got, names) && !(len(got) == 0 && len(names) == 0) {
			return fmt.Sprintf("running %v, want %v", got, names)
		}
		return ""
	}
}

func nextDeadline(want time.Duration) func(*leaseBook, time.Time) string {
	return func(b *leaseBook, now time.Time) string {
		_, next := b.expire(now)
		if got := next.Sub(bookT0); next.IsZero() || got != want {
			return fmt.Sprintf("next deadline %v, want %v", got, want)
		}
		return ""
	}
}

const ms = time.Millisecond

func TestLeaseBook(t *testing.T) {
	d0, d0b, d0c := bs("d", "", 0, 7), bs("d", "", 0, 8), bs("d", "", 0, 9)
	d1, e0 := bs("d", "", 1, 9), bs("e", "", 0, 8)
	da, db := bs("d", "a", 0, 7), bs("d", "b", 0, 8)
	one := func(s ...Shard) []Shard { return s }
	for _, tc := range []struct {
		name  string
		steps []bookStep
	}{
		{"ack extends from the heartbeat's send time", []bookStep{
			hbAt(0),
			grantAt(10*ms, one(d0)), // no validity yet: waits
			ackAt(500*ms, 1, nil, "start d/0@7"),
			checkAt(500*ms, validUntil("d", 2970*ms)), // s + T(1−ε), however late the ack
			checkAt(500*ms, nextDeadline(2970*ms)),
			hbAt(time.Second),
			hbAt(2 * time.Second),
			ackAt(2500*ms, 3, nil),
			ackAt(2600*ms, 2, nil), // older: must not shorten
			checkAt(2600*ms, validUntil("d", 4970*ms)),
			expireAt(4970*ms - 1),
			expireAt(4970*ms, "lost d/0@7 at 4.97s"),
		}},
		{"an unknown or repeated ack extends nothing", []bookStep{
			hbAt(0),
			ackAt(10*ms, 1, nil),
			ackAt(20*ms, 1, nil),
			ackAt(30*ms, 99, nil),
			checkAt(30*ms, validUntil("d", 2970*ms)),
		}},
		{"a lapsed lease stays lapsed", []bookStep{
			hbAt(0),
			ackAt(40*ms, 1, nil),
			grantAt(50*ms, one(d0), "start d/0@7"),
			hbAt(2900 * ms),
			// The ack arrives after the deadline, before any expiry ran:
			// the shard is lost at the deadline, not carried across.
			ackAt(3*time.Second, 2, nil, "lost d/0@7 at 2.97s"),
			checkAt(3*time.Second, runningAre()),
			checkAt(3*time.Second, validUntil("d", 5870*ms)),
			grantAt(3100*ms, one(d0)), // a duplicate of the lost grant
			checkAt(3100*ms, runningAre()),
			// Once its handler returned, a newer grant starts.
			returnedAt(3200*ms, d0, "release! d/0@7"),
			grantAt(3300*ms, one(d0b), "start d/0@8"),
		}},
		{"revoked grants are not extended", []bookStep{
			hbAt(0),
			ackAt(40*ms, 1, nil),
			grantAt(50*ms, one(d0, e0), "start d/0@7", "start e/0@8"),
			revokeAt(time.Second, one(d0), "revoke d/0@7 at 1s"),
			hbAt(time.Second),
			ackAt(1100*ms, 2, nil), // does not bring d0 back
			checkAt(1100*ms, runningAre("e/0@8")),
			grantAt(1200*ms, one(d0)), // the cell re-sends the revoked grant: ignored
			checkAt(1200*ms, runningAre("e/0@8")),
			returnedAt(1300*ms, d0, "release! d/0@7"),
			expireAt(3970*ms, "lost e/0@8 at 3.97s"),
		}},
		{"a revoke of a grant not yet started releases it", []bookStep{
			hbAt(0),
			grantAt(10*ms, one(d0)),
			revokeAt(20*ms, one(d0), "release d/0@7"),
			ackAt(40*ms, 1, nil),
			checkAt(40*ms, runningAre()),
		}},
		{"withheld domains keep their old validity", []bookStep{
			hbAt(0),
			ackAt(40*ms, 1, nil),
			grantAt(50*ms, one(d0, e0), "start d/0@7", "start e/0@8"),
			hbAt(time.Second),
			ackAt(1050*ms, 2, []string{"d"}),
			checkAt(1050*ms, validUntil("d", 2970*ms)),
			checkAt(1050*ms, validUntil("e", 3970*ms)),
			// A grant of d after an ack that withheld d must not start
			// under d's old validity.
			grantAt(1100*ms, one(d1)),
			checkAt(1100*ms, runningAre("d/0@7", "e/0@8")),
			hbAt(2 * time.Second),
			ackAt(2050*ms, 3, []string{"d"}),
			expireAt(2970*ms, "lost d/0@7 at 2.97s"),
			checkAt(2970*ms, runningAre("e/0@8")),
			// An ack that extends d again starts the waiting grant, not
			// the lost one.
			hbAt(3 * time.Second),
			ackAt(3050*ms, 4, nil, "start d/1@9"),
			checkAt(3050*ms, validUntil("d", 5970*ms)),
			checkAt(3050*ms, runningAre("d/1@9", "e/0@8")),
		}},
		{"a withheld domain with no validity starts nothing", []bookStep{
			hbAt(0),
			grantAt(10*ms, one(d0, e0)),
			ackAt(40*ms, 1, []string{"d"}, "start e/0@8"),
			checkAt(40*ms, func(b *leaseBook, _ time.Time) string {
				if !b.valid["d"].IsZero() {
					return "a withheld domain became valid"
				}
				return ""
			}),
			hbAt(time.Second),
			ackAt(1040*ms, 2, nil, "start d/0@7"),
		}},
		{"regrant after release", []bookStep{
			hbAt(0),
			ackAt(40*ms, 1, nil),
			grantAt(50*ms, one(d0), "start d/0@7"),
			revokeAt(time.Second, one(d0), "revoke d/0@7 at 1s"),
			// Granted to us again while the old handler still stops:
			// waits for it.
			grantAt(1100*ms, one(d0c)),
			checkAt(1100*ms, runningAre()),
			returnedAt(1500*ms, d0, "release! d/0@7", "start d/0@9"),
			checkAt(1500*ms, runningAre("d/0@9")),
		}},
		{"a waiting regrant revoked before it ran is released, never started", []bookStep{
			hbAt(0),
			ackAt(40*ms, 1, nil),
			grantAt(50*ms, one(d0), "start d/0@7"),
			revokeAt(time.Second, one(d0), "revoke d/0@7 at 1s"),
			grantAt(1100*ms, one(d0c)),
			revokeAt(1200*ms, one(d0c), "release d/0@9"),
			returnedAt(1500*ms, d0, "release! d/0@7"),
			grantAt(1600*ms, one(d0c), "release d/0@9"), // stale
			checkAt(1600*ms, runningAre()),
		}},
		{"a stale grant is released again", []bookStep{
			hbAt(0),
			ackAt(40*ms, 1, nil),
			grantAt(50*ms, one(d0), "start d/0@7"),
			// The handler returns on its own: a voluntary release.
			returnedAt(time.Second, d0, "revoke d/0@7 at 1s", "release! d/0@7"),
			// The cell had not seen our release: the grant comes again.
			grantAt(1100*ms, one(d0), "release d/0@7"),
			checkAt(1100*ms, runningAre()),
			grantAt(1200*ms, one(d0b), "start d/0@8"),
		}},
		{"a welcome reconciles", []bookStep{
			hbAt(0),
			ackAt(40*ms, 1, nil),
			grantAt(50*ms, one(d0, e0), "start d/0@7", "start e/0@8"),
			revokeAt(100*ms, one(d0), "revoke d/0@7 at 100ms"),
			grantAt(200*ms, one(d0c)), // waits for d0's handler
			// The new leader lists e0 only: d0's waiting regrant was moved
			// away meanwhile and is released.
			welcomeAt(time.Second, one(e0), "release d/0@9"),
			returnedAt(1100*ms, d0, "release! d/0@7"),
			checkAt(1100*ms, runningAre("e/0@8")),
			// A leader that lists nothing revokes e0.
			welcomeAt(1200*ms, nil, "revoke e/0@8 at 1.2s"),
		}},
		{"key spaces are apart", []bookStep{
			hbAt(0),
			ackAt(40*ms, 1, nil),
			grantAt(50*ms, one(da, db), "start d/a/0@7", "start d/b/0@8"),
			revokeAt(time.Second, one(db), "revoke d/b/0@8 at 1s"),
			checkAt(time.Second, runningAre("d/a/0@7")),
			returnedAt(1100*ms, db, "release! d/b/0@8"),
			grantAt(1200*ms, one(db), "release d/b/0@8"), // stale in b, not in a
			checkAt(1200*ms, runningAre("d/a/0@7")),
		}},
		{"nothing starts after close", []bookStep{
			hbAt(0),
			ackAt(40*ms, 1, nil),
			grantAt(50*ms, one(d0), "start d/0@7"),
			revokeAt(100*ms, one(d0), "revoke d/0@7 at 100ms"),
			grantAt(200*ms, one(d0c)),
			{at: 300 * ms, do: func(b *leaseBook, now time.Time) []action { return b.close("consumer closed", now) }},
			returnedAt(400*ms, d0, "release! d/0@7"),
			grantAt(500*ms, one(e0)),
			checkAt(500*ms, runningAre()),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newLeaseBook()
			b.setLeases(0.01, map[string]time.Duration{"d": 3 * time.Second, "e": 3 * time.Second})
			for i, st := range tc.steps {
				got := render(st.do(b, bookT0.Add(st.at)))
				want := append([]string{}, st.want...)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("step %d (at %v): actions\n  %s\nwant\n  %s", i, st.at, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
				}
			}
		})
	}
}

// TestLeaseBookHeartbeatWindow: only the latest 64 heartbeats are
// remembered; an ack of an older one extends nothing.
func TestLeaseBookHeartbeatWindow(t *testing.T) {
	b := newLeaseBook()
	b.setLeases(0.01, map[string]time.Duration{"d": 3 * time.Second})
	for i := range 70 {
		b.heartbeat(bookT0.Add(time.Duration(i) * time.Millisecond))
	}
	if _, ok := b.ack(5, nil, bookT0.Add(time.Second)); ok {
		t.Error("an ack of a forgotten heartbeat was taken")
	}
	if _, ok := b.ack(70, nil, bookT0.Add(time.Second)); !ok || !b.valid["d"].Equal(bookT0.Add(69*time.Millisecond+2970*time.Millisecond)) {
		t.Errorf("ack of the latest heartbeat: ok %v, valid until %v", ok, b.valid["d"].Sub(bookT0))
	}
}
