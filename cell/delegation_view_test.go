package cell

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// The leader's view of its delegations, on fake time: every instant is
// explicit, nothing sleeps.

func TestDelegationViewEdges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			ttl   = 3 * time.Second
			d     = 6 * time.Second
			drift = 0.01
		)
		id := DelegationID{Domain: "jobs", Generation: 4}
		ttls := map[string]time.Duration{"jobs": ttl, "free": ttl}
		ttlOf := func(string) time.Duration { return ttl }
		accession := time.Now()
		v := newDelegationView(false, accession, drift)
		v.setLive(map[string][]DelegationID{"jobs": {id}}, map[DelegationID]time.Duration{id: d})

		// Unknown: a new leader withholds the delegated domain, revokes
		// nothing, and grants nothing; an undelegated domain is not held up.
		if w, sweep := v.withheld(ttls, time.Now()); !slices.Equal(w, []string{"jobs"}) || sweep {
			t.Fatalf("unknown: withheld %v sweep %v, want [jobs] without a sweep", w, sweep)
		}
		if v.grantable("jobs", time.Now()) || !v.grantable("free", time.Now()) {
			t.Fatal("unknown: grantable wrong")
		}
		if ids := v.lapsing(time.Now(), ttlOf); len(ids) != 0 {
			t.Fatalf("unknown: swept %v before D·(1+ε) passed", ids)
		}

		// Covered from the send time of the answered renewal.
		sent := time.Now()
		time.Sleep(100 * time.Millisecond) // the renewal's round trip
		v.answered(sent, RenewResponse{Delegations: []Delegation{{DelegationID: id, Duration: d}}})
		deadline := sent.Add(time.Duration(float64(d) * (1 - drift)))
		if w, _ := v.withheld(ttls, time.Now()); len(w) != 0 {
			t.Fatalf("covered: withheld %v", w)
		}
		// The last instant an ack may go out: now + T·(1+ε) before the deadline.
		last := deadline.Add(-time.Duration(float64(ttl) * (1 + drift)))
		time.Sleep(time.Until(last) - time.Millisecond)
		if w, _ := v.withheld(ttls, time.Now()); len(w) != 0 {
			t.Fatalf("1 ms before the last ack: withheld %v", w)
		}
		time.Sleep(time.Millisecond)
		if w, sweep := v.withheld(ttls, time.Now()); !slices.Equal(w, []string{"jobs"}) || !sweep {
			t.Fatalf("lapsing: withheld %v sweep %v, want [jobs] and a sweep", w, sweep)
		}
		// One sweep per delegation, not one per ack.
		if ids := v.lapsing(time.Now(), ttlOf); !slices.Equal(ids, []DelegationID{id}) {
			t.Fatalf("lapsing: %v", ids)
		}
		if ids := v.lapsing(time.Now(), ttlOf); len(ids) != 0 {
			t.Fatalf("swept twice: %v", ids)
		}
		// A sweep whose proposal failed is proposed again.
		v.unsweep([]DelegationID{id})
		if ids := v.lapsing(time.Now(), ttlOf); len(ids) != 1 {
			t.Fatalf("after a failed sweep: %v", ids)
		}
		// Relinquished: no longer live, nothing withheld.
		v.setLive(map[string][]DelegationID{}, nil)
		if w, _ := v.withheld(ttls, time.Now()); len(w) != 0 {
			t.Fatalf("after relinquish: withheld %v", w)
		}

		// Taken back: a live delegation the answer does not list lapses at once.
		other := DelegationID{Domain: "jobs", Generation: 9}
		v.setLive(map[string][]DelegationID{"jobs": {other}}, map[DelegationID]time.Duration{other: d})
		v.answered(time.Now(), RenewResponse{})
		if ids := v.lapsing(time.Now(), ttlOf); !slices.Equal(ids, []DelegationID{other}) {
			t.Fatalf("withdrawn: lapsing %v", ids)
		}
	})
}

// TestDelegationViewNeverAnswered: a leader whose renewals all fail knows
// the delegation has lapsed once D·(1+ε) passed since its accession (the
// last renewal anyone made was before it), and sweeps it then, not before.
func TestDelegationViewNeverAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const d = 6 * time.Second
		id := DelegationID{Domain: "jobs", Region: "eu-west", Generation: 2}
		v := newDelegationView(false, time.Now(), 0.01)
		v.setLive(map[string][]DelegationID{"jobs": {id}}, map[DelegationID]time.Duration{id: d})
		ttlOf := func(string) time.Duration { return 3 * time.Second }
		time.Sleep(time.Duration(float64(d)*1.01) - time.Millisecond)
		if ids := v.lapsing(time.Now(), ttlOf); len(ids) != 0 {
			t.Fatalf("swept %v before D·(1+ε)", ids)
		}
		time.Sleep(2 * time.Millisecond)
		if ids := v.lapsing(time.Now(), ttlOf); !slices.Equal(ids, []DelegationID{id}) {
			t.Fatalf("after D·(1+ε): %v", ids)
		}
	})
}

// TestDelegationViewSelf: a lone cell's view holds nothing back, ever.
func TestDelegationViewSelf(t *testing.T) {
	v := newDelegationView(true, time.Now(), 0.01)
	if w, sweep := v.withheld(map[string]time.Duration{"jobs": time.Second}, time.Now().Add(1000*time.Hour)); len(w) != 0 || sweep {
		t.Fatal("a lone cell withheld an ack")
	}
	if !v.grantable("jobs", time.Now().Add(1000*time.Hour)) || v.lapsing(time.Now(), nil) != nil {
		t.Fatal("a lone cell's delegation lapsed")
	}
}
