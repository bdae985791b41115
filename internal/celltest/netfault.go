package celltest

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/wdsio/wds/internal/faults"
)

// errCut is what dials return while a NetFault is cut.
var errCut = errors.New("celltest: network cut")

// NetFault sits between a client and the network: Cut drops every
// connection and refuses new ones (a crashed host, a pulled cable); Freeze
// stalls every read and write while sockets stay open (a hung process or
// a black-holed path); Heal undoes both. Connections are real TCP.
//
// A consumer's NetFault also consults the cluster's faults.Net under the
// consumer's id: a dial to a node the Net cuts it from (Cluster.Isolate,
// Net.Cut, Net.Partition on plane faults.GRPC or every plane) is refused,
// and open connections are closed when such a fault begins.
type NetFault struct {
	net  *faults.Net // nil: this NetFault's own faults only
	from string      // the consumer's name on net

	mu       sync.Mutex
	cut      bool
	frozen   chan struct{}            // non-nil while frozen; closed on heal
	frozenTo map[string]chan struct{} // per remote address (FreezeTo)
	conns    map[*faultConn]struct{}
}

// Dial is a grpc.WithContextDialer dialer.
func (f *NetFault) Dial(ctx context.Context, addr string) (net.Conn, error) {
	f.mu.Lock()
	cut, frozen, frozenTo := f.cut, f.frozen, f.frozenTo[addr]
	f.mu.Unlock()
	if cut {
		return nil, errCut
	}
	to := ""
	if f.net != nil {
		to = f.net.NodeAt(addr)
		if f.net.Blocked(f.from, to, faults.GRPC) {
			return nil, errCut
		}
	}
	for _, fr := range []chan struct{}{frozen, frozenTo} {
		if fr == nil {
			continue
		}
		select {
		case <-fr:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if f.net != nil {
		if c, err = f.net.Track(f.from, to, faults.GRPC, c); err != nil {
			return nil, errCut
		}
	}
	fc := &faultConn{Conn: c, f: f, addr: addr}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		c.Close()
		return nil, errCut
	}
	if f.conns == nil {
		f.conns = map[*faultConn]struct{}{}
	}
	f.conns[fc] = struct{}{}
	return fc, nil
}

// Cut closes every connection and refuses new ones until Heal.
func (f *NetFault) Cut() {
	f.mu.Lock()
	f.cut = true
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

// Freeze stalls all traffic, keeping sockets open, until Heal.
func (f *NetFault) Freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen == nil {
		f.frozen = make(chan struct{})
	}
}

// FreezeTo stalls traffic to and from one address (a node that hangs
// with its sockets open, as this consumer sees it), until Heal.
func (f *NetFault) FreezeTo(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozenTo == nil {
		f.frozenTo = map[string]chan struct{}{}
	}
	if f.frozenTo[addr] == nil {
		f.frozenTo[addr] = make(chan struct{})
	}
}

// Heal ends a cut or a freeze.
func (f *NetFault) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = false
	for addr, fr := range f.frozenTo {
		close(fr)
		delete(f.frozenTo, addr)
	}
	if f.frozen != nil {
		close(f.frozen)
		f.frozen = nil
	}
}

// gate blocks while traffic to addr is frozen.
func (f *NetFault) gate(addr string) {
	for {
		f.mu.Lock()
		fr := f.frozen
		if fr == nil {
			fr = f.frozenTo[addr]
		}
		f.mu.Unlock()
		if fr == nil {
			return
		}
		<-fr
	}
}

type faultConn struct {
	net.Conn
	f    *NetFault
	addr string
}

func (c *faultConn) Read(p []byte) (int, error) {
	c.f.gate(c.addr)
	n, err := c.Conn.Read(p)
	// Data that arrived just before a freeze is held back too.
	c.f.gate(c.addr)
	return n, err
}

func (c *faultConn) Write(p []byte) (int, error) {
	c.f.gate(c.addr)
	return c.Conn.Write(p)
}

func (c *faultConn) Close() error {
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}

// HungEndpoint returns the address of a listener that accepts connections
// and then never reads or writes, as a SIGSTOPped node does (the kernel
// completes the TCP handshake; the process never answers). It lasts until
// the test ends.
func HungEndpoint(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return l.Addr().String()
}
