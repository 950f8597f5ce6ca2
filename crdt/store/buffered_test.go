package store

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// remoteEntries returns n entries from another node, keys prefix0..prefixN-1.
func remoteEntries(prefix string, n int) []crdt.Entry {
	out := make([]crdt.Entry, n)
	for i := range out {
		out[i] = entry(fmt.Sprintf("%s%d", prefix, i), "v", ts(time.Duration(i)*time.Millisecond, 0), "node-b")
	}
	return out
}

func mustApplyBuffered(tb testing.TB, s *Store, entries []crdt.Entry) []Change {
	tb.Helper()
	cs, err := s.ApplyBuffered(context.Background(), entries)
	if err != nil {
		tb.Fatalf("ApplyBuffered: %v", err)
	}
	if len(cs) != len(entries) {
		tb.Fatalf("ApplyBuffered made %d changes; want %d", len(cs), len(entries))
	}
	return cs
}

func TestApplyBufferedSkipsTheFsync(t *testing.T) {
	var published atomic.Int64
	s := openStore(t, Config{
		SyncDelay: time.Hour, // no timer fsync during the test
		OnCommit:  func(cs []Change) { published.Add(int64(len(cs))) },
	})
	mustPut(t, s, "local", "v") // fsynced; reserves revisions ahead
	before := s.Stats()
	cs := mustApplyBuffered(t, s, remoteEntries("r", 3))
	after := s.Stats()
	if got := after.Syncs - before.Syncs; got != 0 {
		t.Errorf("ApplyBuffered fsynced %d times; want 0", got)
	}
	if got := after.Batches - before.Batches; got != 1 {
		t.Errorf("ApplyBuffered wrote %d batches; want 1", got)
	}
	if got := after.Changes - before.Changes; got != 3 {
		t.Errorf("ApplyBuffered wrote %d changes; want 3", got)
	}
	if got := published.Load(); got != 4 {
		t.Errorf("OnCommit saw %d changes; want 4 (buffered changes are published at once)", got)
	}
	if cs[2].Record.ModRevision != 4 {
		t.Errorf("last buffered change has revision %d; want 4", cs[2].Record.ModRevision)
	}
	if r, err := s.Get([]byte("r1")); err != nil || r == nil {
		t.Fatalf("Get(r1) after ApplyBuffered = %v, %v", r, err)
	}
	// Apply, Put and Delete still wait for an fsync.
	if _, err := s.Apply(context.Background(), remoteEntries("d", 1)); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "local2", "v")
	if got := s.Stats().Syncs - after.Syncs; got != 2 {
		t.Errorf("Apply and Put fsynced %d times; want 2", got)
	}
}

