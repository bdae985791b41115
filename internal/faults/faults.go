// Package faults is the one model of network faults that tests apply to a
// process full of WDS nodes: which node can reach which, per direction and
// per plane (Raft, client gRPC streams, later gossip).
//
// Why one model: a partition is a property of the network, not of one
// protocol. Before this package the Raft transport and the test clients'
// gRPC dialer each had a fault switch of their own, so a test that wanted
// "node n1 is cut off" had to flip both, and a per-peer or one-way cut
// could be expressed for neither. Now every fault-aware path (the raftnode
// transport wrapper, celltest's client dialer, and whatever gossip
// transport comes next) asks the same Net before it sends, and a test
// states a fault once.
//
// Direction. A cut from A to B means A can no longer reach B: calls and
// connections A starts towards B fail (existing connections A dialed to B
// are closed), while calls B starts towards A, and their answers, still go
// through. That is hashicorp/raft's InmemTransport.Disconnect (its
// testing.go builds Partition from it) and the asymmetric partition of a
// stateful firewall that drops one side's new connections. A two-way cut
// is two one-way cuts; Isolate cuts a node from everyone both ways.
//
// Planes. A fault may be limited to a plane: Isolate(n, Raft) partitions
// n's Raft traffic while its client-facing gRPC server stays reachable (the
// partition the lease contract must survive); with no plane it applies to
// every plane.
//
// Names. Nodes are named by the ids their protocols carry (Raft server
// ids); paths that know only an address (a gRPC dialer) resolve it with
// Register. An unknown sender (the source of an accepted connection) is
// matched only by rules that name no sender: the inbound half of an
// isolation.
package faults

import (
	"errors"
	"net"
	"slices"
	"sync"
	"time"
)

// ErrBlocked is returned by calls and dials a fault forbids.
var ErrBlocked = errors.New("faults: unreachable by fault injection")

// Plane is a kind of traffic a fault may be limited to.
type Plane string

// The planes. Any in a rule means every plane.
const (
	Any    Plane = ""
	Raft   Plane = "raft"
	GRPC   Plane = "grpc"
	Gossip Plane = "gossip"
)

// rule blocks traffic started by from towards to on plane; "" matches any
// node (from "" also matches an unknown sender), Any any plane.
type rule struct {
	from, to string
	plane    Plane
}

func (r rule) matches(from, to string, p Plane) bool {
	return (r.from == "" || r.from == from) && (r.to == "" || r.to == to) && (r.plane == Any || r.plane == p)
}

func (r rule) names(node string) bool { return r.from == node || r.to == node }

// Net is the reachability between the nodes of a test. The zero value is a
// healthy network; use it by pointer.
type Net struct {
	mu     sync.Mutex
	rules  map[rule]struct{}
	addrs  map[string]string // address -> node
	conns  map[*conn]struct{}
	delays map[[2]string]time.Duration // (from, to) -> one-way latency
}

// SetDelay injects a one-way latency d on the traffic a starts towards b
// and b towards a, on every plane (the distance between two regions): a
// fault-aware path waits d before it sends (the Raft transport wrapper
// before each RPC, a tracked connection before each write). Zero removes
// it. A tracked connection also delays what it reads by the latency from
// its peer, so that answers and pushes on it cross the distance too.
func (n *Net) SetDelay(a, b string, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.delays == nil {
		n.delays = map[[2]string]time.Duration{}
	}
	for _, k := range [][2]string{{a, b}, {b, a}} {
		if d <= 0 {
			delete(n.delays, k)
		} else {
			n.delays[k] = d
		}
	}
}

// Delay is the latency injected on traffic from starts towards to.
func (n *Net) Delay(from, to string) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.delays[[2]string{from, to}]
}

// New returns a healthy network.
func New() *Net { return &Net{} }

// Register names the node listening at addrs, for paths that know only
// the address they dial.
func (n *Net) Register(node string, addrs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.addrs == nil {
		n.addrs = map[string]string{}
	}
	for _, a := range addrs {
		n.addrs[a] = node
	}
}

// NodeAt is the node registered at addr ("" when none is).
func (n *Net) NodeAt(addr string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addrs[addr]
}

