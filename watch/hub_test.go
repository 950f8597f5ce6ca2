package watch_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/watch"
)

// script is a mix of writes over keys that an exact watch, a prefix watch and
// an everything watch select differently.
func runScript(t *testing.T, e *env) []*store.Change {
	t.Helper()
	var cs []*store.Change
	cs = append(cs, e.put(t, "a", "1"))      // create a
	cs = append(cs, e.put(t, "a/x", "1"))    // create a/x
	cs = append(cs, e.put(t, "b", "1"))      // unrelated
	cs = append(cs, e.put(t, "a", "2"))      // overwrite a
	cs = append(cs, e.put(t, "ab", "1"))     // "a" is a prefix of "ab" but not of "a/"
	cs = append(cs, e.put(t, "a/x", "2"))    // overwrite a/x
	cs = append(cs, e.del(t, "a"))           // delete a
	cs = append(cs, e.del(t, "a/x"))         // delete a/x
	cs = append(cs, e.put(t, "a", "3"))      // re-create a over its tombstone
	cs = append(cs, e.put(t, "a/y", ""))     // an empty value is a put
	cs = append(cs, e.put(t, "b/a", "1"))    // contains "a" but no prefix match
	cs = append(cs, e.put(t, "a/\xff", "z")) // arbitrary bytes in a key
	return cs
}

func TestLiveWatch(t *testing.T) {
	tests := []struct {
		name string
		opts watch.Options
		want int // events expected from runScript, as a cross-check
	}{
		{"exact", watch.Options{Key: []byte("a")}, 4},
		{"exact/prevkv", watch.Options{Key: []byte("a"), PrevKV: true}, 4},
		{"prefix", watch.Options{Key: []byte("a/"), Prefix: true}, 5},
		{"prefix/prevkv", watch.Options{Key: []byte("a/"), Prefix: true, PrevKV: true}, 5},
		{"prefix-a", watch.Options{Key: []byte("a"), Prefix: true}, 10},
		{"everything", watch.Options{Prefix: true}, 12},
		{"everything/prevkv", watch.Options{Prefix: true, PrevKV: true}, 12},
		{"exact-missing", watch.Options{Key: []byte("zzz")}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, store.Config{}, watch.Config{})
			e.put(t, "a", "before") // before the watch: not seen
			w := e.watch(t, tt.opts)
			if got := w.StartedAfter(); got != 1 {
				t.Errorf("StartedAfter = %d; want 1", got)
			}
			cs := runScript(t, e)
			want := expected(cs, tt.opts, 0)
			if len(want) != tt.want {
				t.Fatalf("test bug: script gives %d matching events, table says %d", len(want), tt.want)
			}
			// A sentinel every watch matches ends the stream.
			sentinel := string(tt.opts.Key)
			if tt.opts.Prefix {
				sentinel += "~sentinel"
			}
			cs = append(cs, e.put(t, sentinel, "sentinel"))
			want = expected(cs, tt.opts, 0)
			got := collect(t, w, len(want))
			diffStreams(t, "live stream", evStrings(got), want)

			var last int64
			for _, ev := range got {
				if ev.Record.ModRevision <= last {
					t.Errorf("revision %d after %d: not in order", ev.Record.ModRevision, last)
				}
				last = ev.Record.ModRevision
				if (ev.Type == watch.Delete) != ev.Record.Tombstone {
					t.Errorf("event %s: type does not match the tombstone flag", evString(ev))
				}
				if !tt.opts.PrevKV && ev.Prev != nil {
					t.Errorf("event %s has Prev, which was not asked for", evString(ev))
				}
			}
			if tt.opts.PrevKV {
				// Some event of every non-trivial case has a Prev: the assertion
				// above is not vacuous.
				withPrev := 0
				for _, ev := range got {
					if ev.Prev != nil {
						withPrev++
					}
				}
				if withPrev == 0 {
					t.Errorf("no event carries Prev though PrevKV was asked for")
				}
			}
		})
	}
}

