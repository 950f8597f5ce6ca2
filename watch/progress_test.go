package watch_test

import (
	"context"
	"errors"
	"testing"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/watch"
)

func TestProgressCoversEveryEventReturned(t *testing.T) {
	e := newEnv(t, store.Config{}, watch.Config{})
	e.put(t, "/a", "1")
	w := e.watch(t, watch.Options{Key: []byte("/a"), StartRevision: 1})
	if _, ok := w.Progress(); ok {
		t.Fatal("Progress before replaying revision 1: ok; want not ok")
	}
	if evs := next(t, w); len(evs) != 1 {
		t.Fatalf("Next: %d events; want 1", len(evs))
	}
	e.put(t, "/b", "2") // not watched: progress moves past it
	if rev, ok := w.Progress(); !ok || rev != 2 {
		t.Errorf("Progress after the replay: %d, %v; want 2, true", rev, ok)
	}
	e.put(t, "/a", "3")
	if _, ok := w.Progress(); ok {
		t.Error("Progress with an event waiting: ok; want not ok")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if evs, err := w.Next(ctx); err != nil || len(evs) != 1 {
		t.Fatalf("Next: %v, %d events; want the waiting one", err, len(evs))
	}
	if _, err := w.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next on a canceled context: %v; want context.Canceled", err)
	}
	if rev, ok := w.Progress(); !ok || rev != 3 {
		t.Errorf("Progress after a canceled Next: %d, %v; want 3, true (the watcher stays usable)", rev, ok)
	}
}
