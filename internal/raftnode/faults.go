package raftnode

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ErrIsolated is returned by dials of an isolated node's transport.
var ErrIsolated = errors.New("raftnode: transport isolated by fault injection")

// Faults is the fault hook of a node's Raft transport. Isolate cuts the node
// off from its peers (both directions, existing connections included) while
// everything else in the process — in particular its client-facing gRPC
// server — keeps running: the partition the lease contract must survive.
// The zero value is a healthy transport.
type Faults struct {
	mu       sync.Mutex
	isolated bool
	conns    map[net.Conn]struct{}
}

// Isolate partitions the node from every peer until Heal.
func (f *Faults) Isolate() {
	f.mu.Lock()
	f.isolated = true
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// Heal ends an isolation.
func (f *Faults) Heal() {
	f.mu.Lock()
	f.isolated = false
	f.mu.Unlock()
}

// Isolated reports whether the node is cut off.
func (f *Faults) Isolated() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.isolated
}

// track registers a connection, or closes it and reports false when
// isolated.
func (f *Faults) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isolated {
		c.Close()
		return false
	}
	if f.conns == nil {
		f.conns = map[net.Conn]struct{}{}
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Faults) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// trackedConn forgets itself on Close.
type trackedConn struct {
	net.Conn
	f    *Faults
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.f.untrack(c.Conn) })
	return c.Conn.Close()
}

// streamLayer is raft's StreamLayer over TCP with the fault hook.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	faults    *Faults
}

func newStreamLayer(bind string, advertise string, faults *Faults) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	var adv net.Addr = ln.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, err
		}
		adv = a
	}
	if faults == nil {
		faults = &Faults{}
	}
	return &streamLayer{Listener: ln, advertise: adv, faults: faults}, nil
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Accept() (net.Conn, error) {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if s.faults.track(c) {
			return &trackedConn{Conn: c, f: s.faults}, nil
		}
	}
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.faults.Isolated() {
		return nil, ErrIsolated
	}
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	if !s.faults.track(c) {
		return nil, ErrIsolated
	}
	return &trackedConn{Conn: c, f: s.faults}, nil
}
