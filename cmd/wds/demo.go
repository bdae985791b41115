package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/client"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// The demo domain and its rhythm.
const (
	demoDomain    = "demo"
	demoShards    = 16
	demoTTL       = 5 * time.Second
	demoStep      = 5 * time.Second // a consumer joins or drains
	demoCountsDue = 2 * time.Second // shard counts after a step
	// demoCountsAgain: counts that showed shards not held yet are printed
	// again this much later (until all are, or the next step).
	demoCountsAgain = time.Second
)

// demoCore is what the lone cell's demo and the federation's share: the
// output, the running consumers in join order, and the loop that makes
// one join or the oldest drain every demoStep. Each demo adds its own
// consumers (add) and prints its own counts.
type demoCore struct {
	out io.Writer
	log *slog.Logger

	mu        sync.Mutex // guards the fields below and writes to out
	stopping  bool       // events are no longer printed
	consumers []demoConsumer
	next      int
	wg        sync.WaitGroup
	cancel    context.CancelFunc
}

// demoConsumer is a running demo consumer with the batcher that prints its
// events; region is the region it joined in a federation ("" in a lone
// cell's demo).
type demoConsumer struct {
	*client.Consumer
	region string
	events *eventBatcher
}

// demo runs consumers of the demo domain in this process and changes their
// number now and then, printing what moves.
type demo struct {
	demoCore
	eps    []string
	region string
}

func startDemo(ctx context.Context, out io.Writer, eps []string, region string, log *slog.Logger) (*demo, error) {
	if err := createDemoDomain(ctx, eps); err != nil {
		return nil, fmt.Errorf("demo: create domain %q: %w", demoDomain, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &demo{demoCore: demoCore{out: out, log: log, cancel: cancel}, eps: eps, region: region}
	d.printf("\ndemo: domain %q (global, %d shards, ttl %s); consumers join and drain every %s\n", demoDomain, demoShards, demoTTL, demoStep)
	for i := 0; i < 3; i++ {
		if err := d.add(); err != nil {
			cancel()
			d.stop()
			return nil, err
		}
	}
	d.wg.Add(1)
	go d.loop(ctx, d.add, d.counts)
	return d, nil
}

func createDemoDomain(ctx context.Context, eps []string) error {
	a, err := newAdminClient(eps, 10*time.Second)
	if err != nil {
		return err
	}
	defer a.close()
	spec := topology.Domain{Name: demoDomain, Kind: topology.KindGlobal, Shards: demoShards, TTL: demoTTL}
	err = a.call(ctx, func(ctx context.Context, c wdsv1.AdminClient) error {
		_, err := c.CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: topology.DomainToProto(spec)})
		return err
	})
	if status.Code(err) == codes.AlreadyExists {
		return nil // a kept --data-dir from an earlier demo
	}
	return err
}

func (d *demoCore) printf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stopping {
		fmt.Fprintf(d.out, format, args...)
	}
}

// nextID names the next consumer.
func (d *demoCore) nextID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next++
	return fmt.Sprintf("demo-%d", d.next)
}

// joined records a started consumer and says so.
func (d *demoCore) joined(c demoConsumer) {
	d.mu.Lock()
	d.consumers = append(d.consumers, c)
	d.mu.Unlock()
	where := ""
	if c.region != "" {
		where = " " + c.region
	}
	d.printf("%s + %s joins%s\n", clock(time.Now()), c.ID(), where)
}

// running returns the running consumers, oldest first.
func (d *demoCore) running() []demoConsumer {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]demoConsumer(nil), d.consumers...)
}

// add starts one more consumer.
func (d *demo) add() error {
	id := d.nextID()
	events := d.batcher(id)
	c, err := client.NewConsumer(client.Config{
		Endpoints: d.eps,
		ID:        id,
		Region:    d.region,
		Endpoint:  id + ".demo.local:8080",
		Domains:   []string{demoDomain},
		Handler:   func(ctx context.Context, _ client.Shard) { <-ctx.Done() },
		OnEvent:   events.add,
		Logger:    d.log,
	})
	if err != nil {
		return err
	}
	d.joined(demoConsumer{Consumer: c, events: events})
	return nil
}

