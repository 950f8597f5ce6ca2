package store

// Regression tests: each pins down a bug found in review and since fixed
// (reads after Close, caller buffers retained, batch caps overshot).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// TestReadsAfterCloseReturnErrClosed: ErrClosed's doc says it "is returned by
// calls made after Close", and internal/node maps errors.Is(err,
// store.ErrClosed) to codes.Unavailable ("node is shutting down"). Put,
// Delete and Apply do return it, but Get, GetEntry, Range and ReadLog read
// LevelDB directly (store.go getRecord and Range, log.go ReadLog) and return
// goleveldb's "leveldb: closed" wrapped instead, which the node reports as
// codes.Internal. Node.Close calls grpc.Stop after ShutdownTimeout without
// waiting for handlers, so a read can run after store.Close.
//
// Fix: in getRecord, Range and ReadLog, map goleveldb.ErrClosed (from Get,
// GetSnapshot, snapshot reads and it.Error()) to ErrClosed, e.g.
// `if errors.Is(err, goleveldb.ErrClosed) { return ..., ErrClosed }`, or
// check s.mu.closed under s.mu.RLock first (the mapping also covers a read
// racing Close).
func TestReadsAfterCloseReturnErrClosed(t *testing.T) {
	s := openStore(t, Config{Path: t.TempDir()})
	mustPut(t, s, "k", "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, getErr := s.Get([]byte("k"))
	_, getEntryErr := s.GetEntry([]byte("k"))
	_, rangeErr := s.Range(RangeOptions{})
	_, readLogErr := s.ReadLog(1, true, func(*Change) error { return nil })
	for name, err := range map[string]error{
		"Get": getErr, "GetEntry": getEntryErr, "Range": rangeErr, "ReadLog": readLogErr,
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v; want errors.Is(err, store.ErrClosed)", name, err)
		}
	}
}

// TestWritesDoNotRetainCallerBuffers: Put, Delete and Apply keep the
// caller's key and value slices (write.go: crdt.Entry{Key: key, Value:
// value}; Apply copies the Entry struct but not its slices). The committer
// stores and hands to OnCommit whatever those slices hold when it gets to
// the request, so:
//
//   - after a successful Put the caller may reuse its buffers (it returned),
//     but the Change passed to OnCommit — which internal/node gives to the
//     watch hub, which keeps it to stream later — still points into them, so
//     watchers see the caller's new bytes;
//   - a Put whose context ends while it is queued returns context.Canceled
//     and "may still become durable": if the caller reuses its buffers, the
//     store writes the new bytes, under a key the caller never asked for.
//
// Fix: copy key and value once in Put/Delete (bytes.Clone before
// writeLocal) and in Apply (clone each entry's Key, Value and Origin into the
// request's op), so the store owns every slice it queues, stores and
// publishes.
func TestWritesDoNotRetainCallerBuffers(t *testing.T) {
	t.Run("OnCommit change after a successful Put", func(t *testing.T) {
		var mu sync.Mutex
		var published []Change // what a watch hub would keep
		s := openStore(t, Config{OnCommit: func(cs []Change) {
			mu.Lock()
			published = append(published, cs...)
			mu.Unlock()
		}})
		key, value := []byte("key1"), []byte("value1")
		if _, err := s.Put(context.Background(), key, value); err != nil {
			t.Fatal(err)
		}
		copy(key, "XXXX") // Put returned: the buffers are the caller's again
		copy(value, "YYYYYY")
		mu.Lock()
		defer mu.Unlock()
		if got := published[0].Record; string(got.Key) != "key1" || string(got.Value) != "value1" {
			t.Errorf("OnCommit's change now reads key %q value %q; want key1 value1", got.Key, got.Value)
		}
	})
	t.Run("Apply", func(t *testing.T) {
		var mu sync.Mutex
		var published []Change
		s := openStore(t, Config{OnCommit: func(cs []Change) {
			mu.Lock()
			published = append(published, cs...)
			mu.Unlock()
		}})
		e := crdt.Entry{Key: []byte("key1"), Value: []byte("value1"), HLC: crdt.NewTimestamp(testWall, 0), Origin: []byte("node-b")}
		if _, err := s.Apply(context.Background(), []crdt.Entry{e}); err != nil {
			t.Fatal(err)
		}
		copy(e.Key, "XXXX")
		copy(e.Value, "YYYYYY")
		mu.Lock()
		defer mu.Unlock()
		if got := published[0].Record; string(got.Key) != "key1" || string(got.Value) != "value1" {
			t.Errorf("OnCommit's change now reads key %q value %q; want key1 value1", got.Key, got.Value)
		}
	})
	t.Run("Put cancelled while queued", func(t *testing.T) {
		entered := make(chan struct{}, 1)
		release := make(chan struct{})
		var once, releaseOnce sync.Once
		doRelease := func() { releaseOnce.Do(func() { close(release) }) }
		defer doRelease()
		cfg := Config{Path: t.TempDir(), NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall)),
			OnCommit: func([]Change) {
				once.Do(func() {
					entered <- struct{}{}
					<-release
				})
			}}
		s, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		first := make(chan error, 1)
		go func() {
			_, err := s.Put(context.Background(), []byte("first"), []byte("1"))
			first <- err
		}()
		within(t, "committer entering OnCommit", func() { <-entered })

		key, value := []byte("key2"), []byte("value2")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := s.Put(ctx, key, value)
			done <- err
		}()
		testutil.Eventually(t, hangTimeout, "the second Put is taken", func() bool { return s.taken.Load() == 2 })
		cancel()
		within(t, "cancelled Put", func() { err = <-done })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("queued Put after cancel: %v; want context.Canceled", err)
		}
		copy(key, "XXXX") // Put returned: the caller reuses its buffers
		copy(value, "YYYYYY")
		doRelease()
		within(t, "first Put", func() { err = <-first })
		if err != nil {
			t.Fatal(err)
		}
		within(t, "Close", func() { err = s.Close() })
		if err != nil {
			t.Fatal(err)
		}

		cfg.OnCommit = nil
		s2 := openStore(t, cfg)
		if s2.Revision() != 2 {
			t.Fatalf("Revision() = %d; want 2 (first and the queued key2)", s2.Revision())
		}
		if r := mustGetEntry(t, s2, []byte("XXXX")); r != nil {
			t.Errorf("the store wrote key %q value %q, which no caller asked for", r.Key, r.Value)
		}
		// The queued write may become durable, but only as it was made.
		if r := mustGetEntry(t, s2, []byte("key2")); r == nil || string(r.Value) != "value2" {
			t.Errorf("key2 = %s; want value2, the Put as it was made", fmtRecord(r))
		}
	})
}

