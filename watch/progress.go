package watch

import (
	"errors"

	"github.com/chorus-kv/chorus/crdt/store"
)

// errMatch stops Progress's log read at the first matching change.
var errMatch = errors.New("watch: matching change")

// Progress reports a revision R such that every event of this watcher with a
// revision up to R has already been returned by Next, and ok=false when it
// cannot say yet: the watcher has events waiting for Next (in its buffer or
// in the log it is replaying), or is over. Call Next, which returns them, and
// ask again. An etcd-style progress notification carries R.
//
// REQUIRES: the goroutine that calls Next, between two calls. A Next that
// returned ctx's error leaves the watcher usable, so a caller can interrupt
// a blocked Next (with a context it cancels) to ask for progress.
func (w *Watcher) Progress() (rev int64, ok bool) {
	if !w.live {
		// Replaying: skip the log's non-matching changes, and go live if
		// nothing matching is left.
		last, err := w.hub.src.ReadLog(w.next, false, func(c *store.Change) error {
			if _, ok := w.event(c); ok {
				return errMatch
			}
			return nil
		})
		if err != nil {
			return 0, false
		}
		w.next = max(w.next, last+1)
		if w.live, err = w.hub.goLive(w); err != nil || !w.live {
			return 0, false
		}
	}
	// Publish delivers under the hub's lock, so with it held the buffer
	// holds every matching event up to the published revision.
	w.hub.mu.Lock()
	defer w.hub.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.mu.buf) > 0 || w.mu.err != nil {
		return 0, false
	}
	return w.hub.mu.published, true
}
