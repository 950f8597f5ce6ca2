package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/syndtr/goleveldb/leveldb/storage"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store/faultstorage"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// faultRig runs a store on real LevelDB over a fault-injecting storage
// (faultstorage: disk faults a test cannot cause), reopens it after faults
// and crashes, and remembers what the store acknowledged and published, to
// check that nothing acknowledged is lost and no published revision is given
// to another change.
type faultRig struct {
	t    *testing.T
	stor *faultstorage.Storage
	cfg  Config
	s    *Store

	mu sync.Mutex
	// published maps every revision OnCommit saw, across reopens, to its key.
	published map[int64]string
	// acked holds the value of every key whose latest write was
	// acknowledged as durable (Put, Apply).
	acked map[string]string
	// bufferedSyncs receives a value for every fsync of buffered batches
	// alone (the writer's SyncDelay timer).
	bufferedSyncs chan struct{}
}

func newFaultRig(t *testing.T, cfg Config) *faultRig {
	r := &faultRig{t: t, stor: faultstorage.New(), published: map[int64]string{}, acked: map[string]string{}, bufferedSyncs: make(chan struct{}, 16)}
	cfg.NodeID = localNode
	cfg.Clock = wallClock(testutil.NewFakeWall(testWall))
	cfg.OnCommit = func(cs []Change) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range cs {
			if k, ok := r.published[c.Record.ModRevision]; ok && k != string(c.Record.Key) {
				t.Errorf("revision %d given to %q after it was published for %q", c.Record.ModRevision, c.Record.Key, k)
			}
			r.published[c.Record.ModRevision] = string(c.Record.Key)
		}
	}
	cfg.OnWrite = func(w WriteInfo) {
		if w.Sync && w.Changes == 0 {
			select {
			case r.bufferedSyncs <- struct{}{}:
			default:
			}
		}
	}
	r.cfg = cfg
	r.open()
	t.Cleanup(func() { _ = r.s.Close() })
	return r
}

func (r *faultRig) open() {
	r.t.Helper()
	if err := r.tryOpen(); err != nil {
		r.t.Fatalf("Open on the fault storage: %v", err)
	}
}

func (r *faultRig) tryOpen() error {
	cfg := r.cfg
	cfg.Storage = r.stor
	s, err := Open(cfg)
	if err != nil {
		return err
	}
	r.s = s
	return nil
}

// put writes key durably and records it as acknowledged.
func (r *faultRig) put(key, value string) {
	r.t.Helper()
	if _, err := r.s.Put(context.Background(), []byte(key), []byte(value)); err != nil {
		r.t.Fatalf("Put(%q): %v", key, err)
	}
	r.mu.Lock()
	r.acked[key] = value
	r.mu.Unlock()
}

// buffered applies a remote entry with ApplyBuffered: acknowledged and
// published, not yet durable.
func (r *faultRig) buffered(key string, value []byte) {
	r.t.Helper()
	e := crdt.Entry{Key: []byte(key), Value: value, HLC: ts(-time.Minute, 0), Origin: []byte("node-b")}
	if _, err := r.s.ApplyBuffered(context.Background(), []crdt.Entry{e}); err != nil {
		r.t.Fatalf("ApplyBuffered(%q): %v", key, err)
	}
}

// reopen closes the store, after a crash of its storage if crash is set (a
// power loss: every byte not fsynced is gone), and opens it again.
func (r *faultRig) reopen(crash bool) {
	r.t.Helper()
	r.close(crash)
	r.open()
}

// close closes the store, after a crash of its storage if crash is set.
func (r *faultRig) close(crash bool) {
	if crash {
		r.stor = r.stor.Crash()
	} else {
		r.stor.Heal()
	}
	// After a crash or a failed write, Close may fail; it must return.
	_ = r.s.Close()
}

// check verifies the reopened store: every acknowledged write is there with
// its value; the change log reads from its oldest revision to the store's
// revision without an unrecorded hole (ReadLog fails on one); every record
// at a published revision is the change that was published; and a new write
// gets a revision above every one published.
func (r *faultRig) check() {
	r.t.Helper()
	r.mu.Lock()
	acked := maps.Clone(r.acked)
	published := maps.Clone(r.published)
	r.mu.Unlock()
	for _, k := range slices.Sorted(maps.Keys(acked)) {
		rec, err := r.s.Get([]byte(k))
		if err != nil || rec == nil || string(rec.Value) != acked[k] {
			r.t.Errorf("acknowledged %q = %q; after reopening Get = %v, %v", k, acked[k], rec, err)
		}
	}
	last, err := r.s.ReadLog(r.s.OldestRevision(), false, func(c *Change) error {
		if k, ok := published[c.Record.ModRevision]; ok && k != string(c.Record.Key) {
			return fmt.Errorf("the log holds %q at revision %d, published for %q", c.Record.Key, c.Record.ModRevision, k)
		}
		return nil
	})
	if err != nil {
		r.t.Fatalf("ReadLog after reopening: %v", err)
	}
	if rev := r.s.Revision(); last != rev && last < rev {
		// The log may end before the revision only in a recorded gap.
		if n := r.s.Stats().SkippedRevisions; n == 0 {
			r.t.Errorf("the log ends at %d, the revision is %d, and no revision was skipped", last, rev)
		}
	}
	maxPublished := slices.Max(slices.Collect(maps.Keys(published)))
	value := fmt.Sprint(r.s.Revision())
	c, err := r.s.Put(context.Background(), []byte("after-reopen"), []byte(value))
	if err != nil {
		r.t.Fatalf("Put after reopening: %v", err)
	}
	r.mu.Lock()
	r.acked["after-reopen"] = value
	r.mu.Unlock()
	if c.Record.ModRevision <= maxPublished {
		r.t.Errorf("a new write after reopening got revision %d; revisions up to %d were published before", c.Record.ModRevision, maxPublished)
	}
}

