package federation_test

import (
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/celltest"
)

// BenchmarkCrossRegionMove measures graceful moves between regions: a
// GLOBAL domain held by one consumer in us-east; a consumer joins in
// eu-west and half the shards move there (withdraw → us-east's cell
// relinquishes, the consumer releases → released report → delegate to
// eu-west → grant). Per moved shard it reports the gap between the revoke
// at us-east and the grant at eu-west (p50, p99, max) and the time from
// the join until the last moved shard was granted, and how long after the
// grant an observer at a third region's endpoint saw each new owner
// (route-p50/p99: federation-wide routing delivery, with the harness's
// 20–50 ms between regions). Run with
// -benchtime 1x; the figure is per run, not per b.N.
func BenchmarkCrossRegionMove(b *testing.B) {
	for range b.N {
		f := newFed(b, threeRegions)
		f.applyTopology(dom("prices", kGlobal, 64))
		a := f.consumer("us-east", "a", "prices")
		waitHeld(b, "a alone", balanced("prices/", map[string]int{"a": 64}), a)
		// An observer at ap-south's endpoint (a third region): when does it
		// see each moved shard's new owner?
		var eps []string
		for _, p := range f.cfgs[f.index("ap-south")].Cell.Peers {
			eps = append(eps, p.GRPC)
		}
		obs, err := client.NewObserver(client.ObserverConfig{Endpoints: eps, Watch: []string{"prices"}})
		if err != nil {
			b.Fatal(err)
		}
		seenE := map[string]time.Time{}
		var seenMu sync.Mutex
		changes, stopWatch := obs.Routing().Watch(4096)
		go func() {
			for c := range changes {
				now := time.Now()
				seenMu.Lock()
				for _, rt := range c.Routes {
					if rt.Owner == "e" {
						if _, ok := seenE[rt.Range.String()]; !ok {
							seenE[rt.Range.String()] = now
						}
					}
				}
				seenMu.Unlock()
			}
		}()
		joined := time.Now()
		e := f.consumer("eu-west", "e", "prices")
		waitHeld(b, "a and e", balanced("prices/", map[string]int{"a": 32, "e": 32}), a, e)
		settled := time.Since(joined)

		revoked := map[string]time.Time{}
		for _, ev := range a.Events() {
			if ev.Kind == client.EventRevoke {
				revoked[ev.Shard.Range.String()] = ev.Time
			}
		}
		var gaps, deliveries []time.Duration
		time.Sleep(time.Second) // let the routing reach ap-south
		stopWatch()
		obs.Close()
		seenMu.Lock()
		for _, ev := range e.Events() {
			if ev.Kind != client.EventGrant {
				continue
			}
			if r, ok := revoked[ev.Shard.Range.String()]; ok {
				gaps = append(gaps, ev.Time.Sub(r))
			}
			if seen, ok := seenE[ev.Shard.Range.String()]; ok {
				deliveries = append(deliveries, seen.Sub(ev.Time))
			}
		}
		seenMu.Unlock()
		sort.Slice(deliveries, func(i, j int) bool { return deliveries[i] < deliveries[j] })
		if len(deliveries) > 0 {
			b.ReportMetric(float64(len(deliveries)), "routed")
			b.ReportMetric(float64(celltest.Percentile(deliveries, 50).Milliseconds()), "route-p50-ms")
			b.ReportMetric(float64(celltest.Percentile(deliveries, 99).Milliseconds()), "route-p99-ms")
		}
		sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
		if len(gaps) == 0 {
			b.Fatal("no shard moved")
		}
		b.ReportMetric(float64(len(gaps)), "moved")
		b.ReportMetric(float64(celltest.Percentile(gaps, 50).Milliseconds()), "gap-p50-ms")
		b.ReportMetric(float64(celltest.Percentile(gaps, 99).Milliseconds()), "gap-p99-ms")
		b.ReportMetric(float64(gaps[len(gaps)-1].Milliseconds()), "gap-max-ms")
		b.ReportMetric(float64(settled.Milliseconds()), "join-to-balanced-ms")
		checkHistory(b, f.History)
		f.close()
	}
}