func TestLiveDeleteCarriesPrevValue(t *testing.T) {
	e := newEnv(t, store.Config{}, watch.Config{})
	put := e.put(t, "k", "v1")
	w := e.watch(t, watch.Options{Key: []byte("k"), PrevKV: true})
	del := e.del(t, "k")
	evs := collect(t, w, 1)
	ev := evs[0]
	if ev.Type != watch.Delete || ev.Record.ModRevision != del.Record.ModRevision || len(ev.Record.Value) != 0 {
		t.Fatalf("event %s; want DELETE at %d with no value", evString(ev), del.Record.ModRevision)
	}
	if ev.Prev == nil || string(ev.Prev.Value) != "v1" || ev.Prev.ModRevision != put.Record.ModRevision {
		t.Fatalf("Prev %+v; want v1 at %d", ev.Prev, put.Record.ModRevision)
	}
}

// Changes that are not visible, or not changes at all, emit nothing: the next
// event after them is a sentinel put.
func TestInvisibleChangesEmitNothing(t *testing.T) {
	e := newEnv(t, store.Config{}, watch.Config{})
	base := e.put(t, "k", "v1")
	startRev := e.st.Revision()
	w := e.watch(t, watch.Options{Prefix: true, PrevKV: true})

	// A tombstone over nothing.
	c1 := e.del(t, "never")
	if c1.Visible() {
		t.Fatalf("delete of a never-written key is visible")
	}
	// A tombstone over a tombstone.
	e.del(t, "never")

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	revBefore := e.st.Revision()
	// A stale remote entry: lower HLC than k's current one.
	stale := crdt.Entry{Key: []byte("k"), Value: []byte("stale"), HLC: base.Record.HLC - 1, Origin: []byte("node-b")}
	// A duplicate of k's current entry.
	dup := base.Record.Entry
	// A stale remote tombstone.
	staleDel := crdt.Entry{Key: []byte("k"), HLC: base.Record.HLC - 1, Origin: []byte("node-z"), Tombstone: true}
	for _, entry := range []crdt.Entry{stale, dup, staleDel} {
		changes, err := e.st.Apply(ctx, []crdt.Entry{entry})
		if err != nil {
			t.Fatalf("Apply(%+v): %v", entry, err)
		}
		if len(changes) != 0 {
			t.Fatalf("Apply of a stale/duplicate entry made %d changes", len(changes))
		}
	}
	if got := e.st.Revision(); got != revBefore {
		t.Fatalf("stale/duplicate Apply moved the revision from %d to %d", revBefore, got)
	}
	if got := e.hub.Revision(); got != revBefore {
		t.Fatalf("hub revision %d; want %d", got, revBefore)
	}

	// A winning remote entry is a change: positive control for Apply.
	win := crdt.Entry{Key: []byte("k"), Value: []byte("remote"), HLC: e.st.Clock().Last() + 1, Origin: []byte("node-b")}
	applied, err := e.st.Apply(ctx, []crdt.Entry{win})
	if err != nil || len(applied) != 1 {
		t.Fatalf("Apply(winning entry) = %d changes, %v; want 1", len(applied), err)
	}
	sentinel := e.put(t, "sentinel", "s")

	got := collect(t, w, 2)
	want := []string{evString(wantEvent(&applied[0], true)), evString(wantEvent(sentinel, true))}
	diffStreams(t, "after invisible changes", evStrings(got), want)
	if string(got[0].Record.Origin) != "node-b" {
		t.Errorf("remote event origin %q; want node-b", got[0].Record.Origin)
	}

	// Replaying the same history from the log skips the invisible changes too.
	rw := e.watch(t, watch.Options{Prefix: true, PrevKV: true, StartRevision: startRev + 1})
	got = collect(t, rw, 2)
	diffStreams(t, "replay after invisible changes", evStrings(got), want)
}

