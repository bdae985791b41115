package main

import (
	"github.com/spf13/cobra"
)

// NewDomainCommand returns `wds domain` and its subcommands.
func NewDomainCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "domain",
		Short: "Create, list, describe and delete work domains",
		Long: `A work domain is a named key space whose shards WDS leases to consumers.

Kinds:
  global    UUID keys, served from any region; the key space is cut into
            --shards equal ranges.
  regional  UUID keys, served within each region.
  unit      a singleton: one shard for the whole key space, owned by one
            consumer at a time (leader election).

Every grant of a domain is a lease of --ttl: a consumer that stops
heartbeating loses its shards about one TTL later.`,
		Example: `  wds domain create orders --kind global --shards 64 --ttl 5s
  wds domain create scheduler --kind unit
  wds domain list
  wds domain describe orders
  wds domain delete orders`,
		RunE: groupRunE,
	}
	cmd.AddCommand(
		NewDomainCreateCommand(g),
		NewDomainListCommand(g),
		NewDomainDescribeCommand(g),
		NewDomainDeleteCommand(g),
	)
	return cmd
}
