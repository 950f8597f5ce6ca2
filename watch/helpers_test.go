package watch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/watch"
)

// waitTimeout bounds every wait for something that must happen. It is long
// because the race detector on a loaded machine slows everything down; a
// healthy run never comes close.
const waitTimeout = 15 * time.Second

var nodeA = []byte("node-a")

// env is a real store whose OnCommit feeds a real hub, as internal/node wires
// them.
type env struct {
	st  *store.Store
	hub *watch.Hub
}

// open opens a store with scfg (NodeID defaulted) and a hub over it with
// wcfg, without registering any cleanup.
func open(tb testing.TB, scfg store.Config, wcfg watch.Config) *env {
	tb.Helper()
	if scfg.NodeID == nil {
		scfg.NodeID = nodeA
	}
	e := &env{}
	// The hub needs the store and the store needs the hub: bind the callback
	// through the env before any write can happen.
	scfg.OnCommit = func(changes []store.Change) { e.hub.Publish(changes) }
	st, err := store.Open(scfg)
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	hub, err := watch.NewHub(st, wcfg)
	if err != nil {
		_ = st.Close()
		tb.Fatalf("watch.NewHub: %v", err)
	}
	e.st, e.hub = st, hub
	return e
}

// newEnv is open with the hub and the store closed, in that order, when the
// test ends.
func newEnv(tb testing.TB, scfg store.Config, wcfg watch.Config) *env {
	tb.Helper()
	e := open(tb, scfg, wcfg)
	tb.Cleanup(e.close)
	return e
}

func (e *env) close() {
	e.hub.Close()
	_ = e.st.Close()
}

func (e *env) put(tb testing.TB, key, value string) *store.Change {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := e.st.Put(ctx, []byte(key), []byte(value))
	if err != nil {
		tb.Fatalf("Put(%q): %v", key, err)
	}
	return c
}

func (e *env) del(tb testing.TB, key string) *store.Change {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := e.st.Delete(ctx, []byte(key))
	if err != nil {
		tb.Fatalf("Delete(%q): %v", key, err)
	}
	return c
}

func (e *env) watch(tb testing.TB, opts watch.Options) *watch.Watcher {
	tb.Helper()
	w, err := e.hub.Watch(opts)
	if err != nil {
		tb.Fatalf("Watch(%+v): %v", opts, err)
	}
	tb.Cleanup(w.Close)
	return w
}

// next calls w.Next with a deadline and fails the test on error.
func next(tb testing.TB, w *watch.Watcher) []watch.Event {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	evs, err := w.Next(ctx)
	if err != nil {
		tb.Fatalf("Next: %v", err)
	}
	if len(evs) == 0 {
		tb.Fatalf("Next returned no events and no error")
	}
	return evs
}

// collect reads exactly n events from w (failing if a batch overshoots).
func collect(tb testing.TB, w *watch.Watcher, n int) []watch.Event {
	tb.Helper()
	var out []watch.Event
	for len(out) < n {
		out = append(out, next(tb, w)...)
	}
	if len(out) > n {
		tb.Fatalf("got %d events, want %d; extra: %v", len(out), n, evStrings(out[n:]))
	}
	return out
}

// evString renders an event so that two streams compare as string slices.
func evString(ev watch.Event) string {
	r := &ev.Record
	s := fmt.Sprintf("%v %q=%q @%d create=%d ver=%d hlc=%d origin=%s tomb=%v",
		ev.Type, r.Key, r.Value, r.ModRevision, r.CreateRevision, r.Version, r.HLC, r.Origin, r.Tombstone)
	if ev.Prev != nil {
		s += fmt.Sprintf(" prev=%q@%d", ev.Prev.Value, ev.Prev.ModRevision)
	}
	return s
}

func evStrings(evs []watch.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = evString(ev)
	}
	return out
}

// wantEvent is the event a watcher must deliver for change c, computed from
// the change alone: the write path's view, independent of the watch code.
func wantEvent(c *store.Change, prevKV bool) watch.Event {
	ev := watch.Event{Type: watch.Put, Record: c.Record}
	if c.Record.Tombstone {
		ev.Type = watch.Delete
	}
	if prevKV && c.Prev.Live() {
		p := *c.Prev
		ev.Prev = &p
	}
	return ev
}

// matcher reports whether a key is watched by opts.
func matcher(opts watch.Options) func([]byte) bool {
	return func(k []byte) bool {
		if opts.Prefix {
			return bytes.HasPrefix(k, opts.Key)
		}
		return bytes.Equal(k, opts.Key)
	}
}

// expected filters changes to what a watcher with opts must see from
// revision from on.
func expected(changes []*store.Change, opts watch.Options, from int64) []string {
	match := matcher(opts)
	var out []string
	for _, c := range changes {
		if c.Record.ModRevision < from || !match(c.Record.Key) || !c.Visible() {
			continue
		}
		out = append(out, evString(wantEvent(c, opts.PrevKV)))
	}
	return out
}

func diffStreams(tb testing.TB, what string, got, want []string) {
	tb.Helper()
	if len(got) == len(want) {
		same := true
		for i := range got {
			if got[i] != want[i] {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	var b strings.Builder
	for i := 0; i < max(len(got), len(want)); i++ {
		g, w := "<none>", "<none>"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		mark := "  "
		if g != w {
			mark = "!="
		}
		fmt.Fprintf(&b, "%s %3d got  %s\n          want %s\n", mark, i, g, w)
	}
	tb.Fatalf("%s: got %d events, want %d:\n%s", what, len(got), len(want), b.String())
}

// nextErr calls Next until it fails (at most limit calls) and returns the
// error; events returned on the way are discarded.
func nextErr(tb testing.TB, w *watch.Watcher, limit int) error {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for range limit {
		if _, err := w.Next(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				tb.Fatalf("Next did not fail within %v", waitTimeout)
			}
			return err
		}
	}
	tb.Fatalf("Next still returned events after %d calls", limit)
	return nil
}

// within runs fn and fails the test if it does not return within waitTimeout.
func within(tb testing.TB, what string, fn func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		tb.Fatalf("%s did not return within %v", what, waitTimeout)
	}
}
