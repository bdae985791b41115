package raftnode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Batcher packs concurrent proposals into single log entries. While
// MaxInflight entries are being replicated, new proposals queue; the next
// entry takes as many of them as fit in MaxOps. Under load this turns many
// small writes (one per grant or release) into few large ones, which is what
// makes the grant rate independent of the fsync rate.
//
// The FSM must answer an entry built by Encode with a []R holding one result
// per op, in order, or with an error (which then fails every proposal of the
// entry).
type Batcher[O, R any] struct {
	node        *Node
	encode      func([]O) ([]byte, error)
	maxOps      int
	applyWait   time.Duration
	in          chan *proposal[O, R]
	slots       chan struct{}
	done        chan struct{}
	onCommitted func(ops int, entries int, took time.Duration)
}

type proposal[O, R any] struct {
	ctx  context.Context
	ops  []O
	done chan proposalResult[R]
}

type proposalResult[R any] struct {
	results []R
	err     error
}

// BatcherConfig tunes a Batcher.
type BatcherConfig struct {
	// MaxOps is the largest number of ops packed into one entry (a single
	// proposal larger than that still goes in one entry).
	MaxOps int
	// MaxInflight is the number of entries replicated concurrently.
	MaxInflight int
	// Queue is the number of proposals that may wait.
	Queue int
	// ApplyTimeout bounds how long raft may take to accept an entry.
	ApplyTimeout time.Duration
	// OnCommitted, if set, observes each committed entry (for metrics).
	OnCommitted func(ops int, took time.Duration)
}

// NewBatcher starts a batcher proposing through node.
func NewBatcher[O, R any](node *Node, cfg BatcherConfig, encode func([]O) ([]byte, error)) *Batcher[O, R] {
	if cfg.MaxOps <= 0 {
		cfg.MaxOps = 4096
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 4
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if cfg.ApplyTimeout <= 0 {
		cfg.ApplyTimeout = 5 * time.Second
	}
	b := &Batcher[O, R]{
		node:      node,
		encode:    encode,
		maxOps:    cfg.MaxOps,
		applyWait: cfg.ApplyTimeout,
		in:        make(chan *proposal[O, R], cfg.Queue),
		slots:     make(chan struct{}, cfg.MaxInflight),
		done:      make(chan struct{}),
	}
	if cfg.OnCommitted != nil {
		b.onCommitted = func(ops, _ int, took time.Duration) { cfg.OnCommitted(ops, took) }
	}
	go b.loop()
	return b
}

// Close stops the batcher; queued proposals fail with ErrNotLeader.
func (b *Batcher[O, R]) Close() {
	select {
	case <-b.done:
	default:
		close(b.done)
	}
}

// Propose appends ops to the log (batched with other proposals) and returns
// their results once the entry is applied on this node. It fails with
// ErrNotLeader when this node is not the leader.
func (b *Batcher[O, R]) Propose(ctx context.Context, ops ...O) ([]R, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	p := &proposal[O, R]{ctx: ctx, ops: ops, done: make(chan proposalResult[R], 1)}
	select {
	case b.in <- p:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.done:
		return nil, ErrNotLeader
	}
	select {
	case r := <-p.done:
		return r.results, r.err
	case <-ctx.Done():
		// The entry may still commit; the caller only stops waiting.
		return nil, ctx.Err()
	}
}

func (b *Batcher[O, R]) loop() {
	for {
		var first *proposal[O, R]
		select {
		case <-b.done:
			b.failQueued()
			return
		case first = <-b.in:
		}
		// Wait for a replication slot; meanwhile proposals accumulate.
		select {
		case b.slots <- struct{}{}:
		case <-b.done:
			first.done <- proposalResult[R]{err: ErrNotLeader}
			b.failQueued()
			return
		}
		batch := []*proposal[O, R]{first}
		n := len(first.ops)
	drain:
		for n < b.maxOps {
			select {
			case p := <-b.in:
				batch = append(batch, p)
				n += len(p.ops)
			default:
				break drain
			}
		}
		b.apply(batch, n)
	}
}

func (b *Batcher[O, R]) failQueued() {
	for {
		select {
		case p := <-b.in:
			p.done <- proposalResult[R]{err: ErrNotLeader}
		default:
			return
		}
	}
}

func (b *Batcher[O, R]) apply(batch []*proposal[O, R], n int) {
	live := batch[:0]
	ops := make([]O, 0, n)
	for _, p := range batch {
		if p.ctx.Err() != nil {
			p.done <- proposalResult[R]{err: p.ctx.Err()}
			continue
		}
		live = append(live, p)
		ops = append(ops, p.ops...)
	}
	if len(live) == 0 {
		<-b.slots
		return
	}
	data, err := b.encode(ops)
	if err != nil {
		<-b.slots
		for _, p := range live {
			p.done <- proposalResult[R]{err: err}
		}
		return
	}
	epoch := b.node.Epoch()
	start := time.Now()
	f := b.node.raft.Apply(data, b.applyWait)
	go func() {
		err := b.node.await(f)
		<-b.slots
		var results []R
		if err == nil {
			b.node.NoteCommitted(epoch, start)
			if b.onCommitted != nil {
				b.onCommitted(len(ops), 1, time.Since(start))
			}
			switch resp := f.Response().(type) {
			case []R:
				results = resp
				if len(results) != len(ops) {
					err = fmt.Errorf("raftnode: fsm returned %d results for %d ops", len(results), len(ops))
				}
			case error:
				err = resp
			default:
				err = fmt.Errorf("raftnode: unexpected fsm response %T", resp)
			}
		} else if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			err = fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		off := 0
		for _, p := range live {
			r := proposalResult[R]{err: err}
			if err == nil {
				r.results = results[off : off+len(p.ops)]
			}
			off += len(p.ops)
			p.done <- r
		}
	}()
}
