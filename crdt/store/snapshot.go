package store

import (
	"context"
	"errors"
	"fmt"

	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/chorus-kv/chorus/crdt"
)

// SnapshotInfo describes a point-in-time read of the store (ReadSnapshot).
type SnapshotInfo struct {
	// Revision is the store's revision as of the snapshot.
	Revision int64
	// TakenAt is the clock's reading just after the snapshot was taken:
	// every entry in it has an HLC at most this.
	TakenAt crdt.Timestamp
	// LastContact and PurgedThrough are the store's (see LastContact and
	// PurgedThrough) when the snapshot was taken.
	LastContact   crdt.Timestamp
	PurgedThrough crdt.Timestamp
	// TombstoneGrace is the store's Config.TombstoneGrace, in milliseconds.
	TombstoneGraceMillis int64
	// Keys is how many entries the store held about then (tombstones
	// included); the read may see a few more or fewer.
	Keys int64
}

// ReadSnapshot reads every entry (tombstones included), in key order, from
// one LevelDB snapshot, so that the entries are those of one moment while
// writes go on. It calls start once with the snapshot's description, then
// fn with each entry; fn must not keep the record past its call. It stops
// at the first error from start or fn, or when ctx ends. The store cannot
// close until it returns.
func (s *Store) ReadSnapshot(ctx context.Context, start func(SnapshotInfo) error, fn func(*Record) error) error {
	release, err := s.readGuard()
	if err != nil {
		return err
	}
	defer release()
	snap, err := s.db.GetSnapshot()
	if err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	defer snap.Release()
	info := SnapshotInfo{
		TakenAt:              s.cfg.Clock.Now(),
		LastContact:          s.LastContact(),
		PurgedThrough:        s.PurgedThrough(),
		TombstoneGraceMillis: s.cfg.TombstoneGrace.Milliseconds(),
		Keys:                 s.Keys(),
	}
	switch b, err := snap.Get([]byte(metaRev), nil); {
	case errors.Is(err, goleveldb.ErrNotFound):
	case err != nil:
		return fmt.Errorf("store: snapshot: read %s: %w", metaRev, err)
	default:
		rev, err := decodeUint64(b)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, metaRev, err)
		}
		info.Revision = int64(rev)
	}
	if err := start(info); err != nil {
		return err
	}
	// DontFillCache: a full scan would evict the working set.
	it := snap.NewIterator(&util.Range{Start: []byte(entryPrefix), Limit: entryKeyEnd()}, &opt.ReadOptions{DontFillCache: true})
	defer it.Release()
	for n := 0; it.Next(); n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		r, err := decodeRecord(it.Value())
		if err != nil {
			return fmt.Errorf("store: snapshot at %q: %w", it.Key(), err)
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	return nil
}

// RestoreContact sets the store's last contact to ts, even when that is
// older than the one it holds (SetLastContact only moves it forward). It is
// for a store just restored from a snapshot: it knows the cluster only as of
// the snapshot, so peers that purged tombstones since then must refuse to
// sync with it (see PurgedThrough) rather than take back deleted keys.
func (s *Store) RestoreContact(ts crdt.Timestamp) error {
	release, err := s.readGuard()
	if err != nil {
		return err
	}
	defer release()
	if err := s.putSync([]byte(metaContact), encodeUint64(uint64(ts))); err != nil {
		return fmt.Errorf("store: write last contact: %w", err)
	}
	s.contact.Store(uint64(ts))
	return nil
}
