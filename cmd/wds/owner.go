package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

type ownerJSON struct {
	Domain string `json:"domain"`
	Key    string `json:"key"`
	shardJSON
}

// keySpaceOf returns the shards of the key space `wds owner` looks a key up
// in, with their ranges. A GLOBAL or UNIT domain has one key space (every
// shard's region is ""), and region must be "". A REGIONAL domain's shard
// map may hold two key spaces whose ranges overlap: region names one, and
// "" means the cell's own region, which cellRegion tells (asked only then).
func keySpaceOf(domain, region string, shards []shardJSON, ranges []topology.Range, cellRegion func() (string, error)) ([]shardJSON, []topology.Range, error) {
	regions := regionsOf(shards)
	if len(regions) == 0 {
		if region != "" {
			return nil, nil, topology.Invalid("--region", region, "the cell serves %s as one key space, not by region (it is not a REGIONAL domain)", domain)
		}
		return shards, ranges, nil
	}
	if region == "" {
		r, err := cellRegion()
		if err != nil {
			return nil, nil, err
		}
		region = r
	}
	var ss []shardJSON
	var rs []topology.Range
	for i := range shards {
		if shards[i].Region == region {
			ss, rs = append(ss, shards[i]), append(rs, ranges[i])
		}
	}
	if len(ss) == 0 {
		return nil, nil, fmt.Errorf("the cell serves no key space of %s in region %q; it serves %s (name one with --region)", domain, region, strings.Join(regions, ", "))
	}
	return ss, rs, nil
}

// NewOwnerCommand returns `wds owner`.
func NewOwnerCommand(g *globals) *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:   "owner DOMAIN KEY [--region R]",
		Short: "Show which consumer owns a key",
		Long: `Show the shard of DOMAIN that KEY (a UUID) falls in, and its owner: the
consumer id, the endpoint it publishes, the grant's state and fencing token,
and the consumer it is moving to, if any. This is the lookup your service's
instances do locally on their routing table (client Routing().Lookup).

A REGIONAL domain has a key space per region, and after a regional
failover the cell serves two (its own and the failed region's): the same
KEY is a different key in each. --region R looks KEY up in region R's key
space (client Routing().LookupIn); without it, in the cell's own region's.

With -o json it prints one object: domain, key, and the shard's fields as
in "wds shards -o json" (region among them).`,
		Example: `  wds owner orders 6ba7b810-9dad-11d1-80b4-00c04fd430c8
  wds owner carts 6ba7b810-9dad-11d1-80b4-00c04fd430c8 --region eu-west
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
			if region != "" {
				if err := topology.ValidateName("--region", region); err != nil {
					return err
				}
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
			shards, ranges, err = keySpaceOf(args[0], region, shards, ranges, func() (string, error) {
				var res *wdsv1.StatusResponse
				err := a.callAny(cmd.Context(), func(ctx context.Context, c wdsv1.AdminClient) (err error) {
					res, err = c.Status(ctx, &wdsv1.StatusRequest{})
					return err
				})
				return res.GetRegion(), err
			})
			if err != nil {
				return err
			}
			i := topology.Find(ranges, key)
			if i < 0 {
				space := args[0]
				if len(shards) > 0 && shards[0].Region != "" {
					space += " in region " + shards[0].Region
				}
				return fmt.Errorf("the cell's shard map of %s does not cover %s", space, key)
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
			if v.Region != "" {
				fmt.Fprintf(tw, "Shard:\t[%s, %s) of %s, region %s\n", v.From, to, v.Domain, v.Region)
			} else {
				fmt.Fprintf(tw, "Shard:\t[%s, %s) of %s\n", v.From, to, v.Domain)
			}
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
	cmd.Flags().StringVar(&region, "region", "", "look KEY up in this region's key space of a REGIONAL domain (default: the cell's region)")
	return cmd
}
