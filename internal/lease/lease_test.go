package lease

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestClientAlwaysGivesUpFirst(t *testing.T) {
	// For any send time s ≤ receive time r, the client's deadline must precede
	// the leader's: that is what makes contract (3) safe.
	for _, ttl := range []time.Duration{time.Second, 3 * time.Second, 10 * time.Second, time.Hour} {
		for _, drift := range []float64{0, 0.001, 0.01, 0.1} {
			p := Params{TTL: ttl, Drift: drift}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			s := time.Unix(1000, 0)
			for _, delay := range []time.Duration{0, time.Nanosecond, time.Millisecond, ttl} {
				r := s.Add(delay)
				if p.ClientDeadline(s).After(p.LeaderDeadline(r)) {
					t.Errorf("ttl %v drift %v delay %v: client deadline %v after leader deadline %v",
						ttl, drift, delay, p.ClientDeadline(s), p.LeaderDeadline(r))
				}
				if drift > 0 && !p.ClientDeadline(s).Before(p.LeaderDeadline(r)) {
					t.Errorf("ttl %v drift %v: no margin between client and leader deadlines", ttl, drift)
				}
			}
		}
	}
}

func TestAccessionCoversDeposedLeader(t *testing.T) {
	// A deposed leader may acknowledge a heartbeat up to W after the new
	// leader's accession (its last confirmation precedes the accession). The
	// client holds until at most ack+T(1−ε); the new leader must hold longer.
	p := Params{TTL: 5 * time.Second, Drift: 0.01}
	w := time.Second
	accession := time.Unix(5000, 0)
	lastAck := accession.Add(w) // worst case, measured on the new leader's clock
	clientEnd := p.ClientDeadline(lastAck)
	if !clientEnd.Before(p.AccessionDeadline(accession, w)) {
		t.Fatalf("client holds until %v, new leader only until %v", clientEnd, p.AccessionDeadline(accession, w))
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Params{{TTL: 0, Drift: 0.01}, {TTL: time.Second, Drift: -1}, {TTL: time.Second, Drift: 0.5}} {
		if p.Validate() == nil {
			t.Errorf("%+v: want error", p)
		}
	}
}

func TestDeadlinesOnFakeClock(t *testing.T) {
	// The contract is about durations on one monotonic clock; synctest's fake
	// clock lets us check the arithmetic against real timers exactly.
	synctest.Test(t, func(t *testing.T) {
		p := Params{TTL: 3 * time.Second, Drift: 0.01}
		s := time.Now()
		fired := make(chan time.Time, 1)
		time.AfterFunc(time.Until(p.ClientDeadline(s)), func() { fired <- time.Now() })
		got := <-fired
		if want := s.Add(2970 * time.Millisecond); !got.Equal(want) {
			t.Fatalf("client deadline fired at +%v, want +%v", got.Sub(s), want.Sub(s))
		}
		if d := p.LeaderDeadline(s).Sub(s); d != 3030*time.Millisecond {
			t.Fatalf("leader hold %v, want 3.03s", d)
		}
	})
}

func TestHeartbeatInterval(t *testing.T) {
	if got := HeartbeatInterval(3 * time.Second); got != time.Second {
		t.Fatalf("got %v", got)
	}
}