func TestBufferedBatchesAreFsyncedWithinSyncDelay(t *testing.T) {
	s := openStore(t, Config{SyncDelay: 20 * time.Millisecond})
	mustPut(t, s, "local", "v")
	before := s.Stats().Syncs
	mustApplyBuffered(t, s, remoteEntries("r", 2))
	deadline := time.Now().Add(hangTimeout)
	for s.Stats().Syncs == before {
		if time.Now().After(deadline) {
			t.Fatalf("no fsync %v after a buffered batch (SyncDelay 20ms)", hangTimeout)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

func TestBufferedBatchPastTheReservationIsFsynced(t *testing.T) {
	s := openStore(t, Config{SyncDelay: time.Hour, ReserveRevisions: 4})
	syncs := func() int64 { return s.Stats().Syncs }
	// A fresh store has no reservation: the first buffered batch is fsynced
	// and reserves revisions up to 2+4.
	mustApplyBuffered(t, s, remoteEntries("a", 2))
	if got := syncs(); got != 1 {
		t.Fatalf("first buffered batch: %d fsyncs; want 1", got)
	}
	mustApplyBuffered(t, s, remoteEntries("b", 4)) // revisions 3..6: reserved
	if got := syncs(); got != 1 {
		t.Fatalf("buffered batch within the reservation: %d fsyncs; want 1", got)
	}
	mustApplyBuffered(t, s, remoteEntries("c", 1)) // revision 7: past it
	if got := syncs(); got != 2 {
		t.Fatalf("buffered batch past the reservation: %d fsyncs; want 2", got)
	}
}

// copyDir copies a LevelDB folder, as it is at that moment, to a new one:
// what a crash would leave if the OS kept every write (a process crash).
func copyDir(tb testing.TB, from string) string {
	tb.Helper()
	to := tb.TempDir()
	entries, err := os.ReadDir(from)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == "LOCK" {
			continue
		}
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			tb.Fatal(err)
		}
		_ = src.Close()
		if err := dst.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	return to
}

// setBootID simulates a reboot (another boot id) for the rest of the test:
// a machine crash is a fault a test cannot cause.
func setBootID(t *testing.T, id string) {
	old := bootID
	bootID = func() string { return id }
	t.Cleanup(func() { bootID = old })
}

// TestRevisionsAfterACrashWithBufferedBatches checks that no revision
// published from a buffered batch is given to another change after a crash:
// after a process crash (same boot) nothing is lost and nothing skipped;
// after a machine crash (another boot) the reserved revisions are skipped,
// and the change log reads across the recorded gap.
func TestRevisionsAfterACrashWithBufferedBatches(t *testing.T) {
	setBootID(t, "boot-1")
	live := t.TempDir()
	s := openStore(t, Config{Path: live, SyncDelay: time.Hour, ReserveRevisions: 100})
	mustPut(t, s, "local", "v")                    // revision 1, reserves up to 101
	mustApplyBuffered(t, s, remoteEntries("r", 3)) // revisions 2..4, not fsynced

	for _, tc := range []struct {
		name     string
		boot     string
		wantRev  int64 // the revision after Open
		wantSkip int64
	}{
		{name: "process crash", boot: "boot-1", wantRev: 4},
		{name: "machine crash", boot: "boot-2", wantRev: 101, wantSkip: 97},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setBootID(t, tc.boot)
			dir := copyDir(t, live)
			c := openStore(t, Config{Path: dir})
			if got := c.Stats().SkippedRevisions; got != tc.wantSkip {
				t.Errorf("SkippedRevisions = %d; want %d", got, tc.wantSkip)
			}
			if got := c.Revision(); got != tc.wantRev {
				t.Errorf("Revision after Open = %d; want %d", got, tc.wantRev)
			}
			for _, k := range []string{"local", "r0", "r1", "r2"} {
				if r, err := c.Get([]byte(k)); err != nil || r == nil {
					t.Errorf("Get(%q) = %v, %v; want the entry (the OS kept the journal)", k, r, err)
				}
			}
			next := mustPut(t, c, "after", "v").Record.ModRevision
			if next != tc.wantRev+1 {
				t.Errorf("next Put got revision %d; want %d", next, tc.wantRev+1)
			}
			var revs []int64
			if _, err := c.ReadLog(1, false, func(ch *Change) error {
				revs = append(revs, ch.Record.ModRevision)
				return nil
			}); err != nil {
				t.Fatalf("ReadLog(1): %v", err)
			}
			if want := []int64{1, 2, 3, 4, next}; fmt.Sprint(revs) != fmt.Sprint(want) {
				t.Errorf("ReadLog(1) revisions %v; want %v", revs, want)
			}
			if tc.wantSkip > 0 {
				// From inside the gap: the next change after it.
				revs = nil
				if _, err := c.ReadLog(50, false, func(ch *Change) error {
					revs = append(revs, ch.Record.ModRevision)
					return nil
				}); err != nil || fmt.Sprint(revs) != fmt.Sprint([]int64{next}) {
					t.Errorf("ReadLog(50) = %v, %v; want [%d]", revs, err, next)
				}
			}
		})
	}

	t.Run("clean close", func(t *testing.T) {
		dir := t.TempDir()
		c, err := Open(Config{Path: dir, NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall)), SyncDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		mustPut(t, c, "local", "v")
		mustApplyBuffered(t, c, remoteEntries("r", 3))
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		setBootID(t, "boot-3") // even after a reboot: Close fsynced everything
		c = openStore(t, Config{Path: dir})
		if got := c.Stats().SkippedRevisions; got != 0 || c.Revision() != 4 {
			t.Errorf("after a clean close: skipped %d, revision %d; want 0, 4", got, c.Revision())
		}
	})
}

