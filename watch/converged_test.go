package watch_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/frontier"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/watch"
)

// stability drives a converged watcher with the real frontier logic: this
// node is node-a, one other live member, b, announces what it holds.
type stability struct {
	mu      sync.Mutex
	tr      *frontier.Tracker
	changed chan struct{}
}

func newStability(t *testing.T) *stability {
	tr, err := frontier.New(frontier.Config{Self: string(nodeA), Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr.SetLive([]string{"b"})
	return &stability{tr: tr, changed: make(chan struct{})}
}

func (s *stability) Stable(o []byte) crdt.Timestamp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tr.Stable(string(o))
}

func (s *stability) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *stability) Now() crdt.Timestamp { return crdt.NewTimestamp(time.Now().UnixMilli(), 0) }

// do changes the tracker and wakes the waiters.
func (s *stability) do(f func(*frontier.Tracker)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.tr)
	close(s.changed)
	s.changed = make(chan struct{})
}

func nextConverged(t *testing.T, w *watch.ConvergedWatcher) []watch.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	evs, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return evs
}

// noConverged checks that Next has nothing while the frontiers stay put.
func noConverged(t *testing.T, w *watch.ConvergedWatcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if evs, err := w.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v, %v; want nothing before the frontiers move", evs, err)
	}
}

func TestConvergedWatchHoldsUntilEveryMemberHolds(t *testing.T) {
	e := newEnv(t, store.Config{Path: t.TempDir()}, watch.Config{})
	st := newStability(t)
	w, err := e.hub.WatchConverged(watch.Options{Key: []byte("/k/"), Prefix: true}, st, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	c1 := e.put(t, "/k/1", "a")
	c2 := e.put(t, "/k/2", "b")
	st.do(func(tr *frontier.Tracker) { tr.LocalWrite(c1.Record.HLC, c2.Record.HLC) })
	noConverged(t, w) // b announced nothing
	if got := w.ConvergedRevision(); got != c1.Record.ModRevision-1 {
		t.Fatalf("ConvergedRevision %d while both wait; want %d", got, c1.Record.ModRevision-1)
	}
	// b holds the first write only.
	st.do(func(tr *frontier.Tracker) { tr.Announce("b", 7, frontier.Vector{string(nodeA): c1.Record.HLC}) })
	evs := nextConverged(t, w)
	if len(evs) != 1 || string(evs[0].Record.Key) != "/k/1" || evs[0].Converged == 0 {
		t.Fatalf("events %+v; want /k/1 stamped with its convergence", evs)
	}
	noConverged(t, w)
	if got := w.ConvergedRevision(); got != c1.Record.ModRevision {
		t.Fatalf("ConvergedRevision %d; want %d", got, c1.Record.ModRevision)
	}
	// b dies: it no longer counts, the second is released.
	st.do(func(tr *frontier.Tracker) { tr.SetLive(nil) })
	evs = nextConverged(t, w)
	if len(evs) != 1 || string(evs[0].Record.Key) != "/k/2" {
		t.Fatalf("events %+v; want /k/2", evs)
	}
	if got := w.ConvergedRevision(); got != c2.Record.ModRevision {
		t.Fatalf("ConvergedRevision %d; want %d", got, c2.Record.ModRevision)
	}
}

// A write that converges makes every older write of its key converged: a
// key's events keep their revision order.
func TestConvergedWatchNewerWriteReleasesOlder(t *testing.T) {
	e := newEnv(t, store.Config{Path: t.TempDir()}, watch.Config{})
	st := newStability(t)
	w, err := e.hub.WatchConverged(watch.Options{Key: []byte("/k"), Prefix: true}, st, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	// A write from origin x that b does not hold, then a local overwrite.
	ts := e.st.Clock().Now()
	if _, err := e.st.Apply(context.Background(), []crdt.Entry{{Key: []byte("/k"), Value: []byte("x"), HLC: ts, Origin: []byte("node-x")}}); err != nil {
		t.Fatal(err)
	}
	c := e.put(t, "/k", "a")
	st.do(func(tr *frontier.Tracker) {
		tr.LocalWrite(c.Record.HLC, c.Record.HLC)
		tr.Announce("b", 7, frontier.Vector{string(nodeA): c.Record.HLC})
	})
	evs := nextConverged(t, w)
	if len(evs) != 2 || string(evs[0].Record.Value) != "x" || string(evs[1].Record.Value) != "a" {
		t.Fatalf("events %+v; want x then a", evs)
	}
}

func TestConvergedWatchBacklog(t *testing.T) {
	e := newEnv(t, store.Config{Path: t.TempDir()}, watch.Config{})
	st := newStability(t)
	w, err := e.hub.WatchConverged(watch.Options{Key: []byte("/k/"), Prefix: true}, st, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	for _, k := range []string{"/k/1", "/k/2", "/k/3"} {
		e.put(t, k, "v")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var err2 error
	for err2 == nil {
		_, err2 = w.Next(ctx)
	}
	if !errors.Is(err2, watch.ErrConvergedBacklog) {
		t.Fatalf("Next: %v; want ErrConvergedBacklog", err2)
	}
}
