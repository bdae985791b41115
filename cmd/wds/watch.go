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
// is, or (deleted = true) the end of the domain or of one of its key
// spaces. region names the key space: its region for a REGIONAL domain, ""
// for GLOBAL and UNIT (always present, as in `wds shards -o json`).
type routeJSON struct {
	Version  uint64 `json:"version"`
	Domain   string `json:"domain"`
	Region   string `json:"region"`
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

A REGIONAL domain has a key space per region, and after a regional
failover the cell serves two (its own and the failed region's): their
ranges overlap but are different keys. The table then has a REGION column,
the key space's region, and follows each key space on its own.

With -o json each line is an object: version, domain, region (the key
space's region for a REGIONAL domain, "" for GLOBAL and UNIT), from, to,
to_end, owner, endpoint, token, time (RFC 3339, UTC, nanoseconds), and
snapshot = true for the lines of the initial table; a deleted domain gives
one line with deleted = true (and region ""), a key space the cell no
longer serves one with deleted = true and its region.`,
		Example: `  wds watch orders
  wds watch orders -o json | jq -c 'select(.owner=="worker-1")'
  wds watch carts -o json | jq -c 'select(.region=="eu-west")'`,
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
			w := newRouteWriter(cmd.OutOrStdout(), g.json(), domain)
			r := obs.Routing()
			base := r.Version()
			w.snapshot(base, keySpacesOf(r, domain))
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
						w.deleted(ch.Version, ch.Region)
					case ch.Missed > 0:
						// Changes were dropped: the tables themselves are
						// the truth.
						w.resync(r.Version(), keySpacesOf(r, domain))
					case ch.Replaced:
						w.sync(ch.Version, ch.Region, ch.Routes, false)
					case ch.Version <= base:
						// Already part of the first table printed.
					default:
						w.update(ch.Version, ch.Region, ch.Routes)
					}
				}
				if w.err != nil {
					return w.err
				}
			}
		},
	}
}

// keySpace is the table of one key space of a domain: region is "" for a
// GLOBAL or UNIT domain, the key space's region for a REGIONAL one.
type keySpace struct {
	region string
	routes []client.Route
}

// keySpacesOf returns the current tables of domain's key spaces, by region.
func keySpacesOf(r *client.Routing, domain string) []keySpace {
	var out []keySpace
	for _, region := range r.KeySpaces(domain) {
		out = append(out, keySpace{region: region, routes: r.TableIn(domain, region)})
	}
	return out
}

// routeWriter prints routing entries that differ from the last printed
// state of each range. A range is identified by its key space and its
// start: the key spaces of a REGIONAL domain have ranges that overlap but
// are different keys, and each has its own table.
type routeWriter struct {
	out    io.Writer
	json   bool
	domain string
	now    func() time.Time
	// tables holds the last printed state: key-space region -> range
	// start -> route.
	tables map[string]map[topology.Bound]client.Route
	// regional: the text table has a REGION column (some key space has a
	// region). headed: its header is printed.
	regional, headed bool
	err              error
}

func newRouteWriter(out io.Writer, json bool, domain string) *routeWriter {
	return &routeWriter{out: out, json: json, domain: domain, now: time.Now, tables: map[string]map[topology.Bound]client.Route{}}
}

const (
	watchPrefix = "%-12s  %-8s  "
	watchRegion = "%-10s  "
	watchFormat = "%-36s  %-36s  %-20s  %-10s  %s\n"
)

// header prints the table's header, with a REGION column once some key
// space has a region. A region showing up after the header was printed
// without the column (a server that began naming key spaces) prints the
// header again, with it.
func (w *routeWriter) header(region string) {
	if w.json {
		return
	}
	if region != "" && !w.regional {
		w.regional, w.headed = true, false
	}
	if w.headed {
		return
	}
	w.headed = true
	s := fmt.Sprintf(watchPrefix, "TIME", "VERSION")
	if w.regional {
		s += fmt.Sprintf(watchRegion, "REGION")
	}
	w.write(s + fmt.Sprintf(watchFormat, "FROM", "TO", "OWNER", "TOKEN", "ENDPOINT"))
}

// snapshot prints the first tables: every entry.
func (w *routeWriter) snapshot(version uint64, spaces []keySpace) {
	for _, ks := range spaces {
		if ks.region != "" {
			w.regional = true
		}
	}
	w.header("")
	for _, ks := range spaces {
		w.sync(version, ks.region, ks.routes, true)
	}
}

// resync replaces all tables, printing entries that are new or changed.
// Key spaces no longer there are dropped.
func (w *routeWriter) resync(version uint64, spaces []keySpace) {
	seen := make(map[string]bool, len(spaces))
	for _, ks := range spaces {
		seen[ks.region] = true
		w.sync(version, ks.region, ks.routes, false)
	}
	for region := range w.tables {
		if !seen[region] {
			delete(w.tables, region)
		}
	}
}

// sync replaces the table of one key space, printing entries that are new
// or changed (all of them on the first call).
func (w *routeWriter) sync(version uint64, region string, routes []client.Route, first bool) {
	old := w.tables[region]
	next := make(map[topology.Bound]client.Route, len(routes))
	for _, rt := range routes {
		next[rt.Range.From] = rt
	}
	for _, rt := range routes {
		if o, ok := old[rt.Range.From]; !ok || o != rt {
			w.print(version, region, rt, first)
		}
	}
	w.tables[region] = next
}

// update applies a delta to the table of one key space.
func (w *routeWriter) update(version uint64, region string, routes []client.Route) {
	t := w.tables[region]
	if t == nil {
		t = map[topology.Bound]client.Route{}
		w.tables[region] = t
	}
	for _, rt := range routes {
		if old, ok := t[rt.Range.From]; ok && old == rt {
			continue
		}
		t[rt.Range.From] = rt
		w.print(version, region, rt, false)
	}
}

// deleted ends a key space: region's, or with region "" the domain (all
// its key spaces).
func (w *routeWriter) deleted(version uint64, region string) {
	if region == "" {
		clear(w.tables)
	} else {
		delete(w.tables, region)
	}
	now := w.now()
	if w.json {
		w.writeJSON(routeJSON{Version: version, Domain: w.domain, Region: region, Time: now.UTC().Format(time.RFC3339Nano), Deleted: true})
		return
	}
	if region == "" {
		w.write(fmt.Sprintf("%-12s  %-8d  domain %s deleted\n", now.Format("15:04:05.000"), version, w.domain))
		return
	}
	w.write(fmt.Sprintf("%-12s  %-8d  key space %s of domain %s deleted\n", now.Format("15:04:05.000"), version, region, w.domain))
}

func (w *routeWriter) print(version uint64, region string, rt client.Route, snapshot bool) {
	now := w.now()
	from, _ := boundJSON(rt.Range.From)
	to, end := boundJSON(rt.Range.To)
	if w.json {
		w.writeJSON(routeJSON{
			Version: version, Domain: w.domain, Region: region, From: from, To: to, ToEnd: &end,
			Owner: rt.Owner, Endpoint: rt.Endpoint, Token: tokenString(rt.Token),
			Time: now.UTC().Format(time.RFC3339Nano), Snapshot: snapshot,
		})
		return
	}
	if end {
		to = "end"
	}
	w.header(region)
	s := fmt.Sprintf(watchPrefix, now.Format("15:04:05.000"), fmt.Sprint(version))
	if w.regional {
		s += fmt.Sprintf(watchRegion, dash(region))
	}
	w.write(s + fmt.Sprintf(watchFormat, from, to, dash(rt.Owner), dash(tokenString(rt.Token)), dash(rt.Endpoint)))
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