// TestFailedWriteStopsTheStoreAndLosesNothingAcknowledged injects a failing
// write or fsync of LevelDB's journal (goleveldb calls the storage writer's
// Sync for every write with Sync set), or a failing fsync of the table a
// full memtable is flushed to: the write is not acknowledged, the store
// stops with ErrWriteFailed, and after reopening, with or without a crash of
// the machine, every acknowledged write is there.
func TestFailedWriteStopsTheStoreAndLosesNothingAcknowledged(t *testing.T) {
	type visibility int
	const (
		absent visibility = iota
		visible
		either
	)
	for _, tc := range []struct {
		name  string
		op    faultstorage.Op
		types storage.FileType
		crash bool
		// failed: whether the failed write is read back after reopening.
		// After a failed journal fsync the journal holds it (not durable),
		// and a crash drops it; a failed journal write never reached it.
		failed visibility
		// damaged: the journal ends in a torn record, which Open refuses
		// (ErrDamaged) as it refuses a journal cut short; the store then
		// opens with Repair.
		damaged bool
	}{
		{"journal write fails, then close", faultstorage.Write, storage.TypeJournal, false, absent, false},
		{"journal write fails, then crash", faultstorage.Write, storage.TypeJournal, true, absent, false},
		// A write that fills the disk leaves half a record at the end of
		// the journal; a crash drops it (it was never fsynced).
		{"journal write half done, then close", faultstorage.ShortWrite, storage.TypeJournal, false, absent, true},
		{"journal write half done, then crash", faultstorage.ShortWrite, storage.TypeJournal, true, absent, false},
		{"journal fsync fails, then close", faultstorage.Sync, storage.TypeJournal, false, visible, false},
		{"journal fsync fails, then crash", faultstorage.Sync, storage.TypeJournal, true, absent, false},
		// The flush fails in the background; the write that waits for it
		// (the memtable after it is full too) gets its error.
		{"table fsync fails, then close", faultstorage.Sync, storage.TypeTable, false, either, false},
		{"table fsync fails, then crash", faultstorage.Sync, storage.TypeTable, true, either, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFaultRig(t, Config{SyncDelay: time.Hour, WriteBufferBytes: 64 << 10})
			for i := range 20 {
				r.put(fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i))
			}
			r.buffered("remote", []byte("r")) // made durable by the next fsync
			r.put("k00", "v0-again")
			r.stor.Fail(tc.op, tc.types)
			// Write until a write fails: at once for the journal, after
			// two memtables (64 KiB each) for a table.
			value := string(bytes.Repeat([]byte("x"), 1000))
			var failed string
			var err error
			for i := 0; i < 1000 && err == nil; i++ {
				failed = fmt.Sprintf("f%03d", i)
				if _, err = r.s.Put(context.Background(), []byte(failed), []byte(value)); err == nil {
					r.mu.Lock()
					r.acked[failed] = value
					r.mu.Unlock()
				}
			}
			if !errors.Is(err, ErrWriteFailed) || !errors.Is(err, faultstorage.ErrInjected) {
				t.Fatalf("Put with a failing %v of %v = %v; want ErrWriteFailed from the injected fault", tc.op, tc.types, err)
			}
			if r.stor.Injected() == 0 {
				t.Fatal("no fault was injected")
			}
			select {
			case <-r.s.Failed():
			default:
				t.Fatal("the store did not stop after a failed write (Failed is open)")
			}
			r.stor.Heal()
			// Stopped: later writes fail at once, even with the disk healed.
			if _, err := r.s.Put(context.Background(), []byte("later"), []byte("x")); !errors.Is(err, ErrWriteFailed) {
				t.Errorf("Put after the failure = %v; want ErrWriteFailed", err)
			}
			if _, err := r.s.Apply(context.Background(), []crdt.Entry{entry("later2", "x", ts(-time.Minute, 0), "node-b")}); !errors.Is(err, ErrWriteFailed) {
				t.Errorf("Apply after the failure = %v; want ErrWriteFailed", err)
			}
			if !errors.Is(r.s.Err(), ErrWriteFailed) {
				t.Errorf("Err() = %v; want ErrWriteFailed", r.s.Err())
			}

			r.close(tc.crash)
			err = r.tryOpen()
			if got := errors.Is(err, ErrDamaged); got != tc.damaged {
				t.Fatalf("Open after the failure = %v; want ErrDamaged: %v", err, tc.damaged)
			}
			if tc.damaged {
				r.cfg.Repair = true
				r.open()
				if !r.s.CatchingUp() {
					t.Error("the repaired store is not catching up")
				}
			}
			r.check()
			if rec, err := r.s.Get([]byte("remote")); err != nil || rec == nil {
				t.Errorf("the buffered write before an fsynced Put is lost: Get = %v, %v", rec, err)
			}
			rec, err := r.s.Get([]byte(failed))
			if err != nil {
				t.Fatal(err)
			}
			if got := rec != nil; tc.failed != either && got != (tc.failed == visible) {
				t.Errorf("the failed write is there after reopening: %v; want %v", got, tc.failed == visible)
			}
			for _, k := range []string{"later", "later2"} {
				if rec, err := r.s.Get([]byte(k)); err != nil || rec != nil {
					t.Errorf("a write refused after the failure is there after reopening: %q = %v, %v", k, rec, err)
				}
			}
		})
	}
}