// drainOldest drains and stops the longest-running consumer, in the
// background.
func (d *demoCore) drainOldest() {
	d.mu.Lock()
	if len(d.consumers) == 0 {
		d.mu.Unlock()
		return
	}
	c := d.consumers[0]
	d.consumers = d.consumers[1:]
	d.mu.Unlock()
	where := ""
	if c.region != "" {
		where = " (" + c.region + ")"
	}
	d.printf("%s - %s drains%s\n", clock(time.Now()), c.ID(), where)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		err := c.Close(ctx)
		c.events.flush() // its last events before the line saying it left
		if err != nil {
			d.printf("%s   %s: drain: %v\n", clock(time.Now()), c.ID(), err)
			return
		}
		d.printf("%s   %s drained and left\n", clock(time.Now()), c.ID())
	}()
}

// batcher returns the printer of consumer id's events: a batch of them
// (the grants of one Grant message) is printed in key order.
func (d *demo) batcher(id string) *eventBatcher {
	return newEventBatcher(func(e client.Event) { d.event(id, e) })
}

func (d *demo) event(id string, e client.Event) {
	switch e.Kind {
	case client.EventGrant, client.EventRevoke, client.EventLost:
		shard := shortRange(e.Shard.Range)
		if e.Shard.Region != "" { // a REGIONAL domain's key space
			shard = e.Shard.Region + " " + shard
		}
		line := fmt.Sprintf("%s   %-8s %-7s %s", clock(e.Time), id, e.Kind, shard)
		if !e.Shard.Token.IsZero() {
			line += " token " + e.Shard.Token.String()
		}
		if e.Reason != "" && e.Kind != client.EventGrant {
			line += " (" + e.Reason + ")"
		}
		d.printf("%s\n", line)
	case client.EventDrained:
		d.printf("%s   %-8s holds nothing: may exit\n", clock(e.Time), id)
	}
}

// counts prints each running consumer's number of shards, and reports
// whether every shard is held.
func (d *demo) counts() bool {
	cs := d.running()
	var parts []string
	total := 0
	for _, c := range cs {
		n := len(c.Held())
		total += n
		parts = append(parts, fmt.Sprintf("%s=%d", c.ID(), n))
	}
	sort.Strings(parts)
	d.printf("%s shards: %s (held %d of %d)\n", clock(time.Now()), strings.Join(parts, " "), total, demoShards)
	return total == demoShards
}

// loop alternates: a consumer joins (add), the oldest drains, and so on;
// shard counts are printed between steps (again a second later while some
// shards are not held yet).
func (d *demoCore) loop(ctx context.Context, add func() error, counts func() bool) {
	defer d.wg.Done()
	step := time.NewTicker(demoStep)
	defer step.Stop()
	countsDue := time.NewTimer(demoCountsDue)
	defer countsDue.Stop()
	join := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-countsDue.C:
			if !counts() {
				countsDue.Reset(demoCountsAgain)
			}
		case <-step.C:
			if join {
				if err := add(); err != nil {
					d.printf("demo: %v\n", err)
				}
			} else {
				d.drainOldest()
			}
			join = !join
			countsDue.Reset(demoCountsDue)
		}
	}
}

// stop ends the demo. The consumers stop without a drain (the cells stop
// right after them, so there is nowhere to move shards to), quietly.
func (d *demoCore) stop() {
	d.cancel()
	d.mu.Lock()
	d.stopping = true
	cs := d.consumers
	d.consumers = nil
	d.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no drain
	for _, c := range cs {
		_ = c.Close(ctx)
	}
	d.wg.Wait()
}

func clock(t time.Time) string { return t.Format("15:04:05.000") }

// shortRange shows a range by the first 8 hex digits of its bounds, e.g.
// [40000000, 50000000) — enough for evenly split domains.
func shortRange(r topology.Range) string {
	short := func(b topology.Bound) string {
		if b.IsEnd() {
			return "end"
		}
		return b.String()[:8]
	}
	return "[" + short(r.From) + ", " + short(r.To) + ")"
}
