package cell

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wdsio/wds/cell/cellstate"
)

// commitLatencyBuckets are the bucket boundaries (seconds) of
// wds.cell.commit_latency: 100 µs to 10 s. (The SDK's default boundaries,
// 0 to 10000, suit milliseconds and put every commit in the first buckets.)
var commitLatencyBuckets = []float64{
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
}

// cellMetrics are the node's OpenTelemetry instruments (exported at
// /metrics as wds_cell_*).
type cellMetrics struct {
	sessionsOpen     metric.Int64UpDownCounter
	consumerSessions metric.Int64UpDownCounter
	heartbeats       metric.Int64Counter
	grants           metric.Int64Counter
	revokes          metric.Int64Counter
	releases         metric.Int64Counter
	expiries         metric.Int64Counter
	leaderChanges    metric.Int64Counter
	commitOps        metric.Int64Counter
	commitLatency    metric.Float64Histogram
	acksWithheld     metric.Int64Counter
	renewals         metric.Int64Counter
	renewalFailures  metric.Int64Counter
	routingResyncs   metric.Int64Counter
	routingVersion   atomic.Int64
	isLeader         atomic.Int64
}

func newCellMetrics(n *Node) (*cellMetrics, error) {
	m := n.tm.Meter("github.com/wdsio/wds/cell")
	cm := &cellMetrics{}
	var err error
	must := func(e error) {
		if err == nil {
			err = e
		}
	}
	var e error
	cm.sessionsOpen, e = m.Int64UpDownCounter("wds.cell.sessions", metric.WithDescription("Session streams open on this node (consumers and observers)."))
	must(e)
	cm.consumerSessions, e = m.Int64UpDownCounter("wds.cell.consumer_sessions", metric.WithDescription("Consumer session streams attached to this leader."))
	must(e)
	cm.heartbeats, e = m.Int64Counter("wds.cell.renewals", metric.WithDescription("Heartbeats received (each renews all of a session's grants)."))
	must(e)
	cm.renewals, e = m.Int64Counter("wds.cell.delegation.renewals", metric.WithDescription("Delegation renewals answered by the delegator (the global group)."))
	must(e)
	cm.renewalFailures, e = m.Int64Counter("wds.cell.delegation.renewal_failures", metric.WithDescription("Delegation renewals that failed or timed out."))
	must(e)
	cm.routingResyncs, e = m.Int64Counter("wds.cell.routing.resyncs", metric.WithDescription("Routing streams (consumers' and observers') that fell behind: their queued changes were dropped and a fresh snapshot sent instead."))
	must(e)
	cm.grants, e = m.Int64Counter("wds.cell.grants", metric.WithDescription("Grants activated (applied log)."))
	must(e)
	cm.revokes, e = m.Int64Counter("wds.cell.revokes", metric.WithDescription("Grants revoked (applied log)."))
	must(e)
	cm.releases, e = m.Int64Counter("wds.cell.releases", metric.WithDescription("Grants released by their holder (applied log)."))
	must(e)
	cm.expiries, e = m.Int64Counter("wds.cell.expiries", metric.WithDescription("Grants ended because their lease passed the leader's deadline (applied log)."))
	must(e)
	cm.acksWithheld, e = m.Int64Counter("wds.cell.acks_withheld", metric.WithDescription("Heartbeat acks not sent because the leader's leadership was not confirmed within the window."))
	must(e)
	cm.leaderChanges, e = m.Int64Counter("wds.cell.leader_accessions", metric.WithDescription("Times this node became the ready leader."))
	must(e)
	cm.commitOps, e = m.Int64Counter("wds.cell.committed_ops", metric.WithDescription("Ops committed through this leader's batcher."))
	must(e)
	cm.commitLatency, e = m.Float64Histogram("wds.cell.commit_latency", metric.WithUnit("s"), metric.WithDescription("Time from proposal to applied, per log entry."),
		metric.WithExplicitBucketBoundaries(commitLatencyBuckets...))
	must(e)
	_, e = m.Int64ObservableGauge("wds.cell.routing_version", metric.WithDescription("Version (log index) of the last routing delta published."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(cm.routingVersion.Load())
			return nil
		}))
	must(e)
	_, e = m.Int64ObservableGauge("wds.cell.leader", metric.WithDescription("1 while this node is the cell's ready leader."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(cm.isLeader.Load())
			return nil
		}))
	must(e)
	_, e = m.Int64ObservableGauge("wds.cell.applied_index", metric.WithDescription("Last log index applied to the FSM."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(n.state.Index()))
			return nil
		}))
	must(e)
	must(registerDomainGauges(m, n.state))
	return cm, err
}

// registerDomainGauges registers the per-domain gauges (labelled domain),
// observed together by one callback from the replicated state, so every
// node reports them. A deleted domain's series disappear.
func registerDomainGauges(m metric.Meter, s *cellstate.State) error {
	unowned, err := m.Int64ObservableGauge("wds.cell.domain.shards_unowned", metric.WithDescription("Shards of the domain without an ACTIVE holder (free, or REVOKED and not yet released)."))
	if err != nil {
		return err
	}
	moving, err := m.Int64ObservableGauge("wds.cell.domain.shards_moving", metric.WithDescription("Shards of the domain whose holder is REVOKED, being handed over."))
	if err != nil {
		return err
	}
	consumers, err := m.Int64ObservableGauge("wds.cell.domain.consumers", metric.WithDescription("Registered consumers that serve the domain."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		// Counted under the state's lock, observed after it is released.
		for _, dc := range s.DomainCounts() {
			attrs := metric.WithAttributeSet(attribute.NewSet(attribute.String("domain", dc.Name)))
			o.ObserveInt64(unowned, dc.Unowned, attrs)
			o.ObserveInt64(moving, dc.Moving, attrs)
			o.ObserveInt64(consumers, dc.Consumers, attrs)
		}
		return nil
	}, unowned, moving, consumers)
	return err
}
