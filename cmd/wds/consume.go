package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/topology"
)

// eventJSON is one line of `wds consume`. The shard fields (domain,
// region, from, to, to_end, token) are present only for events about a
// shard. A shard is (domain, region, from): region is the key space's
// region for a REGIONAL domain and "" for GLOBAL and UNIT (present, so a
// shard event always names its shard whole).
type eventJSON struct {
	Event    string  `json:"event"`
	Consumer string  `json:"consumer"`
	Domain   string  `json:"domain,omitempty"`
	Region   *string `json:"region,omitempty"`
	From     string  `json:"from,omitempty"`
	To       string  `json:"to,omitempty"`
	ToEnd    *bool   `json:"to_end,omitempty"`
	Token    string  `json:"token,omitempty"`
	Time     string  `json:"time"`
	Reason   string  `json:"reason,omitempty"`
	Endpoint string  `json:"endpoint,omitempty"`
	Error    string  `json:"error,omitempty"`
}

func eventToJSON(consumer string, e client.Event) eventJSON {
	v := eventJSON{
		Event:    string(e.Kind),
		Consumer: consumer,
		Time:     e.Time.UTC().Format(time.RFC3339Nano),
		Reason:   e.Reason,
		Endpoint: e.Endpoint,
	}
	if e.Err != nil {
		v.Error = e.Err.Error()
	}
	if s := e.Shard; s.Domain != "" {
		v.Domain = s.Domain
		region := s.Region
		v.Region = &region
		v.From, _ = boundJSON(s.Range.From)
		var end bool
		v.To, end = boundJSON(s.Range.To)
		v.ToEnd = &end
		v.Token = tokenString(s.Token)
	}
	return v
}

// batchIdle is how long an event batch is held for more of the same
// batch: the library delivers a batch's events back to back, so any gap
// longer than this ends it.
const batchIdle = 3 * time.Millisecond

// eventBatcher passes the events of a consumer on in their order, except
// within a batch, which it passes on sorted by shard: (domain, region,
// from), the key spaces of a REGIONAL domain by region. The client
// library gives the events of one batch (the grants of one Grant message,
// the shards lost at one lease expiry) one kind and one time and delivers
// them one at a time in map order; a batch is therefore a run of
// consecutive shard events of the same kind and time. The batcher holds
// such a run until an event of another kind or time arrives, or nothing
// has arrived for batchIdle, then emits it sorted. Events without a shard
// pass at once, after the run before them.
type eventBatcher struct {
	emit func(client.Event) // called with mu held, in order

	mu    sync.Mutex
	batch []client.Event
	last  time.Time // when the latest event of batch arrived
	armed bool      // the idle timer is running
	timer *time.Timer
}

func newEventBatcher(emit func(client.Event)) *eventBatcher {
	return &eventBatcher{emit: emit}
}

// add is the consumer's OnEvent.
func (b *eventBatcher) add(e client.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.batch) > 0 && !sameBatch(b.batch[0], e) {
		b.flushLocked()
	}
	if e.Shard.Domain == "" {
		b.emit(e)
		return
	}
	b.batch = append(b.batch, e)
	b.last = time.Now()
	if !b.armed {
		b.armed = true
		if b.timer == nil {
			b.timer = time.AfterFunc(batchIdle, b.idle)
		} else {
			b.timer.Reset(batchIdle)
		}
	}
}

// idle runs on the timer: it emits the batch once no event came for
// batchIdle.
func (b *eventBatcher) idle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.batch) > 0 {
		if wait := batchIdle - time.Since(b.last); wait > 0 {
			b.timer.Reset(wait)
			return
		}
		b.flushLocked()
	}
	b.armed = false
}

