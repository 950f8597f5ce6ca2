package watch_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/watch"
)

// TestPropertyStreamsEqualVisibleLog: random puts and deletes on a few keys,
// with watchers (prefix and exact) started at random points from random
// revisions (0 = now, past, current, future), some of them read partially
// while writes go on. Every watcher's stream must equal the filtered, visible
// subset of store.ReadLog from its start, and the write path's changes must
// agree with the log and with an independent model of which keys are live.
func TestPropertyStreamsEqualVisibleLog(t *testing.T) {
	keys := []string{"a", "a/1", "a/2", "ab", "b", "b/1"}
	watches := []watch.Options{
		{Prefix: true},
		{Key: []byte("a"), Prefix: true},
		{Key: []byte("a/"), Prefix: true},
		{Key: []byte("b"), Prefix: true},
		{Key: []byte("ab"), Prefix: true},
		{Key: []byte("a")},
		{Key: []byte("a/2")},
		{Key: []byte("b/1")},
	}
	const iterations, ops = 25, 150
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for it := range iterations {
		rng := rand.New(rand.NewPCG(seed, uint64(it)))
		cfg := watch.Config{}
		if rng.IntN(2) == 0 {
			cfg.ReplayPage = 1 + rng.IntN(6)
		}
		ok := t.Run(fmt.Sprintf("iter%d", it), func(t *testing.T) {
			e := newEnv(t, store.Config{}, cfg)
			type started struct {
				opts  watch.Options
				w     *watch.Watcher
				from  int64 // the first revision it must see
				got   []watch.Event
				label string
			}
			var ws []*started
			var changes []*store.Change
			live := map[string]bool{} // independent model: is the key live?

			drain := func(s *started) {
				// Take whatever is ready without waiting long: either events or a
				// deadline, which does not end the watcher.
				ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
				defer cancel()
				evs, err := s.w.Next(ctx)
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("%s: Next: %v", s.label, err)
				}
				s.got = append(s.got, evs...)
			}

			for i := range ops {
				if rng.IntN(12) == 0 {
					opts := watches[rng.IntN(len(watches))]
					opts.PrevKV = rng.IntN(2) == 0
					cur := e.st.Revision()
					switch rng.IntN(4) {
					case 0: // now
					case 1: // the current revision (or 1 on an empty store)
						opts.StartRevision = max(cur, 1)
					default: // anywhere from 1 to a few revisions in the future
						opts.StartRevision = 1 + rng.Int64N(cur+5)
					}
					w := e.watch(t, opts)
					from := opts.StartRevision
					if from == 0 {
						from = w.StartedAfter() + 1
						if w.StartedAfter() != cur {
							t.Fatalf("StartedAfter %d; want the current revision %d", w.StartedAfter(), cur)
						}
					}
					ws = append(ws, &started{opts: opts, w: w, from: from,
						label: fmt.Sprintf("watcher %d (key %q prefix %v start %d, opened at op %d)", len(ws), opts.Key, opts.Prefix, opts.StartRevision, i)})
				}
				if len(ws) > 0 && rng.IntN(8) == 0 {
					drain(ws[rng.IntN(len(ws))])
				}
				k := keys[rng.IntN(len(keys))]
				var c *store.Change
				if rng.IntN(3) == 0 {
					c = e.del(t, k)
					if c.Visible() != live[k] {
						t.Fatalf("delete of %q: Visible %v; the model says live %v", k, c.Visible(), live[k])
					}
					live[k] = false
				} else {
					c = e.put(t, k, fmt.Sprintf("v%d", i))
					if !c.Visible() {
						t.Fatalf("put of %q is not visible", k)
					}
					live[k] = true
				}
				if c.Record.ModRevision != int64(len(changes)+1) {
					t.Fatalf("op %d got revision %d; want %d", i, c.Record.ModRevision, len(changes)+1)
				}
				changes = append(changes, c)
			}
			// A sentinel per watcher, so that a duplicate or extra event shows
			// up as a mismatch rather than as a tail nobody reads.
			for _, s := range ws {
				k := string(s.opts.Key)
				if s.opts.Prefix {
					k += "~end"
				}
				changes = append(changes, e.put(t, k, "sentinel"))
			}

			// The log agrees with the write path.
			var logged []*store.Change
			if _, err := e.st.ReadLog(1, true, func(c *store.Change) error {
				cc := *c
				logged = append(logged, &cc)
				return nil
			}); err != nil {
				t.Fatalf("ReadLog: %v", err)
			}
			diffStreams(t, "ReadLog vs write path", rawStrings(logged), rawStrings(changes))

			for _, s := range ws {
				want := expected(logged, s.opts, s.from)
				if len(s.got) > len(want) {
					diffStreams(t, s.label, evStrings(s.got), want)
				}
				s.got = append(s.got, collect(t, s.w, len(want)-len(s.got))...)
				diffStreams(t, s.label, evStrings(s.got), want)
			}
		})
		if !ok {
			break // one counterexample is enough; the others would each wait for a timeout
		}
	}
}

// rawStrings renders changes including invisible ones.
func rawStrings(cs []*store.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s visible=%v prevmod=%d", evString(wantEvent(c, true)), c.Visible(), c.PrevModRevision)
	}
	return out
}