func TestResumeFromRevision(t *testing.T) {
	tests := []struct {
		name string
		opts watch.Options
		cfg  watch.Config
	}{
		{"prefix", watch.Options{Key: []byte("r/"), Prefix: true}, watch.Config{}},
		{"prefix/small-pages", watch.Options{Key: []byte("r/"), Prefix: true}, watch.Config{ReplayPage: 7}},
		{"prefix/prevkv/small-pages", watch.Options{Key: []byte("r/"), Prefix: true, PrevKV: true}, watch.Config{ReplayPage: 3}},
		{"exact", watch.Options{Key: []byte("r/0")}, watch.Config{ReplayPage: 2}},
		{"everything/byte-pages", watch.Options{Prefix: true}, watch.Config{MaxPageBytes: 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, store.Config{}, tt.cfg)
			var cs []*store.Change
			key := func(i int) string {
				if i%3 == 0 {
					return fmt.Sprintf("s/%d", i%4)
				}
				return fmt.Sprintf("r/%d", i%5)
			}
			for i := 1; i <= 100; i++ {
				cs = append(cs, e.put(t, key(i), fmt.Sprintf("v%d-%s", i, strings.Repeat("x", i%17))))
			}
			if e.st.Revision() != 100 {
				t.Fatalf("Revision %d; want 100", e.st.Revision())
			}
			opts := tt.opts
			opts.StartRevision = 10
			w := e.watch(t, opts)
			if got := w.StartedAfter(); got != 9 {
				t.Errorf("StartedAfter = %d; want 9", got)
			}
			want := expected(cs, opts, 10)
			got := collect(t, w, len(want))
			diffStreams(t, "replay", evStrings(got), want)
			if cs[9].Record.ModRevision != 10 || !matcher(opts)(cs[9].Record.Key) {
				t.Fatalf("test bug: revision 10 does not match the watch")
			}
			if got[0].Record.ModRevision != 10 {
				t.Errorf("first replayed revision %d; want 10", got[0].Record.ModRevision)
			}
			if tt.cfg.ReplayPage > 0 && len(want) > 0 {
				// Pages are honoured (checked on a fresh replay batch).
				w2 := e.watch(t, opts)
				if evs := next(t, w2); len(evs) > tt.cfg.ReplayPage {
					t.Errorf("a replay page has %d events; ReplayPage is %d", len(evs), tt.cfg.ReplayPage)
				}
			}

			// Live writes continue with no gap and no duplicate.
			var live []*store.Change
			for i := 101; i <= 130; i++ {
				live = append(live, e.put(t, key(i), fmt.Sprintf("v%d", i)))
			}
			want = expected(live, opts, 0)
			got = collect(t, w, len(want))
			diffStreams(t, "live after replay", evStrings(got), want)
		})
	}
}

// Writers keep writing while watchers replay from revision 1 and hand over to
// live events: each watcher sees every revision exactly once, in order.
func TestResumeUnderConcurrentWriters(t *testing.T) {
	const writers, perWriter = 8, 200
	const total = writers * perWriter
	tests := []struct {
		name string
		cfg  watch.Config
	}{
		{"default", watch.Config{}},
		{"small-pages", watch.Config{ReplayPage: 16}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, store.Config{}, tt.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()

			// Watchers start once the store passes these revisions.
			thresholds := []int64{1, 300, 800, 1300}
			reached := make([]chan struct{}, len(thresholds))
			var once = make([]sync.Once, len(thresholds))
			for i := range reached {
				reached[i] = make(chan struct{})
			}
			noteRev := func(rev int64) {
				for i, th := range thresholds {
					if rev >= th {
						once[i].Do(func() { close(reached[i]) })
					}
				}
			}

			var wg sync.WaitGroup
			errs := make(chan error, writers+len(thresholds))
			for g := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perWriter {
						c, err := e.st.Put(ctx, []byte(fmt.Sprintf("c/%d/%03d", g, i)), []byte(fmt.Sprintf("%d-%d", g, i)))
						if err != nil {
							errs <- fmt.Errorf("writer %d put %d: %w", g, i, err)
							return
						}
						noteRev(c.Record.ModRevision)
					}
				}()
			}

			results := make([][]watch.Event, len(thresholds))
			for i := range thresholds {
				wg.Add(1)
				go func() {
					defer wg.Done()
					select {
					case <-reached[i]:
					case <-ctx.Done():
						errs <- fmt.Errorf("watcher %d: revision %d never reached", i, thresholds[i])
						return
					}
					w, err := e.hub.Watch(watch.Options{Key: []byte("c/"), Prefix: true, StartRevision: 1})
					if err != nil {
						errs <- fmt.Errorf("watcher %d: %w", i, err)
						return
					}
					defer w.Close()
					for len(results[i]) < total {
						evs, err := w.Next(ctx)
						if err != nil {
							errs <- fmt.Errorf("watcher %d after %d events: %w", i, len(results[i]), err)
							return
						}
						results[i] = append(results[i], evs...)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if t.Failed() {
				return
			}
			if got := e.st.Revision(); got != total {
				t.Fatalf("store revision %d; want %d", got, total)
			}
			// The log is the reference for what each revision holds.
			byRev := make(map[int64]string, total)
			if _, err := e.st.ReadLog(1, false, func(c *store.Change) error {
				byRev[c.Record.ModRevision] = string(c.Record.Key) + "=" + string(c.Record.Value)
				return nil
			}); err != nil {
				t.Fatalf("ReadLog: %v", err)
			}
			for i, evs := range results {
				if len(evs) != total {
					t.Errorf("watcher %d: %d events; want %d", i, len(evs), total)
					continue
				}
				for j, ev := range evs {
					if ev.Record.ModRevision != int64(j+1) {
						t.Errorf("watcher %d: event %d has revision %d; want %d (gap, duplicate or reorder)", i, j, ev.Record.ModRevision, j+1)
						break
					}
					if got := string(ev.Record.Key) + "=" + string(ev.Record.Value); got != byRev[ev.Record.ModRevision] {
						t.Errorf("watcher %d: revision %d is %s; the log says %s", i, ev.Record.ModRevision, got, byRev[ev.Record.ModRevision])
						break
					}
				}
			}
		})
	}
}

func TestResumeAfterStoreRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	e := open(t, store.Config{Path: dir}, watch.Config{})
	var cs []*store.Change
	for i := 1; i <= 20; i++ {
		cs = append(cs, e.put(t, fmt.Sprintf("k/%d", i%6), fmt.Sprintf("v%d", i)))
	}
	e.close()

	e = newEnv(t, store.Config{Path: dir}, watch.Config{})
	if got := e.hub.Revision(); got != 20 {
		t.Fatalf("reopened hub revision %d; want 20", got)
	}
	opts := watch.Options{Key: []byte("k/"), Prefix: true, StartRevision: 5, PrevKV: true}
	w := e.watch(t, opts)
	cs = append(cs, e.put(t, "k/new", "live"))
	want := expected(cs, opts, 5)
	got := collect(t, w, len(want))
	diffStreams(t, "replay across restart then live", evStrings(got), want)
}

func TestStartRevisionInTheFuture(t *testing.T) {
	tests := []struct {
		name      string
		start     int64 // relative to the current revision (5)
		wantFirst int64
	}{
		{"current", 5, 5},  // replays the current revision
		{"next", 6, 6},     // the same as now
		{"future", 10, 10}, // waits for revision 10
		{"far-future", 15, 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, store.Config{}, watch.Config{})
			var cs []*store.Change
			for i := 1; i <= 5; i++ {
				cs = append(cs, e.put(t, "f", fmt.Sprintf("v%d", i)))
			}
			opts := watch.Options{Key: []byte("f"), StartRevision: tt.start}
			w := e.watch(t, opts)
			if tt.start > 5 && w.StartedAfter() != 5 {
				t.Errorf("StartedAfter = %d; want 5 (the current revision)", w.StartedAfter())
			}
			// Nothing arrives before the start revision is written: a Next with
			// a short deadline times out.
			if tt.start > 5 {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				evs, err := w.Next(ctx)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Next before the start revision = %v, %v; want DeadlineExceeded", evStrings(evs), err)
				}
			}
			for i := 6; i <= 20; i++ {
				cs = append(cs, e.put(t, "f", fmt.Sprintf("v%d", i)))
			}
			want := expected(cs, opts, tt.start)
			got := collect(t, w, len(want))
			diffStreams(t, "from start revision", evStrings(got), want)
			if got[0].Record.ModRevision != tt.wantFirst {
				t.Errorf("first event at %d; want %d", got[0].Record.ModRevision, tt.wantFirst)
			}
		})
	}
}