// flush emits the batch held, if any, at once.
func (b *eventBatcher) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *eventBatcher) flushLocked() {
	batch := b.batch
	b.batch = nil
	slices.SortStableFunc(batch, func(x, y client.Event) int {
		if c := strings.Compare(x.Shard.Domain, y.Shard.Domain); c != 0 {
			return c
		}
		if c := strings.Compare(x.Shard.Region, y.Shard.Region); c != 0 {
			return c
		}
		return x.Shard.Range.From.Compare(y.Shard.Range.From)
	})
	for _, e := range batch {
		b.emit(e)
	}
}

// sameBatch reports whether e belongs to the batch that began with first.
func sameBatch(first, e client.Event) bool {
	return e.Shard.Domain != "" && e.Kind == first.Kind && e.Time.Equal(first.Time)
}

// eventPrinter writes one JSON line per event, each with a single Write so
// a reader sees whole lines as soon as they happen (stdout is unbuffered);
// the events of one batch come out in key order (eventBatcher).
type eventPrinter struct {
	consumer string
	batcher  *eventBatcher
	mu       sync.Mutex
	w        io.Writer
	last     time.Time
	err      error
}

func newEventPrinter(consumer string, w io.Writer) *eventPrinter {
	p := &eventPrinter{consumer: consumer, w: w}
	p.batcher = newEventBatcher(p.write)
	return p
}

// print is the consumer's OnEvent.
func (p *eventPrinter) print(e client.Event) {
	p.mu.Lock()
	p.last = time.Now()
	p.mu.Unlock()
	p.batcher.add(e)
}

func (p *eventPrinter) write(e client.Event) {
	line, err := json.Marshal(eventToJSON(p.consumer, e))
	if err != nil {
		return
	}
	line = append(line, '\n')
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.w.Write(line); err != nil && p.err == nil {
		p.err = err
	}
	p.last = time.Now()
}

// settle waits until no event has arrived for quiet (the consumer's last
// events are delivered from its own goroutine just after Close returns),
// at most max, and prints what is still held.
func (p *eventPrinter) settle(quiet, max time.Duration) {
	defer p.batcher.flush()
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		idle := time.Since(p.last)
		p.mu.Unlock()
		if idle >= quiet {
			return
		}
		time.Sleep(quiet - idle)
	}
}

