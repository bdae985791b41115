package global

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/wdsio/wds/global/globalstate"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	"github.com/wdsio/wds/topology"
)

// The global group's voters change as regions are added and removed. The
// applied topology names them (each region's voters, in the global state);
// the group's Raft configuration follows:
//
//   - A node started on an empty data dir does not bootstrap blindly. It
//     asks the other voters its topology file names. If one of them is in
//     a group already, the node waits to be added (it asks the leader to
//     join, or, listed there already, waits for the leader's log). Only if
//     every other voter answers that it has no state either is this the
//     group's first start, and the node bootstraps with the file's voters
//     (every initial voter bootstraps with the same list). A voter that
//     does not answer blocks the bootstrap: two groups must never form.
//   - The leader adds a voter when it asks to join and the applied
//     topology lists it at that Raft address (Join), and removes a voter
//     no region lists any more (reconcileVoters), one change at a time.
//     A leader that is itself no longer listed hands leadership over; its
//     successor removes it.

// membershipInterval is how often a node that is not a voter of its
// configuration asks to join, and how often the leader reconciles the
// configuration with the topology. A node with no configuration at all
// (a first start) probes its peers every probeInterval: the voters of a
// new federation start within moments of each other.
const (
	membershipInterval = time.Second
	probeInterval      = 250 * time.Millisecond
)

// probeTimeout bounds one peer's answer to a probe.
const probeTimeout = 2 * time.Second

