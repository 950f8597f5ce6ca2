package sim

import (
	"context"
	"testing"
	"time"
)

// TestSimClusterConverges runs the benchmark's scenario on a small cluster
// with 1 % loss and checks, on virtual time, that every write reaches
// every node, that a crash is detected by every node that knew the crashed
// node within three times the detector's bound, that no live node is
// declared dead, and that a 50/50 partition's writes are everywhere after
// the heal.
func TestSimClusterConverges(t *testing.T) {
	cfg := Config{N: 8, Seed: 7, Link: LinkConfig{Latency: 5 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.01}}
	sc := Scenario{Warmup: 5 * time.Second, WriteRate: 10, WriteFor: 5 * time.Second, PartitionFor: 5 * time.Second, PartitionWrites: 10}
	Run(t, cfg, func(t *testing.T, c *Cluster) {
		res, err := sc.Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", res)
		if res.Writes != 50 || res.Unconverged != 0 {
			t.Errorf("%d of %d writes did not reach every node within %v", res.Unconverged, res.Writes, sc.withDefaults().ConvergeWithin)
		}
		// One hop of 5 ms ± 1 ms at most three times over (a lost packet
		// is repaired by QUIC's retransmission or anti-entropy): the max is
		// bounded by the anti-entropy interval.
		if res.ConvMax > c.Config().SyncInterval+time.Second {
			t.Errorf("slowest write took %v to converge; anti-entropy every %v should have brought it", res.ConvMax, c.Config().SyncInterval)
		}
		if !res.Detected || res.Observers == 0 || res.Detect > 3*res.DetectBound {
			t.Errorf("crash: detected %v after %v by all of %d observers; want all within 3 × %v", res.Detected, res.Detect, res.Observers, res.DetectBound)
		}
		if res.FalseDead != 0 {
			t.Errorf("%d live nodes were declared dead at 1%% loss", res.FalseDead)
		}
		if !res.Healed {
			t.Errorf("the partition's writes were not everywhere %v after the heal", res.Heal)
		}
	})
}