// NewConsumeCommand returns `wds consume`.
func NewConsumeCommand(g *globals) *cobra.Command {
	var (
		domains      []string
		id           string
		region       string
		advertise    string
		drainTimeout = durationFlag{s: "30s"}
	)
	cmd := &cobra.Command{
		Use:   "consume --domain D --id ID",
		Short: "Join as a consumer and print every ownership event as a JSON line",
		Long: `Join the cell as a consumer, the way an instance of your service does with
the Go client library, and hold every shard granted until the cell revokes
it. Each event is printed at once as one JSON line on stdout:

  {"event":"grant","consumer":"worker-1","domain":"orders","region":"",
   "from":"40000000-0000-0000-0000-000000000000",
   "to":"50000000-0000-0000-0000-000000000000","to_end":false,
   "token":"1.42","time":"2025-01-02T15:04:05.123456789Z"}

event is one of welcome, grant, prepare, revoke, release, lost, drained,
disconnected. Shard events carry domain, region, from, to (UUIDs; to_end is
true when the range ends at 2^128, printed as ffffffff-...-ffffffffffff) and
token (fencing token "generation.index"). A shard is (domain, region, from):
region is the key space's region for a REGIONAL domain ("" for GLOBAL and
UNIT), and after a regional failover the cell grants shards of two key
spaces, whose ranges overlap but are different keys. time is RFC 3339 in
UTC with nanoseconds: when ownership began (grant) or ended (revoke; for
lost, the lease deadline itself, even if noticed later). revoke and lost carry a
reason; disconnected carries the endpoint and error.

On SIGTERM or SIGINT it drains: the cell moves its shards to other
consumers, then it exits 0 (a second signal, or --drain-timeout, stops
without waiting). Drained by an operator (wds drain ID), it exits 0 once
the cell reports it holds nothing. An error that retrying cannot fix (unknown domain, invalid
id, wrong region) is printed on stderr and exits 1; a cell that cannot be
reached is retried.`,
		Example: `  wds consume --domain orders --id worker-1
  wds consume --domain orders,tenants --id worker-2 --endpoint-advertise 10.0.0.5:8080
  wds consume --domain orders --id worker-3 | jq -c 'select(.event=="grant")'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := topology.ValidateConsumerID("--id", id); err != nil {
				return err
			}
			if len(domains) == 0 {
				return topology.Invalid("--domain", "", "required: at least one domain to serve")
			}
			for _, d := range domains {
				if err := topology.ValidateName("--domain", d); err != nil {
					return err
				}
			}
			if region != "" {
				if err := topology.ValidateName("--region", region); err != nil {
					return err
				}
			}
			drain, err := drainTimeout.parse("--drain-timeout")
			if err != nil {
				return err
			}
			if drain <= 0 {
				return topology.Invalid("--drain-timeout", drain.String(), "must be positive")
			}
			eps, err := g.endpoints()
			if err != nil {
				return err
			}
			log, err := g.logger(cmd, "off")
			if err != nil {
				return err
			}
			return runConsume(cmd, consumeOptions{
				endpoints: eps, id: id, region: region, advertise: advertise,
				domains: domains, drainTimeout: drain,
			}, log)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&domains, "domain", nil, "domain to serve (repeat, or comma-separated)")
	f.StringVar(&id, "id", "", "consumer id, unique among live consumers: 1-128 chars of [A-Za-z0-9._:-] (required)")
	f.StringVar(&region, "region", "", "the consumer's region: must be the cell's (default: the region of the cell the endpoint serves)")
	f.StringVar(&advertise, "endpoint-advertise", "", "this consumer's own address, published in routing for keys it owns")
	f.Var(&drainTimeout, "drain-timeout", "how long to wait for the drain on SIGTERM, with a unit (30s, 2m)")
	return cmd
}

type consumeOptions struct {
	endpoints    []string
	id, region   string
	advertise    string
	domains      []string
	drainTimeout time.Duration
}

func runConsume(cmd *cobra.Command, o consumeOptions, log *slog.Logger) error {
	stderr := cmd.ErrOrStderr()
	p := newEventPrinter(o.id, cmd.OutOrStdout())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)

	cons, err := client.NewConsumer(client.Config{
		Endpoints: o.endpoints,
		ID:        o.id,
		Region:    o.region,
		Endpoint:  o.advertise,
		Domains:   o.domains,
		Handler:   func(ctx context.Context, _ client.Shard) { <-ctx.Done() },
		OnEvent:   p.print,
		Logger:    log,
	})
	if err != nil {
		return err
	}
	select {
	case <-cons.Done():
		// Stopped on its own: a permanent error.
		p.settle(100*time.Millisecond, 2*time.Second)
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = cons.Close(closeCtx)
		cancel()
		if err := cons.Err(); err != nil {
			return err
		}
		return errors.New("the consumer stopped")
	case s := <-sig:
		fmt.Fprintf(stderr, "wds: %s: draining consumer %s (up to %s; signal again to stop at once)\n", s, o.id, o.drainTimeout)
	case <-cons.Drained():
		// An operator drained us (`wds drain`): the cell will grant us
		// nothing more, so leave as a drained instance should.
		fmt.Fprintf(stderr, "wds: consumer %s was drained by the cell: exiting\n", o.id)
	case <-cmd.Context().Done():
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	defer cancel()
	go func() {
		select {
		case <-sig:
			fmt.Fprintln(stderr, "wds: second signal: stopping without waiting for the drain")
			cancel()
		case <-ctx.Done():
		}
	}()
	err = cons.Close(ctx)
	p.settle(100*time.Millisecond, 2*time.Second)
	if err != nil {
		// The process exits either way; the shards it still held were
		// cancelled and will be re-granted when the cell sees them go.
		fmt.Fprintf(stderr, "wds: drain incomplete: %v\n", err)
	}
	return p.err
}
