package celltest

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/wdsio/wds/cell"
	"github.com/wdsio/wds/internal/lease"
	"github.com/wdsio/wds/topology"
)

// Delegator is a deadline-driven test delegator (cell.Delegator): it plays
// the global group for one cell. It answers renewals with the delegations
// it was given while it is renewing; once stopped it refuses them, so the
// cell's delegations lapse at their deadlines. It records the receive time
// of the last answered renewal, which bounds every deadline the cell may
// have computed: the cell sends at s ≤ r and holds until s + D·(1−ε).
type Delegator struct {
	// D is the duration of every delegation.
	D time.Duration
	// Drift is ε as the cell uses it.
	Drift float64

	mu           sync.Mutex
	delegations  map[delegKey]cell.Delegation
	stopped      bool
	lastAnswered time.Time
	answered     int
	released     map[cell.DelegationID]bool
	held         []cell.DelegationID
}

type delegKey struct{ domain, region string }

// ErrStopped is what a stopped Delegator answers.
var ErrStopped = errors.New("celltest: delegator stopped renewing")

// NewDelegator returns a renewing delegator with no delegations.
func NewDelegator(d time.Duration, drift float64) *Delegator {
	return &Delegator{D: d, Drift: drift, delegations: map[delegKey]cell.Delegation{}, released: map[cell.DelegationID]bool{}}
}

// Delegate gives the cell a key space (the whole of it when ranges is
// empty) under generation gen, replacing what it had of that key space.
func (d *Delegator) Delegate(domain, region string, gen uint64, ranges ...topology.Range) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.delegations[delegKey{domain, region}] = cell.Delegation{
		DelegationID: cell.DelegationID{Domain: domain, Region: region, Generation: gen},
		Ranges:       ranges,
		Duration:     d.D,
	}
}

// Withdraw takes a key space back: renewals stop listing it.
func (d *Delegator) Withdraw(domain, region string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.delegations, delegKey{domain, region})
}

// Stop makes every later renewal fail, as a cell cut off from the global
// group sees it. It returns the bound every delegation deadline of the
// cell lies before: the last answered renewal's receive time + D·(1−ε).
func (d *Delegator) Stop() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	return d.boundLocked()
}

// Resume answers renewals again.
func (d *Delegator) Resume() {
	d.mu.Lock()
	d.stopped = false
	d.mu.Unlock()
}

// Bound is the latest instant the cell may hold its delegations until:
// the last answered renewal's receive time + D·(1−ε).
func (d *Delegator) Bound() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.boundLocked()
}

func (d *Delegator) boundLocked() time.Time {
	return lease.Params{TTL: d.D, Drift: d.Drift}.ClientDeadline(d.lastAnswered)
}

// Answered is how many renewals were answered.
func (d *Delegator) Answered() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.answered
}

// Released returns the delegations the cell reported released.
func (d *Delegator) Released() []cell.DelegationID {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]cell.DelegationID, 0, len(d.released))
	for id := range d.released {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Domain != out[j].Domain {
			return out[i].Domain < out[j].Domain
		}
		if out[i].Region != out[j].Region {
			return out[i].Region < out[j].Region
		}
		return out[i].Generation < out[j].Generation
	})
	return out
}

// Held returns the delegations the cell said it held in its last renewal.
func (d *Delegator) Held() []cell.DelegationID {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]cell.DelegationID(nil), d.held...)
}

// Renew implements cell.Delegator.
func (d *Delegator) Renew(ctx context.Context, req cell.RenewRequest) (cell.RenewResponse, error) {
	received := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, dl := range req.Released {
		d.released[dl.DelegationID] = true // some of its ranges, or all
	}
	d.held = append(d.held[:0], req.Held...)
	if d.stopped {
		return cell.RenewResponse{}, ErrStopped
	}
	if err := ctx.Err(); err != nil {
		return cell.RenewResponse{}, err
	}
	d.lastAnswered = received
	d.answered++
	var resp cell.RenewResponse
	for _, dl := range d.delegations {
		resp.Delegations = append(resp.Delegations, dl)
	}
	sort.Slice(resp.Delegations, func(i, j int) bool {
		a, b := resp.Delegations[i], resp.Delegations[j]
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		return a.Region < b.Region
	})
	return resp, nil
}

// WithDelegator makes every node of a cluster renew with d (RenewInterval
// interval).
func WithDelegator(d *Delegator, interval time.Duration) Option {
	return func(cfg *cell.Config) {
		cfg.Delegator = d
		cfg.RenewInterval = interval
	}
}
