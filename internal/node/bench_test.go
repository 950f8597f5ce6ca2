package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
)

// BenchmarkReplicatedPut measures, on nodes in this process talking over
// loopback (real libp2p, real gRPC, real LevelDB with fsync):
//   - write throughput with 1 and 64 concurrent clients, spread over the
//     nodes, keys 32 B, values 256 B;
//   - convergence latency: from a Put's acknowledgement on its node to the
//     watch event for it on the last of the other nodes (0 when every event
//     came before the acknowledgement), p50 and p99.
//
// Run: go test -run '^$' -bench BenchmarkReplicatedPut -benchtime 3000x ./internal/node/
func BenchmarkReplicatedPut(b *testing.B) {
	for _, nodesN := range []int{3, 10} {
		for _, clientsN := range []int{1, 64} {
			b.Run(fmt.Sprintf("nodes=%d/clients=%d", nodesN, clientsN), func(b *testing.B) {
				benchReplicatedPut(b, nodesN, clientsN)
			})
		}
	}
}

func benchReplicatedPut(b *testing.B, nodesN, clientsN int) {
	_, clients := startReplicaNodesTB(b, nodesN)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prefix := fmt.Sprintf("/bench/%d/%d/", nodesN, clientsN)

	// Watchers on every node record when each key's event arrived there.
	type arrival struct {
		mu   sync.Mutex
		seen map[string]time.Time
	}
	arrivals := make([]*arrival, nodesN)
	var watchers sync.WaitGroup
	for i, c := range clients {
		a := &arrival{seen: map[string]time.Time{}}
		arrivals[i] = a
		w, err := c.Watch(ctx, prefix, client.WithPrefix())
		if err != nil {
			b.Fatal(err)
		}
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			defer w.Close()
			for ev, err := range w.Events() {
				if err != nil {
					return
				}
				now := time.Now()
				a.mu.Lock()
				if _, ok := a.seen[ev.KV.Key]; !ok {
					a.seen[ev.KV.Key] = now
				}
				a.mu.Unlock()
			}
		}()
	}

	type ack struct {
		key  string
		node int
		at   time.Time
		lat  time.Duration
	}
	acks := make([]ack, b.N)
	var next atomic.Int64
	value := make([]byte, 256)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range clientsN {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := w % nodesN
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				key := fmt.Sprintf("%s%0*d", prefix, 32-len(prefix), i) // 32 B
				t0 := time.Now()
				if _, err := clients[node].Put(ctx, key, value); err != nil {
					b.Error(err)
					return
				}
				now := time.Now()
				acks[i] = ack{key: key, node: node, at: now, lat: now.Sub(t0)}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	// Wait until every node has seen every key, then compute latencies.
	deadline := time.Now().Add(60 * time.Second)
	for _, a := range arrivals {
		for {
			a.mu.Lock()
			n := len(a.seen)
			a.mu.Unlock()
			if n >= b.N {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("a node saw %d of %d writes after 60 s", n, b.N)
			}
			time.Sleep(10 * time.Millisecond) // polling interval
		}
	}
	cancel()
	watchers.Wait()
	var conv, putLat []time.Duration
	for _, ak := range acks {
		putLat = append(putLat, ak.lat)
		var worst time.Duration
		for i, a := range arrivals {
			if i == ak.node {
				continue
			}
			if d := a.seen[ak.key].Sub(ak.at); d > worst {
				worst = d
			}
		}
		conv = append(conv, worst)
	}
	slices.Sort(conv)
	slices.Sort(putLat)
	pct := func(s []time.Duration, p float64) float64 {
		return float64(s[min(len(s)-1, int(float64(len(s))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "puts/s")
	b.ReportMetric(pct(putLat, 0.50), "put-p50-ms")
	b.ReportMetric(pct(putLat, 0.99), "put-p99-ms")
	b.ReportMetric(pct(conv, 0.50), "conv-p50-ms")
	b.ReportMetric(pct(conv, 0.99), "conv-p99-ms")
}