func TestCompactedStartRevision(t *testing.T) {
	e := newEnv(t, store.Config{RetainRevisions: 10}, watch.Config{})
	var cs []*store.Change
	for i := 1; i <= 50; i++ {
		cs = append(cs, e.put(t, fmt.Sprintf("k%d", i%3), fmt.Sprintf("v%d", i)))
	}
	oldest := e.st.OldestRevision()
	if oldest <= 1 || oldest > 41 {
		t.Fatalf("OldestRevision %d after 50 writes retaining 10; want in (1, 41]", oldest)
	}
	for _, start := range []int64{1, oldest - 1} {
		w, err := e.hub.Watch(watch.Options{Prefix: true, StartRevision: start})
		if err == nil {
			w.Close()
			t.Fatalf("Watch(StartRevision: %d) succeeded; oldest is %d", start, oldest)
		}
		if !errors.Is(err, store.ErrCompacted) {
			t.Errorf("Watch(StartRevision: %d) = %v; want ErrCompacted", start, err)
		}
		var ce *store.CompactedError
		if !errors.As(err, &ce) {
			t.Fatalf("Watch(StartRevision: %d) = %v; want a *store.CompactedError", start, err)
		}
		if ce.Oldest != e.st.OldestRevision() || ce.Requested != start {
			t.Errorf("CompactedError %+v; want Requested %d Oldest %d", *ce, start, e.st.OldestRevision())
		}
	}
	// The oldest revision itself still works.
	opts := watch.Options{Prefix: true, StartRevision: oldest}
	w := e.watch(t, opts)
	want := expected(cs, opts, oldest)
	got := collect(t, w, len(want))
	diffStreams(t, "from the oldest revision", evStrings(got), want)
}

func TestSlowWatcherIsCancelledAndWritersNeverBlock(t *testing.T) {
	const limit, writes = 8, 50
	e := newEnv(t, store.Config{}, watch.Config{BufferSize: limit})
	slow := e.watch(t, watch.Options{Key: []byte("s/"), Prefix: true})
	fast := e.watch(t, watch.Options{Key: []byte("s/"), Prefix: true})

	// Every Put returns (a blocked writer would fail on its deadline): the
	// stuck watcher never blocks the writers. A watcher that keeps up (read
	// in step with the writes, so that its buffer never holds more than one
	// event) is not affected and sees everything.
	var cs []*store.Change
	var fastGot []watch.Event
	for i := range writes {
		cs = append(cs, e.put(t, fmt.Sprintf("s/%d", i), "v"))
		fastGot = append(fastGot, collect(t, fast, 1)...)
	}
	diffStreams(t, "fast watcher", evStrings(fastGot), expected(cs, watch.Options{Key: []byte("s/"), Prefix: true}, 0))

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	evs, err := slow.Next(ctx)
	if !errors.Is(err, watch.ErrWatcherTooSlow) {
		t.Fatalf("slow Next = %d events, %v; want ErrWatcherTooSlow", len(evs), err)
	}
	msg := err.Error()
	if !strings.Contains(msg, fmt.Sprintf("limit is %d", limit)) {
		t.Errorf("error %q does not name the limit %d", msg, limit)
	}
	if _, ok := resumeRevision(msg); !ok {
		t.Errorf("error %q does not say which revision to resume from", msg)
	}
	// The watcher is over: Next keeps failing the same way.
	if _, err := slow.Next(ctx); !errors.Is(err, watch.ErrWatcherTooSlow) {
		t.Errorf("second Next = %v; want ErrWatcherTooSlow again", err)
	}
	// The hub dropped it: further writes still work and the hub is fine.
	e.put(t, "s/after", "v")
	if got, want := e.hub.Revision(), e.st.Revision(); got != want {
		t.Errorf("hub revision %d; want %d", got, want)
	}
	// The counters: the fast watcher's events sent, one watcher cancelled
	// as too slow, both still open until closed.
	if st := e.hub.Stats(); st.EventsSent != writes || st.CancelledTooSlow != 1 || st.Watchers != 2 {
		t.Errorf("hub stats %+v; want %d events sent, 1 cancelled too slow, 2 watchers", st, writes)
	}
	slow.Close()
	fast.Close()
	if st := e.hub.Stats(); st.Watchers != 0 {
		t.Errorf("%d watchers after both closed; want 0", st.Watchers)
	}
}

