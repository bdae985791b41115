package celltest

import (
	"context"

	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/wdsio/wds/chaos"
	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/faults"
)

// Consumer is a test consumer: a real client.Consumer whose handler holds
// each shard until its context ends, recording every ownership period in
// the cluster's history.
type Consumer struct {
	*client.Consumer
	ID string
	// Net is the consumer's network: Cut it to kill the consumer without
	// drain, Freeze it to hang it with its socket open.
	Net *NetFault

	mu      sync.Mutex
	open    map[string]*chaos.Ownership // by shard string
	owned   map[string]client.Shard     // the shards of open, by the same key
	events  []client.Event
	revokes int
	losts   int
	grants  int
	drained bool
}

// ConsumerOption adjusts a test consumer's configuration.
type ConsumerOption func(*client.Config)

// NewConsumer starts a consumer of domains against the cluster's endpoints.
func (c *Cluster) NewConsumer(id string, domains []string, opts ...ConsumerOption) *Consumer {
	c.t.Helper()
	return StartConsumer(c.t, c.Net, c.History, c.Endpoints(), Region, id, domains, opts...)
}

// StartConsumer starts a test consumer of domains in region against
// endpoints, recording into history, its dials consulting net (nil: no
// faults but its own): for cells a Cluster does not run (a federation's).
func StartConsumer(t testing.TB, net *faults.Net, history *chaos.History, endpoints []string, region, id string, domains []string, opts ...ConsumerOption) *Consumer {
	t.Helper()
	tc := &Consumer{ID: id, open: map[string]*chaos.Ownership{}, owned: map[string]client.Shard{}, Net: &NetFault{net: net, from: id}}
	cfg := client.Config{
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(tc.Net.Dial)},
		Endpoints:   endpoints,
		ID:          id,
		Region:      region,
		Endpoint:    id + ".test:8080",
		Domains:     domains,
		Handler: func(ctx context.Context, s client.Shard) {
			<-ctx.Done()
		},
		OnEvent: tc.onEvent(history),
	}
	for _, o := range opts {
		o(&cfg)
	}
	cons, err := client.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc.Consumer = cons
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = cons.Close(ctx)
	})
	return tc
}

func (tc *Consumer) onEvent(h *chaos.History) func(client.Event) {
	return func(e client.Event) {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		tc.events = append(tc.events, e)
		// A shard is (domain, key-space region, range): a REGIONAL domain's
		// two key spaces have numerically overlapping ranges.
		key := e.Shard.Domain + "/" + e.Shard.Region + e.Shard.Range.String()
		switch e.Kind {
		case client.EventGrant:
			tc.grants++
			tc.open[key] = h.Begin(tc.ID, e.Shard.Domain, e.Shard.Region, e.Shard.Range, e.Shard.Token, e.Time)
			tc.owned[key] = e.Shard
		case client.EventRevoke, client.EventLost:
			if e.Kind == client.EventRevoke {
				tc.revokes++
			} else {
				tc.losts++
			}
			if o := tc.open[key]; o != nil {
				o.End(e.Time)
				delete(tc.open, key)
				delete(tc.owned, key)
			}
		case client.EventDrained:
			tc.drained = true
		}
	}
}

// Kill cuts the consumer off the network for good, as a crash would: no
// drain, no release. Its library still cancels its shards at the lease
// deadline, which the history records.
func (tc *Consumer) Kill() { tc.Net.Cut() }

// Counts returns how many grants, revocations and lease losses the
// consumer saw.
func (tc *Consumer) Counts() (grants, revokes, losts int) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.grants, tc.revokes, tc.losts
}

// Owned returns the shards the consumer believes it owns now (granted,
// not yet revoked or lost), in no particular order.
func (tc *Consumer) Owned() []client.Shard {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	out := make([]client.Shard, 0, len(tc.owned))
	for _, s := range tc.owned {
		out = append(out, s)
	}
	return out
}

// Events returns a copy of the consumer's events.
func (tc *Consumer) Events() []client.Event {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return append([]client.Event(nil), tc.events...)
}

// Drained reports whether the cell said the consumer may exit.
func (tc *Consumer) Drained() bool {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.drained
}

// CheckHistory fails the test on any ownership violation in the history.
func (c *Cluster) CheckHistory(t testing.TB) {
	t.Helper()
	vs := c.History.Check()
	for i, v := range vs {
		if i == 20 {
			t.Errorf("... and %d more", len(vs)-20)
			break
		}
		t.Errorf("ownership violation: %s", v)
	}
}
