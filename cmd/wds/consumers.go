package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// listConsumers fetches every registered consumer from the leader.
func listConsumers(ctx context.Context, a *adminClient) ([]*wdsv1.ConsumerInfo, error) {
	var res *wdsv1.ListConsumersResponse
	err := a.call(ctx, func(ctx context.Context, c wdsv1.AdminClient) (err error) {
		res, err = c.ListConsumers(ctx, &wdsv1.ListConsumersRequest{})
		return err
	})
	return res.GetConsumers(), err
}

// NewConsumersCommand returns `wds consumers`.
func NewConsumersCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "consumers",
		Short: "List the cell's consumers with their shard counts",
		Long: `List every consumer registered with the cell: its id, region, the
endpoint it publishes in routing, the active shards it holds (in all and per
domain), and its state: connected or disconnected (a consumer keeps its
shards until its lease lapses), unconfirmed (the leader has not heard from
it for a while) and draining.

With -o json it prints an array of objects with id, region, endpoint,
domains, shards, shards_by_domain, connected, unconfirmed and draining.`,
		Example: `  wds consumers
  wds consumers -o json | jq -r '.[] | select(.draining) | .id'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := g.admin()
			if err != nil {
				return err
			}
			defer a.close()
			cs, err := listConsumers(cmd.Context(), a)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json() {
				v := []consumerJSON{}
				for _, c := range cs {
					v = append(v, consumerToJSON(c))
				}
				return writeJSON(out, v)
			}
			if len(cs) == 0 {
				_, err := fmt.Fprintln(out, "no consumers (join one with `wds consume --domain D --id ID`)")
				return err
			}
			tw := newTable(out)
			fmt.Fprintln(tw, "CONSUMER\tREGION\tENDPOINT\tSHARDS\tSTATE\tDOMAINS")
			for _, c := range cs {
				var doms []string
				for _, d := range c.GetDomains() {
					doms = append(doms, fmt.Sprintf("%s(%d)", d, c.GetShardsByDomain()[d]))
				}
				// Shards of domains the consumer no longer serves (a
				// re-created domain) still count.
				for d, n := range c.GetShardsByDomain() {
					if !slices.Contains(c.GetDomains(), d) {
						doms = append(doms, fmt.Sprintf("%s(%d)", d, n))
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", c.GetId(), dash(c.GetRegion()), dash(c.GetEndpoint()),
					c.GetShards(), consumerState(c), strings.Join(doms, ","))
			}
			return tw.Flush()
		},
	}
}
