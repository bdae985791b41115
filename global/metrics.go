package global

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wdsio/wds/global/globalstate"
	"github.com/wdsio/wds/internal/telemetry"
)

// keySpaceMetrics are the per key space series of REGIONAL domains, from
// the replicated state (every voter reports them):
//
//   - wds.global.keyspace.serving{domain, key_space, serving}: 1 for each
//     region holding delegations of the key space (two while it moves);
//   - wds.global.keyspace.failovers{domain, key_space}: times the key
//     space came to be served by a region other than its own, as this
//     voter applied the log since it started.
type keySpaceMetrics struct {
	failovers metric.Int64Counter

	mu   sync.Mutex
	away map[[2]string]bool // (domain, key space) → served away from home
}

func newKeySpaceMetrics(m *telemetry.Metrics, s *globalstate.State) (*keySpaceMetrics, error) {
	km := &keySpaceMetrics{away: map[[2]string]bool{}}
	if m == nil {
		return km, nil
	}
	meter := m.Meter("github.com/wdsio/wds/global")
	var err error
	km.failovers, err = meter.Int64Counter("wds.global.keyspace.failovers",
		metric.WithDescription("Times a REGIONAL key space came to be served by a region other than its own (failover), as this voter applied the log."))
	if err != nil {
		return nil, err
	}
	serving, err := meter.Int64ObservableGauge("wds.global.keyspace.serving",
		metric.WithDescription("1 for each region whose cell holds delegations of the REGIONAL key space (labels: domain, key_space, serving)."))
	if err != nil {
		return nil, err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, k := range s.RegionalKeySpaces() {
			for _, r := range k.Serving {
				o.ObserveInt64(serving, 1, metric.WithAttributeSet(attribute.NewSet(
					attribute.String("domain", k.Domain), attribute.String("key_space", k.Region), attribute.String("serving", r))))
			}
		}
		return nil
	}, serving)
	return km, err
}

// observe counts the key spaces that went from served at home (or not at
// all) to served away, after an applied entry changed delegations.
func (km *keySpaceMetrics) observe(s *globalstate.State) {
	km.mu.Lock()
	defer km.mu.Unlock()
	now := map[[2]string]bool{}
	for _, k := range s.RegionalKeySpaces() {
		key := [2]string{k.Domain, k.Region}
		away := k.Away()
		now[key] = away
		if away && !km.away[key] && km.failovers != nil {
			km.failovers.Add(context.Background(), 1, metric.WithAttributes(attribute.String("domain", k.Domain), attribute.String("key_space", k.Region)))
		}
	}
	km.away = now
}
