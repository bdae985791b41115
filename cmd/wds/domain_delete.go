package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// NewDomainDeleteCommand returns `wds domain delete`.
func NewDomainDeleteCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm"},
		Short:   "Delete a work domain",
		Long: `Delete a work domain: its consumers are told to stop (their shards are
revoked) and its routing table is dropped. Consumers that serve only this
domain stay connected and hold nothing.`,
		Example: `  wds domain delete orders`,
		Args:    exactArgs(1, "the domain NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := topology.ValidateName("name", args[0]); err != nil {
				return err
			}
			a, err := g.admin()
			if err != nil {
				return err
			}
			defer a.close()
			err = a.call(cmd.Context(), func(ctx context.Context, c wdsv1.AdminClient) error {
				_, err := c.DeleteDomain(ctx, &wdsv1.DeleteDomainRequest{Name: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"deleted": args[0]})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "domain %s deleted\n", args[0])
			return err
		},
	}
}