// membershipLoop finds the node its place in the group, for as long as the
// node runs: while it is not a voter of its own configuration it probes,
// bootstraps or asks to join (a removed voter that a later topology lists
// again rejoins so).
func (n *Node) membershipLoop(ctx context.Context) {
	var said string // the last state logged, so that a wait is logged once
	say := func(msg string, args ...any) {
		if msg != said {
			n.log.Info(msg, args...)
			said = msg
		}
	}
	var leaderless time.Time // since when this voter has known no leader
	for {
		wait := membershipInterval
		switch {
		case !n.isVoter():
			leaderless = time.Time{}
			n.findPlace(ctx, say)
			if !n.raft.Configured() {
				wait = probeInterval
			}
		case n.knowsLeader():
			leaderless = time.Time{}
		case leaderless.IsZero():
			leaderless = time.Now()
		case time.Since(leaderless) > leaderlessCheck:
			// A voter removed while it was down never got the entry that
			// removed it: its own configuration still lists it. Ask.
			n.checkStillVoter(ctx, say)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// leaderlessCheck is how long a voter knows no leader before it asks the
// other voters whether the group still counts it (a few elections).
const leaderlessCheck = 5 * time.Second

// knowsLeader reports whether the node has heard from a leader lately.
func (n *Node) knowsLeader() bool {
	id, _ := n.raft.FreshLeader()
	return id != ""
}

// checkStillVoter asks the file's other voters about the group; if one
// that knows a leader lists voters without this node, the node was
// removed while it was down, and asks to join again.
func (n *Node) checkStillVoter(ctx context.Context, say func(string, ...any)) {
	for _, p := range n.cfg.Peers {
		if p.ID == n.cfg.NodeID {
			continue
		}
		st, err := n.probe(ctx, p.GRPC)
		if err != nil || !st.GetConfigured() || st.GetLeaderId() == "" {
			continue
		}
		if slices.ContainsFunc(st.GetVoters(), func(v *globalv1.GlobalVoter) bool { return v.GetId() == n.cfg.NodeID && !v.GetJoining() }) {
			return // still a voter: the group is electing, or cut off from this node
		}
		say("the global group no longer counts this node as a voter (removed while it was down?): asking to join again", "peer", st.GetNodeId())
		n.askToJoin(ctx, p.GRPC, say)
		return
	}
}

// isVoter reports whether the node's own configuration lists it.
func (n *Node) isVoter() bool {
	servers, err := n.raft.Servers()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == n.cfg.NodeID })
}

// peerAnswer is one peer's answer to a probe.
type peerAnswer struct {
	endpoint string
	resp     *globalv1.GlobalStatusResponse
	err      error
}

// findPlace is one round of membershipLoop for a node that is not a voter
// of its configuration.
func (n *Node) findPlace(ctx context.Context, say func(string, ...any)) {
	configured := n.raft.Configured()
	var answers []peerAnswer
	for _, p := range n.cfg.Peers {
		if p.ID == n.cfg.NodeID {
			continue
		}
		a := peerAnswer{endpoint: p.GRPC}
		a.resp, a.err = n.probe(ctx, p.GRPC)
		answers = append(answers, a)
	}
	var existing *peerAnswer
	empty, silent := 0, 0
	mine := n.bootstrapVoters()
	var differ []string // peers that would bootstrap with other voters
	for i, a := range answers {
		switch {
		case a.err != nil:
			silent++
		case a.resp.GetConfigured():
			// Prefer a voter that knows the leader: Join is forwarded there.
			if existing == nil || existing.resp.GetLeaderEndpoint() == "" {
				existing = &answers[i]
			}
		default:
			empty++
			if !slices.Equal(a.resp.GetBootstrapVoters(), mine) {
				differ = append(differ, a.resp.GetNodeId())
			}
		}
	}
	switch {
	case existing != nil && slices.ContainsFunc(existing.resp.GetVoters(), func(v *globalv1.GlobalVoter) bool { return v.GetId() == n.cfg.NodeID && !v.GetJoining() }):
		// The group lists this node already: its leader sends the log.
		say("the global group lists this node as a voter; waiting for its leader's log", "peer", existing.resp.GetNodeId())
	case existing != nil:
		n.askToJoin(ctx, existing.endpoint, say)
	case configured && len(answers) == 0:
		say("this node is not a voter of the global group, and its topology file names no other voter to ask to join again: start it with a file that lists the group's voters")
	case configured:
		// Removed from a group none of whose voters answers: nothing to do
		// until one does.
		say("this node is not a voter of the global group, and no other voter of its file answers", "unreachable", silent, "answered without a group", empty)
	case silent == 0 && len(differ) > 0:
		// Bootstrapping with different lists would give two first
		// configurations at index 1.
		say("not bootstrapping the global group: other voters' topology files list other global voters; start every voter with the same file",
			"voters", mine, "differ", differ)
	case silent == 0:
		// No peer has any state, and every peer answered with the same
		// voters: the group's first start.
		did, err := n.raft.Bootstrap()
		switch {
		case err != nil:
			say("global bootstrap failed", "err", err)
		case did:
			n.log.Info("bootstrapped the global group", "voters", len(n.cfg.Peers))
		}
	default:
		say("waiting for the other global voters before bootstrapping (every one must answer, so that two groups never form)",
			"answered", empty, "unreachable", silent)
	}
}

// bootstrapVoters are the voters this node would bootstrap the group
// with, as "id=raft_address", sorted (GlobalStatusResponse.bootstrap_voters).
func (n *Node) bootstrapVoters() []string {
	var out []string
	for _, p := range n.cfg.Peers {
		out = append(out, p.ID+"="+p.Raft)
	}
	slices.Sort(out)
	return out
}

// probe asks a peer's GlobalStatus.
func (n *Node) probe(ctx context.Context, endpoint string) (*globalv1.GlobalStatusResponse, error) {
	cc, err := n.dialPeer(endpoint)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	return globalv1.NewGlobalAdminClient(cc).GlobalStatus(ctx, &globalv1.GlobalStatusRequest{})
}

// askToJoin sends Join through a voter of the group (it forwards it to the
// leader).
func (n *Node) askToJoin(ctx context.Context, endpoint string, say func(string, ...any)) {
	cc, err := n.dialPeer(endpoint)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout+n.cfg.Raft.TransportTimeout)
	defer cancel()
	_, err = globalv1.NewGlobalAdminClient(cc).Join(ctx, &globalv1.JoinRequest{NodeId: n.cfg.NodeID, RaftAddress: n.raft.Addr()})
	if err != nil {
		say("asked to join the global group: not yet", "via", endpoint, "err", grpcstatus.Convert(err).Message())
		return
	}
	n.log.Info("joined the global group as a voter", "via", endpoint)
}

