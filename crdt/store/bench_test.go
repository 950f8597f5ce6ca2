package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt"
)

// BenchmarkPut measures local Puts on a real on-disk LevelDB (one fsync per
// batch) with 1 and 64 concurrent writers sharing b.N unique keys. It reports
// throughput, per-Put latency percentiles and the mean batch size.
func BenchmarkPut(b *testing.B) {
	const keyBytes, valueBytes = 32, 256
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			var batches, changes atomic.Int64
			s, err := Open(Config{
				Path:   b.TempDir(),
				NodeID: []byte("bench-node"),
				Clock:  crdt.NewClock(crdt.SystemWallClock, crdt.DefaultMaxOffset),
				OnCommit: func(cs []Change) {
					batches.Add(1)
					changes.Add(int64(len(cs)))
				},
			})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			value := make([]byte, valueBytes)
			for i := range value {
				value[i] = byte('a' + i%26)
			}
			ctx := context.Background()
			var next atomic.Int64
			latencies := make([][]time.Duration, writers)
			var failOnce sync.Once
			var failed error
			var wg sync.WaitGroup
			start := make(chan struct{})
			for w := range writers {
				wg.Go(func() {
					lat := make([]time.Duration, 0, b.N/writers+1)
					key := make([]byte, keyBytes)
					<-start
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							break
						}
						copy(key, fmt.Sprintf("bench/%026d", i)) // 32 bytes
						t0 := time.Now()
						if _, err := s.Put(ctx, key, value); err != nil {
							failOnce.Do(func() { failed = err })
							break
						}
						lat = append(lat, time.Since(t0))
					}
					latencies[w] = lat
				})
			}
			b.SetBytes(keyBytes + valueBytes)
			b.ResetTimer()
			t0 := time.Now()
			close(start)
			wg.Wait()
			elapsed := time.Since(t0)
			b.StopTimer()
			if failed != nil {
				b.Fatalf("Put: %v", failed)
			}
			all := slices.Concat(latencies...)
			if len(all) != b.N {
				b.Fatalf("%d Puts timed; want %d", len(all), b.N)
			}
			slices.Sort(all)
			pct := func(p float64) float64 {
				return float64(all[min(len(all)-1, int(p*float64(len(all))))].Nanoseconds()) / 1e3
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
			b.ReportMetric(pct(0.50), "p50-us")
			b.ReportMetric(pct(0.99), "p99-us")
			if n := batches.Load(); n > 0 {
				b.ReportMetric(float64(changes.Load())/float64(n), "changes/batch")
			}
		})
	}
}
