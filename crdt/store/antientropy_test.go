package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/merkle"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// rootOf is the Merkle root of a reference state, computed from scratch.
func rootOf(state crdt.State) uint64 {
	t := merkle.NewTree()
	for _, e := range state {
		t.Update(merkle.BucketOf(merkle.KeyHash(e.Key)), 0, merkle.EntryHash(&e))
	}
	return t.Root()
}

// stateOf reads every entry of s, tombstones included, through the
// key-hash index: the hashes from a scan of the index, the entries by hash.
func stateOf(tb testing.TB, s *Store) crdt.State {
	tb.Helper()
	var hashes []uint64
	it := s.ldb().NewIterator(util.BytesPrefix([]byte(hashPrefix)), nil)
	for it.Next() {
		h, err := strconv.ParseUint(string(it.Key()[len(hashPrefix):len(hashPrefix)+16]), 16, 64)
		if err != nil {
			tb.Fatal(err)
		}
		if len(hashes) == 0 || hashes[len(hashes)-1] != h {
			hashes = append(hashes, h)
		}
	}
	it.Release()
	out := crdt.State{}
	err := s.EntriesByKeyHash(hashes, func(e *crdt.Entry) error {
		out[string(e.Key)] = *e
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestMerkleRootFollowsWrites(t *testing.T) {
	dir := t.TempDir()
	wall := testutil.NewFakeWall(testWall)
	cfg := Config{Path: dir, NodeID: localNode, Clock: wallClock(wall)}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.MerkleRoot() != 0 {
		t.Fatalf("empty store's root %x; want 0", s.MerkleRoot())
	}
	ref := crdt.State{}
	record := func(c *Change) { ref[string(c.Record.Key)] = c.Record.Entry }
	for i := range 50 {
		record(mustPut(t, s, fmt.Sprintf("k%d", i%20), fmt.Sprint(i)))
	}
	for i := range 5 {
		record(mustDelete(t, s, fmt.Sprintf("k%d", i)))
	}
	record(mustDelete(t, s, "never-written"))
	cs, err := s.Apply(context.Background(), []crdt.Entry{entry("k7", "remote", ts(time.Hour/10000, 0), "node-z"), entry("r", "x", ts(-time.Second, 0), "node-z")})
	if err != nil {
		t.Fatal(err)
	}
	for i := range cs {
		record(&cs[i])
	}
	if got, want := s.MerkleRoot(), rootOf(ref); got != want {
		t.Fatalf("root %x; the written state's is %x", got, want)
	}
	if got := stateOf(t, s); len(got) != len(ref) {
		t.Fatalf("the key-hash index lists %d keys; %d were written", len(got), len(ref))
	}
	root := s.MerkleRoot()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Rebuilt at Open, the tree is the one kept incrementally.
	s, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.MerkleRoot() != root {
		t.Fatalf("root after reopen %x; before %x", s.MerkleRoot(), root)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A store written before the indexes existed gets them at Open.
	db, err := goleveldb.OpenFile(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b goleveldb.Batch
	it := db.NewIterator(util.BytesPrefix([]byte(hashPrefix)), nil)
	for it.Next() {
		b.Delete(slices.Clone(it.Key()))
	}
	it.Release()
	it = db.NewIterator(util.BytesPrefix([]byte(tombPrefix)), nil)
	for it.Next() {
		b.Delete(slices.Clone(it.Key()))
	}
	it.Release()
	b.Delete([]byte(metaIndexed))
	if err := db.Write(&b, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	got := stateOf(t, s)
	if len(got) != len(ref) {
		t.Fatalf("after re-indexing, the key-hash index lists %d keys; want %d", len(got), len(ref))
	}
	for k, e := range ref {
		if g, ok := got[k]; !ok || !entryEqual(&g, &e) {
			t.Errorf("key %q: index gives %s; want %s", k, fmtEntry(&g), fmtEntry(&e))
		}
	}
}

func TestDigestsAndEntriesByKeyHash(t *testing.T) {
	s := openStore(t, Config{})
	keys := []string{"a", "b", "c/d", "\x00", "\xff\xff"}
	for _, k := range keys {
		mustPut(t, s, k, "v-"+k)
	}
	mustDelete(t, s, "b")
	for _, k := range keys {
		kh := merkle.KeyHash([]byte(k))
		ds, err := s.BucketDigests([]uint32{merkle.BucketOf(kh)})
		if err != nil {
			t.Fatal(err)
		}
		cur := mustGetEntry(t, s, []byte(k))
		want := merkle.Digest{KeyHash: kh, HLC: cur.HLC, Hash: merkle.EntryHash(&cur.Entry)}
		if !slices.Contains(ds, want) {
			t.Errorf("key %q: bucket digests %v lack %v", k, ds, want)
		}
		var got []crdt.Entry
		if err := s.EntriesByKeyHash([]uint64{kh}, func(e *crdt.Entry) error { got = append(got, *e); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !entryEqual(&got[0], &cur.Entry) {
			t.Errorf("key %q: entries by hash %v; want its entry (tombstone included)", k, got)
		}
	}
	// An unknown hash finds nothing.
	n := 0
	if err := s.EntriesByKeyHash([]uint64{merkle.KeyHash([]byte("unknown"))}, func(*crdt.Entry) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("unknown hash: %d entries, %v", n, err)
	}
}

func TestPurgeTombstones(t *testing.T) {
	dir := t.TempDir()
	wall := testutil.NewFakeWall(testWall)
	grace := time.Hour
	cfg := Config{Path: dir, NodeID: localNode, Clock: wallClock(wall), TombstoneGrace: grace}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustPut(t, s, "kept", "v")
	mustPut(t, s, "old", "v")
	old := mustDelete(t, s, "old")
	mustDelete(t, s, "never-existed")
	wall.Set(testWall + (grace / 2).Milliseconds())
	young := mustDelete(t, s, "kept-young")
	mustDelete(t, s, "rewritten")
	if n, err := s.PurgeTombstones(ctx, 0); err != nil || n != 0 {
		t.Fatalf("before the grace period: purged %d, %v; want 0", n, err)
	}
	checkCounts := func(when string, s *Store, keys, tombs int64) {
		t.Helper()
		if s.Keys() != keys || s.Tombstones() != tombs {
			t.Errorf("%s: %d keys, %d tombstones; want %d and %d", when, s.Keys(), s.Tombstones(), keys, tombs)
		}
	}
	checkCounts("before the purge", s, 5, 4)

	wall.Set(testWall + grace.Milliseconds() + 1)
	mustPut(t, s, "rewritten", "back") // no longer a tombstone: left alone
	n, err := s.PurgeTombstones(ctx, 0)
	if err != nil || n != 2 {
		t.Fatalf("purged %d, %v; want the 2 tombstones older than %v", n, err, grace)
	}
	checkCounts("after the purge", s, 3, 1) // kept, kept-young (a tombstone), rewritten
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(cfg); err != nil { // closed below
		t.Fatal(err)
	}
	checkCounts("reopened", s, 3, 1)
	for _, k := range []string{"old", "never-existed"} {
		if r := mustGetEntry(t, s, []byte(k)); r != nil {
			t.Errorf("%q still has %s after the purge", k, fmtRecord(r))
		}
	}
	if r := mustGetEntry(t, s, []byte("kept-young")); r == nil || r.HLC != young.Record.HLC {
		t.Errorf("young tombstone: %s; want it kept", fmtRecord(r))
	}
	if r := mustGetEntry(t, s, []byte("rewritten")); !r.Live() {
		t.Errorf("rewritten key: %s; want its new value", fmtRecord(r))
	}
	if got := s.PurgedThrough(); got < old.Record.HLC {
		t.Errorf("PurgedThrough %v; want at least %v", got, old.Record.HLC)
	}
	// The tree forgot the purged tombstones.
	ref := stateOf(t, s)
	if got, want := s.MerkleRoot(), rootOf(ref); got != want {
		t.Fatalf("root after purge %x; the remaining state's %x", got, want)
	}

	// A peer's copy of a purged tombstone is dropped, not stored again.
	cs, err := s.Apply(ctx, []crdt.Entry{old.Record.Entry})
	if err != nil || len(cs) != 0 {
		t.Fatalf("Apply of a tombstone past the grace period: %d changes, %v; want it dropped", len(cs), err)
	}
	if r := mustGetEntry(t, s, []byte("old")); r != nil {
		t.Fatalf("dropped tombstone came back: %s", fmtRecord(r))
	}
	// The key can be written again.
	mustPut(t, s, "old", "again")
	purged, root := s.PurgedThrough(), s.MerkleRoot()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if s.PurgedThrough() != purged || s.MerkleRoot() != root {
		t.Fatalf("after reopen: PurgedThrough %v root %x; before %v %x", s.PurgedThrough(), s.MerkleRoot(), purged, root)
	}
	if n, err := s.PurgeTombstones(ctx, 0); err != nil || n != 0 {
		t.Fatalf("second purge: %d, %v; want nothing left", n, err)
	}
}

func TestLastContact(t *testing.T) {
	dir := t.TempDir()
	wall := testutil.NewFakeWall(testWall)
	cfg := Config{Path: dir, NodeID: localNode, Clock: wallClock(wall)}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	created := s.LastContact()
	if created.Physical() != testWall {
		t.Fatalf("a new store's last contact %v; want its creation time", created)
	}
	later := crdt.NewTimestamp(testWall+5000, 0)
	if err := s.SetLastContact(later); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLastContact(created); err != nil || s.LastContact() != later {
		t.Fatalf("an older contact moved it back to %v (%v)", s.LastContact(), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wall.Set(testWall + 100_000)
	s = openStore(t, cfg)
	if s.LastContact() != later {
		t.Fatalf("after reopen: %v; want %v", s.LastContact(), later)
	}
}

// TestOpenRewritesDigestsWithoutValue checks the upgrade of a store whose
// key-hash index predates the value's hash (index version 1): Open rewrites
// every digest, keeps the tombstone index, and a newer version is refused.
// The older and newer stores are made by editing the folder with LevelDB
// itself (crashEdit), as no such version can be run here.
func TestOpenRewritesDigestsWithoutValue(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Path: dir, NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall))}
	s := openStore(t, cfg)
	for i := range 50 {
		mustPut(t, s, fmt.Sprintf("k/%02d", i), fmt.Sprintf("v%d", i))
	}
	mustDelete(t, s, "k/07")
	// A version-1 index: digests hashed without the value.
	var v1 goleveldb.Batch
	it := s.ldb().NewIterator(util.BytesPrefix([]byte(entryPrefix)), nil)
	for it.Next() {
		r, err := decodeRecord(it.Value())
		if err != nil {
			t.Fatal(err)
		}
		old := r.Entry
		old.Value = nil
		v := binary.BigEndian.AppendUint64(nil, uint64(r.HLC))
		v1.Put(hashKey(merkle.KeyHash(r.Key), r.Key), binary.BigEndian.AppendUint64(v, merkle.EntryHash(&old)))
	}
	it.Release()
	v1.Put([]byte(metaIndexed), []byte{1})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	crashEdit(t, dir, &v1)

	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		k := []byte(fmt.Sprintf("k/%02d", i))
		kh := merkle.KeyHash(k)
		ds, err := s.BucketDigests([]uint32{merkle.BucketOf(kh)})
		if err != nil {
			t.Fatal(err)
		}
		cur := mustGetEntry(t, s, k)
		if want := (merkle.Digest{KeyHash: kh, HLC: cur.HLC, Hash: merkle.EntryHash(&cur.Entry)}); !slices.Contains(ds, want) {
			t.Errorf("key %q after the upgrade: bucket digests %v lack %v", k, ds, want)
		}
	}
	tomb := mustGetEntry(t, s, []byte("k/07"))
	if ok, err := s.ldb().Has(tombKey(tomb.HLC, tomb.Key), nil); err != nil || !ok {
		t.Errorf("the tombstone index lost k/07's tombstone in the upgrade (%v)", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A store from a newer version is refused with a message that says so.
	var newer goleveldb.Batch
	newer.Put([]byte(metaIndexed), []byte{indexVersion + 1})
	crashEdit(t, dir, &newer)
	if s, err := Open(cfg); err == nil {
		_ = s.Close()
		t.Fatal("Open accepted a store whose indexes are newer than this binary's")
	} else if !errors.Is(err, ErrNewerFormat) {
		t.Errorf("Open of a newer store: %v; want ErrNewerFormat", err)
	}
}
