package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// NewDrainCommand returns `wds drain`.
func NewDrainCommand(g *globals) *cobra.Command {
	var wait bool
	var waitTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "drain CONSUMER [--wait]",
		Short: "Move every shard away from a consumer",
		Long: `Ask the cell to drain a consumer: its shards are revoked and handed to the
other consumers of their domains, a few at a time, without waiting for
leases to lapse, and it gets no new ones. The consumer is told once it holds
nothing (the client library's Close does the same on SIGTERM).

With --wait the command follows the drain to its end, printing how many
shards are left whenever that changes, and says so when a domain has no
other consumer to take the shards (they are revoked anyway and stay
unowned until one joins). It ends when the consumer holds nothing, or fails
after --wait-timeout.`,
		Example: `  wds drain worker-1
  wds drain worker-1 --wait`,
		Args: exactArgs(1, "the CONSUMER id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := topology.ValidateConsumerID("CONSUMER", args[0]); err != nil {
				return err
			}
			if waitTimeout <= 0 {
				return usageErrorf(cmd, "invalid value %s for --wait-timeout: must be positive", waitTimeout)
			}
			a, err := g.admin()
			if err != nil {
				return err
			}
			defer a.close()
			var before []*wdsv1.ConsumerInfo
			if wait {
				// What it holds before the drain starts: shards move fast.
				if before, err = listConsumers(cmd.Context(), a); err != nil {
					return err
				}
			}
			var res *wdsv1.DrainResponse
			err = a.call(cmd.Context(), func(ctx context.Context, c wdsv1.AdminClient) (err error) {
				res, err = c.Drain(ctx, &wdsv1.DrainRequest{ConsumerId: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !wait {
				if g.json() {
					return writeJSON(out, map[string]any{"consumer": args[0], "shards": res.GetShards()})
				}
				_, err = fmt.Fprintf(out, "draining consumer %s: %s to move\n", args[0], countOf(int(res.GetShards()), "shard"))
				return err
			}
			return waitDrained(cmd.Context(), a, args[0], int(res.GetShards()), before, waitTimeout, out, g.json())
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the drain until the consumer holds nothing, with progress")
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 5*time.Minute, "with --wait: give up after this long")
	return cmd
}

// waitDrained polls the consumer list until id holds no shard (or is gone:
// a drained `wds consume` leaves), printing the shards left as they change.
func waitDrained(ctx context.Context, a *adminClient, id string, started int, before []*wdsv1.ConsumerInfo, timeout time.Duration, out io.Writer, asJSON bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	progress := func(left int, note string) {
		if asJSON {
			v := map[string]any{"consumer": id, "shards_left": left}
			if note != "" {
				v["note"] = note
			}
			_ = writeJSONLine(out, v)
			return
		}
		line := fmt.Sprintf("draining consumer %s: %s left", id, countOf(left, "shard"))
		if note != "" {
			line += " (" + note + ")"
		}
		fmt.Fprintln(out, line)
	}
	last, warned := -1, map[string]bool{}
	if !asJSON {
		fmt.Fprintf(out, "draining consumer %s: %s to move\n", id, countOf(started, "shard"))
	}
	noTaker := func(cs []*wdsv1.ConsumerInfo, me *wdsv1.ConsumerInfo) (notes []string) {
		for d, n := range me.GetShardsByDomain() {
			if n == 0 || warned[d] || otherServes(cs, id, d) {
				continue
			}
			warned[d] = true
			notes = append(notes, fmt.Sprintf("no other consumer serves %s: its %s are revoked and stay unowned until one joins", d, countOf(int(n), "shard")))
		}
		slices.Sort(notes)
		return notes
	}
	for _, c := range before {
		if c.GetId() == id {
			if notes := noTaker(before, c); len(notes) > 0 {
				progress(started, strings.Join(notes, "; "))
				last = started
			}
		}
	}
	for {
		cs, err := listConsumers(ctx, a)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("drain of %s not finished within %s (--wait-timeout): %d shard(s) left", id, timeout, max(last, 0))
			}
			return err
		}
		var me *wdsv1.ConsumerInfo
		for _, c := range cs {
			if c.GetId() == id {
				me = c
			}
		}
		left := 0
		if me != nil {
			left = int(me.GetShards())
		}
		var notes []string
		if me != nil {
			notes = noTaker(cs, me)
		}
		if left != last || len(notes) > 0 {
			progress(left, strings.Join(notes, "; "))
			last = left
		}
		if left == 0 {
			if !asJSON {
				fmt.Fprintf(out, "consumer %s is drained\n", id)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain of %s not finished within %s (--wait-timeout): %s left", id, timeout, countOf(left, "shard"))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// otherServes reports whether a consumer other than id, connected and not
// draining, serves domain.
func otherServes(cs []*wdsv1.ConsumerInfo, id, domain string) bool {
	for _, c := range cs {
		if c.GetId() != id && c.GetConnected() && !c.GetDraining() && slices.Contains(c.GetDomains(), domain) {
			return true
		}
	}
	return false
}
