package client

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// leaseHarness drives a Consumer's lease logic with synthetic server
// messages on synctest's fake clock: no network, exact instants.
type leaseHarness struct {
	c      *Consumer
	mu     sync.Mutex
	events []Event
	ctxs   map[string]context.Context
}

func newLeaseHarness(t *testing.T) *leaseHarness {
	h := &leaseHarness{ctxs: map[string]context.Context{}}
	c := newConsumer(Config{ID: "t", Domains: []string{"d"}, Logger: slog.New(slog.DiscardHandler), OnEvent: func(e Event) {
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	}, Handler: func(ctx context.Context, s Shard) {
		h.mu.Lock()
		h.ctxs[s.Range.From.String()] = ctx
		h.mu.Unlock()
		<-ctx.Done()
	}}, &transport{endpoints: []string{"ep"}, conns: newConnPool(nil, nil, nil)})
	go c.leaseLoop()
	go c.events.run(c.done, c.handlers.Wait)
	h.c = c
	t.Cleanup(func() {})
	return h
}

func (h *leaseHarness) stop() {
	h.c.stop(nil)
	<-h.c.events.delivered()
}

// heartbeat records a heartbeat sent now and returns its seq.
func (h *leaseHarness) heartbeat() uint64 {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.c.book.heartbeat(time.Now())
}

func (h *leaseHarness) kinds() []EventKind {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []EventKind
	for _, e := range h.events {
		out = append(out, e.Kind)
	}
	return out
}

func (h *leaseHarness) last(kind EventKind) (Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.events) - 1; i >= 0; i-- {
		if h.events[i].Kind == kind {
			return h.events[i], true
		}
	}
	return Event{}, false
}

var (
	testRanges, _ = topology.SplitEven(2)
	shard0        = &wdsv1.ShardGrant{Domain: "d", Range: topology.RangeToProto(testRanges[0]), Token: &wdsv1.Token{Generation: 1, Index: 7}}
)

func welcomeMsg(grants ...*wdsv1.ShardGrant) *wdsv1.Welcome {
	return &wdsv1.Welcome{Drift: 0.01, HeartbeatIntervalMillis: 1000, Acked: true,
		Leases: []*wdsv1.DomainLease{{Domain: "d", TtlMillis: 3000}}, Grants: grants}
}

// TestLeaseLapsesAtClientDeadline: contract (1). With no further ack, the
// shard's context is cancelled exactly at s + T·(1−ε) after the send time s
// of the last acknowledged heartbeat, and the lost event carries that
// instant.
func TestLeaseLapsesAtClientDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newLeaseHarness(t)
		defer h.stop()
		s := time.Now()
		seq := h.heartbeat()              // the Hello
		time.Sleep(40 * time.Millisecond) // the Welcome's round trip
		h.c.welcome(welcomeMsg(shard0), seq, "ep", nil)
		synctest.Wait()
		if len(h.c.Held()) != 1 {
			t.Fatalf("held %v, want the granted shard running", h.c.Held())
		}
		deadline := s.Add(2970 * time.Millisecond)
		time.Sleep(time.Until(deadline) - time.Nanosecond)
		synctest.Wait()
		if len(h.c.Held()) != 1 {
			t.Fatal("shard cancelled before the deadline")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if len(h.c.Held()) != 0 {
			t.Fatal("shard still running at the deadline")
		}
		e, ok := h.last(EventLost)
		if !ok || !e.Time.Equal(deadline) {
			t.Fatalf("lost event %+v, want time %v", e, deadline)
		}
	})
}

// TestAckExtendsFromSendTime: an ack extends the lease to its heartbeat's
// send time + T(1−ε), however late the ack arrives; an ack of an older
// heartbeat never shortens it.
func TestAckExtendsFromSendTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newLeaseHarness(t)
		defer h.stop()
		seq := h.heartbeat()
		h.c.welcome(welcomeMsg(shard0), seq, "ep", nil)
		time.Sleep(time.Second)
		s2 := time.Now()
		hb2 := h.heartbeat()
		time.Sleep(time.Second)
		hb3 := h.heartbeat()
		time.Sleep(1500 * time.Millisecond) // acks arrive very late
		h.c.ack(hb3, nil)
		h.c.ack(hb2, nil) // older: must not shorten
		until := h.c.book.valid["d"]
		if want := s2.Add(time.Second).Add(2970 * time.Millisecond); !until.Equal(want) {
			t.Fatalf("valid until %v, want %v", until, want)
		}
		time.Sleep(time.Until(until))
		synctest.Wait()
		if len(h.c.Held()) != 0 {
			t.Fatal("shard outlived its lease")
		}
	})
}

