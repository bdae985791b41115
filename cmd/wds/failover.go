package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	"github.com/wdsio/wds/topology"
)

// NewFailoverCommand returns `wds failover`.
func NewFailoverCommand(g *globals) *cobra.Command {
	var region, to string
	cmd := &cobra.Command{
		Use:   "failover DOMAIN --region R --to R2",
		Short: "Move a down region's key space of a manual REGIONAL domain to another region (and back)",
		Long: `Move the key space of region R of a REGIONAL domain whose failover is
manual to region R2: R2's cell serves it, balanced over R2's consumers of
the domain, until you move it back with --to R. (A domain with failover:
auto, the default, needs no operator: the global group gives a down
region's key space to its failover region once the region's delegations
have expired, and moves it home once the region has renewed for the
domain's failback_after.)

Moving a key space away from R is refused while R renews its delegations,
and while R still holds any of it: its delegation may still be live, and
the global group expires it only D·(1+ε) after R's last renewal (wds
status shows when). Retry then. Moving it home, or between two other
regions, is a graceful move (the serving cell relinquishes it, its
consumers release it, then the next one gets it), so it is never refused
for that reason.

The call goes to the global group through --endpoint (any region's
endpoint; a follower forwards it to the global leader).`,
		Example: `  # us-east is down: serve its carts key space from eu-west
  wds failover carts --region us-east --to eu-west
  # us-east is back: move it home
  wds failover carts --region us-east --to us-east`,
		Args: exactArgs(1, "the DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := topology.ValidateName("domain", args[0]); err != nil {
				return err
			}
			for _, f := range []struct{ name, v, what string }{
				{"--region", region, "the region whose key space moves"},
				{"--to", to, "the region to serve the key space (its own region moves it home)"},
			} {
				if f.v == "" {
					return topology.Invalid(f.name, "", "required: %s", f.what)
				}
				if err := topology.ValidateName(f.name, f.v); err != nil {
					return err
				}
			}
			ga, err := g.globalAdmin()
			if err != nil {
				return err
			}
			defer ga.close()
			var res *globalv1.FailoverResponse
			err = ga.call(cmd.Context(), func(ctx context.Context, c globalv1.GlobalAdminClient) (err error) {
				res, err = c.Failover(ctx, &globalv1.FailoverRequest{Domain: args[0], Region: region, To: to})
				return err
			})
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"domain": args[0], "key_space": region, "to": to, "index": res.GetIndex()})
			}
			if to == region {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "domain %s: key space %s moves home to %s (global index %d)\n", args[0], region, to, res.GetIndex())
			} else {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "domain %s: key space %s is served by %s (global index %d); move it back with: wds failover %s --region %s --to %s\n",
					args[0], region, to, res.GetIndex(), args[0], region, region)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&region, "region", "", "the region whose key space moves (required)")
	f.StringVar(&to, "to", "", "the region to serve it; the key space's own region moves it home (required)")
	return cmd
}
