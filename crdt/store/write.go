package store

import (
	"bytes"
	"context"
	"fmt"

	"github.com/chorus-kv/chorus/crdt"
)

// Put writes value under key, stamped with the store's clock and this node's
// id, and returns the change once it is durable. A local write always wins:
// its timestamp is above every one the clock has seen.
func (s *Store) Put(ctx context.Context, key, value []byte) (*Change, error) {
	if err := s.cfg.Limits.CheckKey(key); err != nil {
		return nil, err
	}
	if err := s.cfg.Limits.CheckValue(value); err != nil {
		return nil, err
	}
	// Copies: the entry outlives the call (queued, then kept by watchers).
	return s.writeLocal(ctx, crdt.Entry{Key: bytes.Clone(key), Value: bytes.Clone(value)})
}

// Delete writes a tombstone for key and returns the change once it is
// durable. The tombstone is written even when the key is unknown here, so
// that it wins over older writes still on their way from other nodes;
// Change.Prev tells whether the key existed.
func (s *Store) Delete(ctx context.Context, key []byte) (*Change, error) {
	if err := s.cfg.Limits.CheckKey(key); err != nil {
		return nil, err
	}
	return s.writeLocal(ctx, crdt.Entry{Key: bytes.Clone(key), Tombstone: true})
}

func (s *Store) writeLocal(ctx context.Context, e crdt.Entry) (*Change, error) {
	req := &request{ops: []op{{local: true, entry: e}}, size: len(e.Key) + len(e.Value)}
	if err := s.submit(ctx, req); err != nil {
		return nil, err
	}
	if req.changes[0] == nil {
		// Cannot happen: a local write's timestamp is above every stored one.
		panic(fmt.Sprintf("store: local write to %q lost the merge", e.Key))
	}
	return req.changes[0], nil
}

// Apply merges entries made elsewhere (gossip, anti-entropy) through the same
// path as local writes, and returns the changes they made, in revision order,
// once they are durable; duplicates and stale entries change nothing. Every
// entry is checked first (limits, origin, and the clock's max offset); if one
// fails, none is applied.
func (s *Store) Apply(ctx context.Context, entries []crdt.Entry) ([]Change, error) {
	return s.apply(ctx, entries, false)
}

// ApplyBuffered is Apply without waiting for an fsync: it returns, and the
// changes are published (Config.OnCommit), once their batch is written to
// LevelDB's journal, which the operating system holds even if this process
// dies. The batch is fsynced with the next batch that needs one, or within
// Config.SyncDelay. A machine crash before then can lose these changes, but
// never a revision that was published (see doc.go). It is for entries that
// another node already holds durably and anti-entropy can bring again
// (gossip), so that a replicated write costs one fsync, on its origin, and
// its watchers elsewhere do not wait for a second one.
func (s *Store) ApplyBuffered(ctx context.Context, entries []crdt.Entry) ([]Change, error) {
	return s.apply(ctx, entries, true)
}

func (s *Store) apply(ctx context.Context, entries []crdt.Entry, buffered bool) ([]Change, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	req := &request{ops: make([]op, 0, len(entries)), buffered: buffered}
	horizon := s.TombstoneHorizon()
	for i := range entries {
		e := &entries[i]
		if err := s.cfg.Limits.CheckEntry(e); err != nil {
			return nil, fmt.Errorf("store: apply entry %d of %d: %w", i+1, len(entries), err)
		}
		if err := s.cfg.Clock.Check(e.HLC); err != nil {
			return nil, fmt.Errorf("store: apply entry %d of %d (key %q): %w", i+1, len(entries), e.Key, err)
		}
		if e.Tombstone && e.HLC < horizon {
			// Garbage here already: keeping it would only undo a purge.
			continue
		}
		req.ops = append(req.ops, op{entry: crdt.Entry{
			Key:       bytes.Clone(e.Key),
			Value:     bytes.Clone(e.Value),
			HLC:       e.HLC,
			Origin:    bytes.Clone(e.Origin),
			Tombstone: e.Tombstone,
		}})
		req.size += len(e.Key) + len(e.Value)
	}
	if len(req.ops) == 0 {
		return nil, nil
	}
	for i := range entries {
		// Checked above; Update only fails the same check, and the clock can
		// only have moved forward since.
		if _, err := s.cfg.Clock.Update(entries[i].HLC); err != nil {
			return nil, fmt.Errorf("store: apply entry %d: %w", i+1, err)
		}
	}
	if err := s.submit(ctx, req); err != nil {
		return nil, err
	}
	var out []Change
	for _, c := range req.changes {
		if c != nil {
			out = append(out, *c)
		}
	}
	return out, nil
}
