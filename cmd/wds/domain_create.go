package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// NewDomainCreateCommand returns `wds domain create`.
func NewDomainCreateCommand(g *globals) *cobra.Command {
	var (
		kind     string
		shards   int
		ttl      = durationFlag{s: topology.DefaultTTL.String()}
		regions  []string
		failover string
		failback durationFlag
	)
	cmd := &cobra.Command{
		Use:   "create NAME --kind global|regional|unit [--shards N] [--ttl DURATION] [--regions R1,R2] [--failover auto|manual] [--failback-after DURATION]",
		Short: "Create a work domain",
		Long: `Create a work domain. NAME is 1-63 characters of lowercase letters, digits,
'-', '_' and '.'. --kind is required; --shards is required unless the kind is
unit (always 1 shard), between 1 and 1048576; --ttl is the grant lease, from
1s to 24h (default 10s). Consumers heartbeat every TTL/3.

In a federation a REGIONAL domain also takes --regions, the regions with a
key space of it (comma-separated; default: every region), and --failover:
auto (the default) serves a down region's key space from its failover
region, manual leaves it unserved until an operator moves it (wds
failover); with auto, --failback-after is how long the region must renew
again before its key space moves home (default 30s). Only regional domains
take them. A federated cell hands the domain to the global group,
which checks the regions against the federation's.

The arguments are checked here first, then by the cell; either way the
error names the field that was wrong, and nothing is created.`,
		Example: `  wds domain create orders --kind global --shards 64 --ttl 5s
  wds domain create tenants --kind regional --shards 256
  wds domain create carts --kind regional --shards 16 --regions us-east,eu-west --failover manual
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
			flags := cmd.Flags()
			if flags.Changed("regions") {
				if k != topology.KindRegional {
					return topology.Invalid("--regions", "", "only a regional domain has regions: a %s domain has one key space for the whole federation", k)
				}
				if len(regions) == 0 {
					return topology.Invalid("--regions", `""`, "empty: list the regions with a key space of the domain, comma-separated, or leave the flag out for every region")
				}
				for i, r := range regions {
					regions[i] = strings.TrimSpace(r)
				}
				d.Regions = regions
			}
			if flags.Changed("failover") {
				f, err := topology.ParseFailover(failover)
				if err != nil {
					return err
				}
				if k != topology.KindRegional {
					return topology.Invalid("--failover", "", "only a regional domain has a failover setting: a %s domain always fails over to live regions", k)
				}
				d.Failover = f
			}
			if flags.Changed("failback-after") {
				if k != topology.KindRegional {
					return topology.Invalid("--failback-after", "", "only a regional domain fails back: a %s domain's placement follows its consumers, not a home region", k)
				}
				fb, err := failback.parse("--failback-after")
				if err != nil {
					return err
				}
				if fb <= 0 || fb > topology.MaxFailbackAfter || fb%time.Millisecond != 0 {
					return topology.Invalid("--failback-after", fb.String(), "must be whole milliseconds between 1ms and %s (leave it out for the default, %s)", topology.MaxFailbackAfter, topology.DefaultFailbackAfter)
				}
				d.FailbackAfter = fb
			}
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
			placement := ""
			if len(rd.GetRegions()) > 0 {
				placement += ", regions " + strings.Join(rd.GetRegions(), ", ")
			}
			if rd.GetFailover() == wdsv1.Failover_FAILOVER_MANUAL {
				placement += ", failover manual"
			}
			_, err = fmt.Fprintf(out, "domain %s created: %s, %s, ttl %s%s\n",
				rd.GetName(), topology.KindFromProto(rd.GetKind()), countOf(int(rd.GetShards()), "shard"), ttlString(rd.GetTtlMillis()), placement)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&kind, "kind", "", "domain kind: global, regional or unit (required)")
	f.IntVar(&shards, "shards", 0, "number of shards, 1 to 1048576 (required unless --kind unit)")
	f.Var(&ttl, "ttl", "grant lease TTL with a unit, 1s to 24h")
	f.StringSliceVar(&regions, "regions", nil, "regional domains: the regions with a key space of it, comma-separated (default: every region)")
	f.StringVar(&failover, "failover", "", "regional domains: auto (default) or manual, what happens to a down region's key space")
	f.Var(&failback, "failback-after", "regional domains with failover auto: how long a region must renew again before its key space moves home, with a unit (default 30s)")
	return cmd
}