// TestRevokeBeforeAckIsFinal: contract (3) on the client side. A revoke
// cancels at once, and a later ack does not bring the shard back.
func TestRevokeBeforeAckIsFinal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newLeaseHarness(t)
		defer h.stop()
		h.c.welcome(welcomeMsg(shard0), h.heartbeat(), "ep", nil)
		synctest.Wait()
		hb := h.heartbeat()
		h.c.revoke(&wdsv1.Revoke{Shards: []*wdsv1.ShardRef{{Domain: "d", Range: shard0.Range, Token: shard0.Token}}})
		synctest.Wait()
		h.c.ack(hb, nil)
		synctest.Wait()
		if len(h.c.Held()) != 0 {
			t.Fatal("revoked shard running after a later ack")
		}
		// The cell re-sends the old grant (our release has not reached it):
		// it must be refused, not restarted.
		h.c.grant([]*wdsv1.ShardGrant{shard0}, nil)
		synctest.Wait()
		if len(h.c.Held()) != 0 {
			t.Fatal("a grant with a token we gave up was restarted")
		}
		// A newer token is a new grant.
		newer := &wdsv1.ShardGrant{Domain: "d", Range: shard0.Range, Token: &wdsv1.Token{Generation: 1, Index: 9}}
		h.c.ack(h.heartbeat(), nil)
		h.c.grant([]*wdsv1.ShardGrant{newer}, nil)
		synctest.Wait()
		if held := h.c.Held(); len(held) != 1 || held[0].Token.Index != 9 {
			t.Fatalf("held %v, want the token-9 grant", held)
		}
	})
}

// TestGrantWaitsForValidLease: a grant that arrives before any ack (the
// Welcome could not acknowledge the Hello) starts only once an ack makes
// the lease valid.
func TestGrantWaitsForValidLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newLeaseHarness(t)
		defer h.stop()
		w := welcomeMsg()
		w.Acked = false
		h.c.welcome(w, h.heartbeat(), "ep", nil)
		h.c.grant([]*wdsv1.ShardGrant{shard0}, nil)
		synctest.Wait()
		if len(h.c.Held()) != 0 {
			t.Fatal("shard started without a valid lease")
		}
		h.c.ack(h.heartbeat(), nil)
		synctest.Wait()
		if len(h.c.Held()) != 1 {
			t.Fatal("shard not started after the ack")
		}
	})
}

// TestWelcomeReconciles: after a reconnect the Welcome is authoritative:
// a held shard it does not list is cancelled.
func TestWelcomeReconciles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newLeaseHarness(t)
		defer h.stop()
		h.c.welcome(welcomeMsg(shard0), h.heartbeat(), "ep", nil)
		synctest.Wait()
		h.c.welcome(welcomeMsg(), h.heartbeat(), "ep2", nil)
		synctest.Wait()
		if len(h.c.Held()) != 0 {
			t.Fatal("shard the cell no longer lists is still running")
		}
		if _, ok := h.last(EventRevoke); !ok {
			t.Fatalf("no revoke event: %v", h.kinds())
		}
	})
}

// fakeStream is a session stream that records heartbeats and never
// receives: the stall tests feed the consumer directly.
type fakeStream struct {
	wdsv1.Session_ConnectClient
	mu       sync.Mutex
	beats    []uint64
	released []uint64 // token indexes
}

func (f *fakeStream) Send(m *wdsv1.ClientMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if hb := m.GetHeartbeat(); hb != nil {
		f.beats = append(f.beats, hb.GetSeq())
	}
	for _, ref := range m.GetRelease().GetShards() {
		f.released = append(f.released, ref.GetToken().GetIndex())
	}
	return nil
}

func (f *fakeStream) CloseSend() error { return nil }

// beatRig is a consumer welcomed on a fake stream with its heartbeat
// loop running; ctx is cancelled when the loop abandons the stream.
type beatRig struct {
	h     *leaseHarness
	as    *activeStream
	fs    *fakeStream
	ctx   context.Context
	start time.Time
}

// runHeartbeat starts a harness's heartbeat loop on a fake stream, at
// r.start (the first heartbeat goes out at once, then one per second).
func runHeartbeat(t *testing.T, h *leaseHarness) *beatRig {
	t.Helper()
	r := &beatRig{h: h, fs: &fakeStream{}, start: time.Now()}
	r.as = &activeStream{stream: r.fs}
	h.c.welcome(welcomeMsg(shard0), h.heartbeat(), "ep", r.as)
	ctx, cancel := context.WithCancel(context.Background())
	r.ctx = ctx
	go h.c.heartbeat(ctx, cancel, r.as, "ep", "n1")
	t.Cleanup(cancel)
	return r
}

