package store

import (
	"context"
	"fmt"

	ds "github.com/ipfs/go-datastore"
)

// compact deletes, in batch b, change-log records older than the retained
// window ending at rev, or than explicit (a Compact call, at most rev): at
// most 2·n+64 of them (maxCompactChunk for a Compact), so that a backlog
// (after RetainRevisions shrinks) is worked off over several batches without
// making one batch large. It returns the oldest revision kept. REQUIRES: the
// committer.
func (s *Store) compact(ctx context.Context, b ds.Batch, oldest, rev int64, n int, explicit int64) (int64, error) {
	target := rev - s.cfg.RetainRevisions + 1 // the oldest revision to keep
	chunk := int64(2*n + 64)
	if explicit > 0 {
		target = max(target, min(explicit, rev))
		chunk = max(chunk, maxCompactChunk)
	}
	if target <= oldest {
		return oldest, nil
	}
	target = min(target, oldest+chunk)
	for r := oldest; r < target; r++ {
		if err := b.Delete(ctx, ds.RawKey(string(logKey(r)))); err != nil {
			return 0, fmt.Errorf("store: batch: %w", err)
		}
	}
	if err := b.Put(ctx, ds.RawKey(metaOldest), encodeUint64(uint64(target))); err != nil {
		return 0, fmt.Errorf("store: batch: %w", err)
	}
	return target, nil
}
