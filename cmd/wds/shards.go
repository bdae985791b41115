package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// shardJSON is one shard as `wds shards -o json` prints it. to is a UUID
// like from; the last shard's exclusive end, 2^128, is no UUID: it prints
// as ffffffff-ffff-ffff-ffff-ffffffffffff with to_end = true.
//
// A shard is (domain, region, from): region is the key space's region for
// a REGIONAL domain, "" for GLOBAL and UNIT. After a regional failover a
// cell serves two key spaces of a REGIONAL domain, whose ranges overlap
// numerically but hold different keys.
type shardJSON struct {
	Region    string `json:"region"`
	From      string `json:"from"`
	To        string `json:"to"`
	ToEnd     bool   `json:"to_end"`
	Owner     string `json:"owner"`
	State     string `json:"state"`
	Token     string `json:"token"`
	Endpoint  string `json:"endpoint"`
	NextOwner string `json:"next_owner"`
	// Unconfirmed: the owner has not heartbeated the leader for a while
	// (gone, or not yet resumed after a leader change or a restart).
	Unconfirmed bool `json:"unconfirmed"`
	// DelegatedTo is, in a federation (`wds shards -o json` whose endpoint
	// is a global voter), the region whose cell holds the delegation of
	// the shard's range, as the global leader says: "" when none does.
	// Absent for a lone cell.
	DelegatedTo *string `json:"delegated_to,omitempty"`
}

