package cell

import (
	"context"
	"slices"
	"sort"
	"time"

	"google.golang.org/grpc"

	"github.com/wdsio/wds/client"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// Federation-wide routing: every node of a federated cell follows each
// other region's cell as an observer of its own grants (OwnRoutingOnly,
// so that tables travel one hop), for every domain of the catalog, and
// hands the tables to its routing hub, which serves them to its own
// subscribers tagged with their source region beside the cell's own. A
// client merges them per shard (client.Routing).

// federationWatcher feeds the hub with the other regions' tables.
type federationWatcher struct {
	n      *Node
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// recheckCatalog is how often a watcher compares the domains it follows
// with the catalog.
const recheckCatalog = time.Second

func (n *Node) startFederationWatcher() *federationWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &federationWatcher{n: n, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	regions := make([]string, 0, len(n.cfg.PeerRegions))
	for r := range n.cfg.PeerRegions {
		if r != n.cfg.Region {
			regions = append(regions, r)
		}
	}
	sort.Strings(regions)
	go func() {
		defer close(w.done)
		finished := make(chan struct{}, len(regions))
		for _, r := range regions {
			go func() {
				w.follow(r, n.cfg.PeerRegions[r])
				finished <- struct{}{}
			}()
		}
		for range regions {
			<-finished
		}
	}()
	return w
}

func (w *federationWatcher) stop() {
	w.cancel()
	<-w.done
}

// liveDomains is the catalog this node knows, sorted.
func (w *federationWatcher) liveDomains() []string {
	var out []string
	for name, deleting := range w.n.state.DomainNames() {
		if !deleting {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// follow observes region's cell until the node stops, renewing the
// observer whenever the catalog changes.
func (w *federationWatcher) follow(region string, endpoints []string) {
	for w.ctx.Err() == nil {
		domains := w.liveDomains()
		if len(domains) == 0 {
			if !w.sleep(recheckCatalog) {
				return
			}
			continue
		}
		w.observe(region, endpoints, domains)
	}
}

func (w *federationWatcher) sleep(d time.Duration) bool {
	select {
	case <-w.ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// observe follows domains at region's cell until the catalog changes, the
// observer ends (it is restarted after a pause) or the node stops.
func (w *federationWatcher) observe(region string, endpoints []string, domains []string) {
	obs, err := client.NewObserver(client.ObserverConfig{
		Endpoints: endpoints, Watch: domains, OwnRoutingOnly: true,
		DialOptions: append([]grpc.DialOption(nil), w.n.cfg.FederationDialOptions...),
	})
	if err != nil {
		w.n.log.Warn("federation watcher not started", "region", region, "err", err)
		w.sleep(recheckCatalog)
		return
	}
	defer obs.Close()
	changes, cancel := obs.Routing().Watch(1024)
	defer cancel()
	tick := time.NewTicker(recheckCatalog)
	defer tick.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-obs.Done():
			w.n.log.Debug("federation watcher ended", "region", region, "err", obs.Err())
			w.sleep(recheckCatalog)
			return
		case <-tick.C:
			if !slices.Equal(domains, w.liveDomains()) {
				return // the catalog changed: follow the new one
			}
		case c, ok := <-changes:
			if !ok {
				return
			}
			if c.Missed > 0 {
				for _, d := range domains {
					w.push(region, obs.Routing(), d)
				}
				continue
			}
			w.pushSpace(region, obs.Routing(), c.Domain, c.Region, c.Deleted)
		}
	}
}

// push hands every key space of domain, as region's cell serves it, to
// the hub.
func (w *federationWatcher) push(region string, r *client.Routing, domain string) {
	for _, ks := range r.KeySpaces(domain) {
		w.pushSpace(region, r, domain, ks, false)
	}
}

// pushSpace hands one key space's table (as region's cell serves it now)
// to the hub.
func (w *federationWatcher) pushSpace(region string, r *client.Routing, domain, ks string, deleted bool) {
	var entries []*wdsv1.RouteEntry
	kind := wdsv1.DomainKind_DOMAIN_KIND_UNSPECIFIED
	if !deleted {
		routes := r.TableIn(domain, ks)
		entries = make([]*wdsv1.RouteEntry, 0, len(routes))
		for _, rt := range routes {
			e := &wdsv1.RouteEntry{Range: topology.RangeToProto(rt.Range), Owner: rt.Owner, Endpoint: rt.Endpoint, Unconfirmed: rt.Unconfirmed}
			if !rt.Token.IsZero() {
				e.Token = topology.TokenToProto(rt.Token)
			}
			entries = append(entries, e)
		}
		kind = w.kindOf(domain)
	}
	w.n.hub.setForeign(region, domain, ks, kind, r.Versions()[region], entries)
}

// kindOf is domain's kind as the catalog says.
func (w *federationWatcher) kindOf(domain string) wdsv1.DomainKind {
	for _, d := range w.n.state.ListDomains() {
		if d.GetName() == domain {
			return d.GetKind()
		}
	}
	return wdsv1.DomainKind_DOMAIN_KIND_UNSPECIFIED
}