// Join adds a node to the group's configuration as a voter (leader only):
// the applied topology must list it at raftAddr.
func (n *Node) Join(ctx context.Context, id, raftAddr string) (uint64, error) {
	if n.currentLeader() == nil {
		return 0, ErrNotLeader
	}
	voters := n.state.Voters()
	i := slices.IndexFunc(voters, func(v globalstate.Voter) bool { return v.ID == id })
	switch {
	case id == "":
		return 0, topology.Invalid("node_id", "", "required")
	case raftAddr == "":
		return 0, topology.Invalid("raft_address", "", "required")
	case i < 0:
		return 0, fmt.Errorf("%w: node %q is not a global voter of the applied topology: give its node a global address in the topology file and run wds topology apply first", globalstate.ErrFailedPrecondition, id)
	case voters[i].Raft != raftAddr:
		return 0, fmt.Errorf("%w: node %q asked to join at %s, but the applied topology lists its global Raft address as %s", globalstate.ErrFailedPrecondition, id, raftAddr, voters[i].Raft)
	}
	idx, err := n.raft.AddVoter(ctx, id, raftAddr)
	if err != nil {
		return 0, err
	}
	n.log.Info("added a voter to the global group", "voter", id, "raft", raftAddr, "region", voters[i].Region)
	return idx, nil
}

// reconcileVoters makes one change, at most, that brings the group's
// configuration closer to the applied topology's voters (leader only): it
// removes a voter no region lists, or, when this leader is the one no
// longer listed, hands leadership over. Additions wait for the node's Join.
// A state whose regions list no voter (applied before voters were
// recorded) changes nothing.
func (n *Node) reconcileVoters(ctx context.Context, lastTransfer *time.Time) {
	want := map[string]bool{}
	for _, v := range n.state.Voters() {
		want[v.ID] = true
	}
	if len(want) == 0 {
		return
	}
	servers, err := n.raft.Servers()
	if err != nil {
		return
	}
	selfUnlisted := false
	for _, s := range servers {
		id := string(s.ID)
		if want[id] {
			continue
		}
		if id == n.cfg.NodeID {
			selfUnlisted = true
			continue
		}
		// The configuration without id commits on its own majority at
		// once: remove id only while a majority of the others answers,
		// or the group would stop (a live voter removed while another is
		// down).
		if healthy, rest := n.healthyWithout(ctx, servers, id); healthy*2 <= rest {
			say := fmt.Sprintf("not removing voter %s yet: only %d of the %d voters that would remain answer", id, healthy, rest)
			n.log.Info(say)
			return
		}
		if _, err := n.raft.RemoveServer(ctx, id); err != nil {
			n.log.Warn("removing a voter the topology no longer lists", "voter", id, "err", err)
			return
		}
		n.log.Info("removed a voter from the global group: the topology no longer lists it", "voter", id)
		return
	}
	if selfUnlisted && len(servers) > 1 && time.Since(*lastTransfer) > transferBackoff {
		// A transfer in flight refuses every proposal: one attempt per
		// transferBackoff at most.
		*lastTransfer = time.Now()
		n.log.Info("this leader is no longer a voter of the topology: handing leadership over")
		// Once another node leads, this leader stops and ctx ends: that is
		// the handover done, not a failure.
		if err := n.raft.TransferLeadership(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("leadership transfer", "err", err)
		}
	}
}

// transferBackoff spaces an unlisted leader's attempts to hand over.
const transferBackoff = 10 * time.Second

// healthyWithout counts the voters of servers other than id that answer
// as members of this leader's group (this node counts), and how many
// there are.
func (n *Node) healthyWithout(ctx context.Context, servers []raft.Server, id string) (healthy, rest int) {
	for _, s := range servers {
		sid := string(s.ID)
		if sid == id || s.Suffrage != raft.Voter {
			continue
		}
		rest++
		if sid == n.cfg.NodeID {
			healthy++
			continue
		}
		ep := n.endpointOf(sid)
		if ep == "" {
			continue
		}
		if st, err := n.probe(ctx, ep); err == nil && st.GetConfigured() && st.GetLeaderId() == n.cfg.NodeID {
			healthy++
		}
	}
	return healthy, rest
}

// voterLoop runs reconcileVoters on the leader.
func (l *leader) voterLoop() {
	defer l.wg.Done()
	t := time.NewTicker(membershipInterval)
	defer t.Stop()
	var lastTransfer time.Time
	for {
		ctx, cancel := context.WithTimeout(l.ctx, 2*l.n.cfg.Raft.TransportTimeout)
		l.n.reconcileVoters(ctx, &lastTransfer)
		cancel()
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
	}
}
