package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/topology"
)

// routeJSON is one line of `wds watch -o json`: a routing entry as it now
// is, or (deleted = true) the end of the domain.
type routeJSON struct {
	Version  uint64 `json:"version"`
	Domain   string `json:"domain"`
	From     string `json:"from,omitempty"`
	To       string `json:"to,omitempty"`
	ToEnd    *bool  `json:"to_end,omitempty"`
	Owner    string `json:"owner"`
	Endpoint string `json:"endpoint"`
	Token    string `json:"token"`
	Time     string `json:"time"`
	Snapshot bool   `json:"snapshot,omitempty"`
	Deleted  bool   `json:"deleted,omitempty"`
}

// NewWatchCommand returns `wds watch`.
func NewWatchCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "watch DOMAIN",
		Short: "Follow a domain's routing table live",
		Long: `Connect as an observer (a session that owns nothing) and follow the routing
of a domain: first every entry of the current table, then one line for every
entry that changes: its range, owner, owner's endpoint and fencing token,
with the routing version (the cell log index) and the local time the change
arrived. An owner of "-" means the shard has no active owner (unassigned, or
being handed over). Runs until interrupted; it reconnects by itself.

With -o json each line is an object: version, domain, from, to, to_end,
owner, endpoint, token, time (RFC 3339, UTC, nanoseconds), and snapshot =
true for the lines of the initial table; a deleted domain gives one line
with deleted = true.`,
		Example: `  wds watch orders
  wds watch orders -o json | jq -c 'select(.owner=="worker-1")'`,
		Args: exactArgs(1, "the DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			domain := args[0]
			if err := topology.ValidateName("domain", domain); err != nil {
				return err
			}
			eps, err := g.endpoints()
			if err != nil {
				return err
			}
			log, err := g.logger(cmd, "off")
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			obs, err := client.NewObserver(client.ObserverConfig{Endpoints: eps, Watch: []string{domain}, Logger: log})
			if err != nil {
				return err
			}
			defer obs.Close()
			changes, cancel := obs.Routing().Watch(1024)
			defer cancel()

			wctx, wcancel := context.WithTimeout(ctx, g.timeout)
			err = obs.WaitConnected(wctx)
			wcancel()
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, context.DeadlineExceeded):
				return fmt.Errorf("no routing from %v within %s (--timeout): is the cell running?", eps, g.timeout)
			case err != nil:
				return err
			}
			w := &routeWriter{out: cmd.OutOrStdout(), json: g.json(), domain: domain, table: map[topology.Bound]client.Route{}}
			w.header()
			r := obs.Routing()
			base := r.Version()
			w.sync(base, r.Table(domain), true)
			for {
				select {
				case <-ctx.Done():
					return w.err
				case <-obs.Done():
					if err := obs.Err(); err != nil {
						return err
					}
					return w.err
				case ch, ok := <-changes:
					if !ok {
						return w.err
					}
					switch {
					case ch.Domain != domain:
					case ch.Deleted:
						w.deleted(ch.Version)
					case ch.Missed > 0:
						// Changes were dropped: the table itself is the truth.
						w.sync(r.Version(), r.Table(domain), false)
					case ch.Replaced:
						w.sync(ch.Version, ch.Routes, false)
					case ch.Version <= base:
						// Already part of the first table printed.
					default:
						w.update(ch.Version, ch.Routes)
					}
				}
				if w.err != nil {
					return w.err
				}
			}
		},
	}
}

// routeWriter prints routing entries that differ from the last printed
// state of each range.
type routeWriter struct {
	out    io.Writer
	json   bool
	domain string
	table  map[topology.Bound]client.Route // by range start
	err    error
}

const watchFormat = "%-12s  %-8s  %-36s  %-36s  %-20s  %-10s  %s\n"

func (w *routeWriter) header() {
	if !w.json {
		w.write(fmt.Sprintf(watchFormat, "TIME", "VERSION", "FROM", "TO", "OWNER", "TOKEN", "ENDPOINT"))
	}
}

// sync replaces the whole table, printing entries that are new or changed
// (all of them on the first call).
func (w *routeWriter) sync(version uint64, routes []client.Route, first bool) {
	next := make(map[topology.Bound]client.Route, len(routes))
	for _, rt := range routes {
		next[rt.Range.From] = rt
	}
	for _, rt := range routes {
		if old, ok := w.table[rt.Range.From]; !ok || old != rt {
			w.print(version, rt, first)
		}
	}
	w.table = next
}

// update applies a delta.
func (w *routeWriter) update(version uint64, routes []client.Route) {
	for _, rt := range routes {
		if old, ok := w.table[rt.Range.From]; ok && old == rt {
			continue
		}
		w.table[rt.Range.From] = rt
		w.print(version, rt, false)
	}
}

func (w *routeWriter) deleted(version uint64) {
	w.table = map[topology.Bound]client.Route{}
	now := time.Now()
	if w.json {
		w.writeJSON(routeJSON{Version: version, Domain: w.domain, Time: now.UTC().Format(time.RFC3339Nano), Deleted: true})
		return
	}
	w.write(fmt.Sprintf("%-12s  %-8d  domain %s deleted\n", now.Format("15:04:05.000"), version, w.domain))
}

func (w *routeWriter) print(version uint64, rt client.Route, snapshot bool) {
	now := time.Now()
	from, _ := boundJSON(rt.Range.From)
	to, end := boundJSON(rt.Range.To)
	if w.json {
		w.writeJSON(routeJSON{
			Version: version, Domain: w.domain, From: from, To: to, ToEnd: &end,
			Owner: rt.Owner, Endpoint: rt.Endpoint, Token: tokenString(rt.Token),
			Time: now.UTC().Format(time.RFC3339Nano), Snapshot: snapshot,
		})
		return
	}
	if end {
		to = "end"
	}
	w.write(fmt.Sprintf(watchFormat, now.Format("15:04:05.000"), fmt.Sprint(version), from, to,
		dash(rt.Owner), dash(tokenString(rt.Token)), dash(rt.Endpoint)))
}

func (w *routeWriter) writeJSON(v routeJSON) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	w.write(string(b) + "\n")
}

func (w *routeWriter) write(s string) {
	if w.err != nil {
		return
	}
	_, w.err = io.WriteString(w.out, s)
}
