package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const (
	keyBytes   = 32
	valueBytes = 256
)

// phase is the outcome of one throughput phase.
type phase struct {
	ops     int
	elapsed time.Duration
	lat     []time.Duration // sorted
}

func (p phase) throughput() float64 { return float64(p.ops) / p.elapsed.Seconds() }

func (p phase) pct(q float64) time.Duration { return percentile(p.lat, q) }

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

type result struct {
	system                 string
	put1, put100, range100 phase
	watch                  []time.Duration // sorted
	// cpuPerPut is the CPU time the three servers used per put in the
	// 100-client put phase.
	cpuPerPut time.Duration
}

// dial returns n clients, each over its own connection to all endpoints
// (clientv3 balances their calls round-robin), as etcd's benchmark does.
func dial(n int, endpoints []string) ([]*clientv3.Client, error) {
	var out []*clientv3.Client
	for range n {
		c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func closeAll(cs []*clientv3.Client) {
	for _, c := range cs {
		_ = c.Close()
	}
}

func key(prefix string, i int64) string {
	s := prefix + strconv.FormatInt(i, 10)
	return prefix + strings.Repeat("0", keyBytes-len(s)) + strconv.FormatInt(i, 10)
}

// run runs op from n goroutines over conns for d and returns the phase.
func runPhase(ctx context.Context, conns []*clientv3.Client, n int, d time.Duration, op func(ctx context.Context, c *clientv3.Client) error) (phase, error) {
	var wg sync.WaitGroup
	lats := make([][]time.Duration, n)
	errs := make([]error, n)
	start := time.Now()
	deadline := start.Add(d)
	for g := range n {
		c := conns[g%len(conns)]
		wg.Go(func() {
			for time.Now().Before(deadline) {
				t0 := time.Now()
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := op(cctx, c)
				cancel()
				if err != nil {
					errs[g] = err
					return
				}
				lats[g] = append(lats[g], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return phase{}, err
		}
	}
	p := phase{elapsed: elapsed, lat: slices.Concat(lats...)}
	p.ops = len(p.lat)
	slices.Sort(p.lat)
	return p, nil
}

// bench drives one system's cluster.
type bench struct {
	name      string
	c         *cluster
	r         *result
	one, many []*clientv3.Client // 1 connection; 10 connections
	seq       atomic.Int64
	value     string
}

func newBench(name string, c *cluster) (*bench, error) {
	b := &bench{name: name, c: c, r: &result{system: name}}
	value := make([]byte, valueBytes)
	for i := range value {
		value[i] = byte('a' + rand.IntN(26))
	}
	b.value = string(value)
	var err error
	if b.one, err = dial(1, c.endpoints); err != nil {
		return nil, err
	}
	if b.many, err = dial(10, c.endpoints); err != nil {
		closeAll(b.one)
		return nil, err
	}
	return b, nil
}

func (b *bench) close() {
	closeAll(b.one)
	closeAll(b.many)
}

func (b *bench) put(ctx context.Context, cl *clientv3.Client) error {
	_, err := cl.Put(ctx, key("/bench/", b.seq.Add(1)), b.value)
	return err
}

func (b *bench) log(what string, p phase) {
	fmt.Fprintf(os.Stderr, "  %-7s %-20s %8.0f req/s  p50 %v  p99 %v\n", b.name, what, p.throughput(), p.pct(0.5), p.pct(0.99))
}

// A short warm-up, so that connections and caches are up.
func (b *bench) warmUp(ctx context.Context, _ config) error {
	_, err := runPhase(ctx, b.many, 100, time.Second, b.put)
	return err
}

func (b *bench) put1(ctx context.Context, cfg config) (err error) {
	if b.r.put1, err = runPhase(ctx, b.one, 1, cfg.duration, b.put); err == nil {
		b.log("put, 1 client", b.r.put1)
	}
	return err
}

func (b *bench) put100(ctx context.Context, cfg config) (err error) {
	cpu0 := b.c.cpu()
	if b.r.put100, err = runPhase(ctx, b.many, 100, cfg.duration, b.put); err != nil {
		return err
	}
	b.r.cpuPerPut = (b.c.cpu() - cpu0) / time.Duration(max(b.r.put100.ops, 1))
	b.log("put, 100 clients", b.r.put100)
	fmt.Fprintf(os.Stderr, "  %-7s %-20s %v of server CPU per put\n", b.name, "", b.r.cpuPerPut)
	return nil
}

const rangeKeys = 1000

func (b *bench) fillRange(ctx context.Context, _ config) error {
	for i := range rangeKeys {
		if _, err := b.one[0].Put(ctx, key("/range/", int64(i)), b.value); err != nil {
			return err
		}
	}
	return waitKeys(ctx, b.c.endpoints, key("/range/", rangeKeys-1))
}

func (b *bench) range100(ctx context.Context, cfg config) (err error) {
	get := func(ctx context.Context, cl *clientv3.Client) error {
		_, err := cl.Get(ctx, key("/range/", rand.Int64N(rangeKeys)), clientv3.WithSerializable())
		return err
	}
	if b.r.range100, err = runPhase(ctx, b.many, 100, cfg.duration, get); err == nil {
		b.log("range, 100 clients", b.r.range100)
	}
	return err
}

func (b *bench) watch(ctx context.Context, cfg config) (err error) {
	if b.r.watch, err = watchLatency(ctx, b.c.endpoints, cfg, b.value); err == nil {
		fmt.Fprintf(os.Stderr, "  %-7s %-20s p50 %v  p99 %v (%d events)\n", b.name, "watch latency", percentile(b.r.watch, 0.5), percentile(b.r.watch, 0.99), len(b.r.watch))
	}
	return err
}

// measure runs every phase on every system, interleaved (a phase on each
// system in turn, then the next phase), so that a change in the machine's
// load during the run falls on both alike.
func measure(ctx context.Context, benches []*bench, cfg config) error {
	steps := []struct {
		name string
		fn   func(*bench, context.Context, config) error
	}{
		{"warm-up", (*bench).warmUp},
		{"put, 1 client", (*bench).put1},
		{"put, 100 clients", (*bench).put100},
		{"filling the range keys", (*bench).fillRange},
		{"range, 100 clients", (*bench).range100},
		{"watch latency", (*bench).watch},
	}
	for _, st := range steps {
		for _, b := range benches {
			if err := st.fn(b, ctx, cfg); err != nil {
				return fmt.Errorf("%s: %s: %w", b.name, st.name, err)
			}
		}
	}
	return nil
}

// waitKeys waits until k is readable on every endpoint.
func waitKeys(ctx context.Context, endpoints []string, k string) error {
	for _, ep := range endpoints {
		cs, err := dial(1, []string{ep})
		if err != nil {
			return err
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			g, err := cs[0].Get(ctx, k, clientv3.WithSerializable())
			if err == nil && len(g.Kvs) == 1 {
				break
			}
			if time.Now().After(deadline) {
				closeAll(cs)
				return fmt.Errorf("key %s not on %s after 30 s", k, ep)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
		closeAll(cs)
	}
	return nil
}

// watchLatency puts on the first member and times, at a watcher on each of
// the others, from just before the put is sent to the event's arrival.
func watchLatency(ctx context.Context, endpoints []string, cfg config, value string) ([]time.Duration, error) {
	putter, err := dial(1, endpoints[:1])
	if err != nil {
		return nil, err
	}
	defer closeAll(putter)
	sent := make([]atomic.Int64, cfg.watchPuts) // unix nanos
	var mu sync.Mutex
	var lats []time.Duration
	var wg sync.WaitGroup
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, ep := range endpoints[1:] {
		w, err := dial(1, []string{ep})
		if err != nil {
			return nil, err
		}
		defer closeAll(w)
		wch := w[0].Watch(wctx, "/watch/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		if resp := <-wch; !resp.Created {
			return nil, fmt.Errorf("watch on %s not created: %v", ep, resp.Err())
		}
		wg.Go(func() {
			got := 0
			for resp := range wch {
				now := time.Now().UnixNano()
				for _, ev := range resp.Events {
					i, err := strconv.Atoi(strings.TrimLeft(strings.TrimPrefix(string(ev.Kv.Key), "/watch/"), "0"))
					if err != nil || i < 1 || i > len(sent) {
						continue
					}
					mu.Lock()
					lats = append(lats, time.Duration(now-sent[i-1].Load()))
					mu.Unlock()
					got++
				}
				if got == len(sent) {
					return
				}
			}
		})
	}
	for i := range cfg.watchPuts {
		sent[i].Store(time.Now().UnixNano())
		if _, err := putter[0].Put(ctx, key("/watch/", int64(i+1)), value); err != nil {
			return nil, err
		}
		time.Sleep(cfg.watchInterval) // the put rate of this phase
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cancel()
		<-done
		return nil, fmt.Errorf("watchers got %d of %d events within 60 s", len(lats), 2*cfg.watchPuts)
	}
	slices.Sort(lats)
	return lats, nil
}
