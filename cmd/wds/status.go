package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

type nodeJSON struct {
	ID          string `json:"id"`
	RaftAddress string `json:"raft_address"`
	Endpoint    string `json:"endpoint"`
	Suffrage    string `json:"suffrage"`
	Leader      bool   `json:"leader"`
	// Health is what the node answered when asked just now: "ok",
	// "unreachable: ...", "no leader known", "catching up: ...".
	Health       string `json:"health"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
}

type statusJSON struct {
	Node           string `json:"node"`
	Region         string `json:"region"`
	State          string `json:"state"`
	Leader         string `json:"leader"`
	LeaderEndpoint string `json:"leader_endpoint"`
	Term           uint64 `json:"term"`
	CommitIndex    uint64 `json:"commit_index"`
	AppliedIndex   uint64 `json:"applied_index"`
	Sessions       uint32 `json:"sessions"`
	Domains        uint32 `json:"domains"`
	Consumers      uint32 `json:"consumers"`
	Grants         uint32 `json:"grants"`
	// Ready is what /readyz says of the answering node; when false,
	// ReadyReason says why and the counts are of its partial log.
	Ready       bool       `json:"ready"`
	ReadyReason string     `json:"ready_reason,omitempty"`
	Nodes       []nodeJSON `json:"nodes"`
	// Global is the global group's status, when an endpoint is a global
	// voter; absent for a lone cell.
	Global *globalJSON `json:"global,omitempty"`
}

// globalJSON is the global group as `wds status -o json` prints it.
type globalJSON struct {
	// Node, State, Term and AppliedIndex are the answering voter's.
	Node           string            `json:"node"`
	State          string            `json:"state"`
	Leader         string            `json:"leader"`
	LeaderEndpoint string            `json:"leader_endpoint"`
	Term           uint64            `json:"term"`
	AppliedIndex   uint64            `json:"applied_index"`
	Voters         []globalVoterJSON `json:"voters"`
	// Member: the answering node is a voter of its group's configuration
	// (false for a node removed from the group or not joined yet; such a
	// node hears from no leader).
	Member bool `json:"member"`
	// RegionsFrom is the voter whose answer gave regions and delegations:
	// the global leader ("" when it did not answer; both lists are then
	// empty, as only the leader knows them).
	RegionsFrom string             `json:"regions_from"`
	Regions     []regionStatusJSON `json:"regions"`
	Delegations []delegationJSON   `json:"delegations"`
}

type globalVoterJSON struct {
	ID          string `json:"id"`
	Region      string `json:"region"`
	RaftAddress string `json:"raft_address"`
	GRPC        string `json:"grpc"`
	Leader      bool   `json:"leader"`
	// Joining: the applied topology lists the voter, but it is not in the
	// group's Raft configuration yet (not started, or not joined).
	Joining bool `json:"joining"`
}

type regionStatusJSON struct {
	Name string `json:"name"`
	// Renewing: the global leader answered a renewal of the region's cell
	// within its live window.
	Renewing bool `json:"renewing"`
	// CellLeader is the node id of the cell leader whose renewal the
	// global leader answered last ("" before the first).
	CellLeader string `json:"cell_leader"`
	// LastRenewalAgoMillis is -1 when the region has not renewed since the
	// leader took office; LastRenewalAgo is then "".
	LastRenewalAgoMillis int64  `json:"last_renewal_ago_millis"`
	LastRenewalAgo       string `json:"last_renewal_ago"`
	// Consumers are the live consumers per domain, from the region's last
	// load report.
	Consumers map[string]uint32 `json:"consumers"`
	// RenewingForMillis is how long the region has renewed without a lapse
	// (-1: not renewing); RenewingFor is then "".
	RenewingForMillis int64  `json:"renewing_for_millis"`
	RenewingFor       string `json:"renewing_for"`
	// ServingForOthers are the REGIONAL key spaces of other regions the
	// region's cell serves (failover).
	ServingForOthers []keySpaceRefJSON `json:"serving_for_others"`
	// Away are the region's own REGIONAL key spaces served elsewhere.
	Away []awayJSON `json:"away"`
}

type keySpaceRefJSON struct {
	Domain   string `json:"domain"`
	KeySpace string `json:"key_space"`
}

type awayJSON struct {
	Domain   string   `json:"domain"`
	ServedBy []string `json:"served_by"`
	Manual   bool     `json:"manual"`
	// FailbackInMillis is how long until it moves home (0: due now); -1:
	// no fail-back pending (the region is not renewing, or the domain's
	// failover is manual). FailbackIn is then "".
	FailbackInMillis int64  `json:"failback_in_millis"`
	FailbackIn       string `json:"failback_in"`
}

type delegationJSON struct {
	Domain string `json:"domain"`
	// Region is the key space's region (REGIONAL), "" otherwise.
	Region      string      `json:"region"`
	Holder      string      `json:"holder"`
	Generation  uint64      `json:"generation"`
	Ranges      []rangeJSON `json:"ranges"`
	Withdrawing bool        `json:"withdrawing"`
	// ExpiresInMillis is how long the global leader holds it without
	// renewals.
	ExpiresInMillis int64  `json:"expires_in_millis"`
	ExpiresIn       string `json:"expires_in"`
}

type rangeJSON struct {
	From  string `json:"from"`
	To    string `json:"to"`
	ToEnd bool   `json:"to_end"`
}

func globalToJSON(v *globalView) *globalJSON {
	s := v.self
	out := &globalJSON{Node: s.GetNodeId(), State: s.GetState(), Leader: s.GetLeaderId(), LeaderEndpoint: s.GetLeaderEndpoint(),
		Term: s.GetTerm(), AppliedIndex: s.GetAppliedIndex(),
		Voters: []globalVoterJSON{}, Regions: []regionStatusJSON{}, Delegations: []delegationJSON{}}
	for _, vo := range s.GetVoters() {
		out.Voters = append(out.Voters, globalVoterJSON{ID: vo.GetId(), Region: vo.GetRegion(), RaftAddress: vo.GetRaftAddress(), GRPC: vo.GetGrpc(), Leader: vo.GetLeader(), Joining: vo.GetJoining()})
		if vo.GetId() == s.GetNodeId() && !vo.GetJoining() {
			out.Member = true
		}
	}
	if v.leader == nil {
		return out
	}
	out.RegionsFrom = v.leader.GetNodeId()
	for _, r := range v.leader.GetRegions() {
		rs := regionStatusJSON{Name: r.GetName(), Renewing: r.GetRenewing(), CellLeader: r.GetCellLeader(), LastRenewalAgoMillis: r.GetLastRenewalAgoMillis(), Consumers: map[string]uint32{}}
		if ms := r.GetLastRenewalAgoMillis(); ms >= 0 {
			rs.LastRenewalAgo = millis(ms)
		}
		rs.RenewingForMillis = r.GetRenewingForMillis()
		if ms := r.GetRenewingForMillis(); ms >= 0 {
			rs.RenewingFor = millis(ms)
		}
		rs.ServingForOthers, rs.Away = []keySpaceRefJSON{}, []awayJSON{}
		for _, k := range r.GetServingForOthers() {
			rs.ServingForOthers = append(rs.ServingForOthers, keySpaceRefJSON{Domain: k.GetDomain(), KeySpace: k.GetKeySpace()})
		}
		for _, a := range r.GetAway() {
			aj := awayJSON{Domain: a.GetDomain(), ServedBy: append([]string{}, a.GetServedBy()...), Manual: a.GetManual(), FailbackInMillis: a.GetFailbackInMillis()}
			if ms := a.GetFailbackInMillis(); ms >= 0 {
				aj.FailbackIn = millis(ms)
			}
			rs.Away = append(rs.Away, aj)
		}
		for d, n := range r.GetConsumers() {
			rs.Consumers[d] = n
		}
		out.Regions = append(out.Regions, rs)
	}
	for _, d := range v.leader.GetDelegations() {
		dj := delegationJSON{Domain: d.GetDomain(), Region: d.GetRegion(), Holder: d.GetHolder(), Generation: d.GetGeneration(),
			Ranges: []rangeJSON{}, Withdrawing: d.GetWithdrawing(), ExpiresInMillis: d.GetExpiresInMillis(), ExpiresIn: millis(d.GetExpiresInMillis())}
		for i, pr := range d.GetRanges() {
			r, err := topology.RangeFromProto(fmt.Sprintf("delegations.ranges[%d]", i), pr)
			if err != nil {
				continue
			}
			rj := rangeJSON{}
			rj.From, _ = boundJSON(r.From)
			rj.To, rj.ToEnd = boundJSON(r.To)
			dj.Ranges = append(dj.Ranges, rj)
		}
		out.Delegations = append(out.Delegations, dj)
	}
	return out
}

// millis shows a duration in milliseconds for people: "180ms", "1.2s".
func millis(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	if d >= time.Second || d <= -time.Second {
		d = d.Round(100 * time.Millisecond)
	}
	return d.String()
}

// writeGlobalStatus prints the global group's section of `wds status`.
func writeGlobalStatus(w io.Writer, v *globalJSON) error {
	leader := "none known"
	if v.Leader != "" {
		leader = v.Leader
		if v.LeaderEndpoint != "" {
			leader += " (" + v.LeaderEndpoint + ")"
		}
	}
	fmt.Fprintf(w, "\nGlobal group (voter %s, %s):\n", v.Node, v.State)
	if !v.Member && len(v.Voters) > 0 {
		fmt.Fprintf(w, "  %s is not a voter of the group (removed, or not joined yet) and hears from no leader: ask a voter below (wds status --endpoint GRPC)\n", v.Node)
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "Leader:\t%s\n", leader)
	fmt.Fprintf(tw, "Term:\t%d\n", v.Term)
	fmt.Fprintf(tw, "Applied:\t%d\n", v.AppliedIndex)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "VOTER\tREGION\tRAFT\tGRPC\tLEADER")
	if len(v.Voters) == 0 {
		fmt.Fprintln(tw, "(this voter has not bootstrapped or joined the group yet)")
	}
	for _, vo := range v.Voters {
		l := ""
		switch {
		case vo.Leader:
			l = "*"
		case vo.Joining:
			l = "joining (listed by the topology, not in the group yet)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", vo.ID, dash(vo.Region), vo.RaftAddress, dash(vo.GRPC), l)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if v.RegionsFrom == "" {
		_, err := fmt.Fprintln(w, "\nRegions and delegations: only the global leader knows them, and it did not answer")
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "REGION\tCELL LEADER\tRENEWING\tLAST RENEWAL\tCONSUMERS")
	var failover []string
	for _, r := range v.Regions {
		renewing, last := "no", "never (since the leader took office)"
		if r.Renewing {
			renewing = "yes, for " + r.RenewingFor
		} else if r.LastRenewalAgo != "" {
			renewing = "lapsed"
		}
		for _, k := range r.ServingForOthers {
			failover = append(failover, fmt.Sprintf("%s serves %s's key space of %s", r.Name, k.KeySpace, k.Domain))
		}
		for _, a := range r.Away {
			line := fmt.Sprintf("%s's key space of %s is served by %s", r.Name, a.Domain, strings.Join(a.ServedBy, " and "))
			switch {
			case a.FailbackIn != "":
				line += "; fails back in " + a.FailbackIn
			case a.Manual:
				line += "; failover manual: wds failover " + a.Domain + " --region " + r.Name + " --to " + r.Name + " moves it home"
			default:
				line += "; fails back once " + r.Name + " renews again"
			}
			failover = append(failover, line)
		}
		if r.LastRenewalAgo != "" {
			last = r.LastRenewalAgo + " ago"
		}
		var cons []string
		for d, n := range r.Consumers {
			cons = append(cons, fmt.Sprintf("%s=%d", d, n))
		}
		slices.Sort(cons)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, dash(r.CellLeader), renewing, last, dash(strings.Join(cons, ", ")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(failover) > 0 {
		fmt.Fprintln(w, "\nFailover:")
		for _, l := range failover {
			fmt.Fprintln(w, "  "+l)
		}
	}
	if len(v.Delegations) == 0 {
		_, err := fmt.Fprintln(w, "\nDelegations: none")
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "DOMAIN\tKEY SPACE\tHOLDER\tGENERATION\tRANGES\tWITHDRAWING\tEXPIRES IN")
	for _, d := range v.Delegations {
		wd := "no"
		if d.Withdrawing {
			wd = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", d.Domain, dash(d.Region), d.Holder, d.Generation, len(d.Ranges), wd, d.ExpiresIn)
	}
	return tw.Flush()
}

// NewStatusCommand returns `wds status`.
func NewStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cell's nodes and their health, and counts",
		Long: `Show the status of a node of --endpoint (the first that answers; all are
asked at once), as that node sees it: its id and region, its Raft state
(Leader, Follower, Candidate), the leader, term, commit and applied indexes,
whether it is ready (it has applied what the leader has committed), the
sessions connected to it, and the cell's domains, consumers and grants.

Then every node of the cell with its health, as the answering node found it
just now: ok, unreachable (down, or no answer within 300 ms), no leader
known, or catching up (applied X of the leader's Y). A node that is
catching up says so instead of showing counts from a partial log.

In a federation, when a node of --endpoint is a global voter (the first to
answer; all are asked at once), a "Global group" section follows: that voter's Raft state, the
global leader and the voters; then, as the global leader sees them (it is
asked when the voter is a follower), every region with its cell's leader,
whether it is renewing (and for how long without a lapse) or lapsed, how
long ago it last renewed and its live consumers per domain; then, under
"Failover:", the REGIONAL key spaces served by a region other than their
own, with when each fails back; and every delegation: domain, key space, holder region, generation, number
of ranges, whether it is being withdrawn, and how long the leader holds it
without renewals. With -o json the section is the "global" object; a lone
cell has none.`,
		Example: `  wds status
  wds status --endpoint 127.0.0.1:7101 -o json
  wds status -o json | jq '.global.delegations[] | [.domain, .holder, .expires_in] | @tsv'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := g.admin()
			if err != nil {
				return err
			}
			defer a.close()
			var res *wdsv1.StatusResponse
			err = a.callAny(cmd.Context(), func(ctx context.Context, c wdsv1.AdminClient) (err error) {
				res, err = c.Status(ctx, &wdsv1.StatusRequest{})
				return err
			})
			if err != nil {
				return err
			}
			v := statusJSON{
				Node: res.GetNodeId(), Region: res.GetRegion(), State: res.GetState(),
				Leader: res.GetLeaderId(), LeaderEndpoint: res.GetLeaderEndpoint(), Term: res.GetTerm(),
				CommitIndex: res.GetCommitIndex(), AppliedIndex: res.GetAppliedIndex(),
				Sessions: res.GetSessions(), Domains: res.GetDomains(), Consumers: res.GetConsumers(), Grants: res.GetGrants(),
				Ready: res.GetReady(), ReadyReason: res.GetReadyReason(),
				Nodes: []nodeJSON{},
			}
			for _, n := range res.GetNodes() {
				v.Nodes = append(v.Nodes, nodeJSON{ID: n.GetId(), RaftAddress: n.GetRaftAddress(), Endpoint: n.GetEndpoint(), Suffrage: n.GetSuffrage(), Leader: n.GetLeader(),
					Health: n.GetHealth(), Term: n.GetTerm(), AppliedIndex: n.GetAppliedIndex()})
			}
			// The global group's status when an endpoint is a global
			// voter.
			if gv := fetchGlobalStatus(cmd.Context(), a.endpoints, g.timeout); gv != nil {
				v.Global = globalToJSON(gv)
			}
			out := cmd.OutOrStdout()
			if g.json() {
				return writeJSON(out, v)
			}
			leader := "none known"
			if v.Leader != "" {
				leader = v.Leader
				if v.LeaderEndpoint != "" {
					leader += " (" + v.LeaderEndpoint + ")"
				}
			}
			tw := newTable(out)
			fmt.Fprintf(tw, "Node:\t%s\n", v.Node)
			fmt.Fprintf(tw, "Region:\t%s\n", v.Region)
			fmt.Fprintf(tw, "State:\t%s\n", v.State)
			fmt.Fprintf(tw, "Leader:\t%s\n", leader)
			fmt.Fprintf(tw, "Term:\t%d\n", v.Term)
			fmt.Fprintf(tw, "Commit/applied:\t%d/%d\n", v.CommitIndex, v.AppliedIndex)
			if v.Ready {
				fmt.Fprintf(tw, "Ready:\tyes\n")
			} else {
				fmt.Fprintf(tw, "Ready:\tno: %s\n", v.ReadyReason)
			}
			fmt.Fprintf(tw, "Sessions:\t%d (on this node)\n", v.Sessions)
			if v.Ready {
				fmt.Fprintf(tw, "Domains:\t%d\n", v.Domains)
				fmt.Fprintf(tw, "Consumers:\t%d\n", v.Consumers)
				fmt.Fprintf(tw, "Grants:\t%d\n", v.Grants)
			} else {
				// A partial log shows an empty or stale cell: do not
				// print it as if it were the cell.
				fmt.Fprintf(tw, "Domains, consumers, grants:\tnot shown while this node is not ready (ask another node, or the leader)\n")
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(out)
			tw = newTable(out)
			fmt.Fprintln(tw, "NODE\tENDPOINT\tRAFT\tSUFFRAGE\tLEADER\tTERM\tAPPLIED\tHEALTH")
			for _, n := range v.Nodes {
				l := ""
				if n.Leader {
					l = "*"
				}
				term, applied := "-", "-"
				if !strings.HasPrefix(n.Health, "unreachable") {
					term, applied = fmt.Sprint(n.Term), fmt.Sprint(n.AppliedIndex)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, dash(n.Endpoint), n.RaftAddress, n.Suffrage, l, term, applied, dash(n.Health))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if v.Global == nil {
				return nil
			}
			return writeGlobalStatus(out, v.Global)
		},
	}
}
