package global

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/wdsio/wds/global/globalstate"
	"github.com/wdsio/wds/internal/rpcerr"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// coordinator serves cell leaders' renewal streams (contract (5), the
// global leader's side).
type coordinator struct {
	globalv1.UnimplementedCoordinatorServer
	n *Node
}

// notLeader is the status a non-leader ends a stream with, naming the
// leader it knows.
func (n *Node) notLeader() error {
	id, ep := n.leaderEndpoint()
	if id == n.cfg.NodeID {
		id, ep = "", "" // elected, not yet in office
	}
	msg := "global: not leader"
	if ep != "" {
		msg += "; leader is " + id + " at " + ep
	}
	return rpcerr.New(codes.Unavailable, rpcerr.ReasonNotLeader, msg, rpcerr.KeyLeaderID, id, rpcerr.KeyLeaderEndpoint, ep)
}

// confirmWait bounds the wait for leadership confirmation before a
// renewal is answered.
const confirmWait = time.Second

func (c *coordinator) Renew(stream globalv1.Coordinator_RenewServer) error {
	n := c.n
	l := n.currentLeader()
	if l == nil {
		return n.notLeader()
	}
	reqs := make(chan *globalv1.RenewRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-stream.Context().Done():
				return
			}
		}
	}()
	nudge := make(chan struct{}, 1)
	region := ""
	defer func() {
		if region != "" {
			l.detach(region, nudge)
		}
	}()
	for {
		select {
		case <-l.ctx.Done():
			return n.notLeader()
		case <-stream.Context().Done():
			return stream.Context().Err()
		case err := <-recvErr:
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		case <-nudge:
			if err := stream.Send(&globalv1.RenewResponse{}); err != nil {
				return err
			}
		case req := <-reqs:
			received := time.Now()
			if err := topology.ValidateName("region", req.GetRegion()); err != nil {
				return rpcerr.ToStatus(err)
			}
			if region == "" {
				region = req.GetRegion()
				l.attach(region, nudge)
			} else if req.GetRegion() != region {
				return rpcerr.ToStatus(topology.Invalid("region", req.GetRegion(), "a stream renews for one region (%s)", region))
			}
			resp, err := c.answer(l, req, received)
			if err != nil {
				return err
			}
			if resp == nil {
				continue // not confirmed in time: the cell renews again
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

// answer handles one renewal received at received: it records the
// region's load, proposes the releases it reports, and lists the region's
// delegations. It answers only under confirmed leadership (nil when
// confirmation did not come in time).
func (c *coordinator) answer(l *leader, req *globalv1.RenewRequest, received time.Time) (*globalv1.RenewResponse, error) {
	n := c.n
	if !n.raft.Confirmed(time.Now()) {
		ctx, cancel := context.WithTimeout(l.ctx, confirmWait)
		err := n.raft.Confirm(ctx)
		cancel()
		if err != nil {
			if l.ctx.Err() != nil {
				return nil, n.notLeader()
			}
			return nil, nil
		}
	}
	region := req.GetRegion()
	load := map[string]int{}
	for _, dl := range req.GetLoad() {
		load[dl.GetDomain()] = int(dl.GetConsumers())
	}
	c.proposeReleased(l, region, req.GetReleased())
	c.proposePurged(l, region, req)
	resp := &globalv1.RenewResponse{Seq: req.GetSeq()}
	for _, v := range n.state.Voters() {
		resp.VoterEndpoints = append(resp.VoterEndpoints, v.GRPC)
	}
	held := map[globalstate.DelegationID]bool{}
	for _, x := range req.GetHeld() {
		held[globalstate.DelegationID{Domain: x.GetDomain(), Region: x.GetRegion(), Generation: x.GetGeneration()}] = true
	}
	var record []*globalv1.Op
	for _, dl := range l.answer(region, req.GetNodeId(), received, load) {
		switch {
		case dl.Confirmed && !held[dl.DelegationID]:
			// Contract (6): the cell recorded this delegation once and
			// no longer has it — its log was lost (or it relinquished
			// it). A fresh log must not continue the generation with
			// low indexes: not answered, withdrawn, and delegated again
			// under a new generation once it expires (D·(1+ε) after
			// its withdrawal) or the cell reports it released.
			record = append(record, &globalv1.Op{Op: &globalv1.Op_Withdraw{Withdraw: &globalv1.Withdraw{
				Domain: dl.Domain, Region: dl.Region, Holder: region, Generation: dl.Generation, Ranges: rangesToProto(dl.Ranges),
			}}})
			n.log.Info("delegation no longer in its cell's log: withdrawn", "holder", region, "domain", dl.Domain, "key_space", dl.Region, "generation", dl.Generation)
			continue
		case !dl.Confirmed && held[dl.DelegationID]:
			record = append(record, &globalv1.Op{Op: &globalv1.Op_Confirm{Confirm: &globalv1.Confirm{
				Holder: region, Domain: dl.Domain, Region: dl.Region, Generation: dl.Generation,
			}}})
		}
		ttl, ok := n.domainTTL(dl.Domain)
		if !ok {
			continue
		}
		resp.Delegations = append(resp.Delegations, &globalv1.Delegation{
			Domain: dl.Domain, Region: dl.Region, Generation: dl.Generation,
			Ranges: rangesToProto(dl.Ranges), DurationMillis: n.cfg.Duration(ttl).Milliseconds(),
		})
	}
	// Ended: of the cell's held and stale delegations, those the state no
	// longer has for it in any form. A delegation a cell knows was listed
	// in an answer, so the state had it; it leaves the state only by
	// expiry (its deadline passed) or release (the cell emptied it).
	has := map[globalstate.DelegationID]bool{}
	for _, dl := range n.state.Delegations(region) {
		has[dl.DelegationID] = true
	}
	for _, x := range append(append([]*globalv1.DelegationRanges(nil), req.GetHeld()...), req.GetStale()...) {
		id := globalstate.DelegationID{Domain: x.GetDomain(), Region: x.GetRegion(), Generation: x.GetGeneration()}
		if !has[id] {
			resp.Ended = append(resp.Ended, &globalv1.DelegationRanges{Domain: id.Domain, Region: id.Region, Generation: id.Generation})
			has[id] = true // once
		}
	}
	if len(record) > 0 {
		go func() {
			if _, err := n.propose(l.ctx, record...); err != nil {
				n.log.Debug("confirmations and withdrawals not committed", "region", region, "err", err)
			}
		}()
	}
	if live, deleting, version := n.state.Catalog(); version != req.GetCatalogIndex() {
		resp.Catalog = &globalv1.Catalog{Index: version, Domains: live, Deleting: deleting}
	}
	return resp, nil
}

// proposeReleased commits the releases a region reported, for the
// delegations it still holds (a cell reports a relinquished range until it
// is delegated again).
func (c *coordinator) proposeReleased(l *leader, region string, released []*globalv1.DelegationRanges) {
	if len(released) == 0 {
		return
	}
	var ops []*globalv1.Op
	for _, r := range released {
		op := &globalv1.Released{Domain: r.GetDomain(), Region: r.GetRegion(), Holder: region, Generation: r.GetGeneration(), Ranges: r.GetRanges()}
		if c.n.state.WouldRelease(op) {
			ops = append(ops, &globalv1.Op{Op: &globalv1.Op_Released{Released: op}})
		}
	}
	if len(ops) == 0 {
		return
	}
	go func() {
		if _, err := c.n.propose(l.ctx, ops...); err != nil {
			c.n.log.Debug("released report not committed", "region", region, "err", err)
		}
	}()
}

// proposePurged frees the region's delegations of domains being deleted
// that its cell no longer has: the cell saw the deletion (its catalog is
// the current one) and purged the domain, which it does only once no grant
// of it is left.
func (c *coordinator) proposePurged(l *leader, region string, req *globalv1.RenewRequest) {
	if req.GetCatalogIndex() != c.n.state.CatalogIndex() {
		return
	}
	has := map[string]bool{}
	for _, d := range req.GetDomains() {
		has[d] = true
	}
	var ops []*globalv1.Op
	for _, dl := range c.n.state.Delegations(region) {
		if has[dl.Domain] {
			continue
		}
		if _, deleting, ok := c.n.state.Domain(dl.Domain); !ok || !deleting {
			continue
		}
		ops = append(ops, &globalv1.Op{Op: &globalv1.Op_Released{Released: &globalv1.Released{
			Domain: dl.Domain, Region: dl.Region, Holder: region, Generation: dl.Generation,
		}}})
	}
	if len(ops) == 0 {
		return
	}
	go func() {
		if _, err := c.n.propose(l.ctx, ops...); err != nil {
			c.n.log.Debug("purged domains' delegations not freed", "region", region, "err", err)
		}
	}()
}

func rangesToProto(rs []topology.Range) []*wdsv1.KeyRange {
	out := make([]*wdsv1.KeyRange, len(rs))
	for i, r := range rs {
		out[i] = topology.RangeToProto(r)
	}
	return out
}
