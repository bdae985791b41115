package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wdsio/wds/topology"
)

type ownerJSON struct {
	Domain string `json:"domain"`
	Key    string `json:"key"`
	shardJSON
}

// NewOwnerCommand returns `wds owner`.
func NewOwnerCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "owner DOMAIN KEY",
		Short: "Show which consumer owns a key",
		Long: `Show the shard of DOMAIN that KEY (a UUID) falls in, and its owner: the
consumer id, the endpoint it publishes, the grant's state and fencing token,
and the consumer it is moving to, if any. This is the lookup your service's
instances do locally on their routing table (client Routing().Lookup).

With -o json it prints one object: domain, key, and the shard's fields as
in "wds shards -o json".`,
		Example: `  wds owner orders 6ba7b810-9dad-11d1-80b4-00c04fd430c8
  wds owner orders 6ba7b810-9dad-11d1-80b4-00c04fd430c8 -o json | jq -r .endpoint`,
		Args: exactArgs(2, "the DOMAIN and the KEY (a UUID)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := topology.ValidateName("domain", args[0]); err != nil {
				return err
			}
			key, err := topology.ParseKey("KEY", args[1])
			if err != nil {
				return err
			}
			a, err := g.admin()
			if err != nil {
				return err
			}
			defer a.close()
			shards, ranges, err := fetchShardMap(cmd.Context(), a, args[0])
			if err != nil {
				return err
			}
			i := topology.Find(ranges, key)
			if i < 0 {
				return fmt.Errorf("the cell's shard map of %s does not cover %s", args[0], key)
			}
			v := ownerJSON{Domain: args[0], Key: key.String(), shardJSON: shards[i]}
			to, end := v.To, v.ToEnd
			out := cmd.OutOrStdout()
			if g.json() {
				return writeJSON(out, v)
			}
			if end {
				to = "end"
			}
			tw := newTable(out)
			fmt.Fprintf(tw, "Key:\t%s\n", v.Key)
			fmt.Fprintf(tw, "Shard:\t[%s, %s) of %s\n", v.From, to, v.Domain)
			if v.Owner == "" || v.State != "active" {
				fmt.Fprintf(tw, "Owner:\tnone right now")
				if v.Owner != "" {
					fmt.Fprintf(tw, " (%s is %s)", v.Owner, v.State)
				}
				fmt.Fprintln(tw)
			} else {
				fmt.Fprintf(tw, "Owner:\t%s\n", v.Owner)
				fmt.Fprintf(tw, "Endpoint:\t%s\n", dash(v.Endpoint))
				fmt.Fprintf(tw, "Token:\t%s\n", v.Token)
				if v.Unconfirmed {
					fmt.Fprintf(tw, "Confirmed:\tno: the leader has not heard from %s for a while; it may be gone\n", v.Owner)
				}
			}
			if v.NextOwner != "" {
				fmt.Fprintf(tw, "Moving to:\t%s\n", v.NextOwner)
			}
			return tw.Flush()
		},
	}
}
