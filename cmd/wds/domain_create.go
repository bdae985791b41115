package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// NewDomainCreateCommand returns `wds domain create`.
func NewDomainCreateCommand(g *globals) *cobra.Command {
	var (
		kind   string
		shards int
		ttl    = durationFlag{s: topology.DefaultTTL.String()}
	)
	cmd := &cobra.Command{
		Use:   "create NAME --kind global|regional|unit [--shards N] [--ttl DURATION]",
		Short: "Create a work domain",
		Long: `Create a work domain. NAME is 1-63 characters of lowercase letters, digits,
'-', '_' and '.'. --kind is required; --shards is required unless the kind is
unit (always 1 shard), between 1 and 1048576; --ttl is the grant lease, from
1s to 24h (default 10s). Consumers heartbeat every TTL/3.

The arguments are checked here first, then by the cell; either way the
error names the field that was wrong, and nothing is created.`,
		Example: `  wds domain create orders --kind global --shards 64 --ttl 5s
  wds domain create tenants --kind regional --shards 256
  wds domain create scheduler --kind unit --ttl 3s`,
		Args: exactArgs(1, "the domain NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			lease, err := ttl.parse("--ttl")
			if err != nil {
				return err
			}
			k, err := topology.ParseKind(kind)
			if err != nil {
				return err
			}
			d := topology.Domain{Name: args[0], Kind: k, Shards: shards, TTL: lease}
			d.Normalize()
			if err := d.Validate(); err != nil {
				return err
			}
			a, err := g.admin()
			if err != nil {
				return err
			}
			defer a.close()
			var res *wdsv1.CreateDomainResponse
			err = a.call(cmd.Context(), func(ctx context.Context, c wdsv1.AdminClient) (err error) {
				res, err = c.CreateDomain(ctx, &wdsv1.CreateDomainRequest{Domain: topology.DomainToProto(d)})
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json() {
				return writeJSON(out, domainToJSON(res.GetDomain()))
			}
			rd := res.GetDomain()
			_, err = fmt.Fprintf(out, "domain %s created: %s, %s, ttl %s\n",
				rd.GetName(), topology.KindFromProto(rd.GetKind()), countOf(int(rd.GetShards()), "shard"), ttlString(rd.GetTtlMillis()))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&kind, "kind", "", "domain kind: global, regional or unit (required)")
	f.IntVar(&shards, "shards", 0, "number of shards, 1 to 1048576 (required unless --kind unit)")
	f.Var(&ttl, "ttl", "grant lease TTL with a unit, 1s to 24h")
	return cmd
}
