package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/chorus-kv/chorus/crdt"
)

// WriteBatch writes several local puts and deletes (entries with Tombstone
// set) as one request: they are merged in order, get consecutive revisions,
// and become durable in the same LevelDB batch, so after a crash either all
// of them are there or none. HLC and Origin are ignored (stamped here, as for
// Put). It returns one change per entry, in order.
//
// It is atomic on disk and in revision order, not a compare-and-write: a
// caller that needs its writes to depend on what it read serializes itself
// (the etcd API's Txn does, see internal/etcdapi).
func (s *Store) WriteBatch(ctx context.Context, entries []crdt.Entry) ([]*Change, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	req := &request{ops: make([]op, len(entries))}
	for i := range entries {
		e := &entries[i]
		if err := s.cfg.Limits.CheckKey(e.Key); err != nil {
			return nil, fmt.Errorf("store: write %d of %d: %w", i+1, len(entries), err)
		}
		if !e.Tombstone {
			if err := s.cfg.Limits.CheckValue(e.Value); err != nil {
				return nil, fmt.Errorf("store: write %d of %d (key %q): %w", i+1, len(entries), e.Key, err)
			}
		}
		op := op{local: true, entry: crdt.Entry{Key: bytes.Clone(e.Key), Tombstone: e.Tombstone}}
		if !e.Tombstone {
			op.entry.Value = bytes.Clone(e.Value)
		}
		req.ops[i] = op
		req.size += len(e.Key) + len(e.Value)
	}
	if err := s.submit(ctx, req); err != nil {
		return nil, err
	}
	for i, c := range req.changes {
		if c == nil {
			// Cannot happen: a local write's timestamp is above every stored one.
			panic(fmt.Sprintf("store: local write to %q lost the merge", entries[i].Key))
		}
	}
	return req.changes, nil
}

// ErrFutureRevision is returned by Compact for a revision the store has not
// reached.
var ErrFutureRevision = errors.New("store: revision is in the future")

// maxCompactChunk bounds how many log records one batch deletes for Compact.
const maxCompactChunk = 10_000

// Compact deletes the change log below rev, so that the oldest revision a
// watch can resume from becomes rev, and returns once that is durable. It
// fails with ErrFutureRevision when rev is above Revision, and with an error
// wrapping *CompactedError when rev is already below OldestRevision (nothing
// to do; etcd's Compact fails likewise). Compacting to OldestRevision is a
// no-op. The log keeps shrinking on its own too (Config.RetainRevisions).
func (s *Store) Compact(ctx context.Context, rev int64) error {
	if cur := s.Revision(); rev > cur {
		return fmt.Errorf("%w: compact to %d; the store's revision is %d", ErrFutureRevision, rev, cur)
	}
	if oldest := s.OldestRevision(); rev < oldest {
		return &CompactedError{Requested: rev, Oldest: oldest}
	}
	// Each request deletes up to maxCompactChunk records, in its own batch
	// (or in a batch of writes that shares it).
	for s.OldestRevision() < rev {
		if err := s.submit(ctx, &request{compactTo: rev}); err != nil {
			return err
		}
	}
	return nil
}