// crashEdit writes batch b into a closed store's folder with LevelDB itself:
// it stands in for a power loss that kept later journal pages and lost
// earlier unsynced ones (or a journal LevelDB closed without an fsync), which
// a test cannot cause. The store's own metadata is left as the crash left it.
func crashEdit(t *testing.T, dir string, b *goleveldb.Batch) {
	t.Helper()
	db, err := goleveldb.OpenFile(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Write(b, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// lost is a batch that deletes keys (those of lost batches).
func lost(keys ...[]byte) *goleveldb.Batch {
	var b goleveldb.Batch
	for _, k := range keys {
		b.Delete(k)
	}
	return &b
}

func logRevisions(t *testing.T, s *Store, from int64) []int64 {
	t.Helper()
	var revs []int64
	if _, err := s.ReadLog(from, false, func(ch *Change) error {
		revs = append(revs, ch.Record.ModRevision)
		return nil
	}); err != nil {
		t.Fatalf("ReadLog(%d): %v", from, err)
	}
	return revs
}

func gapRecords(t *testing.T, s *Store) map[int64]int64 {
	t.Helper()
	gaps := map[int64]int64{}
	it := s.ldb().NewIterator(util.BytesPrefix([]byte(gapPrefix)), nil)
	defer it.Release()
	for it.Next() {
		first, err := parseRevKey(it.Key(), gapPrefix)
		if err != nil {
			t.Fatal(err)
		}
		last, err := decodeUint64(it.Value())
		if err != nil {
			t.Fatal(err)
		}
		gaps[first] = int64(last)
	}
	return gaps
}

// TestMachineCrashThatLostAnEarlierBufferedBatch checks Open after a machine
// crash whose journal kept a buffered batch but lost one before it: the
// lost revisions become a recorded gap (merged with an adjacent earlier
// one), so the change log still reads across them, and a log record below
// the oldest revision (a lost batch's compaction) is deleted.
func TestMachineCrashThatLostAnEarlierBufferedBatch(t *testing.T) {
	ctx := context.Background()
	setBootID(t, "boot-1")
	live := t.TempDir()
	s := openStore(t, Config{Path: live, SyncDelay: time.Hour, ReserveRevisions: 100})
	mustPut(t, s, "a", "v")                   // 1
	mustPut(t, s, "b", "v")                   // 2
	mustPut(t, s, "c", "v")                   // 3
	if err := s.Compact(ctx, 3); err != nil { // fsynced: reserves up to 103
		t.Fatal(err)
	}
	mustApplyBuffered(t, s, remoteEntries("r", 3)) // 4..6
	mustApplyBuffered(t, s, remoteEntries("s", 2)) // 7..8: lost below
	mustApplyBuffered(t, s, remoteEntries("t", 2)) // 9..10: kept

	dir := copyDir(t, live)
	b := lost(logKey(7), logKey(8), entryKey([]byte("s0")), entryKey([]byte("s1")))
	// A record below the oldest revision, as if the batch that compacted it
	// was lost and a later one moved the oldest revision past it.
	b.Put(logKey(1), []byte("left over"))
	crashEdit(t, dir, b)

	setBootID(t, "boot-2")
	c, err := Open(Config{Path: dir, NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall)), SyncDelay: time.Hour, ReserveRevisions: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Stats().SkippedRevisions, int64(2+93); got != want {
		t.Errorf("SkippedRevisions = %d; want %d (the lost batch and the reservation)", got, want)
	}
	if got := c.Revision(); got != 103 {
		t.Errorf("Revision after Open = %d; want 103", got)
	}
	if got, want := gapRecords(t, c), map[int64]int64{7: 8, 11: 103}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("gap records %v; want %v", got, want)
	}
	if ok, err := c.ldb().Has(logKey(1), nil); err != nil || ok {
		t.Errorf("the log record below the oldest revision is still there (%v, %v)", ok, err)
	}
	p := mustPut(t, c, "p", "v").Record.ModRevision // 104, fsynced: reserves up to 204
	for from, want := range map[int64][]int64{3: {3, 4, 5, 6, 9, 10, 104}, 7: {9, 10, 104}, 8: {9, 10, 104}, 50: {104}} {
		if got := logRevisions(t, c, from); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("ReadLog(%d) revisions %v; want %v", from, got, want)
		}
	}
	if p != 104 {
		t.Fatalf("Put after Open got revision %d; want 104", p)
	}

	// A second machine crash loses the batches right after the first gap
	// (104..106) but keeps 107: the hole joins the gap before it.
	mustApplyBuffered(t, c, remoteEntries("u", 2)) // 105..106
	mustApplyBuffered(t, c, remoteEntries("w", 1)) // 107
	dir2 := copyDir(t, dir)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	crashEdit(t, dir2, lost(logKey(104), logKey(105), logKey(106)))
	setBootID(t, "boot-3")
	c2 := openStore(t, Config{Path: dir2})
	if got, want := c2.Stats().SkippedRevisions, int64(3+97); got != want {
		t.Errorf("second crash: SkippedRevisions = %d; want %d", got, want)
	}
	if got, want := gapRecords(t, c2), map[int64]int64{7: 8, 11: 106, 108: 204}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("second crash: gap records %v; want %v", got, want)
	}
	if got, want := logRevisions(t, c2, 3), []int64{3, 4, 5, 6, 9, 10, 107}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("second crash: ReadLog(3) revisions %v; want %v", got, want)
	}
}
