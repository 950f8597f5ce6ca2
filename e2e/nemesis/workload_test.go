//go:build linux

package nemesis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chorus-kv/chorus/client"
)

// keyPrefix holds every key the writers write: the watchers watch it.
const keyPrefix = "/k/"

// opTimeout bounds one write: a write to a stopped node gives up after it
// (its outcome is then unknown).
const opTimeout = 2 * time.Second

// rawOrigin turns a peer id as the API prints it into its bytes, which LWW
// compares.
func rawOrigin(s string) string {
	id, err := peer.Decode(s)
	if err != nil {
		return "undecodable:" + s
	}
	return string(id)
}

// writers is one writer per node, writing random keys of a shared key space
// so that the nodes' writes conflict. pause and resume bracket the
// convergence measurements.
type writers struct {
	gate sync.RWMutex // a write holds it for reading; pause takes it
	mu   sync.Mutex
	log  []Write
	wg   sync.WaitGroup
}

func startWriters(ctx context.Context, nodes []*node, seed uint64, keys int, rate float64) *writers {
	w := &writers{}
	for _, n := range nodes {
		rng := rand.New(rand.NewPCG(seed, uint64(n.i)))
		w.wg.Go(func() {
			tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
			defer tick.Stop()
			for seq := 0; ; seq++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				key := fmt.Sprintf("%s%04d", keyPrefix, rng.IntN(keys))
				value := fmt.Sprintf("w%d-%d", n.i, seq)
				w.gate.RLock()
				if ctx.Err() != nil {
					w.gate.RUnlock()
					return
				}
				cctx, cancel := context.WithTimeout(ctx, opTimeout)
				res, err := n.cli().Put(cctx, key, []byte(value))
				cancel()
				rec := Write{Key: key, Value: value, Node: n.i}
				if err == nil && res.KV != nil {
					rec.Acked, rec.HLC, rec.Origin, rec.Revision = true, res.KV.HLC, rawOrigin(res.KV.Origin), res.Revision
				}
				w.mu.Lock()
				w.log = append(w.log, rec)
				w.mu.Unlock()
				w.gate.RUnlock()
			}
		})
	}
	return w
}

// pause waits for the writes under way and holds new ones.
func (w *writers) pause() { w.gate.Lock() }

// resume lets writes go on.
func (w *writers) resume() { w.gate.Unlock() }

// writes returns a copy of the log so far.
func (w *writers) writes() []Write {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Write(nil), w.log...)
}

// watcher follows one node's changes under keyPrefix, resuming after each
// error from the revision after the last event it received.
type watcher struct {
	n       *node
	mu      sync.Mutex
	events  []Event
	resumes int
	errs    []string // errors other than the node being unreachable
	done    chan struct{}
}

func startWatcher(ctx context.Context, n *node) *watcher {
	w := &watcher{n: n, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			w.follow(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *watcher) last() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.events) == 0 {
		return 0
	}
	return w.events[len(w.events)-1].Revision
}

func (w *watcher) follow(ctx context.Context) {
	var opts []client.WatchOption
	opts = append(opts, client.WithPrefix())
	last := w.last()
	if last > 0 {
		opts = append(opts, client.WithStartRevision(last+1))
	}
	// The creation has a deadline (a stopped node never answers); the
	// stream then lives until the run ends or the node breaks it.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	created := time.AfterFunc(5*time.Second, cancel)
	wt, err := w.n.cli().Watch(wctx, keyPrefix, opts...)
	if !created.Stop() || err != nil {
		if err == nil {
			wt.Close()
			err = context.DeadlineExceeded
		}
		w.noteErr(ctx, err)
		return
	}
	defer wt.Close()
	if last > 0 {
		w.mu.Lock()
		w.resumes++
		w.mu.Unlock()
	}
	for {
		evs, err := wt.Next()
		if err != nil {
			w.noteErr(ctx, err)
			return
		}
		w.mu.Lock()
		for _, ev := range evs {
			w.events = append(w.events, Event{Revision: ev.KV.ModRevision, Key: ev.KV.Key, HLC: ev.KV.HLC})
		}
		w.mu.Unlock()
	}
}

// noteErr keeps errors that are not the node being down or the run ending.
func (w *watcher) noteErr(ctx context.Context, err error) {
	if ctx.Err() != nil || errors.Is(err, client.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return // the node is down or stopped, or the run ends
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) < 20 {
		w.errs = append(w.errs, err.Error())
	}
}

// sampler reads each node's RSS and descriptor count every interval.
type sampler struct {
	mu      sync.Mutex
	samples []Sample
	done    chan struct{}
}

// startSampler samples every node each interval; with csv not nil, it also
// writes each sample there as it goes (so that a run cut short keeps its
// curves), and closes it when ctx ends.
func startSampler(ctx context.Context, nodes []*node, every time.Duration, begin time.Time, csv *os.File) *sampler {
	s := &sampler{done: make(chan struct{})}
	if csv != nil {
		fmt.Fprintln(csv, "elapsed_s,node,pid,rss_kib,fds")
	}
	go func() {
		defer close(s.done)
		if csv != nil {
			defer csv.Close()
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			for _, n := range nodes {
				pid := n.pid()
				if pid == 0 {
					continue
				}
				rss, fds, err := readProc(pid)
				if err != nil {
					continue // it exited between pid() and the read
				}
				smp := Sample{Elapsed: time.Since(begin), Node: n.i, PID: pid, RSSKiB: rss, FDs: fds}
				s.mu.Lock()
				s.samples = append(s.samples, smp)
				s.mu.Unlock()
				if csv != nil {
					fmt.Fprintf(csv, "%.1f,n%d,%d,%d,%d\n", smp.Elapsed.Seconds(), smp.Node, smp.PID, smp.RSSKiB, smp.FDs)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) all() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.samples...)
}

// readProc reads VmRSS (KiB) from /proc/PID/status and counts /proc/PID/fd.
func readProc(pid int) (rssKiB int64, fds int, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			rssKiB, err = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
		}
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0, err
	}
	return rssKiB, len(entries), nil
}
