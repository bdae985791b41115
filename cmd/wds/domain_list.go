package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// NewDomainListCommand returns `wds domain list`.
func NewDomainListCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the work domains of the cell",
		Example: `  wds domain list
  wds domain list -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := g.admin()
			if err != nil {
				return err
			}
			defer a.close()
			var res *wdsv1.ListDomainsResponse
			err = a.call(cmd.Context(), func(ctx context.Context, c wdsv1.AdminClient) (err error) {
				res, err = c.ListDomains(ctx, &wdsv1.ListDomainsRequest{})
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json() {
				list := make([]domainJSON, 0, len(res.GetDomains()))
				for _, d := range res.GetDomains() {
					list = append(list, domainToJSON(d))
				}
				return writeJSON(out, list)
			}
			if len(res.GetDomains()) == 0 {
				_, err := fmt.Fprintln(out, "no domains (create one with `wds domain create NAME --kind global --shards 16`)")
				return err
			}
			tw := newTable(out)
			fmt.Fprintln(tw, "NAME\tKIND\tSHARDS\tTTL")
			for _, d := range res.GetDomains() {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", d.GetName(), topology.KindFromProto(d.GetKind()), d.GetShards(), ttlString(d.GetTtlMillis()))
			}
			return tw.Flush()
		},
	}
}