// resumeRevision parses "resume from revision N" out of an ErrWatcherTooSlow
// message.
func resumeRevision(msg string) (int64, bool) {
	const marker = "resume from revision "
	i := strings.Index(msg, marker)
	if i < 0 {
		return 0, false
	}
	var rev int64
	if _, err := fmt.Sscanf(msg[i+len(marker):], "%d", &rev); err != nil {
		return 0, false
	}
	return rev, true
}

func TestLivePagesHonourReplayPage(t *testing.T) {
	e := newEnv(t, store.Config{}, watch.Config{ReplayPage: 4, MaxPageBytes: 1 << 20})
	w := e.watch(t, watch.Options{Prefix: true})
	var cs []*store.Change
	for i := range 10 {
		cs = append(cs, e.put(t, fmt.Sprintf("p%d", i), "v"))
	}
	var got []watch.Event
	for len(got) < 10 {
		b := next(t, w)
		if len(b) > 4 {
			t.Fatalf("a live batch has %d events; ReplayPage is 4", len(b))
		}
		got = append(got, b...)
	}
	diffStreams(t, "live pages", evStrings(got), expected(cs, watch.Options{Prefix: true}, 0))
}

func TestReplayPageBytes(t *testing.T) {
	e := newEnv(t, store.Config{}, watch.Config{MaxPageBytes: 250})
	var cs []*store.Change
	for i := range 6 {
		cs = append(cs, e.put(t, fmt.Sprintf("b%d", i), strings.Repeat("x", 100)))
	}
	// One value larger than a page is still delivered, alone.
	cs = append(cs, e.put(t, "big", strings.Repeat("y", 1000)))
	opts := watch.Options{Prefix: true, StartRevision: 1}
	w := e.watch(t, opts)
	var got []watch.Event
	for len(got) < len(cs) {
		b := next(t, w)
		size := 0
		for _, ev := range b {
			size += len(ev.Record.Key) + len(ev.Record.Value)
		}
		if len(b) > 1 && size > 250 {
			t.Fatalf("a batch of %d events holds %d bytes; MaxPageBytes is 250", len(b), size)
		}
		got = append(got, b...)
	}
	diffStreams(t, "byte-capped replay", evStrings(got), expected(cs, opts, 1))
}

func TestCloseWakesNext(t *testing.T) {
	tests := []struct {
		name    string
		end     func(e *env, w *watch.Watcher, cancel context.CancelFunc)
		wantErr error
	}{
		{"watcher-close", func(_ *env, w *watch.Watcher, _ context.CancelFunc) { w.Close() }, watch.ErrClosed},
		{"hub-close", func(e *env, _ *watch.Watcher, _ context.CancelFunc) { e.hub.Close() }, watch.ErrClosed},
		{"ctx-cancel", func(_ *env, _ *watch.Watcher, cancel context.CancelFunc) { cancel() }, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, store.Config{}, watch.Config{})
			e.put(t, "k", "v")
			w := e.watch(t, watch.Options{Key: []byte("k")})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			started := make(chan struct{})
			res := make(chan error, 1)
			go func() {
				close(started)
				evs, err := w.Next(ctx)
				if err == nil {
					err = fmt.Errorf("Next returned %d events and no error", len(evs))
				}
				res <- err
			}()
			<-started // Next may or may not be blocked yet: either way it must end
			tt.end(e, w, cancel)
			select {
			case err := <-res:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Next = %v; want %v", err, tt.wantErr)
				}
			case <-time.After(waitTimeout):
				t.Fatalf("Next still blocked %v after %s", waitTimeout, tt.name)
			}
		})
	}
}

func TestCtxDeadlineWakesNext(t *testing.T) {
	e := newEnv(t, store.Config{}, watch.Config{})
	w := e.watch(t, watch.Options{Key: []byte("k")})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := w.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v; want DeadlineExceeded", err)
	}
	// A ctx error does not end a live watcher: it still gets events.
	c := e.put(t, "k", "v")
	got := collect(t, w, 1)
	diffStreams(t, "after a ctx timeout", evStrings(got), []string{evString(wantEvent(c, false))})
}

