package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

type consumerJSON struct {
	ID        string   `json:"id"`
	Region    string   `json:"region"`
	Endpoint  string   `json:"endpoint"`
	Domains   []string `json:"domains"`
	Shards    uint32   `json:"shards"`
	Draining  bool     `json:"draining"`
	Connected bool     `json:"connected"`
	// Unconfirmed: the leader has not heard from it for a while.
	Unconfirmed bool `json:"unconfirmed"`
	// ShardsByDomain: wds consumers only.
	ShardsByDomain map[string]uint32 `json:"shards_by_domain,omitempty"`
}

func consumerToJSON(c *wdsv1.ConsumerInfo) consumerJSON {
	return consumerJSON{
		ID: c.GetId(), Region: c.GetRegion(), Endpoint: c.GetEndpoint(), Domains: c.GetDomains(),
		Shards: c.GetShards(), Draining: c.GetDraining(), Connected: c.GetConnected(),
		Unconfirmed: c.GetUnconfirmed(), ShardsByDomain: c.GetShardsByDomain(),
	}
}

// consumerState is a consumer's STATE column: connected or disconnected,
// then unconfirmed and draining when they apply.
func consumerState(c *wdsv1.ConsumerInfo) string {
	st := []string{"disconnected"}
	if c.GetConnected() {
		st[0] = "connected"
	}
	if c.GetUnconfirmed() {
		st = append(st, "unconfirmed")
	}
	if c.GetDraining() {
		st = append(st, "draining")
	}
	return strings.Join(st, ",")
}

type describeJSON struct {
	Domain    domainJSON     `json:"domain"`
	Consumers []consumerJSON `json:"consumers"`
	Unowned   uint32         `json:"unowned"`
	Moving    uint32         `json:"moving"`
	// Unconfirmed: active shards whose owner is unconfirmed.
	Unconfirmed uint32 `json:"unconfirmed"`
}

// NewDomainDescribeCommand returns `wds domain describe`.
func NewDomainDescribeCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a domain with its consumers and their shard counts",
		Long: `Show a domain's definition, the consumers serving it with the number of
shards each holds, the shards with no active owner (unowned), those being
handed over from one consumer to another (moving), and the active shards
whose owner the leader has not heard from for a while (unconfirmed: it
disconnected, or has not resumed after a leader change or a restart; the
grant stands until its lease deadline).`,
		Example: `  wds domain describe orders
  wds domain describe orders -o json`,
		Args: exactArgs(1, "the domain NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := topology.ValidateName("name", args[0]); err != nil {
				return err
			}
			a, err := g.admin()
			if err != nil {
				return err
			}
			defer a.close()
			var res *wdsv1.DescribeDomainResponse
			err = a.call(cmd.Context(), func(ctx context.Context, c wdsv1.AdminClient) (err error) {
				res, err = c.DescribeDomain(ctx, &wdsv1.DescribeDomainRequest{Name: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json() {
				v := describeJSON{Domain: domainToJSON(res.GetDomain()), Consumers: []consumerJSON{}, Unowned: res.GetUnowned(), Moving: res.GetMoving(), Unconfirmed: res.GetUnconfirmed()}
				for _, c := range res.GetConsumers() {
					v.Consumers = append(v.Consumers, consumerToJSON(c))
				}
				return writeJSON(out, v)
			}
			d := res.GetDomain()
			tw := newTable(out)
			fmt.Fprintf(tw, "Name:\t%s\n", d.GetName())
			fmt.Fprintf(tw, "Kind:\t%s\n", topology.KindFromProto(d.GetKind()))
			fmt.Fprintf(tw, "Shards:\t%d\n", d.GetShards())
			fmt.Fprintf(tw, "TTL:\t%s\n", ttlString(d.GetTtlMillis()))
			fmt.Fprintf(tw, "Unowned:\t%d\n", res.GetUnowned())
			fmt.Fprintf(tw, "Moving:\t%d\n", res.GetMoving())
			fmt.Fprintf(tw, "Unconfirmed:\t%d\n", res.GetUnconfirmed())
			fmt.Fprintf(tw, "Consumers:\t%d\n", len(res.GetConsumers()))
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(res.GetConsumers()) == 0 {
				return nil
			}
			fmt.Fprintln(out)
			tw = newTable(out)
			fmt.Fprintln(tw, "CONSUMER\tSHARDS\tREGION\tENDPOINT\tSTATE\tDOMAINS")
			for _, c := range res.GetConsumers() {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", c.GetId(), c.GetShards(), dash(c.GetRegion()), dash(c.GetEndpoint()),
					consumerState(c), strings.Join(c.GetDomains(), ","))
			}
			return tw.Flush()
		},
	}
}
