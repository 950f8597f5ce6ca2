package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/testutil"
)

func TestWriteBatchIsOneBatchWithConsecutiveRevisions(t *testing.T) {
	s := openStore(t, Config{})
	mustPut(t, s, "a", "0")
	var got []Change
	s2 := openStore(t, Config{OnCommit: func(cs []Change) { got = append(got, cs...) }})
	mustPut(t, s2, "a", "0")
	got = nil
	changes, err := s2.WriteBatch(context.Background(), []crdt.Entry{
		{Key: []byte("a"), Tombstone: true},
		{Key: []byte("b"), Value: []byte("1")},
		{Key: []byte("b"), Value: []byte("2")},
	})
	if err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if len(changes) != 3 || len(got) != 3 {
		t.Fatalf("got %d changes, %d committed; want 3 and 3", len(changes), len(got))
	}
	for i, c := range changes {
		if c.Record.ModRevision != int64(i+2) {
			t.Errorf("change %d has revision %d; want %d", i, c.Record.ModRevision, i+2)
		}
	}
	if !changes[0].PrevLive || !changes[0].Record.Tombstone {
		t.Errorf("delete of a: %+v", changes[0])
	}
	if changes[2].Record.Version != 2 || string(changes[2].Prev.Value) != "1" {
		t.Errorf("second put of b: version %d, prev %+v; want 2 and the first put", changes[2].Record.Version, changes[2].Prev)
	}
	if _, err := s.WriteBatch(context.Background(), []crdt.Entry{{Key: nil, Value: []byte("x")}}); !errors.Is(err, crdt.ErrKeyEmpty) {
		t.Errorf("WriteBatch with an empty key: %v; want ErrKeyEmpty", err)
	}
}

func TestCompactDeletesTheLogBelowTheRevision(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(Config{Path: path, NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall))})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		mustPut(t, s, "k", "v")
	}
	ctx := context.Background()
	if err := s.Compact(ctx, 21); !errors.Is(err, ErrFutureRevision) {
		t.Errorf("Compact(21) at revision 20: %v; want ErrFutureRevision", err)
	}
	if err := s.Compact(ctx, 15); err != nil {
		t.Fatalf("Compact(15): %v", err)
	}
	if got := s.OldestRevision(); got != 15 {
		t.Errorf("oldest revision %d; want 15", got)
	}
	if _, err := s.ReadLog(14, false, func(*Change) error { return nil }); !errors.Is(err, ErrCompacted) {
		t.Errorf("ReadLog(14) after Compact(15): %v; want ErrCompacted", err)
	}
	var revs []int64
	if _, err := s.ReadLog(15, false, func(c *Change) error { revs = append(revs, c.Record.ModRevision); return nil }); err != nil || len(revs) != 6 {
		t.Errorf("ReadLog(15): %v, revisions %v; want 15..20", err, revs)
	}
	if err := s.Compact(ctx, 10); !errors.Is(err, ErrCompacted) {
		t.Errorf("Compact(10) after Compact(15): %v; want ErrCompacted", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Config{Path: path, NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall + 1000))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, rev := s.OldestRevision(), s.Revision(); got != 15 || rev != 20 {
		t.Errorf("after reopening: oldest %d, revision %d; want 15 and 20", got, rev)
	}
}
