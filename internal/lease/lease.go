// Package lease is the clock arithmetic of the WDS lease contract
// (DESIGN.md, "The lease contract") for the servers: the cell and (later)
// the global group. The client library may import only proto and topology,
// so it repeats the one client-side formula, ClientDeadline, in
// client.Consumer.ack; the tests of both pin the same numbers.
//
// All times are local monotonic readings (time.Now() carries a monotonic
// clock reading; never compare times taken on different machines). T is a
// grant TTL and ε the allowed clock-rate drift between any two machines.
//
//   - (1) the client holds its grants until s + T·(1−ε), s being the send
//     time of the last acknowledged heartbeat;
//   - (2) the leader holds them until r + T·(1+ε), r being that heartbeat's
//     receive time; since s precedes r the client always gives up first;
//   - (4) a new leader, which does not know its predecessor's receive times,
//     holds every grant until accession + T·(1+ε) + L, where L covers the
//     window in which the deposed leader may still have acknowledged
//     heartbeats.
package lease

import (
	"fmt"
	"time"
)

// DefaultDrift is the default allowed clock-rate drift ε: 1%.
const DefaultDrift = 0.01

// MaxDrift bounds ε: beyond 10% the contract's margins stop making sense.
const MaxDrift = 0.1

// Params are the lease parameters of one domain.
type Params struct {
	// TTL is the grant TTL T.
	TTL time.Duration
	// Drift is ε, the allowed clock-rate drift (0.01 = 1%).
	Drift float64
}

// Validate reports a parameter outside the contract's domain.
func (p Params) Validate() error {
	if p.TTL <= 0 {
		return fmt.Errorf("lease: ttl must be positive, got %v", p.TTL)
	}
	if p.Drift < 0 || p.Drift > MaxDrift {
		return fmt.Errorf("lease: drift must be in [0, %v], got %v", MaxDrift, p.Drift)
	}
	return nil
}

// scale returns d·f rounded down to the nanosecond.
func scale(d time.Duration, f float64) time.Duration {
	return time.Duration(float64(d) * f)
}

// ClientHold is T·(1−ε): how long after a heartbeat's send time the client
// may keep its grants once that heartbeat is acknowledged.
func (p Params) ClientHold() time.Duration { return scale(p.TTL, 1-p.Drift) }

// LeaderHold is T·(1+ε): how long after a heartbeat's receive time the
// leader keeps the session's grants.
func (p Params) LeaderHold() time.Duration { return scale(p.TTL, 1+p.Drift) }

// ClientDeadline is contract (1): the client's grants are valid until this
// instant, given the send time of the last acknowledged heartbeat.
func (p Params) ClientDeadline(sent time.Time) time.Time { return sent.Add(p.ClientHold()) }

// LeaderDeadline is contract (2): the leader treats the grants as held until
// this instant, given the receive time of the session's last heartbeat.
func (p Params) LeaderDeadline(received time.Time) time.Time { return received.Add(p.LeaderHold()) }

// AccessionDeadline is contract (4): a new leader that took office at
// accession holds every grant it inherited until this instant, unless a
// heartbeat it acknowledges extends it. window is the leader-confirmation
// window W: a deposed leader stops acknowledging heartbeats at most W (on
// its own clock) after its last confirmed contact with a quorum, so L is W
// stretched by the drift.
func (p Params) AccessionDeadline(accession time.Time, window time.Duration) time.Time {
	return accession.Add(p.LeaderHold() + AccessionSlack(window, p.Drift))
}

// AccessionSlack is L: the confirmation window W measured on another
// machine's clock, i.e. W·(1+ε).
func AccessionSlack(window time.Duration, drift float64) time.Duration {
	return scale(window, 1+drift)
}

// HeartbeatInterval is how often a session heartbeats: a third of the
// smallest TTL among its domains, so two heartbeats may be lost before a
// lease lapses.
func HeartbeatInterval(minTTL time.Duration) time.Duration { return minTTL / 3 }

// Later returns the later of two instants.
func Later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