// ackAt acks, at start+at, heartbeat n (n < 0: the latest sent), as a
// message received on the stream.
func (r *beatRig) ackAt(n int, at time.Duration) {
	time.Sleep(time.Until(r.start.Add(at)))
	r.fs.mu.Lock()
	if n < 0 {
		n = len(r.fs.beats) - 1
	}
	seq := r.fs.beats[n]
	r.fs.mu.Unlock()
	r.as.touch()
	r.h.c.ack(seq, nil)
}

// TestSilentStreamIsAbandoned: a node that stops answering (frozen with
// its socket open) after acking the heartbeat sent at 1 s (ack at 1.05 s).
// The stream is left 2.5 intervals after that last message, at 3.55 s,
// while the lease (valid until 1 s + 2.97 s) still has 0.42 s to run: the
// session moves on before it lapses.
func TestSilentStreamIsAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newLeaseHarness(t)
		defer h.stop()
		r := runHeartbeat(t, h)
		r.ackAt(1, 1050*time.Millisecond)
		<-r.ctx.Done()
		if got := time.Since(r.start); got != 3550*time.Millisecond {
			t.Errorf("silent stream abandoned after %v, want 3.55s", got)
		}
		h.c.mu.Lock()
		left := time.Until(h.c.book.valid["d"])
		h.c.mu.Unlock()
		if left != 420*time.Millisecond {
			t.Errorf("lease left at the switch: %v, want 420ms", left)
		}
		if len(h.c.Held()) != 1 {
			t.Error("the shard did not survive to the switch")
		}
	})
}

// TestOneWithheldAckKeepsTheStream: a healthy, idle leader withholds one
// ack (its leadership confirmation briefly stale) and answers the next a
// little later than usual. The stream must be kept: leaving it on one
// missing ack would, under load, send every idle consumer reconnecting at
// once.
func TestOneWithheldAckKeepsTheStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newLeaseHarness(t)
		defer h.stop()
		r := runHeartbeat(t, h)
		r.ackAt(1, 1050*time.Millisecond)
		// The heartbeat at 2 s is not acknowledged.
		r.ackAt(3, 3060*time.Millisecond)
		synctest.Wait()
		if r.ctx.Err() != nil {
			t.Fatalf("stream abandoned after one withheld ack (at %v)", time.Since(r.start))
		}
	})
}

// TestBusyStreamWithLateAcksIsKept tries to break the stall rule the other
// way: a stream that keeps delivering (routing frames) while its acks are
// late must not be abandoned — that would stop heartbeats the leader does
// receive and turn late acks into expiries — until two TTLs pass without
// any ack (the backstop), and a late ack restarts that.
func TestBusyStreamWithLateAcksIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newLeaseHarness(t)
		defer h.stop()
		r := runHeartbeat(t, h)
		busy := time.NewTicker(200 * time.Millisecond)
		defer busy.Stop()
		acked := false
		for {
			select {
			case <-r.ctx.Done():
				// No ack until 3.6 s (of the heartbeat sent at 3 s): long
				// past the silence limit, but the stream is busy, so kept;
				// then nothing acked for 6 s: left at 9.6 s.
				if got := time.Since(r.start); got != 9600*time.Millisecond {
					t.Errorf("busy stream abandoned after %v, want 9.6s (backstop: two TTLs without an ack)", got)
				}
				return
			case <-busy.C:
				r.as.touch()
				if !acked && time.Since(r.start) >= 3500*time.Millisecond {
					acked = true
					r.ackAt(-1, time.Since(r.start))
				}
			}
		}
	})
}

// slowStopHarness is a harness whose handler of token 7 keeps running for
// a while after its context is cancelled (flushing state), until stopped
// is closed: the window in which a newer grant of the same shard waits.
func slowStopHarness(t *testing.T, stopped chan struct{}) *leaseHarness {
	h := newLeaseHarness(t)
	h.c.cfg.Handler = func(ctx context.Context, s Shard) {
		<-ctx.Done()
		if s.Token.Index == shard0.Token.Index {
			<-stopped
		}
	}
	return h
}

func shard0Ref(index uint64) *wdsv1.ShardRef {
	return &wdsv1.ShardRef{Domain: "d", Range: shard0.Range, Token: &wdsv1.Token{Generation: 1, Index: index}}
}

func shard0Grant(index uint64) *wdsv1.ShardGrant {
	return &wdsv1.ShardGrant{Domain: "d", Range: shard0.Range, Token: &wdsv1.Token{Generation: 1, Index: index}}
}

