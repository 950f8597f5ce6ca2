package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// ReadSnapshot under a writer that puts new keys one after another: the
// snapshot holds exactly the first Revision keys (one revision per new key),
// whatever the writer did meanwhile, and every entry as written.
func TestReadSnapshotIsPointInTime(t *testing.T) {
	s := openStore(t, Config{Path: t.TempDir()})
	ctx := context.Background()
	key := func(i int) string { return fmt.Sprintf("/k/%06d", i) }
	for i := range 500 {
		mustPut(t, s, key(i), "v")
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 500; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Put(ctx, []byte(key(i)), []byte("v")); err != nil {
				t.Errorf("Put: %v", err)
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	var info SnapshotInfo
	var keys []string
	err := s.ReadSnapshot(ctx, func(i SnapshotInfo) error {
		info = i
		// Let writes land after the snapshot was taken.
		testutil.Eventually(t, hangTimeout, "100 more writes land after the snapshot", func() bool { return s.Revision() > i.Revision+100 })
		return nil
	}, func(r *Record) error {
		if r.Tombstone || string(r.Value) != "v" || string(r.Origin) != string(localNode) || r.HLC == 0 || r.HLC > info.TakenAt {
			t.Errorf("entry %s", fmtRecord(r))
		}
		keys = append(keys, string(r.Key))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(keys)) != info.Revision {
		t.Fatalf("the snapshot holds %d keys at revision %d; want one key per revision", len(keys), info.Revision)
	}
	for i, k := range keys {
		if k != key(i) {
			t.Fatalf("key %d is %q; want %q", i, k, key(i))
		}
	}
	if info.TombstoneGraceMillis != DefaultTombstoneGrace.Milliseconds() || info.LastContact == 0 {
		t.Errorf("info %+v: want the default grace and a last contact", info)
	}
}

func TestReadSnapshotStopsOnError(t *testing.T) {
	s := openStore(t, Config{Path: t.TempDir()})
	for i := range 10 {
		mustPut(t, s, fmt.Sprintf("k%d", i), "v")
	}
	mustDelete(t, s, "k3")
	stop := errors.New("stop")
	n, tombstones := 0, 0
	err := s.ReadSnapshot(context.Background(), func(SnapshotInfo) error { return nil }, func(r *Record) error {
		n++
		if r.Tombstone {
			tombstones++
		}
		if n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 10 || tombstones != 1 {
		t.Fatalf("err %v after %d entries (%d tombstones); want stop after 10, one a tombstone", err, n, tombstones)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.ReadSnapshot(ctx, func(SnapshotInfo) error { return nil }, func(*Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("with a cancelled context: %v; want context.Canceled", err)
	}
}

func TestRestoreContactLowersLastContact(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Path: dir, NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall))})
	if err != nil {
		t.Fatal(err)
	}
	old := crdt.NewTimestamp(testWall-3_600_000, 0)
	if s.LastContact() <= old {
		t.Fatalf("a new store's last contact %v; want now", s.LastContact())
	}
	if err := s.RestoreContact(old); err != nil {
		t.Fatal(err)
	}
	if got := s.LastContact(); got != old {
		t.Fatalf("last contact %v; want %v", got, old)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Config{Path: dir})
	if got := s.LastContact(); got != old {
		t.Fatalf("after reopening, last contact %v; want %v", got, old)
	}
}
