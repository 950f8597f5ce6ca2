package etcdapi_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/chorus-kv/chorus/internal/node"
)

// BenchmarkEtcdPut measures Put through the etcd API of in-process nodes (1
// or 3, replicating), from 1 or 64 clients spread over the nodes:
//
//	go test -run '^$' -bench BenchmarkEtcdPut -benchtime 2000x ./internal/etcdapi/
func BenchmarkEtcdPut(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		for _, clients := range []int{1, 64} {
			b.Run(fmt.Sprintf("nodes=%d/clients=%d", nodes, clients), func(b *testing.B) {
				benchPut(b, nodes, clients)
			})
		}
	}
}

func benchPut(b *testing.B, nodes, clients int) {
	var ns []*node.Node
	var boot []string
	for range nodes {
		n := startNode(b, boot)
		if boot == nil {
			boot = n.P2PAddrs()
		}
		ns = append(ns, n)
	}
	var eps []string
	for _, n := range ns {
		eps = append(eps, n.EtcdAddr().String())
	}
	conns := make([]*clientv3.Client, min(clients, 8))
	for i := range conns {
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		conns[i] = c
	}
	value := strings.Repeat("v", 256)
	var seq atomic.Int64
	lats := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := range clients {
		c := conns[g%len(conns)]
		wg.Go(func() {
			for {
				i := seq.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				if _, err := c.Put(context.Background(), fmt.Sprintf("/bench/%025d", i), value); err != nil {
					b.Error(err)
					return
				}
				lats[g] = append(lats[g], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lats...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/elapsed.Seconds(), "puts/s")
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99_ms")
	}
}
