//go:build unix

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
)

// BenchmarkConverged measures, on real agent processes on loopback, how
// long after a put on one node a plain watch and a converged watch on
// another see it, and what the convergence bookkeeping costs in bytes
// (frontier announcements, gossip chains, frontiers in sync hellos; read
// from each agent's "convergence bookkeeping" line at shutdown). b.N
// writes are made 50 a second (run with -benchtime=300x, say); the idle
// case makes none for 30 s. Rates are over each agent's whole life
// (startup included); the bytes per write are the writes case's total less
// the idle case's rate over the same time, so run idle first, as the
// sub-benchmarks are ordered.
//
//	go test ./e2e -run '^$' -bench BenchmarkConverged -benchtime=300x
func BenchmarkConverged(b *testing.B) {
	for _, n := range []int{3, 10} {
		b.Run(fmt.Sprintf("nodes=%d/idle", n), func(b *testing.B) { benchConverged(b, n, true) })
		b.Run(fmt.Sprintf("nodes=%d/writes", n), func(b *testing.B) { benchConverged(b, n, false) })
	}
}

var bookkeepingRE = regexp.MustCompile(`msg="convergence bookkeeping" announcements=(\d+) announced_bytes=(\d+) received=(\d+) received_bytes=(\d+) hello_frontier_bytes=(\d+) gossip_batches=(\d+)`)

// idleRate is the bookkeeping bytes per second of an idle cluster, by size.
var idleRate = map[int]float64{}

func benchConverged(b *testing.B, n int, idle bool) {
	born := time.Now()
	agents := []*agent{startAgent(b, b.TempDir())}
	boot := agents[0].p2pAddr(b)
	for range n - 1 {
		dir := b.TempDir()
		id := strings.TrimSpace(string(runCLI(b, nil, nil, "id", "--data-dir", dir).stdout))
		agents[0].mustCLI(b, nil, "member", "add", id, "--name", filepath.Base(dir))
		agents = append(agents, startAgent(b, dir, "--bootstrap", boot))
	}
	var clients []*client.Client
	for _, a := range agents {
		clients = append(clients, a.dial(b))
	}
	// Every node sees every member alive with its frontier.
	deadline := time.Now().Add(3 * time.Minute)
	for _, c := range clients {
		for {
			_, ms, err := c.Members(rpcContext(b))
			known := 0
			for _, m := range ms {
				if m.LagKnown && m.State == "alive" {
					known++
				}
			}
			if err == nil && known == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("the cluster of %d did not settle: %d members known", n, known)
			}
			time.Sleep(200 * time.Millisecond) // poll interval
		}
	}
	var plain, conv []time.Duration
	if !idle {
		plain, conv = measureLatencies(b, clients[0], clients[1], b.N)
	} else {
		time.Sleep(30 * time.Second) // the idle period measured, not synchronization
	}
	var announcements, announced, hello, batches int64
	for _, a := range agents {
		a.stopGraceful(b)
		m := bookkeepingRE.FindStringSubmatch(a.stderr.String())
		if m == nil {
			b.Fatalf("no bookkeeping line in the log of %s", a.nodeID)
		}
		num := func(i int) int64 { v, _ := strconv.ParseInt(m[i], 10, 64); return v }
		announcements += num(1)
		announced += num(2)
		hello += num(5)
		batches += num(6)
	}
	elapsed := time.Since(born)
	// Each gossip batch carries prev_hlc: a tag and a varint, 10 bytes.
	total := announced + hello + 10*batches
	b.ReportMetric(float64(total)/elapsed.Seconds(), "bookkeeping-B/s")
	b.ReportMetric(float64(announcements)/elapsed.Seconds(), "announcements/s")
	if idle {
		idleRate[n] = float64(total) / elapsed.Seconds()
	} else {
		b.ReportMetric((float64(total)-idleRate[n]*elapsed.Seconds())/float64(b.N), "bookkeeping-B/write")
		b.ReportMetric(ms(pct(plain, 50)), "plain-p50-ms")
		b.ReportMetric(ms(pct(plain, 99)), "plain-p99-ms")
		b.ReportMetric(ms(pct(conv, 50)), "converged-p50-ms")
		b.ReportMetric(ms(pct(conv, 99)), "converged-p99-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// measureLatencies puts n keys on writer, 50 a second, and returns for each
// how long after the put started a plain and a converged watch on watcher
// saw it.
func measureLatencies(b *testing.B, watcher, writer *client.Client, n int) (plain, conv []time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seenPlain, seenConv := map[string]time.Time{}, map[string]time.Time{}
	follow := func(opts []client.WatchOption, seen map[string]time.Time) {
		w, err := watcher.Watch(ctx, "/bench/", opts...)
		if err != nil {
			b.Error(err)
			return
		}
		go func() {
			defer w.Close()
			for ev, err := range w.Events() {
				if err != nil {
					return
				}
				mu.Lock()
				if _, ok := seen[ev.KV.Key]; !ok {
					seen[ev.KV.Key] = time.Now()
				}
				mu.Unlock()
			}
		}()
	}
	follow([]client.WatchOption{client.WithPrefix()}, seenPlain)
	follow([]client.WatchOption{client.WithPrefix(), client.WithConverged()}, seenConv)
	starts := make([]time.Time, n)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for i := range n {
		<-tick.C
		starts[i] = time.Now()
		if _, err := writer.Put(rpcContext(b), fmt.Sprintf("/bench/%06d", i), []byte("v")); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		done := len(seenPlain) == n && len(seenConv) == n
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("after a minute: plain watch saw %d, converged %d of %d", len(seenPlain), len(seenConv), n)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		k := fmt.Sprintf("/bench/%06d", i)
		plain = append(plain, seenPlain[k].Sub(starts[i]))
		conv = append(conv, seenConv[k].Sub(starts[i]))
	}
	return plain, conv
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
