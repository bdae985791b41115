package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// NewDrainCommand returns `wds drain`.
func NewDrainCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "drain CONSUMER",
		Short: "Move every shard away from a consumer",
		Long: `Ask the cell to drain a consumer: its shards are revoked and handed to the
other consumers of their domains, a few at a time, without waiting for
leases to lapse, and it gets no new ones. The consumer is told once it holds
nothing (the client library's Close does the same on SIGTERM).`,
		Example: `  wds drain worker-1
  wds domain describe orders   # watch its shard count go to 0`,
		Args: exactArgs(1, "the CONSUMER id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := topology.ValidateConsumerID("consumer_id", args[0]); err != nil {
				return err
			}
			a, err := g.admin()
			if err != nil {
				return err
			}
			defer a.close()
			var res *wdsv1.DrainResponse
			err = a.call(cmd.Context(), func(ctx context.Context, c wdsv1.AdminClient) (err error) {
				res, err = c.Drain(ctx, &wdsv1.DrainRequest{ConsumerId: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"consumer": args[0], "shards": res.GetShards()})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "draining consumer %s: %s to move\n", args[0], countOf(int(res.GetShards()), "shard"))
			return err
		},
	}
}
