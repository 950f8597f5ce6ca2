package node

import (
	"slices"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p/swim"
)

// BenchmarkFailureDetection measures, in a 10-node cluster on loopback with
// the LAN failure-detector defaults (probe every 1 s, 500 ms timeout, 3
// indirect probes, suspicion 4·log10(N) s shrinking with confirmations),
// how long the other nodes take to declare a killed node dead, and the
// probe traffic per node per second while the cluster is healthy.
//
//	go test -run '^$' -bench BenchmarkFailureDetection -benchtime 5x -timeout 30m ./internal/node/
func BenchmarkFailureDetection(b *testing.B) {
	groups := make([]int, 10)
	nodes, _, _ := startMeshNodesTB(b, aeNodeOpts{groups: groups})
	waitAllAliveTB(b, nodes, 60*time.Second)

	// Probe traffic over a quiet period.
	type snap struct{ bytes, probes int64 }
	read := func() []snap {
		var out []snap
		for _, n := range nodes {
			s := n.members.Stats()
			out = append(out, snap{s.ProbeBytesOut + s.BytesIn, s.Probes})
		}
		return out
	}
	before, start := read(), time.Now()
	quiet := 10 * time.Second
	deadline := start.Add(quiet)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond) // measuring a rate over a period, not synchronization
	}
	after, elapsed := read(), time.Since(start)
	var bytes, probes int64
	for i := range nodes {
		bytes += after[i].bytes - before[i].bytes
		probes += after[i].probes - before[i].probes
	}
	perNode := float64(bytes) / float64(len(nodes)) / elapsed.Seconds()
	b.Logf("probe traffic: %.0f bytes/s and %.2f probes/s per node (sent and received, probe protocol)", perNode, float64(probes)/float64(len(nodes))/elapsed.Seconds())

	var detect, back []time.Duration
	victimIdx := len(nodes) - 1
	for b.Loop() {
		victim := nodes[victimIdx]
		dataDir, logger := victim.cfg.DataDir, victim.cfg.Logger
		killed := time.Now()
		victim.skipLeave = true
		if err := victim.Close(); err != nil {
			b.Fatal(err)
		}
		others := nodes[:victimIdx]
		testutil.Eventually(b, 120*time.Second, "every node declares the killed node dead", func() bool {
			for _, n := range others {
				if memberState(n, victim) != swim.Dead {
					return false
				}
			}
			return true
		})
		detect = append(detect, time.Since(killed))
		// Restarted on new ports, from one bootstrap peer, it is seen alive
		// by all again and sees them alive.
		restartedAt := time.Now()
		restarted, err := Start(Config{DataDir: dataDir, ListenClient: "127.0.0.1:0", Bootstrap: nodes[0].P2PAddrs(), Logger: logger, SyncInterval: 300 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = restarted.Close() })
		nodes[victimIdx] = restarted
		waitAllAliveTB(b, nodes, 120*time.Second)
		back = append(back, time.Since(restartedAt))
	}
	slices.Sort(back)
	b.Logf("a restarted node seen alive by all and seeing all alive after: %v", back)
	slices.Sort(detect)
	b.ReportMetric(float64(detect[len(detect)/2].Milliseconds()), "median-detect-ms")
	b.ReportMetric(float64(detect[len(detect)-1].Milliseconds()), "max-detect-ms")
	b.ReportMetric(perNode, "probe-B/s/node")
	b.Logf("detection of a killed node by all 9 others: %v", detect)
}