func TestHubCloseEndsAllWatchers(t *testing.T) {
	e := newEnv(t, store.Config{}, watch.Config{ReplayPage: 2})
	for i := range 10 {
		e.put(t, fmt.Sprintf("k%d", i), "v")
	}
	var live []*watch.Watcher
	for i := range 3 {
		live = append(live, e.watch(t, watch.Options{Key: []byte(fmt.Sprintf("k%d", i))}))
	}
	replaying := e.watch(t, watch.Options{Prefix: true, StartRevision: 1})

	res := make(chan error, len(live))
	for _, w := range live {
		go func() {
			_, err := w.Next(context.Background())
			res <- err
		}()
	}
	within(t, "Hub.Close", e.hub.Close)
	for range live {
		select {
		case err := <-res:
			if !errors.Is(err, watch.ErrClosed) {
				t.Errorf("live watcher Next = %v; want ErrClosed", err)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("a live watcher's Next did not return after Hub.Close")
		}
	}
	// A replaying watcher ends too, at its next page, not after replaying
	// the rest of the log (which would hold shutdown up).
	if err := nextErr(t, replaying, 1); !errors.Is(err, watch.ErrClosed) {
		t.Errorf("replaying watcher ended with %v; want ErrClosed", err)
	}
	// No new watchers, from now or from a revision.
	for _, opts := range []watch.Options{{Key: []byte("k")}, {Key: []byte("k"), StartRevision: 1}} {
		if w, err := e.hub.Watch(opts); !errors.Is(err, watch.ErrClosed) {
			if w != nil {
				w.Close()
			}
			t.Errorf("Watch(%+v) after Hub.Close = %v; want ErrClosed", opts, err)
		}
	}
	// Writes still work with a closed hub (nothing is published to anyone).
	e.put(t, "k0", "after")
	// Closing twice is fine.
	within(t, "second Hub.Close", e.hub.Close)
}

func TestWatcherCloseIsIdempotentAndFinal(t *testing.T) {
	e := newEnv(t, store.Config{}, watch.Config{})
	w := e.watch(t, watch.Options{Key: []byte("k")})
	w.Close()
	w.Close()
	e.put(t, "k", "v") // published after Close: must not be delivered
	if _, err := w.Next(context.Background()); !errors.Is(err, watch.ErrClosed) {
		t.Fatalf("Next after Close = %v; want ErrClosed", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name     string
		cfg      watch.Config
		wantErrs []string
	}{
		{"zero", watch.Config{}, nil},
		{"defaults", watch.Config{}.WithDefaults(), nil},
		{"positive", watch.Config{BufferSize: 1, ReplayPage: 1, MaxPageBytes: 1}, nil},
		{"buffer", watch.Config{BufferSize: -1}, []string{"BufferSize is -1"}},
		{"all", watch.Config{BufferSize: -1, ReplayPage: -2, MaxPageBytes: -3},
			[]string{"BufferSize is -1", "ReplayPage is -2", "MaxPageBytes is -3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil; want errors %q", tt.wantErrs)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate = %q; missing %q", err, want)
				}
			}
			// NewHub refuses it too.
			st, oerr := store.Open(store.Config{NodeID: nodeA})
			if oerr != nil {
				t.Fatal(oerr)
			}
			defer st.Close()
			if h, err := watch.NewHub(st, tt.cfg); err == nil || h != nil {
				t.Errorf("NewHub = %v, %v; want nil hub and an error", h, err)
			}
		})
	}
	d := watch.Config{}.WithDefaults()
	if d.BufferSize != watch.DefaultBufferSize || d.ReplayPage != watch.DefaultReplayPage || d.MaxPageBytes != watch.DefaultMaxPageBytes {
		t.Errorf("WithDefaults = %+v", d)
	}
}

func TestNegativeStartRevisionRejected(t *testing.T) {
	e := newEnv(t, store.Config{}, watch.Config{})
	for _, rev := range []int64{-1, -100} {
		w, err := e.hub.Watch(watch.Options{Key: []byte("k"), StartRevision: rev})
		if err == nil || w != nil {
			t.Errorf("Watch(StartRevision: %d) = %v, %v; want an error", rev, w, err)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprint(rev)) {
			t.Errorf("error %q does not name the revision %d", err, rev)
		}
	}
}

