package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// shardJSON is one shard as `wds shards -o json` prints it. to is a UUID
// like from; the last shard's exclusive end, 2^128, is no UUID: it prints
// as ffffffff-ffff-ffff-ffff-ffffffffffff with to_end = true.
type shardJSON struct {
	From      string `json:"from"`
	To        string `json:"to"`
	ToEnd     bool   `json:"to_end"`
	Owner     string `json:"owner"`
	State     string `json:"state"`
	Token     string `json:"token"`
	Endpoint  string `json:"endpoint"`
	NextOwner string `json:"next_owner"`
}

// NewShardsCommand returns `wds shards`.
func NewShardsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "shards DOMAIN",
		Short: "Show a domain's shards with owner, state and fencing token",
		Long: `Show the shard map of a domain as the cell leader sees it: every shard's
key range [FROM, TO), its owner (consumer id), the grant's state and fencing
token, the owner's endpoint, and the consumer it is moving to (NEXT), if any.

States: active (the owner owns it), revoked (the owner was told to stop and
has not released it yet), allocated (the next owner was told to prepare).
The ranges tile the key space; the last one ends at "end", 2^128.

With -o json it prints an array of objects with from, to (UUIDs), to_end
(true for the last shard, whose to is the end of the key space), owner ("" if
none), state, token ("generation.index", "" if none), endpoint and
next_owner.`,
		Example: `  wds shards orders
  wds shards orders -o json | jq -r '.[] | [.from, .owner, .token] | @tsv'`,
		Args: exactArgs(1, "the DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := topology.ValidateName("domain", args[0]); err != nil {
				return err
			}
			a, err := g.admin()
			if err != nil {
				return err
			}
			defer a.close()
			var res *wdsv1.ShardMapResponse
			err = a.call(cmd.Context(), func(ctx context.Context, c wdsv1.AdminClient) (err error) {
				res, err = c.ShardMap(ctx, &wdsv1.ShardMapRequest{Domain: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			shards := make([]shardJSON, 0, len(res.GetShards()))
			for i, s := range res.GetShards() {
				rng, err := topology.RangeFromProto(fmt.Sprintf("shards[%d].range", i), s.GetRange())
				if err != nil {
					return fmt.Errorf("the cell sent a malformed shard map: %w", err)
				}
				from, _ := boundJSON(rng.From)
				to, end := boundJSON(rng.To)
				shards = append(shards, shardJSON{
					From: from, To: to, ToEnd: end,
					Owner: s.GetOwner(), State: grantState(s.GetState()),
					Token:    tokenString(topology.TokenFromProto(s.GetToken())),
					Endpoint: s.GetEndpoint(), NextOwner: s.GetNextOwner(),
				})
			}
			out := cmd.OutOrStdout()
			if g.json() {
				return writeJSON(out, shards)
			}
			tw := newTable(out)
			fmt.Fprintln(tw, "FROM\tTO\tOWNER\tSTATE\tTOKEN\tENDPOINT\tNEXT")
			for _, s := range shards {
				to := s.To
				if s.ToEnd {
					to = "end"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.From, to, dash(s.Owner), dash(s.State), dash(s.Token), dash(s.Endpoint), dash(s.NextOwner))
			}
			return tw.Flush()
		},
	}
}
