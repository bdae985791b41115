package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
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
catching up says so instead of showing counts from a partial log.`,
		Example: `  wds status
  wds status --endpoint 127.0.0.1:7101 -o json`,
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
			return tw.Flush()
		},
	}
}