func TestEventTypeString(t *testing.T) {
	for typ, want := range map[watch.EventType]string{watch.Put: "PUT", watch.Delete: "DELETE", 7: "EventType(7)"} {
		if got := typ.String(); got != want {
			t.Errorf("%d.String() = %q; want %q", int(typ), got, want)
		}
	}
}

// readThrough reads w until it has an event at revision last or later.
func readThrough(t *testing.T, w *watch.Watcher, last int64) []watch.Event {
	t.Helper()
	var got []watch.Event
	for len(got) == 0 || got[len(got)-1].Record.ModRevision < last {
		got = append(got, next(t, w)...)
	}
	return got
}

// A watch resumed from a revision (replay from the change log) emits the
// Delete events of keys that were live, with or without PrevKV, and even when
// the deleted value's own log record is compacted away. (Regression: replay
// once judged visibility by the replayed Prev, which is only read with
// PrevKV and only while retained, and so dropped these deletes.)
func TestReplayEmitsDeleteEvents(t *testing.T) {
	t.Run("without-PrevKV", func(t *testing.T) {
		e := newEnv(t, store.Config{}, watch.Config{})
		liveW := e.watch(t, watch.Options{Prefix: true})
		var cs []*store.Change
		cs = append(cs, e.put(t, "a", "1")) // 1
		cs = append(cs, e.del(t, "a"))      // 2: a was live, the delete is visible
		cs = append(cs, e.put(t, "b", "1")) // 3
		opts := watch.Options{Prefix: true, StartRevision: 1}
		want := expected(cs, opts, 1)
		if len(want) != 3 {
			t.Fatalf("test bug: %d expected events", len(want))
		}
		// Control: the live watcher sees the delete.
		diffStreams(t, "live watcher", evStrings(collect(t, liveW, 3)), want)

		w := e.watch(t, opts)
		got := readThrough(t, w, 3)
		diffStreams(t, "replayed watcher (no PrevKV)", evStrings(got), want)
	})
	t.Run("PrevKV-but-prev-compacted", func(t *testing.T) {
		e := newEnv(t, store.Config{RetainRevisions: 10}, watch.Config{})
		var cs []*store.Change
		cs = append(cs, e.put(t, "a", "1")) // 1: compacted away below
		for i := range 30 {
			cs = append(cs, e.put(t, fmt.Sprintf("x%d", i), "v")) // 2..31
		}
		cs = append(cs, e.del(t, "a"))        // 32: a was live
		cs = append(cs, e.put(t, "b", "1"))   // 33
		sentinel := e.put(t, "a", "sentinel") // 34
		cs = append(cs, sentinel)
		oldest := e.st.OldestRevision()
		if oldest <= 1 || oldest > 32 {
			t.Fatalf("test bug: oldest revision %d; want revision 1 compacted and 32 kept", oldest)
		}
		opts := watch.Options{Key: []byte("a"), StartRevision: oldest, PrevKV: true}
		w := e.watch(t, opts)
		got := readThrough(t, w, sentinel.Record.ModRevision)
		// The delete's Prev is no longer known (it was compacted), so the
		// event carries none; but the delete itself must be there.
		want := []string{
			evString(wantEvent(cs[31], false)),
			evString(wantEvent(sentinel, true)),
		}
		diffStreams(t, "replayed watcher (prev compacted)", evStrings(got), want)
	})
}

// TestSlowWatcherByteLimit: a watcher whose waiting events hold more than
// BufferBytes of keys and values is cancelled, even under the event limit.
func TestSlowWatcherByteLimit(t *testing.T) {
	e := newEnv(t, store.Config{}, watch.Config{BufferSize: 1000, BufferBytes: 4096})
	w := e.watch(t, watch.Options{Key: []byte("b/"), Prefix: true})
	big := strings.Repeat("x", 1024)
	for i := range 10 {
		e.put(t, fmt.Sprintf("b/%d", i), big)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := w.Next(ctx)
	if !errors.Is(err, watch.ErrWatcherTooSlow) || !strings.Contains(err.Error(), "the limit is 4096 bytes") {
		t.Fatalf("Next = %v; want ErrWatcherTooSlow naming the byte limit", err)
	}
}