// Blocked reports whether traffic that from starts towards to on plane p
// is dropped. A node always reaches itself.
func (n *Net) Blocked(from, to string, p Plane) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.blockedLocked(from, to, p)
}

func (n *Net) blockedLocked(from, to string, p Plane) bool {
	if from != "" && from == to {
		return false
	}
	for r := range n.rules {
		if r.matches(from, to, p) {
			return true
		}
	}
	return false
}

// Cut drops the traffic from starts towards to (one way), on the planes
// given or on every plane.
func (n *Net) Cut(from, to string, planes ...Plane) {
	if from == "" || to == "" {
		panic("faults: Cut needs two node names")
	}
	n.add(expand(planes, func(p Plane) rule { return rule{from, to, p} }))
}

// CutBoth cuts a and b from each other, both ways.
func (n *Net) CutBoth(a, b string, planes ...Plane) {
	n.Cut(a, b, planes...)
	n.Cut(b, a, planes...)
}

// Isolate cuts node off from every other node, both ways, on the planes
// given or on every plane.
func (n *Net) Isolate(node string, planes ...Plane) {
	if node == "" {
		panic("faults: Isolate needs a node name")
	}
	n.add(expand(planes, func(p Plane) rule { return rule{node, "", p} }))
	n.add(expand(planes, func(p Plane) rule { return rule{"", node, p} }))
}

// Partition splits the named nodes into the groups given: nodes of
// different groups cannot reach each other (both ways), nodes of one group
// still can. Nodes named in no group are unaffected.
func (n *Net) Partition(groups [][]string, planes ...Plane) {
	var rs []rule
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					rs = append(rs, expand(planes, func(p Plane) rule { return rule{a, b, p} })...)
				}
			}
		}
	}
	n.add(rs)
}

// Isolated reports whether node is isolated (both ways, from everyone) on
// plane p.
func (n *Net) Isolated(node string, p Plane) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, out := n.rules[rule{node, "", p}]
	_, outAny := n.rules[rule{node, "", Any}]
	_, in := n.rules[rule{"", node, p}]
	_, inAny := n.rules[rule{"", node, Any}]
	return (out || outAny) && (in || inAny)
}

// Heal removes every fault that names node, on the planes given or on
// every plane (a fault limited to another plane stays).
func (n *Net) Heal(node string, planes ...Plane) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for r := range n.rules {
		if r.names(node) && (len(planes) == 0 || slices.Contains(planes, r.plane)) {
			delete(n.rules, r)
		}
	}
}

// rename moves the rules naming old to node.
func (n *Net) rename(old, node string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for r := range n.rules {
		if r.names(old) {
			delete(n.rules, r)
			if r.from == old {
				r.from = node
			}
			if r.to == old {
				r.to = node
			}
			n.rules[r] = struct{}{}
		}
	}
}

// HealAll removes every fault.
func (n *Net) HealAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.rules)
}

func expand(planes []Plane, f func(Plane) rule) []rule {
	if len(planes) == 0 {
		planes = []Plane{Any}
	}
	var out []rule
	for _, p := range planes {
		out = append(out, f(p))
	}
	return out
}

// add installs rules and closes the tracked connections they block.
func (n *Net) add(rs []rule) {
	n.mu.Lock()
	if n.rules == nil {
		n.rules = map[rule]struct{}{}
	}
	for _, r := range rs {
		n.rules[r] = struct{}{}
	}
	var dead []*conn
	for c := range n.conns {
		if n.blockedLocked(c.from, c.to, c.plane) {
			dead = append(dead, c)
			delete(n.conns, c)
		}
	}
	n.mu.Unlock()
	for _, c := range dead {
		c.Conn.Close()
	}
}

// Track registers a connection from started towards to on plane p (from
// "" for one accepted from an unknown peer), so that a later fault that
// blocks it closes it. When a fault blocks it already, Track closes it and
// returns ErrBlocked. The returned connection forgets itself on Close.
func (n *Net) Track(from, to string, p Plane, c net.Conn) (net.Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.blockedLocked(from, to, p) {
		c.Close()
		return nil, ErrBlocked
	}
	tc := &conn{Conn: c, n: n, from: from, to: to, plane: p}
	if n.conns == nil {
		n.conns = map[*conn]struct{}{}
	}
	n.conns[tc] = struct{}{}
	return tc, nil
}