// TestBatchCapsHoldWithMultiOpRequests: Config.MaxBatchOps "caps how many
// changes share one batch", MaxBatchBytes caps a batch's bytes and "a single
// larger request still gets a batch of its own". The gather loop in
// commitLoop (commit.go) checks the caps before taking the next
// queued request but not after: it appends the request whatever its size, so
// one batch can exceed MaxBatchOps/MaxBatchBytes by a whole request (an
// Apply of thousands of entries from anti-entropy joins a batch already near
// the cap, doubling its size, memory and fsync), and a request larger than
// the cap shares a batch with others.
//
// Fix: in the gather loop, peek the next request's ops and size before
// appending it; when it would push the batch over a cap (and the batch is
// not empty), keep it as the first request of the next batch (hold it in a
// local `carry *request` that the outer loop takes before reading s.queue).
func TestBatchCapsHoldWithMultiOpRequests(t *testing.T) {
	const maxOps = 4
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once, releaseOnce sync.Once
	doRelease := func() { releaseOnce.Do(func() { close(release) }) }
	defer doRelease()
	var mu sync.Mutex
	var sizes []int
	s := openStore(t, Config{MaxBatchOps: maxOps, OnCommit: func(cs []Change) {
		mu.Lock()
		sizes = append(sizes, len(cs))
		mu.Unlock()
		once.Do(func() {
			entered <- struct{}{}
			<-release
		})
	}})
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Go(func() { s.Put(ctx, []byte("first"), []byte("1")) })
	within(t, "committer entering OnCommit", func() { <-entered })
	// Queue, in this order, a one-change Put and a ten-change Apply.
	wg.Go(func() { s.Put(ctx, []byte("small"), []byte("1")) })
	testutil.Eventually(t, hangTimeout, "the small Put is taken", func() bool { return s.taken.Load() == 2 })
	entries := make([]crdt.Entry, 10)
	for i := range entries {
		entries[i] = crdt.Entry{Key: []byte{'e', byte('0' + i)}, Value: []byte("v"), HLC: crdt.NewTimestamp(testWall, 0), Origin: []byte("node-b")}
	}
	wg.Go(func() {
		if _, err := s.Apply(ctx, entries); err != nil {
			t.Errorf("Apply: %v", err)
		}
	})
	testutil.Eventually(t, hangTimeout, "the Apply is taken", func() bool { return s.taken.Load() == 3 })
	doRelease()
	within(t, "writers", wg.Wait)
	mu.Lock()
	defer mu.Unlock()
	// Acceptable: [1 1 10] (the big request alone). Not: a batch holding the
	// small Put and the Apply together.
	for _, n := range sizes {
		if n > maxOps && n != len(entries) {
			t.Errorf("batches of %v changes: one holds %d, over MaxBatchOps %d, and is not a single request", sizes, n, maxOps)
		}
	}
}

// TestFailedWriteStopsTheStore fills a small tmpfs under a running store so
// that LevelDB's journal write fails with ENOSPC (a real disk fault; it
// needs root to mount, and is skipped without), and checks that the write
// fails with ErrWriteFailed, Failed is closed, later writes fail the same
// way, reads still work, and Close returns.
func TestFailedWriteStopsTheStore(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	s, err := Open(Config{Path: dir, NodeID: localNode})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "before", "v")
	ctx := context.Background()
	value := make([]byte, 64<<10)
	var werr error
	for i := 0; i < 64 && werr == nil; i++ { // 4 MiB into a 1 MiB filesystem
		_, werr = s.Put(ctx, fmt.Appendf(nil, "fill/%d", i), value)
	}
	if !errors.Is(werr, ErrWriteFailed) {
		t.Fatalf("writes into a full disk: %v; want ErrWriteFailed", werr)
	}
	within(t, "Failed closed", func() { <-s.Failed() })
	if !errors.Is(s.Err(), ErrWriteFailed) {
		t.Fatalf("Err() = %v", s.Err())
	}
	if _, err := s.Put(ctx, []byte("small"), []byte("v")); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("a later Put: %v; want ErrWriteFailed", err)
	}
	if r, err := s.Get([]byte("before")); err != nil || r == nil {
		t.Fatalf("reads after the failure: %v, %v", r, err)
	}
	within(t, "Close", func() { _ = s.Close() })
}
