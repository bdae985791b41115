package cell_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/wdsio/wds/internal/celltest"
	"github.com/wdsio/wds/topology"
)

func balanced(counts map[string]int, consumers []string, lo, hi int) error {
	total := 0
	for _, id := range consumers {
		n := counts[id]
		total += n
		if n < lo || n > hi {
			return fmt.Errorf("consumer %s holds %d shards, want %d..%d (all: %v)", id, n, lo, hi, counts)
		}
	}
	return nil
}

// TestBalanceFiveConsumers: a 3-node cell, a 64-shard GLOBAL domain and 5
// consumers: each ends with 12 or 13 shards, and the shard map agrees with
// what the consumers believe.
func TestBalanceFiveConsumers(t *testing.T) {
	c := celltest.New(t, 3)
	c.CreateDomain("orders", topology.KindGlobal, 64, 3*time.Second)
	var ids []string
	var cons []*celltest.Consumer
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("c%d", i)
		ids = append(ids, id)
		cons = append(cons, c.NewConsumer(id, []string{"orders"}))
	}
	start := time.Now()
	celltest.Eventually(t, 10*time.Second, func() error {
		counts, err := c.OwnerCounts("orders")
		if err != nil {
			return err
		}
		if err := balanced(counts, ids, 12, 13); err != nil {
			return err
		}
		for _, tc := range cons {
			if got := len(tc.Held()); got != counts[tc.ID] {
				return fmt.Errorf("%s runs %d shards, shard map says %d", tc.ID, got, counts[tc.ID])
			}
		}
		return nil
	})
	t.Logf("balanced %v after the consumers started", time.Since(start))
	c.CheckHistory(t)
}
