package store

import (
	"errors"
	"fmt"

	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// ErrCompacted is returned by ReadLog for a revision older than the change log
// keeps. Use errors.As with *CompactedError for the oldest revision available.
var ErrCompacted = errors.New("store: revision compacted")

// CompactedError says which revision was asked for and which is the oldest
// still available.
type CompactedError struct {
	Requested, Oldest int64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("store: revision %d is compacted; the oldest available revision is %d", e.Requested, e.Oldest)
}

// Is makes errors.Is(err, ErrCompacted) true.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// ReadLog calls fn with every change from revision from on, in revision
// order, up to the store's revision when the read started, and returns the
// last revision it read (from-1 if none). With prev set, each change's Prev
// is filled in when its previous record is still in the log. fn's error stops
// the read and is returned.
func (s *Store) ReadLog(from int64, prev bool, fn func(*Change) error) (int64, error) {
	if from < 1 {
		from = 1
	}
	release, err := s.readGuard()
	if err != nil {
		return 0, err
	}
	defer release()
	snap, err := s.db.GetSnapshot()
	if err != nil {
		return 0, fmt.Errorf("store: read log: %w", err)
	}
	defer snap.Release()
	// The oldest revision as of the snapshot: compaction may run meanwhile.
	oldest := int64(1)
	if b, err := snap.Get([]byte(metaOldest), nil); err == nil {
		v, err := decodeUint64(b)
		if err != nil {
			return 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, metaOldest, err)
		}
		oldest = int64(v)
	}
	if from < oldest {
		return 0, &CompactedError{Requested: from, Oldest: oldest}
	}
	it := snap.NewIterator(&util.Range{Start: logKey(from), Limit: logKeyEnd()}, nil)
	defer it.Release()
	last := from - 1
	for it.Next() {
		c, err := decodeLogRecord(it.Value())
		if err != nil {
			return last, fmt.Errorf("store: log at %q: %w", it.Key(), err)
		}
		// Revisions are consecutive, except where Open skipped some after a
		// machine crash (Stats.SkippedRevisions) and recorded the gap.
		if c.Record.ModRevision != last+1 {
			to, err := skippedTo(snap, last+1)
			if err != nil {
				return last, err
			}
			if c.Record.ModRevision != to+1 {
				return last, fmt.Errorf("%w: log record %q holds revision %d; want %d", ErrCorrupt, it.Key(), c.Record.ModRevision, last+1)
			}
		}
		if prev && c.PrevModRevision >= oldest {
			b, err := snap.Get(logKey(c.PrevModRevision), nil)
			switch {
			case errors.Is(err, goleveldb.ErrNotFound):
			case err != nil:
				return last, fmt.Errorf("store: log at %d: %w", c.PrevModRevision, err)
			default:
				p, err := decodeLogRecord(b)
				if err != nil {
					return last, fmt.Errorf("store: log at %d: %w", c.PrevModRevision, err)
				}
				c.Prev = &p.Record
			}
		}
		if err := fn(&c); err != nil {
			return last, err
		}
		last = c.Record.ModRevision
	}
	if err := it.Error(); err != nil {
		return last, fmt.Errorf("store: read log: %w", err)
	}
	return last, nil
}

// skippedTo returns the last revision of the recorded gap that holds rev, or
// 0 if no gap holds it.
func skippedTo(snap snapshot, rev int64) (int64, error) {
	it := snap.NewIterator(&util.Range{Start: []byte(gapPrefix), Limit: gapKey(rev + 1)}, nil)
	defer it.Release()
	if !it.Last() {
		return 0, it.Error()
	}
	to, err := decodeUint64(it.Value())
	if err != nil {
		return 0, fmt.Errorf("%w: %q: %v", ErrCorrupt, it.Key(), err)
	}
	if int64(to) < rev {
		return 0, nil
	}
	return int64(to), nil
}
