package watch_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/watch"
)

// TestMaxWatchers: the hub refuses a watcher beyond MaxWatchers open ones,
// with the limit in the message, whatever the options; closing one (or a
// watcher ended by the hub but not yet closed still counting) frees a slot.
func TestMaxWatchers(t *testing.T) {
	e := newEnv(t, store.Config{}, watch.Config{MaxWatchers: 3})
	e.put(t, "a", "1")
	var ws []*watch.Watcher
	for _, opts := range []watch.Options{{Key: []byte("a")}, {Prefix: true}, {Key: []byte("a"), StartRevision: 1}} {
		w, err := e.hub.Watch(opts)
		if err != nil {
			t.Fatalf("watcher %d of 3: %v", len(ws)+1, err)
		}
		ws = append(ws, w)
	}
	for _, opts := range []watch.Options{{Key: []byte("b")}, {Prefix: true, StartRevision: 1}} {
		_, err := e.hub.Watch(opts)
		if !errors.Is(err, watch.ErrTooManyWatchers) || !strings.Contains(err.Error(), "the limit is 3") {
			t.Fatalf("a fourth watcher (%+v): %v; want ErrTooManyWatchers naming the limit", opts, err)
		}
	}
	ws[0].Close()
	ws[0].Close()
	w, err := e.hub.Watch(watch.Options{Key: []byte("b")})
	if err != nil {
		t.Fatalf("a watcher after one closed: %v", err)
	}
	defer w.Close()
	if _, err := e.hub.Watch(watch.Options{Key: []byte("c")}); !errors.Is(err, watch.ErrTooManyWatchers) {
		t.Fatalf("a watcher past the limit again: %v; want ErrTooManyWatchers", err)
	}
	for _, w := range ws[1:] {
		w.Close()
	}
}
