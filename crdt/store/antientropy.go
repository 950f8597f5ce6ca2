package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/merkle"
)

// DefaultTombstoneGrace is how long a tombstone is kept before garbage
// collection purges it.
const DefaultTombstoneGrace = 24 * time.Hour

// ErrNewerFormat reports a data folder written by a newer version of Chorus,
// in a format this binary does not know: run that version (or newer).
var ErrNewerFormat = errors.New("store: the data folder was written by a newer version of chorus; run that version or a newer one")

// indexVersion is the version of the anti-entropy indexes, stored in
// /m/indexed: 1 when the key-hash index's digests did not cover the value,
// 2 since they do (merkle.EntryHash). A store with an older version has its
// indexes rewritten at Open.
const indexVersion = 2

// buildTree computes the Merkle tree from the stored entries at Open, and
// writes the anti-entropy indexes first if this store predates them (or
// rewrites the key-hash index's digests if they predate the value's hash).
func (s *Store) buildTree() error {
	version := 0 // no indexes
	switch v, err := s.db.Get([]byte(metaIndexed), nil); {
	case errors.Is(err, goleveldb.ErrNotFound):
	case err != nil:
		return fmt.Errorf("store: read %s: %w", metaIndexed, err)
	case len(v) != 1:
		return fmt.Errorf("%w: %s is %x; want one byte", ErrCorrupt, metaIndexed, v)
	case v[0] > indexVersion:
		return fmt.Errorf("%w: its anti-entropy indexes are version %d, this binary's %d", ErrNewerFormat, v[0], indexVersion)
	default:
		version = int(v[0])
	}
	indexed := version == indexVersion
	tree := merkle.NewTree()
	var keys, tombs int64
	var batch goleveldb.Batch
	it := s.db.NewIterator(&util.Range{Start: []byte(entryPrefix), Limit: entryKeyEnd()}, &opt.ReadOptions{DontFillCache: true})
	defer it.Release()
	for it.Next() {
		r, err := decodeRecord(it.Value())
		if err != nil {
			return fmt.Errorf("store: build Merkle tree: entry %q: %w", it.Key(), err)
		}
		kh := merkle.KeyHash(r.Key)
		keys++
		if r.Tombstone {
			tombs++
		}
		tree.Update(merkle.BucketOf(kh), 0, merkle.EntryHash(&r.Entry))
		if !indexed {
			batch.Put(hashKey(kh, r.Key), digestValue(&r.Entry))
			if r.Tombstone && version == 0 {
				batch.Put(tombKey(r.HLC, r.Key), nil)
			}
			if batch.Len() >= 4096 {
				if err := s.db.Write(&batch, nil); err != nil {
					return fmt.Errorf("store: write anti-entropy index: %w", err)
				}
				batch.Reset()
			}
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("store: build Merkle tree: %w", damaged(s.cfg.Path, err))
	}
	if !indexed {
		batch.Put([]byte(metaIndexed), []byte{indexVersion})
		if err := s.db.Write(&batch, &opt.WriteOptions{Sync: true}); err != nil {
			return fmt.Errorf("store: write anti-entropy index: %w", err)
		}
	}
	s.tree.Lock()
	s.tree.t = tree
	s.tree.Unlock()
	s.keys.Store(keys)
	s.tombs.Store(tombs)
	return nil
}

// updateTree applies a durable batch's changes and purges to the tree.
// REQUIRES: the writer goroutine.
func (s *Store) updateTree(b *openBatch) {
	if len(b.changes) == 0 && len(b.purges) == 0 {
		return
	}
	s.tree.Lock()
	defer s.tree.Unlock()
	added, tombs := 0, 0
	for i := range b.changes {
		c := &b.changes[i]
		s.tree.t.Update(c.bucket, c.oldHash, c.newHash)
		if c.Prev == nil {
			added++
		}
		if c.Record.Tombstone {
			tombs++
		}
		if c.Prev != nil && c.Prev.Tombstone {
			tombs--
		}
	}
	// A purge removes a tombstone (a batch may purge one it wrote itself).
	s.keys.Add(int64(added - len(b.purges)))
	s.tombs.Add(int64(tombs - len(b.purges)))
	var purged crdt.Timestamp
	for _, p := range b.purges {
		s.tree.t.Update(p.bucket, p.hash, 0)
		purged = max(purged, p.hlc)
	}
	if purged > crdt.Timestamp(s.purged.Load()) {
		s.purged.Store(uint64(purged))
	}
}

// Keys returns how many keys the store holds, tombstones included.
func (s *Store) Keys() int64 { return s.keys.Load() }

// Tombstones returns how many of Keys are tombstones (deleted keys not yet
// purged).
func (s *Store) Tombstones() int64 { return s.tombs.Load() }

// MerkleRoot returns the root of the tree over this store's entries. Two
// stores with the same entries (key, HLC, origin, tombstone) have the same
// root.
func (s *Store) MerkleRoot() uint64 {
	s.tree.RLock()
	defer s.tree.RUnlock()
	return s.tree.t.Root()
}

// MerkleChildren appends the hashes of the children of parents, nodes of
// level, to dst.
func (s *Store) MerkleChildren(dst []uint64, level int, parents []uint32) []uint64 {
	s.tree.RLock()
	defer s.tree.RUnlock()
	return s.tree.t.AppendChildren(dst, level, parents)
}

// MerkleDiff returns the children of parents (nodes of level) whose hashes
// differ from a peer's, at most max (0: all). theirs must have passed
// merkle.CheckLevelMessage.
func (s *Store) MerkleDiff(level int, parents []uint32, theirs []uint64, max int) []uint32 {
	s.tree.RLock()
	defer s.tree.RUnlock()
	return s.tree.t.DiffChildren(level, parents, theirs, max)
}

// BucketDigests returns the digests of the entries in the given Merkle
// buckets (ascending), in key-hash order, from the key-hash index alone.
func (s *Store) BucketDigests(buckets []uint32) ([]merkle.Digest, error) {
	prefixes := make([][]byte, len(buckets))
	for i, b := range buckets {
		prefixes[i] = bucketPrefix(b)
	}
	var out []merkle.Digest
	err := s.walkIndex(prefixes, func(_ snapshot, k, v []byte) error {
		kh, err := strconv.ParseUint(string(k[len(hashPrefix):len(hashPrefix)+16]), 16, 64)
		if err != nil || len(v) != 16 {
			return fmt.Errorf("%w: key-hash index entry %q", ErrCorrupt, k)
		}
		out = append(out, merkle.Digest{KeyHash: kh, HLC: crdt.Timestamp(binary.BigEndian.Uint64(v)), Hash: binary.BigEndian.Uint64(v[8:])})
		return nil
	})
	return out, err
}

// EntriesByKeyHash calls fn with the entries (tombstones too) whose keys
// have the given hashes (ascending); fn may stop the walk by returning an
// error.
func (s *Store) EntriesByKeyHash(hashes []uint64, fn func(*crdt.Entry) error) error {
	prefixes := make([][]byte, len(hashes))
	for i, h := range hashes {
		prefixes[i] = keyHashPrefix(h)
	}
	return s.eachIndexed(prefixes, func(r *Record) error { return fn(&r.Entry) })
}

// eachIndexed calls fn with the entry of every key-hash index key under
// each prefix.
func (s *Store) eachIndexed(prefixes [][]byte, fn func(*Record) error) error {
	return s.walkIndex(prefixes, func(snap snapshot, k, _ []byte) error {
		key, err := hex.DecodeString(string(k[len(hashPrefix)+16:]))
		if err != nil {
			return fmt.Errorf("%w: key-hash index key %q: %v", ErrCorrupt, k, err)
		}
		b, err := snap.Get(entryKey(key), nil)
		if errors.Is(err, goleveldb.ErrNotFound) {
			return fmt.Errorf("%w: key-hash index names %q, which has no entry", ErrCorrupt, key)
		}
		if err != nil {
			return fmt.Errorf("store: read %q: %w", key, err)
		}
		r, err := decodeRecord(b)
		if err != nil {
			return fmt.Errorf("store: read %q: %w", key, err)
		}
		return fn(&r)
	})
}

// walkIndex calls fn with every key-hash index key (at least 16 hex digits
// of hash long) and value under each prefix, from one snapshot, seeking one
// iterator from prefix to prefix.
func (s *Store) walkIndex(prefixes [][]byte, fn func(snap snapshot, k, v []byte) error) error {
	release, err := s.readGuard()
	if err != nil {
		return err
	}
	defer release()
	snap, err := s.db.GetSnapshot()
	if err != nil {
		return fmt.Errorf("store: walk key-hash index: %w", err)
	}
	defer snap.Release()
	it := snap.NewIterator(&util.Range{Start: []byte(hashPrefix), Limit: []byte("/h0")}, nil)
	defer it.Release()
	for _, prefix := range prefixes {
		for ok := it.Seek(prefix); ok && bytes.HasPrefix(it.Key(), prefix); ok = it.Next() {
			if len(it.Key()) < len(hashPrefix)+16 {
				return fmt.Errorf("%w: key-hash index key %q", ErrCorrupt, it.Key())
			}
			if err := fn(snap, it.Key(), it.Value()); err != nil {
				return err
			}
		}
		if err := it.Error(); err != nil {
			return fmt.Errorf("store: walk key-hash index: %w", err)
		}
	}
	return nil
}

// TombstoneHorizon is the HLC below which tombstones are garbage: older
// ones are purged here and dropped when they arrive from peers.
func (s *Store) TombstoneHorizon() crdt.Timestamp {
	return crdt.NewTimestamp(s.cfg.Clock.Wall()-s.cfg.TombstoneGrace.Milliseconds(), 0)
}

// PurgedThrough returns the HLC of the newest tombstone this store purged,
// 0 if none: a peer that has not heard from the cluster since then may hold
// keys whose deletion it never saw and this store no longer remembers.
func (s *Store) PurgedThrough() crdt.Timestamp { return crdt.Timestamp(s.purged.Load()) }

// PurgeTombstones removes tombstones older than TombstoneHorizon, at most
// max of them (0: all), through the write path, and returns how many it
// removed. A tombstone overwritten meanwhile is left alone.
func (s *Store) PurgeTombstones(ctx context.Context, max int) (int, error) {
	horizon := s.TombstoneHorizon()
	release, err := s.readGuard()
	if err != nil {
		return 0, err
	}
	var ops []op
	it := s.db.NewIterator(&util.Range{Start: []byte(tombPrefix), Limit: tombKey(horizon, nil)}, nil)
	for it.Next() && (max == 0 || len(ops) < max) {
		k := it.Key()[len(tombPrefix):]
		if len(k) < 16 {
			continue
		}
		key, err := hex.DecodeString(string(k[16:]))
		if err != nil {
			continue
		}
		r, err := s.getRecord(key)
		if err != nil || r == nil || !r.Tombstone {
			continue
		}
		ops = append(ops, op{purge: true, entry: r.Entry})
	}
	err = it.Error()
	it.Release()
	release()
	if err != nil {
		return 0, fmt.Errorf("store: walk tombstones: %w", err)
	}
	purged := 0
	for len(ops) > 0 {
		n := min(len(ops), s.cfg.MaxBatchOps)
		req := &request{ops: ops[:n]}
		if err := s.submit(ctx, req); err != nil {
			return purged, err
		}
		purged += n
		ops = ops[n:]
	}
	return purged, nil
}

// LastContact returns when this store last completed a sync with a peer
// (an HLC), or when it was created.
func (s *Store) LastContact() crdt.Timestamp { return crdt.Timestamp(s.contact.Load()) }

// SetLastContact records a completed sync with a peer at ts, durably.
func (s *Store) SetLastContact(ts crdt.Timestamp) error {
	release, err := s.readGuard()
	if err != nil {
		return err
	}
	defer release()
	catchingUp := s.catchingUp.Load()
	if ts <= s.LastContact() && !catchingUp {
		return nil
	}
	var b goleveldb.Batch
	ts = max(ts, s.LastContact())
	b.Put([]byte(metaContact), encodeUint64(uint64(ts)))
	if catchingUp {
		// The session brought in everything the peer had: what damage lost
		// here, it had, or another peer has and will bring.
		b.Delete([]byte(metaRepaired))
	}
	if err := s.db.Write(&b, &opt.WriteOptions{Sync: true}); err != nil {
		return fmt.Errorf("store: write last contact: %w", err)
	}
	s.contact.Store(uint64(ts))
	s.catchingUp.Store(false)
	return nil
}

// loadContact reads the last contact at Open; a new store starts at now.
func (s *Store) loadContact() error {
	b, err := s.db.Get([]byte(metaContact), nil)
	if errors.Is(err, goleveldb.ErrNotFound) {
		// A new store: it has nothing to resurrect.
		now := s.cfg.Clock.Now()
		s.contact.Store(uint64(now))
		if err := s.putSync([]byte(metaContact), encodeUint64(uint64(now))); err != nil {
			return fmt.Errorf("store: write last contact: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: read %s: %w", metaContact, err)
	}
	v, err := decodeUint64(b)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, metaContact, err)
	}
	s.contact.Store(v)
	return nil
}

// DiskBytes returns the size of the store's LevelDB folder: its tables,
// journal and manifest (0 for an in-memory store).
func (s *Store) DiskBytes() (int64, error) {
	if s.cfg.Path == "" {
		return 0, nil
	}
	entries, err := os.ReadDir(s.cfg.Path)
	if err != nil {
		return 0, fmt.Errorf("store: size of %q: %w", s.cfg.Path, err)
	}
	var size int64
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed by a compaction meanwhile
		}
		size += info.Size()
	}
	return size, nil
}

// CompactDisk compacts all of LevelDB now, rather than in the background
// as writes go on. It is for after a bulk load (and for benchmarks, which
// would otherwise measure the compaction a load leaves behind).
func (s *Store) CompactDisk() error {
	release, err := s.readGuard()
	if err != nil {
		return err
	}
	defer release()
	if err := s.db.CompactRange(util.Range{}); err != nil {
		return fmt.Errorf("store: compact: %w", err)
	}
	return nil
}
