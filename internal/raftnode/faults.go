package raftnode

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wdsio/wds/internal/faults"
)

// ErrIsolated is returned by Raft RPCs a fault forbids.
var ErrIsolated = faults.ErrBlocked

// Faults is the fault hook of a node's Raft transport: a handle on a
// faults.Net (see that package for the model). Isolate cuts the node off
// from its peers (both directions) while everything else in the process —
// in particular its client-facing gRPC server — keeps running: the
// partition the lease contract must survive. CutTo, CutFrom and the Net's
// Partition express per-peer and one-way cuts. The zero value is a healthy
// transport on a network of its own; give every node of a group an
// Endpoint of one shared Net (plane faults.Raft) for per-peer cuts.
type Faults = faults.Endpoint

// faultTransport consults a faults.Net around a raft.Transport, the TCP
// one or an injected one alike. It checks both ends: a call is refused by
// the caller when the caller may not reach the target, and answered with
// ErrIsolated by the target when the caller (named by the RPC header) may
// not reach it, so a node faulted on a network its peers do not share is
// still cut off. Like the Net's direction model, the check is on who
// starts a call: the answer to an allowed call always gets back.
type faultTransport struct {
	raft.Transport
	net  *faults.Net
	self string
	in   chan raft.RPC
	done chan struct{}
	once sync.Once
}

// faultTransportPreVote is faultTransport for a transport that supports
// pre-vote: raft enables pre-vote by asking the transport for the
// interface, so the wrapper has it exactly when the wrapped one does.
type faultTransportPreVote struct {
	*faultTransport
	pv raft.WithPreVote
}

func wrapFaults(t raft.Transport, f *Faults, self string) (raft.Transport, error) {
	if err := f.Bind(self); err != nil {
		return nil, err
	}
	ft := &faultTransport{Transport: t, net: f.Net(), self: self, in: make(chan raft.RPC), done: make(chan struct{})}
	go ft.filter(t.Consumer())
	if pv, ok := t.(raft.WithPreVote); ok {
		return faultTransportPreVote{faultTransport: ft, pv: pv}, nil
	}
	return ft, nil
}

// blockedTo reports whether an RPC to the target is cut off; when it is
// not, it first waits the latency the network injects towards it.
func (t *faultTransport) blockedTo(id raft.ServerID, target raft.ServerAddress) bool {
	to := string(id)
	if to == "" {
		to = t.net.NodeAt(string(target))
	}
	if t.net.Blocked(t.self, to, faults.Raft) {
		return true
	}
	if d := t.net.Delay(t.self, to); d > 0 {
		time.Sleep(d)
	}
	return false
}

// refuse answers an incoming RPC whose sender may not reach this node.
func (t *faultTransport) refuse(rpc raft.RPC) bool {
	from := ""
	if h, ok := rpc.Command.(raft.WithRPCHeader); ok {
		hd := h.GetRPCHeader()
		from = string(hd.ID)
		if from == "" {
			from = t.net.NodeAt(string(hd.Addr))
		}
	}
	if !t.net.Blocked(from, t.self, faults.Raft) {
		return false
	}
	if rpc.Reader != nil {
		io.Copy(io.Discard, rpc.Reader) // keep a stream transport in sync
	}
	rpc.Respond(emptyResponse(rpc.Command), ErrIsolated)
	return true
}

// emptyResponse is a zero response of the type the command expects:
// hashicorp/raft's in-memory pipeline reads the response even of a failed
// AppendEntries (and panics on nil).
func emptyResponse(cmd any) any {
	switch cmd.(type) {
	case *raft.AppendEntriesRequest:
		return &raft.AppendEntriesResponse{}
	case *raft.RequestVoteRequest:
		return &raft.RequestVoteResponse{}
	case *raft.RequestPreVoteRequest:
		return &raft.RequestPreVoteResponse{}
	case *raft.InstallSnapshotRequest:
		return &raft.InstallSnapshotResponse{}
	case *raft.TimeoutNowRequest:
		return &raft.TimeoutNowResponse{}
	}
	return nil
}

func (t *faultTransport) filter(src <-chan raft.RPC) {
	for {
		select {
		case <-t.done:
			return
		case rpc, ok := <-src:
			if !ok {
				return
			}
			if t.refuse(rpc) {
				continue
			}
			select {
			case t.in <- rpc:
			case <-t.done:
				return
			}
		}
	}
}

func (t *faultTransport) Consumer() <-chan raft.RPC { return t.in }

func (t *faultTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	if cb == nil {
		t.Transport.SetHeartbeatHandler(nil)
		return
	}
	t.Transport.SetHeartbeatHandler(func(rpc raft.RPC) {
		if !t.refuse(rpc) {
			cb(rpc)
		}
	})
}

func (t *faultTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if t.blockedTo(id, target) {
		return nil, ErrIsolated
	}
	p, err := t.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &faultPipeline{AppendPipeline: p, t: t, id: id, target: target}, nil
}

func (t *faultTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if t.blockedTo(id, target) {
		return ErrIsolated
	}
	return t.Transport.AppendEntries(id, target, args, resp)
}

func (t *faultTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if t.blockedTo(id, target) {
		return ErrIsolated
	}
	return t.Transport.RequestVote(id, target, args, resp)
}

func (t *faultTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if t.blockedTo(id, target) {
		return ErrIsolated
	}
	return t.Transport.InstallSnapshot(id, target, args, resp, data)
}

func (t *faultTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	if t.blockedTo(id, target) {
		return ErrIsolated
	}
	return t.Transport.TimeoutNow(id, target, args, resp)
}

// Close closes the wrapped transport (raft calls it on shutdown, and so
// does Node.Shutdown).
func (t *faultTransport) Close() error {
	var err error
	t.once.Do(func() {
		close(t.done)
		if c, ok := t.Transport.(raft.WithClose); ok {
			err = c.Close()
		}
	})
	return err
}

func (t faultTransportPreVote) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if t.blockedTo(id, target) {
		return ErrIsolated
	}
	return t.pv.RequestPreVote(id, target, args, resp)
}

// faultPipeline refuses appends once the target is cut off; answers to
// appends sent before still arrive.
type faultPipeline struct {
	raft.AppendPipeline
	t      *faultTransport
	id     raft.ServerID
	target raft.ServerAddress
}

func (p *faultPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if p.t.blockedTo(p.id, p.target) {
		return nil, ErrIsolated
	}
	return p.AppendPipeline.AppendEntries(args, resp)
}

// NewInmemTransports returns one hashicorp/raft in-memory transport per
// id, addressed by the id and connected to every other: the network of an
// in-process group for tests (give node i Config.Transport = ts[i] and
// Peers with Address = id). Faults apply to them as to TCP.
func NewInmemTransports(ids ...string) []*raft.InmemTransport {
	ts := make([]*raft.InmemTransport, len(ids))
	for i, id := range ids {
		_, ts[i] = raft.NewInmemTransport(raft.ServerAddress(id))
	}
	for i, t := range ts {
		for j, u := range ts {
			if i != j {
				t.Connect(u.LocalAddr(), u)
			}
		}
	}
	return ts
}

// streamLayer is raft's StreamLayer over TCP.
type streamLayer struct {
	net.Listener
	advertise net.Addr
}

func newStreamLayer(bind string, advertise string) (*streamLayer, error) {
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
	return &streamLayer{Listener: ln, advertise: adv}, nil
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}
