package watch

import (
	"context"
	"errors"
	"fmt"

	"github.com/chorus-kv/chorus/crdt"
)

// Stability says when a write has reached every live member of the
// cluster (package p2p's Convergence implements it).
type Stability interface {
	// Stable returns the origin's stable frontier: every live member holds
	// each of its writes at or below it (or a newer one for the key).
	Stable(origin []byte) crdt.Timestamp
	// Changed returns a channel closed when a stable frontier may have moved.
	Changed() <-chan struct{}
	// Now returns the current HLC, stamped on events as they converge.
	Now() crdt.Timestamp
}

// DefaultMaxConvergedPending bounds the events a converged watcher holds
// back while they converge.
const DefaultMaxConvergedPending = 65536

// ErrConvergedBacklog ends a converged watcher that holds more events back
// than its limit: a member is far behind (or down but not yet declared
// dead) while the watched keys keep changing. Resume from
// ConvergedRevision()+1 once the cluster caught up.
var ErrConvergedBacklog = errors.New("watch: too many changes waiting to converge")

// ConvergedWatcher emits a watch's events only once every live member holds
// them (Stability). Its order: events come in the order they converge;
// events that converge together come in revision order; a key's events are
// always in revision order, since a write that converges makes every older
// write of its key converged too (a newer write is held everywhere). Each
// event carries Converged, this node's HLC when it saw that.
//
// Resuming: every matching change at or below ConvergedRevision has been
// returned; changes above it may have been too, so a watch resumed from
// ConvergedRevision()+1 can see some again (compare ModRevision).
//
// Next may be called from one goroutine at a time; Close from any.
type ConvergedWatcher struct {
	w          *Watcher
	st         Stability
	maxPending int
	pending    []Event // held back, in revision order
	seen       int64   // the highest revision received from w
}

// WatchConverged starts a converged watcher over a watch of opts.
// maxPending 0 means DefaultMaxConvergedPending.
func (h *Hub) WatchConverged(opts Options, st Stability, maxPending int) (*ConvergedWatcher, error) {
	if st == nil {
		return nil, errors.New("watch: a converged watch needs a Stability")
	}
	if maxPending <= 0 {
		maxPending = DefaultMaxConvergedPending
	}
	w, err := h.Watch(opts)
	if err != nil {
		return nil, err
	}
	return &ConvergedWatcher{w: w, st: st, maxPending: maxPending, seen: w.StartedAfter()}, nil
}

// StartedAfter returns the revision the watch starts after.
func (c *ConvergedWatcher) StartedAfter() int64 { return c.w.StartedAfter() }

// ConvergedRevision returns a revision at or below which every matching
// change has been returned by Next.
//
// REQUIRES: the goroutine that calls Next, between two calls.
func (c *ConvergedWatcher) ConvergedRevision() int64 {
	if len(c.pending) > 0 {
		return c.pending[0].Record.ModRevision - 1
	}
	return c.seen
}

// Pending returns how many events are held back.
//
// REQUIRES: the goroutine that calls Next, between two calls.
func (c *ConvergedWatcher) Pending() int { return len(c.pending) }

// Close ends the watcher; a blocked Next returns ErrClosed.
func (c *ConvergedWatcher) Close() { c.w.Close() }

// Next blocks until events have converged and returns them. It fails as
// Watcher.Next does, or with ErrConvergedBacklog.
func (c *ConvergedWatcher) Next(ctx context.Context) ([]Event, error) {
	for {
		changed := c.st.Changed()
		if out := c.release(); len(out) > 0 {
			return out, nil
		}
		// Wait for new events or for the frontiers to move, whichever
		// comes first: the inner Next is interrupted by a context that a
		// frontier change cancels (Watcher.Next may be called again after
		// its context's error).
		inner, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			select {
			case <-changed:
				cancel()
			case <-inner.Done():
			}
		}()
		events, err := c.w.Next(inner)
		cancel()
		<-stopped
		if err != nil {
			if ctx.Err() == nil && inner.Err() != nil && errors.Is(err, context.Canceled) {
				continue // a frontier moved
			}
			return nil, err
		}
		for i := range events {
			c.seen = max(c.seen, events[i].Record.ModRevision)
		}
		c.pending = append(c.pending, events...)
		if len(c.pending) > c.maxPending {
			err := fmt.Errorf("%w: %d changes are waiting for every live member; the limit is %d (resume from revision %d)",
				ErrConvergedBacklog, len(c.pending), c.maxPending, c.ConvergedRevision()+1)
			c.w.Close()
			return nil, err
		}
	}
}

// release removes and returns the held-back events that have converged,
// in revision order, stamped with the time they did.
func (c *ConvergedWatcher) release() []Event {
	if len(c.pending) == 0 {
		return nil
	}
	stable := map[string]crdt.Timestamp{}
	done := make([]bool, len(c.pending))
	newer := map[string]bool{} // keys with a newer converged event
	found := false
	for i := len(c.pending) - 1; i >= 0; i-- {
		ev := &c.pending[i]
		s, ok := stable[string(ev.Record.Origin)]
		if !ok {
			s = c.st.Stable(ev.Record.Origin)
			stable[string(ev.Record.Origin)] = s
		}
		if ev.Record.HLC <= s || newer[string(ev.Record.Key)] {
			done[i], found = true, true
			newer[string(ev.Record.Key)] = true
		}
	}
	if !found {
		return nil
	}
	now := c.st.Now()
	var out []Event
	n := 0
	for i := range c.pending {
		if done[i] {
			ev := c.pending[i]
			ev.Converged = now
			out = append(out, ev)
			continue
		}
		c.pending[n] = c.pending[i]
		n++
	}
	clear(c.pending[n:])
	c.pending = c.pending[:n]
	return out
}