type conn struct {
	net.Conn
	n        *Net
	from, to string
	plane    Plane
}

// Read hands over what arrived only after the latency injected from the
// peer towards this side (the server's answers and pushes), so a tracked
// connection sees the distance both ways.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		if d := c.n.Delay(c.to, c.from); d > 0 {
			time.Sleep(d)
		}
	}
	return n, err
}

// Write waits the latency injected towards the connection's peer first.
func (c *conn) Write(p []byte) (int, error) {
	if d := c.n.Delay(c.from, c.to); d > 0 {
		time.Sleep(d)
	}
	return c.Conn.Write(p)
}

func (c *conn) Close() error {
	c.n.mu.Lock()
	delete(c.n.conns, c)
	c.n.mu.Unlock()
	return c.Conn.Close()
}

// Endpoint is one node's handle on a Net for one plane: what a node's
// configuration carries (raftnode.Config.Faults) so that a test can cut
// that node by its handle. Its faults are limited to its plane.
//
// The zero value is usable: bound (Bind) to a node, it gets a network of
// its own, where only the node's own isolation is expressible — enough for
// tests that isolate one node from peers that consult no network.
type Endpoint struct {
	mu    sync.Mutex
	net   *Net
	node  string
	plane Plane
}

// Endpoint returns node's handle on plane p (Any: faults on every plane).
func (n *Net) Endpoint(node string, p Plane) *Endpoint {
	return &Endpoint{net: n, node: node, plane: p}
}

// Bind names the node that uses the endpoint, giving a zero Endpoint a
// network of its own. It fails when the endpoint belongs to another node.
func (e *Endpoint) Bind(node string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.net == nil {
		e.net = New()
	}
	switch e.node {
	case node:
	case "":
		e.node = node
	case unboundNode:
		e.net.rename(unboundNode, node)
		e.node = node
	default:
		return errors.New("faults: endpoint of node " + e.node + " used by node " + node)
	}
	return nil
}

// Net is the endpoint's network (nil before a zero Endpoint is bound or
// faulted).
func (e *Endpoint) Net() *Net {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.net
}

// Node is the endpoint's node.
func (e *Endpoint) Node() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.node
}

// Plane is the plane the endpoint's faults apply to.
func (e *Endpoint) Plane() Plane { return e.plane }

func (e *Endpoint) get() (*Net, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.net == nil {
		// Unbound: faults set before the node starts still hold once
		// it binds.
		e.net = New()
	}
	if e.node == "" {
		e.node = unboundNode
	}
	return e.net, e.node
}

// unboundNode names the node of a zero Endpoint faulted before Bind.
const unboundNode = "faults:unbound"

func (e *Endpoint) planes() []Plane {
	if e.plane == Any {
		return nil
	}
	return []Plane{e.plane}
}

// Isolate cuts the node off from every peer, both ways, until Heal.
func (e *Endpoint) Isolate() {
	n, node := e.get()
	n.Isolate(node, e.planes()...)
}

// Heal removes every fault of the endpoint's plane that names the node.
func (e *Endpoint) Heal() {
	n, node := e.get()
	n.Heal(node, e.planes()...)
}

// Isolated reports whether the node is isolated on the endpoint's plane.
func (e *Endpoint) Isolated() bool {
	n, node := e.get()
	return n.Isolated(node, e.plane)
}

// CutTo drops the traffic the node starts towards peers (one way).
func (e *Endpoint) CutTo(peers ...string) {
	n, node := e.get()
	for _, p := range peers {
		n.Cut(node, p, e.planes()...)
	}
}

// CutFrom drops the traffic peers start towards the node (one way).
func (e *Endpoint) CutFrom(peers ...string) {
	n, node := e.get()
	for _, p := range peers {
		n.Cut(p, node, e.planes()...)
	}
}

// CutBoth cuts the node and peers from each other, both ways.
func (e *Endpoint) CutBoth(peers ...string) {
	e.CutTo(peers...)
	e.CutFrom(peers...)
}
