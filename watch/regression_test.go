package watch_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/watch"
)

// Regression (fixed): the "resume from revision N" in ErrWatcherTooSlow names the event
// that overflowed the buffer, not the oldest event the watcher lost.
//
// In Watcher.deliver (watch/watcher.go), on overflow w.mu.buf is set to nil
// *before* w.firstUndelivered(ev) is called, so firstUndelivered always sees
// an empty buffer and returns ev's revision. The BufferSize events that were
// buffered are discarded too (Next returns the error as soon as the buffer is
// empty), so a client resuming from the advertised revision silently skips
// them. Fix: compute the resume revision before clearing the buffer.
func TestSlowWatcherResumeRevisionIsOldestDropped(t *testing.T) {
	const limit = 8
	tests := []struct {
		name    string
		readFst int // puts made, and read, before the watcher stalls
	}{
		{"never-read", 0},
		{"read-some-then-stall", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, store.Config{}, watch.Config{BufferSize: limit})
			w := e.watch(t, watch.Options{Key: []byte("s/"), Prefix: true})
			for i := range tt.readFst {
				e.put(t, fmt.Sprintf("s/pre%d", i), "v")
			}
			if tt.readFst > 0 {
				collect(t, w, tt.readFst)
			}
			firstUnread := e.st.Revision() + 1
			for i := range 50 {
				e.put(t, fmt.Sprintf("s/%d", i), "v")
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			evs, err := w.Next(ctx)
			if !errors.Is(err, watch.ErrWatcherTooSlow) {
				t.Fatalf("Next = %d events, %v; want ErrWatcherTooSlow", len(evs), err)
			}
			rev, ok := resumeRevision(err.Error())
			if !ok {
				t.Fatalf("error %q has no resume revision", err)
			}
			if rev != firstUnread {
				t.Errorf("error says resume from revision %d, but the watcher never received revisions %d..%d: "+
					"resuming there would skip them (error: %q)", rev, firstUnread, rev-1, err)
			}
		})
	}
}

// Regression (fixed): one committed batch with more matching changes than BufferSize cancels
// a watcher with ErrWatcherTooSlow even though it was keeping up (its buffer
// was empty and its reader was waiting in Next).
//
// Watcher.deliver (watch/watcher.go) checks len(buf) >= BufferSize per event
// while appending one Publish batch, so a batch of more than BufferSize
// matching changes overflows even an empty buffer. A commit batch holds up to
// store.MaxBatchOps (4096) changes from concurrent writers, or more for a
// single large Apply request; so any node with Config.WatchBuffer below 4096
// (node.Config allows any positive value) cancels watchers that keep up
// whenever group commit gathers more writes than that; and with the default
// 4096 a watcher with even one event still buffered is cancelled by a full
// batch. Fix: let one batch overshoot (check the buffer length before the
// batch, not per event), or better, on overflow fall back to replaying from
// the log at the first undelivered revision (as etcd does for unsynced
// watchers) and cancel only if that revision is compacted.
func TestLargeBatchKeepsWatcherThatKeepsUp(t *testing.T) {
	const limit, entries = 16, 40
	e := newEnv(t, store.Config{}, watch.Config{BufferSize: limit})
	w := e.watch(t, watch.Options{Key: []byte("g/"), Prefix: true})

	// The reader is already waiting: nothing is buffered for it.
	type result struct {
		evs []watch.Event
		err error
	}
	res := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		var r result
		for len(r.evs) < entries {
			b, err := w.Next(ctx)
			if err != nil {
				r.err = err
				break
			}
			r.evs = append(r.evs, b...)
		}
		res <- r
	}()

	// One Apply, as the gossip replicator makes for one message: one batch.
	hlc := e.st.Clock().Now()
	batch := make([]crdt.Entry, entries)
	for i := range batch {
		batch[i] = crdt.Entry{Key: []byte(fmt.Sprintf("g/%03d", i)), Value: []byte("v"), HLC: hlc, Origin: []byte("node-b")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	changes, err := e.st.Apply(ctx, batch)
	if err != nil || len(changes) != entries {
		t.Fatalf("Apply = %d changes, %v; want %d", len(changes), err, entries)
	}

	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("a watcher that was waiting in Next with an empty buffer got %d of %d events, then: %v",
				len(r.evs), entries, r.err)
		}
		if len(r.evs) != entries {
			t.Fatalf("got %d events; want %d", len(r.evs), entries)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("the reader did not finish")
	}
}