// TestRevokedRegrantNeverStarts tries to break contract (3) on the client:
// token 7 is revoked while its handler is slow to stop; the shard is
// granted to us again (token 9), which waits for that handler; then token
// 9 is revoked too (moved to another consumer). The waiting grant must be
// dropped and released, not started when the old handler finally returns.
func TestRevokedRegrantNeverStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stopped := make(chan struct{})
		h := slowStopHarness(t, stopped)
		defer h.stop()
		h.c.welcome(welcomeMsg(shard0), h.heartbeat(), "ep", nil)
		synctest.Wait()
		h.c.revoke(&wdsv1.Revoke{Shards: []*wdsv1.ShardRef{shard0Ref(7)}})
		time.Sleep(500 * time.Millisecond)
		h.c.ack(h.heartbeat(), nil)
		h.c.grant([]*wdsv1.ShardGrant{shard0Grant(9)}, nil)
		h.c.revoke(&wdsv1.Revoke{Shards: []*wdsv1.ShardRef{shard0Ref(9)}})
		h.c.ack(h.heartbeat(), nil)
		synctest.Wait()
		close(stopped)
		synctest.Wait()
		if held := h.c.Held(); len(held) != 0 {
			t.Errorf("running %v after token 9 was revoked", held)
		}
		// A late duplicate of the revoked grant is not started either.
		h.c.grant([]*wdsv1.ShardGrant{shard0Grant(9)}, nil)
		synctest.Wait()
		if held := h.c.Held(); len(held) != 0 {
			t.Errorf("running %v after a stale Grant of token 9", held)
		}
	})
}

// TestWelcomeDropsUnlistedRegrant: the waiting newer grant (token 9) was
// moved away while the session was reconnecting; the Welcome does not list
// it, so it must not start when the old handler returns. A waiting grant
// the Welcome does list still starts.
func TestWelcomeDropsUnlistedRegrant(t *testing.T) {
	for _, listed := range []bool{false, true} {
		t.Run(fmt.Sprintf("listed=%v", listed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				stopped := make(chan struct{})
				h := slowStopHarness(t, stopped)
				defer h.stop()
				h.c.welcome(welcomeMsg(shard0), h.heartbeat(), "ep", nil)
				synctest.Wait()
				h.c.revoke(&wdsv1.Revoke{Shards: []*wdsv1.ShardRef{shard0Ref(7)}})
				h.c.grant([]*wdsv1.ShardGrant{shard0Grant(9)}, nil)
				time.Sleep(time.Second)
				var grants []*wdsv1.ShardGrant
				if listed {
					grants = append(grants, shard0Grant(9))
				}
				fs := &fakeStream{}
				h.c.welcome(welcomeMsg(grants...), h.heartbeat(), "ep2", &activeStream{stream: fs})
				synctest.Wait()
				fs.mu.Lock()
				released := fmt.Sprint(fs.released)
				fs.mu.Unlock()
				// Dropped, it is released at once, so a handover waiting on
				// it need not wait for its frozen deadline.
				if want := map[bool]string{false: "[9]", true: "[]"}[listed]; released != want {
					t.Errorf("released tokens %s at the Welcome, want %s", released, want)
				}
				close(stopped)
				synctest.Wait()
				held := h.c.Held()
				if want := map[bool]int{false: 0, true: 1}[listed]; len(held) != want || (listed && held[0].Token.Index != 9) {
					t.Errorf("running %v after the Welcome (token 9 listed: %v)", held, listed)
				}
			})
		})
	}
}

// TestLateAckDoesNotBridgeALapse: an ack processed after the lease lapsed,
// before the lease timer ran, must not carry a running shard across the
// gap: the leader may have given it away in between.
func TestLateAckDoesNotBridgeALapse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newLeaseHarness(t)
		defer h.stop()
		h.c.welcome(welcomeMsg(shard0), h.heartbeat(), "ep", nil)
		synctest.Wait()
		if len(h.c.Held()) != 1 {
			t.Fatal("shard not running")
		}
		time.Sleep(time.Second)
		seq := h.heartbeat()
		// The lease lapsed a moment ago, and the lease timer has not run
		// (as under a scheduling delay).
		h.c.mu.Lock()
		lapsed := time.Now().Add(-time.Millisecond)
		h.c.book.valid["d"] = lapsed
		h.c.mu.Unlock()
		h.c.ack(seq, nil)
		synctest.Wait()
		if held := h.c.Held(); len(held) != 0 {
			t.Fatalf("running %v across a lapsed lease", held)
		}
		if e, ok := h.last(EventLost); !ok || !e.Time.Equal(lapsed) {
			t.Fatalf("lost event %+v, want one at the lapse %v", e, lapsed)
		}
	})
}