// fetchShardMap reads a domain's shard map from the leader, as shards in
// key order with their ranges: key space by key space (the cell sends them
// by region), each in key order. The ranges of two key spaces overlap; see
// keySpaceOf.
func fetchShardMap(ctx context.Context, a *adminClient, domain string) ([]shardJSON, []topology.Range, error) {
	var res *wdsv1.ShardMapResponse
	err := a.call(ctx, func(ctx context.Context, c wdsv1.AdminClient) (err error) {
		res, err = c.ShardMap(ctx, &wdsv1.ShardMapRequest{Domain: domain})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	shards := make([]shardJSON, 0, len(res.GetShards()))
	ranges := make([]topology.Range, 0, len(res.GetShards()))
	for i, s := range res.GetShards() {
		rng, err := topology.RangeFromProto(fmt.Sprintf("shards[%d].range", i), s.GetRange())
		if err != nil {
			return nil, nil, fmt.Errorf("the cell sent a malformed shard map: %w", err)
		}
		from, _ := boundJSON(rng.From)
		to, end := boundJSON(rng.To)
		shards = append(shards, shardJSON{
			Region: s.GetRegion(),
			From:   from, To: to, ToEnd: end,
			Owner: s.GetOwner(), State: grantState(s.GetState()),
			Token:    tokenString(topology.TokenFromProto(s.GetToken())),
			Endpoint: s.GetEndpoint(), NextOwner: s.GetNextOwner(),
			Unconfirmed: s.GetUnconfirmed(),
		})
		if to := s.GetDelegatedTo(); to != "" {
			shards[len(shards)-1].DelegatedTo = &to
		}
		ranges = append(ranges, rng)
	}
	return shards, ranges, nil
}

// regionsOf returns the distinct non-empty regions of shards, in order.
func regionsOf(shards []shardJSON) []string {
	var out []string
	for _, s := range shards {
		if s.Region != "" && !slices.Contains(out, s.Region) {
			out = append(out, s.Region)
		}
	}
	return out
}

// writeShardTable prints shards as `wds shards` does. The REGION column is
// there only when some shard has a region (a REGIONAL domain's key
// spaces); GLOBAL and UNIT domains have one key space and no column.
func writeShardTable(w io.Writer, shards []shardJSON) error {
	regional := len(regionsOf(shards)) > 0
	tw := newTable(w)
	if regional {
		fmt.Fprint(tw, "REGION\t")
	}
	fmt.Fprintln(tw, "FROM\tTO\tOWNER\tSTATE\tTOKEN\tENDPOINT\tNEXT")
	for _, s := range shards {
		to := s.To
		if s.ToEnd {
			to = "end"
		}
		st := s.State
		if s.Unconfirmed {
			st += ",unconfirmed"
		}
		if regional {
			fmt.Fprintf(tw, "%s\t", dash(s.Region))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.From, to, dash(s.Owner), dash(st), dash(s.Token), dash(s.Endpoint), dash(s.NextOwner))
	}
	return tw.Flush()
}

// shardStates are the values --state accepts.
var shardStates = []string{"active", "revoked", "allocated", "unowned", "unconfirmed"}

// matches reports whether a shard passes the --region, --owner and --state
// filters.
func (s shardJSON) matches(region, owner, state string) bool {
	if region != "" && s.Region != region {
		return false
	}
	if owner != "" && s.Owner != owner && s.NextOwner != owner {
		return false
	}
	switch state {
	case "":
		return true
	case "unowned":
		return s.Owner == "" || s.State != "active"
	case "unconfirmed":
		return s.Unconfirmed
	}
	return s.State == state
}

// NewShardsCommand returns `wds shards`.
func NewShardsCommand(g *globals) *cobra.Command {
	var region, owner, state string
	cmd := &cobra.Command{
		Use:   "shards DOMAIN [--region R] [--owner ID] [--state S]",
		Short: "Show a domain's shards with owner, state and fencing token",
		Long: `Show the shard map of a domain as the cell leader sees it: every shard's
key range [FROM, TO), its owner (consumer id), the grant's state and fencing
token, the owner's endpoint, and the consumer it is moving to (NEXT), if any.

States: active (the owner owns it), revoked (the owner was told to stop and
has not released it yet), allocated (the next owner was told to prepare).
An active shard is also "unconfirmed" when the leader has not heard from its
owner for a while (it disconnected, or has not resumed after a leader change
or a restart of the cell): the grant stands until the owner's lease
deadline, but the owner may be gone. The ranges tile the key space; the
last one ends at "end", 2^128.

A REGIONAL domain has a key space per region, and after a regional
failover a cell serves two of them (its own and the failed region's): their
ranges overlap but are different keys. The table then has a REGION column,
the key space's region, and lists key space by key space.

--region R keeps the shards of region R's key space; --owner ID keeps the
shards ID owns or is about to own; --state S keeps those in state S:
active, revoked, allocated, unowned (no active owner) or unconfirmed.

With -o json it prints an array of objects with region (the key space's
region for a REGIONAL domain, "" for GLOBAL and UNIT), from, to (UUIDs),
to_end (true for the last shard, whose to is the end of the key space),
owner ("" if none), state, token ("generation.index", "" if none),
endpoint, next_owner and unconfirmed; in a federation (when a node of
--endpoint is a global voter) also delegated_to, the region whose cell
holds the delegation of the shard's range as the global leader says ("" if
none).`,
		Example: `  wds shards orders
  wds shards carts --region eu-west
  wds shards orders --owner worker-1
  wds shards orders --state unowned
  wds shards orders -o json | jq -r '.[] | [.from, .owner, .token] | @tsv'`,
		Args: exactArgs(1, "the DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := topology.ValidateName("domain", args[0]); err != nil {
				return err
			}
			if state != "" && !slices.Contains(shardStates, state) {
				return usageErrorf(cmd, "invalid value %q for --state: want one of %s", state, strings.Join(shardStates, ", "))
			}
			if region != "" {
				if err := topology.ValidateName("--region", region); err != nil {
					return err
				}
			}
			if owner != "" {
				if err := topology.ValidateConsumerID("--owner", owner); err != nil {
					return err
				}
			}
			a, err := g.admin()
			if err != nil {
				return err
			}
			defer a.close()
			all, ranges, err := fetchShardMap(cmd.Context(), a, args[0])
			if err != nil {
				return err
			}
			var gv *globalView
			if g.json() {
				// In a federation, who holds each range's delegation.
				if gv = fetchGlobalStatus(cmd.Context(), a.endpoints, g.timeout); gv != nil && gv.leader == nil {
					gv = nil
				}
			}
			shards := make([]shardJSON, 0, len(all))
			for i, sj := range all {
				if sj.matches(region, owner, state) {
					if gv != nil && sj.DelegatedTo == nil {
						to := gv.delegatedTo(args[0], sj.Region, ranges[i])
						sj.DelegatedTo = &to
					}
					shards = append(shards, sj)
				}
			}
			out := cmd.OutOrStdout()
			if g.json() {
				return writeJSON(out, shards)
			}
			return writeShardTable(out, shards)
		},
	}
	cmd.Flags().StringVar(&region, "region", "", "only the shards of this region's key space (REGIONAL domains)")
	cmd.Flags().StringVar(&owner, "owner", "", "only the shards this consumer owns or is about to own")
	cmd.Flags().StringVar(&state, "state", "", "only the shards in this state: "+strings.Join(shardStates, ", "))
	return cmd
}
