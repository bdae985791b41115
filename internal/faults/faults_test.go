package faults

import (
	"errors"
	"net"
	"testing"
	"time"
)

func TestCutIsOneWayAndPerPlane(t *testing.T) {
	n := New()
	n.Cut("a", "b", Raft)
	for _, c := range []struct {
		from, to string
		p        Plane
		want     bool
	}{
		{"a", "b", Raft, true},
		{"b", "a", Raft, false},
		{"a", "b", GRPC, false},
		{"a", "c", Raft, false},
		{"a", "a", Raft, false},
		{"", "b", Raft, false}, // an unknown sender is not a
	} {
		if got := n.Blocked(c.from, c.to, c.p); got != c.want {
			t.Errorf("Blocked(%q, %q, %q) = %v, want %v", c.from, c.to, c.p, got, c.want)
		}
	}
	n.Heal("b", GRPC)
	if !n.Blocked("a", "b", Raft) {
		t.Fatal("healing another plane healed raft")
	}
	n.Heal("b")
	if n.Blocked("a", "b", Raft) {
		t.Fatal("not healed")
	}
}

func TestIsolateAndPartition(t *testing.T) {
	n := New()
	n.Isolate("a")
	if !n.Blocked("a", "b", Gossip) || !n.Blocked("b", "a", GRPC) || !n.Blocked("", "a", Raft) || n.Blocked("b", "c", Raft) {
		t.Fatal("isolation")
	}
	if !n.Isolated("a", Raft) || n.Isolated("b", Raft) {
		t.Fatal("Isolated")
	}
	n.HealAll()
	n.Partition([][]string{{"a", "b"}, {"c"}}, Raft)
	if n.Blocked("a", "b", Raft) || !n.Blocked("a", "c", Raft) || !n.Blocked("c", "b", Raft) || n.Blocked("a", "d", Raft) || n.Blocked("a", "c", GRPC) {
		t.Fatal("partition")
	}
}

func TestEndpointIsPlaneScoped(t *testing.T) {
	n := New()
	e := n.Endpoint("a", Raft)
	e.Isolate()
	if !e.Isolated() || !n.Blocked("a", "b", Raft) || n.Blocked("a", "b", GRPC) {
		t.Fatal("a raft endpoint's isolation must cover raft only")
	}
	n.Cut("a", "b", GRPC)
	e.Heal()
	if e.Isolated() || n.Blocked("a", "b", Raft) || !n.Blocked("a", "b", GRPC) {
		t.Fatal("a raft endpoint's heal must heal raft only")
	}
	e.CutTo("c")
	e.CutFrom("d")
	if !n.Blocked("a", "c", Raft) || n.Blocked("c", "a", Raft) || !n.Blocked("d", "a", Raft) || n.Blocked("a", "d", Raft) {
		t.Fatal("CutTo / CutFrom")
	}
	if err := e.Bind("z"); err == nil {
		t.Fatal("an endpoint bound to two nodes")
	}
}

func TestZeroEndpoint(t *testing.T) {
	var e Endpoint
	e.Isolate() // before Bind: kept under the node's name once bound
	if err := e.Bind("a"); err != nil {
		t.Fatal(err)
	}
	if !e.Isolated() || !e.Net().Blocked("", "a", Raft) || e.Node() != "a" {
		t.Fatal("zero endpoint isolation lost on Bind")
	}
	e.Heal()
	if e.Isolated() {
		t.Fatal("not healed")
	}
}

// TestTrackClosesCutConns: a connection closes when a fault blocks its
// dialer's direction, not the other one, and blocked dials are refused.
func TestTrackClosesCutConns(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	n := New()
	n.Register("b", l.Addr().String())
	if n.NodeAt(l.Addr().String()) != "b" {
		t.Fatal("NodeAt")
	}
	dial := func() net.Conn {
		raw, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := n.Track("a", "b", GRPC, raw)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := dial()
	n.Cut("b", "a", GRPC)
	n.Cut("a", "b", Raft)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("conn closed by a fault of the other direction or plane: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	n.Cut("a", "b", GRPC)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cut conn not closed")
	}
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Track("a", "b", GRPC, raw); !errors.Is(err, ErrBlocked) {
		t.Fatalf("blocked track: %v", err)
	}
	n.HealAll()
	dial().Close()
}

func TestDelay(t *testing.T) {
	n := New()
	n.SetDelay("a", "b", 30*time.Millisecond)
	if n.Delay("a", "b") != 30*time.Millisecond || n.Delay("b", "a") != 30*time.Millisecond || n.Delay("a", "c") != 0 {
		t.Fatalf("delays a→b %v, b→a %v, a→c %v", n.Delay("a", "b"), n.Delay("b", "a"), n.Delay("a", "c"))
	}
	client, server := net.Pipe()
	defer server.Close()
	tc, err := n.Track("a", "b", GRPC, client)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	go func() { buf := make([]byte, 1); _, _ = server.Read(buf) }()
	start := time.Now()
	if _, err := tc.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Fatalf("a write towards b took %v, want the injected 30ms at least", took)
	}
	n.SetDelay("a", "b", 0)
	if n.Delay("a", "b") != 0 {
		t.Fatal("delay not removed")
	}
}
