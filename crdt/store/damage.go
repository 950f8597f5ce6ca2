package store

import (
	"bytes"
	"errors"
	"fmt"

	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/comparer"
	lerrors "github.com/syndtr/goleveldb/leveldb/errors"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// ErrDamaged is returned by Open when LevelDB's files are damaged: a journal
// record or a table block fails its checksum, or the manifest does not read.
// The store may have lost acknowledged writes; Open with Config.Repair to
// recover what is readable and catch up from peers.
var ErrDamaged = errors.New("store: data files damaged")

// ErrCatchingUp is what a client read of a store repaired after damage gets
// (from the node; the store itself still reads, for anti-entropy and the
// node's own state) until a complete anti-entropy session with a peer
// (SetLastContact) has brought back what the damage lost: see CatchingUp.
var ErrCatchingUp = errors.New("store: repaired after damage; reads wait for a complete anti-entropy session with a peer")

// metaRepaired marks a store repaired after damage that has not yet completed
// an anti-entropy session since. It survives restarts.
const metaRepaired = "/m/repaired"

// strictOpen makes LevelDB refuse, instead of dropping silently, a damaged
// journal record (StrictJournal) or manifest record (StrictManifest) at open;
// table blocks are checked on every read (the default).
const strictOpen = opt.DefaultStrict | opt.StrictJournal | opt.StrictManifest

// memtableBytes is LevelDB's write buffer: the memtable, which holds every
// write since the last flush to a table (about 300 bytes per change: the
// entry, its change-log record and its key-hash index), plus its skip
// list's index (about 130 bytes more per change). A node's heap grows with
// each write until the memtable is full; while a full one is flushed a
// second one fills, and Go's collector lets the heap reach twice what is
// live. At 32 MiB that made a node's memory climb for the first 20 to 40
// minutes of a steady write load, which looked like a leak. Memtables of 4
// to 64 MiB made no measurable difference to write throughput: the fsync
// per batch dominates. A batch larger than the buffer gets a memtable of
// its own size.
const memtableBytes = 4 << 20

// blockCacheBytes bounds LevelDB's cache of table blocks.
const blockCacheBytes = 32 << 20

// leveldbOptions are the store's LevelDB options.
func leveldbOptions(cfg Config) opt.Options {
	return opt.Options{
		// Every Put first reads its key, and most keys are new: the misses
		// would trigger seek compactions that cost more than they save.
		DisableSeeksCompaction: true,
		WriteBuffer:            cfg.WriteBufferBytes,
		BlockCacheCapacity:     cfg.BlockCacheBytes,
		// Blocks of tables that compaction removed are never read again:
		// drop them at once rather than when the cache is full.
		BlockCacheEvictRemoved: true,
		// Most reads on the write path are for keys that do not exist yet.
		Filter: filter.NewBloomFilter(10),
		Strict: strictOpen,
	}
}

// damaged wraps err in ErrDamaged when it is LevelDB reporting corruption,
// naming the file and saying what to do.
func damaged(path string, err error) error {
	var c *lerrors.ErrCorrupted
	var sc *storage.ErrCorrupted
	if !errors.As(err, &c) && !errors.As(err, &sc) {
		return err
	}
	return fmt.Errorf("%w in %q: %w; acknowledged writes may be lost: open with repair to recover what is readable and catch up from peers before serving reads, or restore the folder from a backup", ErrDamaged, path, err)
}

// checkFiles opens the LevelDB at path strictly and closes it: a damaged
// journal or manifest fails here, where go-ds-leveldb would recover it
// silently (it calls RecoverFile on any corruption at open).
func checkFiles(path string, o opt.Options) error {
	db, err := goleveldb.OpenFile(path, &o)
	if err != nil {
		return damaged(path, err)
	}
	return db.Close()
}

// recoverFiles rebuilds the LevelDB at cfg.Path (or on cfg.Storage) from
// what is readable: journal records that fail their checksum and table
// blocks that do not read are dropped, and the manifest is rewritten.
func recoverFiles(cfg Config) error {
	o := leveldbOptions(cfg)
	o.Strict = opt.DefaultStrict &^ opt.StrictReader
	o.Comparer = unshortenedComparer{comparer.DefaultComparer}
	var db *goleveldb.DB
	var err error
	switch {
	case cfg.Path != "":
		db, err = goleveldb.RecoverFile(cfg.Path, &o)
	case cfg.Storage != nil:
		db, err = goleveldb.Recover(cfg.Storage, &o)
	default:
		return nil // a fresh memory storage has nothing to repair
	}
	where := fmt.Sprintf("%q", cfg.Path)
	if cfg.Path == "" {
		where = "its storage"
	}
	if err != nil {
		return fmt.Errorf("store: repair %s: %w", where, err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("store: repair %s: %w", where, err)
	}
	return nil
}

// unshortenedComparer is LevelDB's bytewise comparer (same name, same
// order) without the shortened index keys. goleveldb rebuilds a damaged table
// with the caller's comparer where it needs its internal-key comparer, so
// shortened user-key separators become index keys that are not internal
// keys, and reads of the rebuilt table panic. Full keys are valid in either.
type unshortenedComparer struct{ comparer.Comparer }

func (unshortenedComparer) Separator(dst, a, b []byte) []byte { return nil }
func (unshortenedComparer) Successor(dst, b []byte) []byte    { return nil }

// verify reads every key outside the entries (which buildTree reads) — the
// change log, its gaps, the anti-entropy indexes and the metadata — so that
// a damaged table holding them fails Open rather than a later read.
func (s *Store) verify() error {
	for _, r := range []*util.Range{
		{Limit: []byte(entryPrefix)},
		{Start: entryKeyEnd()},
	} {
		it := s.db.NewIterator(r, &opt.ReadOptions{DontFillCache: true})
		for it.Next() {
		}
		it.Release()
		if err := it.Error(); err != nil {
			return damaged(s.cfg.Path, err)
		}
	}
	return nil
}

// afterRepair is Open's part after recoverFiles: what survived may disagree.
// The revision moves to the newest surviving log record or reservation,
// whichever is higher, and every hole in the log is recorded as a gap (as
// after a machine crash); the anti-entropy indexes are dropped, for
// buildTree to rewrite from the entries; and the store is marked as needing
// a complete anti-entropy session before it serves reads.
func (s *Store) afterRepair() error {
	read := func(key string, def uint64) (uint64, error) {
		b, err := s.db.Get([]byte(key), nil)
		if errors.Is(err, goleveldb.ErrNotFound) {
			return def, nil
		}
		if err != nil {
			return 0, fmt.Errorf("store: read %s: %w", key, err)
		}
		v, err := decodeUint64(b)
		if err != nil {
			return def, nil // damaged: the log and the reservation decide
		}
		return v, nil
	}
	rev, err := read(metaRev, 0)
	if err != nil {
		return err
	}
	reserved, err := read(metaReserved, 0)
	if err != nil {
		return err
	}
	oldest, err := read(metaOldest, 1)
	if err != nil {
		return err
	}
	it := s.db.NewIterator(&util.Range{Start: []byte(logPrefix), Limit: logKeyEnd()}, nil)
	if it.Last() {
		if r, err := parseRevKey(it.Key(), logPrefix); err == nil {
			rev = max(rev, uint64(r))
		}
	}
	it.Release()
	if err := it.Error(); err != nil {
		return err
	}
	skipped, err := s.recordGaps(int64(oldest), int64(rev), int64(max(rev, reserved)))
	if err != nil {
		return fmt.Errorf("store: record the revisions lost to damage: %w", err)
	}
	s.stats.skipped = skipped
	var b goleveldb.Batch
	for _, prefix := range []string{hashPrefix, tombPrefix} {
		it := s.db.NewIterator(util.BytesPrefix([]byte(prefix)), nil)
		for it.Next() {
			b.Delete(bytes.Clone(it.Key()))
		}
		it.Release()
		if err := it.Error(); err != nil {
			return err
		}
	}
	b.Delete([]byte(metaIndexed))
	b.Put([]byte(metaRepaired), nil)
	if err := s.db.Write(&b, &opt.WriteOptions{Sync: true}); err != nil {
		return fmt.Errorf("store: mark repaired: %w", err)
	}
	return nil
}

// loadRepaired reads the repair mark at Open.
func (s *Store) loadRepaired() error {
	_, err := s.db.Get([]byte(metaRepaired), nil)
	if err != nil && !errors.Is(err, goleveldb.ErrNotFound) {
		return fmt.Errorf("store: read %s: %w", metaRepaired, err)
	}
	s.catchingUp.Store(err == nil)
	return nil
}

// CatchingUp reports whether the store was repaired after damage and has not
// completed an anti-entropy session since: the node refuses client reads
// (ErrCatchingUp) until it has.
func (s *Store) CatchingUp() bool { return s.catchingUp.Load() }
