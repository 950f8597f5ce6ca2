package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// readLog collects ReadLog(from, prev) and checks its return value.
func readLog(tb testing.TB, s *Store, from int64, prev bool) []Change {
	tb.Helper()
	var out []Change
	last, err := s.ReadLog(from, prev, func(c *Change) error {
		out = append(out, *c)
		return nil
	})
	if err != nil {
		tb.Fatalf("ReadLog(%d, %v): %v", from, prev, err)
	}
	wantLast := max(from, 1) - 1
	if len(out) > 0 {
		wantLast = out[len(out)-1].Record.ModRevision
	}
	if last != wantLast {
		tb.Errorf("ReadLog(%d) returned last revision %d; want %d", from, last, wantLast)
	}
	return out
}

// countLogRecords counts the change-log records in LevelDB (white box).
func countLogRecords(tb testing.TB, s *Store) int {
	tb.Helper()
	it := s.ldb().NewIterator(&util.Range{Start: []byte(logPrefix), Limit: logKeyEnd()}, nil)
	defer it.Release()
	n := 0
	for it.Next() {
		n++
	}
	if err := it.Error(); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestReadLog(t *testing.T) {
	s := openStore(t, Config{})
	ctx := context.Background()
	// Every change the writes made, by revision.
	var written []Change
	record := func(c *Change, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		written = append(written, *c)
	}
	record(s.Put(ctx, []byte("a"), []byte("1")))
	record(s.Put(ctx, []byte("b"), []byte("1")))
	record(s.Put(ctx, []byte("a"), []byte("2")))
	record(s.Delete(ctx, []byte("b")))
	record(s.Delete(ctx, []byte("c"))) // unknown key
	changes, err := s.Apply(ctx, []crdt.Entry{
		{Key: []byte("d"), Value: []byte("remote"), HLC: crdt.NewTimestamp(testWall+100, 0), Origin: []byte("node-b")},
		{Key: []byte("a"), Value: []byte("stale"), HLC: crdt.NewTimestamp(1, 0), Origin: []byte("node-b")}, // no change
		{Key: []byte("a"), Value: []byte("remote"), HLC: crdt.NewTimestamp(testWall+200, 0), Origin: []byte("node-b")},
	})
	if err != nil || len(changes) != 2 {
		t.Fatalf("Apply = %d changes, %v; want 2", len(changes), err)
	}
	written = append(written, changes...)
	record(s.Put(ctx, []byte("b"), []byte("again")))
	record(s.Put(ctx, []byte("a"), []byte("3")))
	n := int64(len(written))
	if s.Revision() != n {
		t.Fatalf("Revision() = %d; want %d", s.Revision(), n)
	}

	for _, prev := range []bool{false, true} {
		for from := int64(-1); from <= n+2; from++ {
			t.Run(fmt.Sprintf("from=%d,prev=%v", from, prev), func(t *testing.T) {
				got := readLog(t, s, from, prev)
				first := max(from, 1)
				want := written[min(first-1, n):]
				if len(got) != len(want) {
					t.Fatalf("read %d changes; want %d", len(got), len(want))
				}
				for i := range got {
					g, w := &got[i], &want[i]
					if g.Record.ModRevision != first+int64(i) || !recordEqual(&g.Record, &w.Record) {
						t.Errorf("change %d: %s; want %s", i, fmtRecord(&g.Record), fmtRecord(&w.Record))
					}
					if g.PrevModRevision != w.PrevModRevision {
						t.Errorf("change %d: PrevModRevision %d; want %d", i, g.PrevModRevision, w.PrevModRevision)
					}
					switch {
					case !prev && g.Prev != nil:
						t.Errorf("change %d: Prev %s without prev", i, fmtRecord(g.Prev))
					case prev && !recordEqual(g.Prev, w.Prev):
						t.Errorf("change %d: Prev %s; want %s", i, fmtRecord(g.Prev), fmtRecord(w.Prev))
					}
				}
			})
		}
	}

	t.Run("fn error stops the read", func(t *testing.T) {
		stop := errors.New("stop")
		var seen []int64
		last, err := s.ReadLog(2, false, func(c *Change) error {
			seen = append(seen, c.Record.ModRevision)
			if c.Record.ModRevision == 4 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || last != 3 || fmt.Sprint(seen) != "[2 3 4]" {
			t.Errorf("ReadLog = %d, %v after %v; want 3, stop after [2 3 4]", last, err, seen)
		}
	})
	t.Run("stops at the revision when the read started", func(t *testing.T) {
		var seen int64
		last, err := s.ReadLog(1, false, func(c *Change) error {
			if seen++; seen == 1 {
				mustPut(t, s, "during", "read")
			}
			return nil
		})
		if err != nil || last != n || seen != n {
			t.Errorf("ReadLog = %d, %v, %d changes; want %d, nil, %d (not the write made during the read)", last, err, seen, n, n)
		}
		if got := readLog(t, s, n+1, false); len(got) != 1 || string(got[0].Record.Key) != "during" {
			t.Errorf("the write made during the read is not in the log: %d changes", len(got))
		}
	})
}

func TestReadLogCompaction(t *testing.T) {
	const retain, writes, keys = 10, 50, 5
	path := t.TempDir()
	cfg := Config{Path: path, RetainRevisions: retain, NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall))}
	s := openStore(t, cfg)
	for i := range writes {
		mustPut(t, s, fmt.Sprintf("k%d", i%keys), fmt.Sprint(i))
		if want := max(1, s.Revision()-retain+1); s.OldestRevision() != want {
			t.Fatalf("after %d writes OldestRevision() = %d; want %d", i+1, s.OldestRevision(), want)
		}
	}
	oldest := s.OldestRevision()
	if oldest != writes-retain+1 {
		t.Fatalf("OldestRevision() = %d; want %d", oldest, writes-retain+1)
	}
	if got := countLogRecords(t, s); got != retain {
		t.Errorf("%d log records in LevelDB; want %d", got, retain)
	}

	for _, from := range []int64{-5, 0, 1, oldest - 1} {
		t.Run(fmt.Sprintf("from=%d compacted", from), func(t *testing.T) {
			called := false
			_, err := s.ReadLog(from, true, func(*Change) error { called = true; return nil })
			if !errors.Is(err, ErrCompacted) {
				t.Fatalf("ReadLog(%d): %v; want ErrCompacted", from, err)
			}
			var ce *CompactedError
			if !errors.As(err, &ce) || ce.Oldest != s.OldestRevision() || ce.Requested != max(from, 1) {
				t.Errorf("ReadLog(%d): %#v; want a *CompactedError{Requested: %d, Oldest: %d}", from, err, max(from, 1), s.OldestRevision())
			}
			if called {
				t.Errorf("fn called for a compacted read")
			}
		})
	}
	t.Run("from oldest", func(t *testing.T) {
		got := readLog(t, s, oldest, true)
		if len(got) != retain {
			t.Fatalf("read %d changes; want %d", len(got), retain)
		}
		for i, c := range got {
			rev := oldest + int64(i)
			if c.Record.ModRevision != rev {
				t.Errorf("change %d has revision %d; want %d", i, c.Record.ModRevision, rev)
			}
			// Each key was last written keys revisions before.
			if c.PrevModRevision != rev-keys {
				t.Errorf("revision %d: PrevModRevision %d; want %d", rev, c.PrevModRevision, rev-keys)
			}
			switch {
			case rev-keys < oldest && c.Prev != nil:
				t.Errorf("revision %d: Prev %s, but revision %d is compacted", rev, fmtRecord(c.Prev), rev-keys)
			case rev-keys >= oldest && (c.Prev == nil || c.Prev.ModRevision != rev-keys || string(c.Prev.Key) != string(c.Record.Key)):
				t.Errorf("revision %d: Prev %s; want the record at revision %d", rev, fmtRecord(c.Prev), rev-keys)
			}
		}
	})

	// Reopening with a much smaller window: the backlog is deleted a bounded
	// amount per batch, and the log stays readable from OldestRevision().
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.RetainRevisions = 1000
	s2 := openStore(t, cfg)
	if s2.OldestRevision() != oldest || s2.Revision() != writes {
		t.Fatalf("after reopen OldestRevision %d Revision %d; want %d %d", s2.OldestRevision(), s2.Revision(), oldest, writes)
	}
	for i := range 300 {
		mustPut(t, s2, fmt.Sprintf("more%d", i), "v")
	}
	if s2.OldestRevision() != oldest {
		t.Fatalf("OldestRevision() moved to %d inside a larger window", s2.OldestRevision())
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.RetainRevisions = 3
	s3 := openStore(t, cfg)
	prevOldest := s3.OldestRevision()
	for i := 0; s3.OldestRevision() < s3.Revision()-2; i++ {
		if i > 100 {
			t.Fatalf("compaction backlog not worked off after 100 writes: oldest %d revision %d", s3.OldestRevision(), s3.Revision())
		}
		mustPut(t, s3, "x", fmt.Sprint(i))
		o := s3.OldestRevision()
		if o <= prevOldest || o-prevOldest > 2*1+64 {
			t.Fatalf("one single-change batch moved OldestRevision from %d to %d; want forward by at most 66", prevOldest, o)
		}
		prevOldest = o
		if got := readLog(t, s3, o, true); int64(len(got)) != s3.Revision()-o+1 {
			t.Fatalf("ReadLog(OldestRevision()) read %d changes; want %d", len(got), s3.Revision()-o+1)
		}
	}
	if got := countLogRecords(t, s3); got != 3 {
		t.Errorf("%d log records after the backlog; want 3", got)
	}
}

// TestOnCommit checks that OnCommit sees every change exactly once, in
// revision order, before the writer is acknowledged.
func TestOnCommit(t *testing.T) {
	const writers, perWriter = 32, 200
	var mu sync.Mutex
	var seen []Change
	var batches int
	s := openStore(t, Config{OnCommit: func(cs []Change) {
		mu.Lock()
		defer mu.Unlock()
		batches++
		seen = append(seen, cs...)
	}})
	ctx := context.Background()
	var wg sync.WaitGroup
	returned := make([][]Change, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				key := fmt.Appendf(nil, "w%02d/%03d", w, i%50) // overwrites too
				c, err := s.Put(ctx, key, fmt.Appendf(nil, "%d", i))
				if err != nil {
					t.Errorf("Put: %v", err)
					return
				}
				// Acknowledged only after OnCommit saw it.
				mu.Lock()
				n := int64(len(seen))
				mu.Unlock()
				if n < c.Record.ModRevision {
					t.Errorf("Put returned revision %d before OnCommit saw it (OnCommit has %d)", c.Record.ModRevision, n)
				}
				returned[w] = append(returned[w], *c)
			}
		})
	}
	wg.Wait()
	const total = writers * perWriter
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != total || s.Revision() != total {
		t.Fatalf("OnCommit saw %d changes, Revision() %d; want %d", len(seen), s.Revision(), total)
	}
	for i, c := range seen {
		if c.Record.ModRevision != int64(i+1) {
			t.Fatalf("OnCommit change #%d has revision %d; want %d (contiguous, in order)", i, c.Record.ModRevision, i+1)
		}
	}
	hits := make([]int, total+1)
	for w := range returned {
		for _, c := range returned[w] {
			rev := c.Record.ModRevision
			if rev < 1 || rev > total {
				t.Fatalf("Put returned revision %d outside 1..%d", rev, total)
			}
			hits[rev]++
			if !recordEqual(&seen[rev-1].Record, &c.Record) {
				t.Errorf("revision %d: OnCommit saw %s, Put returned %s", rev, fmtRecord(&seen[rev-1].Record), fmtRecord(&c.Record))
			}
		}
	}
	for rev := 1; rev <= total; rev++ {
		if hits[rev] != 1 {
			t.Errorf("revision %d returned by %d writes; want exactly 1", rev, hits[rev])
		}
	}
	t.Logf("%d changes in %d batches", total, batches)
}

