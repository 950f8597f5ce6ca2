package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
)

// EventType says whether an event put or deleted its key.
type EventType int

// Event types.
const (
	Put EventType = iota + 1
	Delete
)

func (t EventType) String() string {
	switch t {
	case Put:
		return "PUT"
	case Delete:
		return "DELETE"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one visible change of a watched key.
type Event struct {
	Type EventType
	// Record is the key after the change: for a Delete, the tombstone (key,
	// HLC, origin and ModRevision, which is the event's revision).
	Record store.Record
	// Prev is the key before the change, when asked for, live and still known.
	Prev *store.Record
	// Converged is, for a ConvergedWatcher, this node's HLC when it saw
	// every live member hold the change; 0 otherwise.
	Converged crdt.Timestamp
}

// Watcher is one watch. Next may be called from one goroutine at a time;
// Close from any.
type Watcher struct {
	hub          *Hub
	opts         Options
	startedAfter int64
	notify       chan struct{} // a token when buffered events or an error wait
	done         chan struct{} // closed by Close
	closeOnce    sync.Once

	// Touched only by the goroutine calling Next.
	next int64 // the next revision this watcher has not yet seen
	live bool  // registered with the hub; events come through buf

	mu struct {
		sync.Mutex
		buf      []Event
		bufBytes int   // key and value bytes in buf
		err      error // set once: the watcher is over after buf drains
	}
}

// StartedAfter returns the revision the watch starts after: events have
// revisions greater than it.
func (w *Watcher) StartedAfter() int64 { return w.startedAfter }

// errPageFull stops a log read when a page is full.
var errPageFull = errors.New("watch: page full")

// Next blocks until there are events and returns them, in revision order.
// It fails with ErrWatcherTooSlow, ErrClosed, an error wrapping
// *store.CompactedError, or ctx's error; after a failure other than ctx's
// the watcher is over (after ctx's, Next may be called again).
func (w *Watcher) Next(ctx context.Context) ([]Event, error) {
	for !w.live {
		w.mu.Lock()
		err := w.mu.err
		w.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		events, err := w.replayPage()
		if err != nil {
			w.cancel(err)
			return nil, err
		}
		if len(events) > 0 {
			w.hub.eventsSent.Add(int64(len(events)))
			return events, nil
		}
		if w.live, err = w.hub.goLive(w); err != nil {
			w.cancel(err)
			return nil, err
		}
	}
	for {
		w.mu.Lock()
		if len(w.mu.buf) > 0 {
			events := w.takeLocked()
			w.mu.Unlock()
			w.hub.eventsSent.Add(int64(len(events)))
			return events, nil
		}
		err := w.mu.err
		w.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-w.notify:
		case <-w.done:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// takeLocked removes and returns up to a page of buffered events.
// REQUIRES: w.mu held.
func (w *Watcher) takeLocked() []Event {
	n, size := 0, 0
	for n < len(w.mu.buf) && n < w.hub.cfg.ReplayPage {
		size += eventSize(&w.mu.buf[n])
		if n > 0 && size > w.hub.cfg.MaxPageBytes {
			break
		}
		n++
	}
	events := append([]Event(nil), w.mu.buf[:n]...)
	for i := range events {
		w.mu.bufBytes -= eventSize(&events[i])
	}
	rest := copy(w.mu.buf, w.mu.buf[n:])
	clear(w.mu.buf[rest:])
	w.mu.buf = w.mu.buf[:rest]
	if rest > 0 {
		w.signal()
	}
	return events
}

// replayPage reads up to a page of matching events from the log.
func (w *Watcher) replayPage() ([]Event, error) {
	var events []Event
	size := 0
	_, err := w.hub.src.ReadLog(w.next, w.opts.PrevKV, func(c *store.Change) error {
		if ev, ok := w.event(c); ok {
			size += eventSize(&ev)
			if len(events) > 0 && (len(events) == w.hub.cfg.ReplayPage || size > w.hub.cfg.MaxPageBytes) {
				return errPageFull
			}
			events = append(events, ev)
		}
		w.next = c.Record.ModRevision + 1
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		return nil, fmt.Errorf("watch: replay from revision %d: %w", w.next, err)
	}
	return events, nil
}

// deliver buffers the matching events of a published batch. It reports false
// when the watcher is over and should be dropped. Called by the hub, under
// its lock.
//
// The buffer bound is checked once per batch: a watcher with fewer than
// BufferSize events waiting takes the whole batch, so that one large commit
// (a group commit holds up to 4096 changes, an Apply more) does not cancel a
// watcher that keeps up. The buffer so holds at most BufferSize events plus
// one batch.
func (w *Watcher) deliver(changes []store.Change) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.err != nil {
		return false
	}
	var events []Event
	for i := range changes {
		if changes[i].Record.ModRevision < w.next {
			continue // already replayed from the log
		}
		if ev, ok := w.event(&changes[i]); ok {
			events = append(events, ev)
		}
	}
	if len(events) == 0 {
		return true
	}
	waiting, waitingBytes := len(w.mu.buf), w.mu.bufBytes
	if waiting >= w.hub.cfg.BufferSize || waitingBytes >= w.hub.cfg.BufferBytes {
		// Resume from the oldest event not delivered: the buffer's first.
		resume := w.mu.buf[0].Record.ModRevision
		w.mu.buf, w.mu.bufBytes = nil, 0
		what := fmt.Sprintf("%d events were waiting, the limit is %d", waiting, w.hub.cfg.BufferSize)
		if waiting < w.hub.cfg.BufferSize {
			what = fmt.Sprintf("%d bytes were waiting, the limit is %d bytes", waitingBytes, w.hub.cfg.BufferBytes)
		}
		w.mu.err = fmt.Errorf("%w: %s; resume from revision %d", ErrWatcherTooSlow, what, resume)
		w.hub.tooSlow.Add(1)
		w.signal()
		return false
	}
	for i := range events {
		w.mu.bufBytes += eventSize(&events[i])
	}
	w.mu.buf = append(w.mu.buf, events...)
	w.signal()
	return true
}

// event turns a change into this watcher's event, if it matches and is visible.
func (w *Watcher) event(c *store.Change) (Event, bool) {
	if !c.Visible() || !w.matches(c.Record.Key) {
		return Event{}, false
	}
	ev := Event{Type: Put, Record: c.Record}
	if c.Record.Tombstone {
		ev.Type = Delete
	}
	if w.opts.PrevKV && c.Prev.Live() {
		prev := *c.Prev
		ev.Prev = &prev
	}
	return ev, true
}

func (w *Watcher) matches(key []byte) bool {
	if w.opts.Prefix {
		return bytes.HasPrefix(key, w.opts.Key)
	}
	return bytes.Equal(key, w.opts.Key)
}

// cancel ends the watcher with err, keeping the first error.
func (w *Watcher) cancel(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.err == nil {
		w.mu.err = err
		w.mu.buf, w.mu.bufBytes = nil, 0
	}
	w.signal()
}

func (w *Watcher) signal() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// Close ends the watcher and releases it from the hub. It is safe to call
// more than once, from any goroutine.
func (w *Watcher) Close() {
	w.closeOnce.Do(func() {
		w.hub.remove(w)
		w.cancel(ErrClosed)
		close(w.done)
	})
}

func eventSize(ev *Event) int {
	n := len(ev.Record.Key) + len(ev.Record.Value)
	if ev.Prev != nil {
		n += len(ev.Prev.Key) + len(ev.Prev.Value)
	}
	return n
}
