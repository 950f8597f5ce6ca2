package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/internal/testutil"
)

// TestKeysAndTombstones follows Keys and Tombstones through puts, deletes,
// overwrites, a purge and a reopen (which counts them again from disk).
func TestKeysAndTombstones(t *testing.T) {
	dir := t.TempDir()
	wall := testutil.NewFakeWall(testWall)
	grace := time.Hour
	cfg := Config{Path: dir, NodeID: localNode, Clock: wallClock(wall), TombstoneGrace: grace}
	s := openStore(t, cfg)
	check := func(step string, keys, tombs int64) {
		t.Helper()
		if got := s.Keys(); got != keys {
			t.Errorf("%s: Keys() = %d; want %d", step, got, keys)
		}
		if got := s.Tombstones(); got != tombs {
			t.Errorf("%s: Tombstones() = %d; want %d", step, got, tombs)
		}
	}
	check("empty", 0, 0)
	mustPut(t, s, "a", "1")
	mustPut(t, s, "b", "1")
	mustPut(t, s, "a", "2")
	check("puts", 2, 0)
	mustDelete(t, s, "a")
	mustDelete(t, s, "never-existed")
	check("deletes", 3, 2)
	mustDelete(t, s, "a") // a tombstone over a tombstone
	check("delete again", 3, 2)
	mustPut(t, s, "never-existed", "now") // a value over a tombstone
	check("put over a tombstone", 3, 1)
	// A batch that creates a key and deletes it again.
	batch := append(remoteEntries("r", 2), tombstone("r0", 0, ""))
	if _, err := s.WriteBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	check("batch", 5, 2)

	wall.Set(testWall + grace.Milliseconds() + 1)
	if n, err := s.PurgeTombstones(context.Background(), 0); err != nil || n != 2 {
		t.Fatalf("purged %d, %v; want 2", n, err)
	}
	check("purge", 3, 0)
	mustDelete(t, s, "b")
	check("delete after purge", 3, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	check("reopen", 3, 1)
}

// TestOnWrite checks the write hook: one call per batch with its changes
// and whether it was fsynced, and one for the fsync of buffered batches.
func TestOnWrite(t *testing.T) {
	var mu sync.Mutex
	var got []WriteInfo
	s := openStore(t, Config{
		SyncDelay: 10 * time.Millisecond,
		OnWrite: func(w WriteInfo) {
			mu.Lock()
			got = append(got, w)
			mu.Unlock()
		},
	})
	writes := func() []WriteInfo {
		mu.Lock()
		defer mu.Unlock()
		return append([]WriteInfo(nil), got...)
	}
	mustPut(t, s, "local", "v")
	w := writes()
	if len(w) != 1 || w[0].Changes != 1 || !w[0].Sync || w[0].Duration <= 0 {
		t.Fatalf("after a Put: %+v; want one fsynced write of 1 change", w)
	}
	mustApplyBuffered(t, s, remoteEntries("r", 3))
	w = writes()
	if len(w) != 2 || w[1].Changes != 3 || w[1].Sync {
		t.Fatalf("after ApplyBuffered: %+v; want a second write of 3 changes, not fsynced", w)
	}
	// The writer fsyncs the buffered batch within SyncDelay.
	testutil.Eventually(t, hangTimeout, "the fsync of the buffered batch is reported", func() bool { return len(writes()) >= 3 })
	if w := writes()[2]; w.Changes != 0 || !w.Sync {
		t.Fatalf("the buffered batch's fsync reported as %+v; want 0 changes, fsynced", w)
	}
}

func TestDiskBytes(t *testing.T) {
	s := openStore(t, Config{Path: t.TempDir()})
	before, err := s.DiskBytes()
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", string(make([]byte, 64<<10)))
	after, err := s.DiskBytes()
	if err != nil {
		t.Fatal(err)
	}
	if after < before+64<<10 {
		t.Errorf("DiskBytes %d before a 64 KiB put, %d after; want it to grow by the value at least", before, after)
	}
	mem := openStore(t, Config{})
	if n, err := mem.DiskBytes(); err != nil || n != 0 {
		t.Errorf("in-memory store: DiskBytes = %d, %v; want 0", n, err)
	}
}