// TestGroupCommit checks that concurrent writers on a real disk share
// batches, and that MaxBatchOps caps them.
func TestGroupCommit(t *testing.T) {
	for _, maxOps := range []int{0, 4} {
		t.Run(fmt.Sprintf("MaxBatchOps=%d", maxOps), func(t *testing.T) {
			const writers, perWriter = 64, 10
			var mu sync.Mutex
			var sizes []int
			s := openStore(t, Config{Path: t.TempDir(), MaxBatchOps: maxOps, OnCommit: func(cs []Change) {
				mu.Lock()
				sizes = append(sizes, len(cs))
				mu.Unlock()
			}})
			ctx := context.Background()
			start := make(chan struct{})
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					<-start
					for i := range perWriter {
						if _, err := s.Put(ctx, fmt.Appendf(nil, "w%02d/%02d", w, i), []byte("v")); err != nil {
							t.Errorf("Put: %v", err)
							return
						}
					}
				})
			}
			close(start)
			wg.Wait()
			if s.Revision() != writers*perWriter {
				t.Fatalf("Revision() = %d; want %d", s.Revision(), writers*perWriter)
			}
			mu.Lock()
			defer mu.Unlock()
			biggest, sum := 0, 0
			for _, n := range sizes {
				biggest = max(biggest, n)
				sum += n
			}
			t.Logf("%d changes in %d batches; biggest %d", sum, len(sizes), biggest)
			if sum != writers*perWriter {
				t.Errorf("OnCommit saw %d changes; want %d", sum, writers*perWriter)
			}
			if biggest < 2 {
				t.Errorf("no batch held more than one change: group commit is not batching")
			}
			if maxOps > 0 && biggest > maxOps {
				t.Errorf("a batch of %d single-op writes; MaxBatchOps is %d", biggest, maxOps)
			}
		})
	}
}
