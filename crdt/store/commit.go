package store

import (
	"context"
	"fmt"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/chorus-kv/chorus/crdt"
)

// op is one write in a request: a local put or delete (stamped by the
// committer) or an entry from elsewhere (already stamped).
type op struct {
	local bool
	entry crdt.Entry
}

// request is what a writer hands the committer. The committer fills changes
// (one slot per op, nil where the op changed nothing) and err, then closes done.
type request struct {
	ops     []op
	size    int // key and value bytes, for the batch cap
	changes []*Change
	err     error
	done    chan struct{}
}

// submit queues req for the committer and waits until it is durable.
func (s *Store) submit(ctx context.Context, req *request) error {
	req.done = make(chan struct{})
	s.mu.RLock()
	if s.mu.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.queue <- req:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case <-req.done:
		return req.err
	case <-ctx.Done():
		// The write is queued and may still become durable.
		return ctx.Err()
	}
}

// gatherWait is how long the committer waits for more writes when the
// batch it holds is smaller than the previous one: writers acknowledged by
// the previous batch are usually about to write again, and sharing the next
// fsync with them is worth far more than this wait. A lone writer's batch is
// never smaller than the previous one, so it never waits.
const gatherWait = 100 * time.Microsecond

// commitLoop is the committer: the only goroutine that writes LevelDB. It
// takes the first waiting request and every other one already queued (up to
// the batch caps), waits briefly for more while the batch is smaller than
// the last, and commits them in one batch.
func (s *Store) commitLoop() {
	defer close(s.committed)
	var (
		batch   []*request
		carry   *request // taken from the queue but over the caps: next batch's first
		lastOps int
		timer   = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
	for {
		first := carry
		carry = nil
		if first == nil {
			var ok bool
			if first, ok = <-s.queue; !ok {
				return
			}
		}
		batch = append(batch[:0], first)
		ops, size := len(first.ops), first.size
		waited := false
	gather:
		for ops < s.cfg.MaxBatchOps && size < s.cfg.MaxBatchBytes {
			var req *request
			var ok bool
			select {
			case req, ok = <-s.queue:
			default:
				if waited || ops >= lastOps {
					break gather
				}
				waited = true
				timer.Reset(gatherWait)
				select {
				case req, ok = <-s.queue:
					if !timer.Stop() {
						<-timer.C
					}
				case <-timer.C:
					break gather
				}
			}
			if !ok {
				break gather
			}
			if ops+len(req.ops) > s.cfg.MaxBatchOps || size+req.size > s.cfg.MaxBatchBytes {
				carry = req
				break gather
			}
			batch = append(batch, req)
			ops += len(req.ops)
			size += req.size
		}
		lastOps = ops
		s.commit(batch)
		clear(batch)
	}
}

// commit merges the batch's ops, writes one LevelDB batch and acknowledges
// the writers. It runs only on the committer.
func (s *Store) commit(batch []*request) {
	ctx := context.Background()
	startRev := s.rev.Load()
	rev := startRev
	var changes []Change
	type opChange struct{ op, change int }
	changed := make(map[*request][]opChange)
	newOldest := s.oldest.Load()
	err := func() error {
		b, err := s.ds.Batch(ctx)
		if err != nil {
			return fmt.Errorf("store: new batch: %w", err)
		}
		// Entries written earlier in this batch, not yet readable from LevelDB.
		pending := make(map[string]*Record)
		for _, req := range batch {
			for i := range req.ops {
				o := &req.ops[i]
				cur, ok := pending[string(o.entry.Key)]
				if !ok {
					if cur, err = s.getRecord(o.entry.Key); err != nil {
						return err
					}
				}
				if o.local {
					o.entry.HLC = s.cfg.Clock.Now()
					o.entry.Origin = s.cfg.NodeID
				}
				var curEntry *crdt.Entry
				if cur != nil {
					curEntry = &cur.Entry
				}
				if !crdt.Wins(curEntry, &o.entry) {
					continue
				}
				rev++
				c := Change{Record: Record{Entry: o.entry, ModRevision: rev}, Prev: cur}
				if cur != nil {
					c.PrevModRevision, c.PrevLive = cur.ModRevision, cur.Live()
				}
				if !o.entry.Tombstone {
					c.Record.CreateRevision, c.Record.Version = rev, 1
					if cur.Live() {
						c.Record.CreateRevision, c.Record.Version = cur.CreateRevision, cur.Version+1
					}
				}
				if err := putChange(ctx, b, &c); err != nil {
					return err
				}
				pending[string(o.entry.Key)] = &c.Record
				changes = append(changes, c)
				changed[req] = append(changed[req], opChange{op: i, change: len(changes) - 1})
			}
		}
		if rev == startRev {
			return nil // nothing changed: nothing to make durable
		}
		if newOldest, err = s.compactLocked(ctx, b, rev, len(changes)); err != nil {
			return err
		}
		if err := b.Put(ctx, ds.RawKey(metaRev), encodeUint64(uint64(rev))); err != nil {
			return fmt.Errorf("store: batch: %w", err)
		}
		if err := b.Put(ctx, ds.RawKey(metaHLC), encodeUint64(uint64(s.cfg.Clock.Last()))); err != nil {
			return fmt.Errorf("store: batch: %w", err)
		}
		if err := b.Commit(ctx); err != nil {
			return fmt.Errorf("store: commit batch of %d changes: %w", len(changes), err)
		}
		return nil
	}()
	if err != nil {
		for _, req := range batch {
			req.err = err
			close(req.done)
		}
		return
	}
	for _, req := range batch {
		req.changes = make([]*Change, len(req.ops))
		for _, oc := range changed[req] {
			req.changes[oc.op] = &changes[oc.change]
		}
	}
	s.oldest.Store(newOldest)
	s.rev.Store(rev)
	if len(changes) > 0 && s.cfg.OnCommit != nil {
		s.cfg.OnCommit(changes)
	}
	for _, req := range batch {
		close(req.done)
	}
}

func putChange(ctx context.Context, b ds.Batch, c *Change) error {
	entry, err := encodeRecord(&c.Record)
	if err != nil {
		return fmt.Errorf("store: encode entry %q: %w", c.Record.Key, err)
	}
	logRec, err := encodeLogRecord(c)
	if err != nil {
		return fmt.Errorf("store: encode log record %d: %w", c.Record.ModRevision, err)
	}
	if err := b.Put(ctx, ds.RawKey(string(entryKey(c.Record.Key))), entry); err != nil {
		return fmt.Errorf("store: batch: %w", err)
	}
	if err := b.Put(ctx, ds.RawKey(string(logKey(c.Record.ModRevision))), logRec); err != nil {
		return fmt.Errorf("store: batch: %w", err)
	}
	return nil
}

// compactLocked deletes, in batch b, change-log records older than the
// retained window ending at rev: at most 2·n+64 of them, so that a backlog
// (after RetainRevisions shrinks) is worked off over several batches without
// making one batch large. It returns the oldest revision kept.
// REQUIRES: the committer.
func (s *Store) compactLocked(ctx context.Context, b ds.Batch, rev int64, n int) (int64, error) {
	oldest := s.oldest.Load()
	target := rev - s.cfg.RetainRevisions + 1 // the oldest revision to keep
	if target <= oldest {
		return oldest, nil
	}
	target = min(target, oldest+int64(2*n+64))
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