// TestCrashLosesOnlyUnsyncedWrites crashes the machine (every byte not
// fsynced is gone) with buffered writes in flight: every acknowledged Put
// survives; buffered writes after the last fsync are lost, and their
// revisions, which were published, are recorded as a gap rather than given
// to other changes; the change log reads across the gap.
func TestCrashLosesOnlyUnsyncedWrites(t *testing.T) {
	big := bytes.Repeat([]byte("b"), 4<<10)
	for _, tc := range []struct {
		name string
		cfg  Config
		// run writes; it returns the buffered keys the crash must lose and
		// those it must keep.
		run func(r *faultRig) (lost, kept []string)
	}{{
		name: "nothing in flight",
		run: func(r *faultRig) ([]string, []string) {
			r.put("a", "1")
			r.put("b", "2")
			return nil, nil
		},
	}, {
		name: "buffered writes after the last fsync",
		cfg:  Config{SyncDelay: time.Hour},
		run: func(r *faultRig) ([]string, []string) {
			r.put("a", "1")
			r.buffered("r1", []byte("x"))
			r.buffered("r2", []byte("x"))
			return []string{"r1", "r2"}, nil
		},
	}, {
		name: "buffered writes made durable by a later Put",
		cfg:  Config{SyncDelay: time.Hour},
		run: func(r *faultRig) ([]string, []string) {
			r.put("a", "1")
			r.buffered("r1", []byte("x"))
			r.put("b", "2")
			r.buffered("r2", []byte("x"))
			return []string{"r2"}, []string{"r1"}
		},
	}, {
		name: "buffered writes made durable by the sync timer",
		cfg:  Config{SyncDelay: time.Millisecond},
		run: func(r *faultRig) ([]string, []string) {
			r.put("a", "1")
			r.buffered("r1", []byte("x"))
			select {
			case <-r.bufferedSyncs:
			case <-time.After(hangTimeout):
				r.t.Fatal("the buffered write was not fsynced within SyncDelay")
			}
			return nil, []string{"r1"}
		},
	}, {
		// A Put that does not fit in the memtable makes LevelDB switch to
		// a new journal, closing the old one without an fsync; with the
		// old memtable's table not yet durable (its fsync fails), the
		// crash keeps the Put (fsynced in the new journal) and loses the
		// buffered writes before it (in the old one): a hole in the log
		// below a surviving revision, which Open must record as a gap.
		name: "buffered writes in a journal LevelDB closed without an fsync",
		cfg:  Config{SyncDelay: time.Hour, WriteBufferBytes: 64 << 10},
		run: func(r *faultRig) ([]string, []string) {
			r.put("a", "1")
			r.stor.Fail(faultstorage.Sync, storage.TypeTable)
			var lost []string
			// About 34 KiB of the 64 KiB memtable (a value is in the
			// entry and in its log record)...
			for i := range 4 {
				k := fmt.Sprintf("r%d", i)
				r.buffered(k, big)
				lost = append(lost, k)
			}
			// ...and a Put of about 32 KiB that does not fit (one larger
			// than the memtable would bypass the journal).
			r.put("b", string(bytes.Repeat([]byte("c"), 16<<10)))
			return lost, nil
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFaultRig(t, tc.cfg)
			lost, kept := tc.run(r)
			r.reopen(true)
			r.check()
			for _, k := range kept {
				if rec, err := r.s.Get([]byte(k)); err != nil || rec == nil {
					t.Errorf("buffered %q, fsynced before the crash, is lost: %v, %v", k, rec, err)
				}
			}
			for _, k := range lost {
				if rec, err := r.s.Get([]byte(k)); err != nil || rec != nil {
					t.Errorf("buffered %q, never fsynced, survived the crash (%v, %v): the storage did not lose it", k, rec, err)
				}
			}
			if skipped := r.s.Stats().SkippedRevisions; len(lost) > 0 && skipped < int64(len(lost)) {
				t.Errorf("%d published revisions lost; Open skipped %d", len(lost), skipped)
			}
			// A second crash right after reopening loses nothing more.
			r.reopen(true)
			r.check()
		})
	}
}
