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

// Workloads, as the table names them after their group's label.
const (
	wPut1   = "put, 1 client"
	wPut100 = "put, 100 clients"
	wRange  = "range (serializable), 100 clients"
	wWatch  = "watch latency (put on one member, event on the others)"
)

// Group labels, which prefix the workloads in the table.
const (
	labelLone    = "lone node"
	labelCluster = "3 nodes"
)

func workload(label, w string) string { return label + ": " + w }

// cpuMetric names the server-CPU row of a group of n servers per system.
func cpuMetric(n int) string {
	if n == 1 {
		return "server CPU per put (1 server)"
	}
	return fmt.Sprintf("server CPU per put (%d servers)", n)
}

// bench drives one system's servers in one group of phases.
type bench struct {
	name      string // "etcd" or "chorus"
	label     string // the group's label
	c         *cluster
	s         *samples
	one, many []*clientv3.Client // 1 connection; 10 connections
	seq       atomic.Int64
	value     string
}

func newBench(name, label string, c *cluster, s *samples) (*bench, error) {
	b := &bench{name: name, label: label, c: c, s: s}
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

// record adds a phase's figures to the samples and logs them.
func (b *bench) record(w string, p phase) {
	wl := workload(b.label, w)
	b.s.add(b.name, wl, "throughput", "req/s", p.throughput())
	b.s.add(b.name, wl, "p50", "ms", ms(p.pct(0.5)))
	b.s.add(b.name, wl, "p99", "ms", ms(p.pct(0.99)))
	fmt.Fprintf(os.Stderr, "  %-7s %-40s %8.0f req/s  p50 %v  p99 %v\n", b.name, wl, p.throughput(), p.pct(0.5), p.pct(0.99))
}

// A short warm-up, so that connections and caches are up.
func (b *bench) warmUp(ctx context.Context, _ config) error {
	_, err := runPhase(ctx, b.many, 100, time.Second, b.put)
	return err
}

func (b *bench) put1(ctx context.Context, cfg config) error {
	p, err := runPhase(ctx, b.one, 1, cfg.duration, b.put)
	if err == nil {
		b.record(wPut1, p)
	}
	return err
}

// put100 also measures the CPU time the servers use per put, from /proc
// before and after the phase.
func (b *bench) put100(ctx context.Context, cfg config) error {
	cpu0 := b.c.cpu()
	p, err := runPhase(ctx, b.many, 100, cfg.duration, b.put)
	if err != nil {
		return err
	}
	cpu := (b.c.cpu() - cpu0) / time.Duration(max(p.ops, 1))
	b.record(wPut100, p)
	b.s.add(b.name, workload(b.label, wPut100), cpuMetric(len(b.c.procs)), "µs", us(cpu))
	fmt.Fprintf(os.Stderr, "  %-7s %-40s %v of server CPU per put\n", b.name, "", cpu)
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

func (b *bench) range100(ctx context.Context, cfg config) error {
	get := func(ctx context.Context, cl *clientv3.Client) error {
		_, err := cl.Get(ctx, key("/range/", rand.Int64N(rangeKeys)), clientv3.WithSerializable())
		return err
	}
	p, err := runPhase(ctx, b.many, 100, cfg.duration, get)
	if err == nil {
		b.record(wRange, p)
	}
	return err
}

func (b *bench) watch(ctx context.Context, cfg config) error {
	lats, err := watchLatency(ctx, b.c.endpoints, cfg, b.value)
	if err != nil {
		return err
	}
	wl := workload(b.label, wWatch)
	b.s.add(b.name, wl, "p50", "ms", ms(percentile(lats, 0.5)))
	b.s.add(b.name, wl, "p99", "ms", ms(percentile(lats, 0.99)))
	fmt.Fprintf(os.Stderr, "  %-7s %-40s p50 %v  p99 %v (%d events)\n", b.name, "watch latency", percentile(lats, 0.5), percentile(lats, 0.99), len(lats))
	return nil
}

// A step is one measurement, made on each system in turn.
type step struct {
	name string
	fn   func(*bench, context.Context, config) error
}

// A group is a set of phases run on the same servers: etcd's and Chorus's,
// n of each, started for the group and stopped after it.
type group struct {
	name  string // as -phases names it
	label string // prefixes its workloads in the table
	n     int    // servers per system
	setup []step // once, before the runs
	steps []step // in every run
}

var groups = []group{
	{
		name: "lone", label: labelLone, n: 1,
		setup: []step{{"warm-up", (*bench).warmUp}},
		steps: []step{{wPut1, (*bench).put1}, {wPut100, (*bench).put100}},
	},
	{
		name: "cluster", label: labelCluster, n: 3,
		setup: []step{{"warm-up", (*bench).warmUp}, {"filling the range keys", (*bench).fillRange}},
		steps: []step{{wPut1, (*bench).put1}, {wPut100, (*bench).put100}, {wRange, (*bench).range100}, {wWatch, (*bench).watch}},
	},
}

// measureGroup runs the group's setup on every system, then its phases
// cfg.runs times, interleaved: in each run, each phase on each system in
// turn (etcd, then Chorus), so that a change in the machine's load falls on
// both alike and a run's two figures form a pair. With probe, each run
// starts with the raw disk probe.
func measureGroup(ctx context.Context, g group, benches []*bench, cfg config, probe bool) error {
	for _, st := range g.setup {
		for _, b := range benches {
			if err := st.fn(b, ctx, cfg); err != nil {
				return fmt.Errorf("%s, %s: %s: %w", b.name, g.label, st.name, err)
			}
		}
	}
	for run := range cfg.runs {
		fmt.Fprintf(os.Stderr, "%s, run %d of %d:\n", g.label, run+1, cfg.runs)
		if probe {
			if err := probeDisk(cfg, benches[0].s); err != nil {
				return err
			}
		}
		for _, st := range g.steps {
			for _, b := range benches {
				if err := st.fn(b, ctx, cfg); err != nil {
					return fmt.Errorf("%s, %s: %s: %w", b.name, g.label, st.name, err)
				}
			}
		}
	}
	return nil
}

// Rows of the raw disk probe.
const (
	systemDisk = "disk"
	wDisk      = "raw append + fsync (400 B)"
	probeBytes = 400
)

// probeDisk appends probeBytes to a new file in the folder that holds the
// data folders and fsyncs it, cfg.fsyncs times, and records the p50 and p99
// of one append + fsync: the floor under a durable write on this disk.
func probeDisk(cfg config, s *samples) error {
	lats, err := appendFsync(cfg.work, cfg.fsyncs)
	if err != nil {
		return fmt.Errorf("disk probe: %w", err)
	}
	s.add(systemDisk, wDisk, "p50", "ms", ms(percentile(lats, 0.5)))
	s.add(systemDisk, wDisk, "p99", "ms", ms(percentile(lats, 0.99)))
	fmt.Fprintf(os.Stderr, "  %-7s %-40s p50 %v  p99 %v (%d fsyncs)\n", systemDisk, wDisk, percentile(lats, 0.5), percentile(lats, 0.99), len(lats))
	return nil
}

// appendFsync appends probeBytes to a new file in dir and fsyncs it, n
// times, and returns the sorted durations of each append + fsync.
func appendFsync(dir string, n int) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// The file's creation is made durable first, outside the timings.
	if err := f.Sync(); err != nil {
		return nil, err
	}
	buf := []byte(strings.Repeat("x", probeBytes))
	lats := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		lats = append(lats, time.Since(t0))
	}
	slices.Sort(lats)
	return lats, f.Close()
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
