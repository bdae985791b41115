package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

type nodeJSON struct {
	ID          string `json:"id"`
	RaftAddress string `json:"raft_address"`
	Endpoint    string `json:"endpoint"`
	Suffrage    string `json:"suffrage"`
	Leader      bool   `json:"leader"`
}

type statusJSON struct {
	Node           string     `json:"node"`
	Region         string     `json:"region"`
	State          string     `json:"state"`
	Leader         string     `json:"leader"`
	LeaderEndpoint string     `json:"leader_endpoint"`
	Term           uint64     `json:"term"`
	CommitIndex    uint64     `json:"commit_index"`
	AppliedIndex   uint64     `json:"applied_index"`
	Sessions       uint32     `json:"sessions"`
	Domains        uint32     `json:"domains"`
	Consumers      uint32     `json:"consumers"`
	Grants         uint32     `json:"grants"`
	Nodes          []nodeJSON `json:"nodes"`
}

// NewStatusCommand returns `wds status`.
func NewStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show a cell node's Raft state, the cell's nodes and counts",
		Long: `Show the status of the first reachable node of --endpoint, as that node
sees it: its id and region, its Raft state (Leader, Follower, Candidate),
the leader, term, commit and applied indexes, the cell's nodes, the sessions
connected to this node, and the cell's domains, consumers and grants.`,
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
				Nodes: []nodeJSON{},
			}
			for _, n := range res.GetNodes() {
				v.Nodes = append(v.Nodes, nodeJSON{ID: n.GetId(), RaftAddress: n.GetRaftAddress(), Endpoint: n.GetEndpoint(), Suffrage: n.GetSuffrage(), Leader: n.GetLeader()})
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
			fmt.Fprintf(tw, "Sessions:\t%d (on this node)\n", v.Sessions)
			fmt.Fprintf(tw, "Domains:\t%d\n", v.Domains)
			fmt.Fprintf(tw, "Consumers:\t%d\n", v.Consumers)
			fmt.Fprintf(tw, "Grants:\t%d\n", v.Grants)
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(out)
			tw = newTable(out)
			fmt.Fprintln(tw, "NODE\tENDPOINT\tRAFT\tSUFFRAGE\tLEADER")
			for _, n := range v.Nodes {
				l := ""
				if n.Leader {
					l = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.ID, dash(n.Endpoint), n.RaftAddress, n.Suffrage, l)
			}
			return tw.Flush()
		},
	}
}
