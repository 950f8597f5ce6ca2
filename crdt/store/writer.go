package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/syndtr/goleveldb/leveldb/opt"
)

// ErrWriteFailed is returned once a batch could not be written to disk: the
// store then refuses every write until it is reopened, because batches
// prepared after the failed one assumed its changes.
var ErrWriteFailed = errors.New("store: a write to disk failed; the store refuses writes until it is reopened")

// writeLoop is the writer: it writes each sealed batch (fsynced unless it
// may be buffered), publishes its changes and acknowledges its requests, in
// order, then signals idle. Buffered batches are fsynced by the next fsynced
// batch, or by the writer itself Config.SyncDelay after the first of them,
// whichever comes first, and at Close.
func (s *Store) writeLoop(batches <-chan *sealed, idle chan<- struct{}, done chan<- struct{}) {
	defer close(done)
	syncTimer := time.NewTimer(time.Hour)
	syncTimer.Stop()
	defer syncTimer.Stop()
	unsynced := false // buffered batches are written but not fsynced
	for {
		var sb *sealed
		select {
		case b, ok := <-batches:
			if !ok {
				// Close: make everything durable and mark the shutdown clean.
				if s.failure() == nil {
					if err := s.syncBuffered(true); err != nil {
						s.fail(fmt.Errorf("%w: at close: %w", ErrWriteFailed, err))
					}
				}
				return
			}
			sb = b
		case <-syncTimer.C:
			if unsynced && s.failure() == nil {
				if err := s.syncBuffered(false); err != nil {
					s.fail(fmt.Errorf("%w: fsync buffered batches: %w", ErrWriteFailed, err))
				}
			}
			unsynced = false
			continue
		}
		err := sb.err
		if err == nil {
			err = s.failure()
		}
		if err == nil && sb.dirty {
			var start time.Time
			if s.cfg.OnWrite != nil {
				start = time.Now()
			}
			if cerr := s.db.Write(&sb.b.b, &opt.WriteOptions{Sync: sb.sync}); cerr != nil {
				err = fmt.Errorf("%w: commit batch of %d changes and %d purges: %w", ErrWriteFailed, len(sb.changes), len(sb.purges), cerr)
				s.fail(err)
			} else {
				if s.cfg.OnWrite != nil {
					s.cfg.OnWrite(WriteInfo{Changes: len(sb.changes), Sync: sb.sync, Duration: time.Since(start)})
				}
				s.stats.batches.Add(1)
				s.stats.changes.Add(int64(len(sb.changes)))
				if sb.sync {
					s.stats.syncs.Add(1)
					unsynced = false
					syncTimer.Stop()
				} else if !unsynced {
					unsynced = true
					syncTimer.Reset(s.cfg.SyncDelay)
				}
			}
		}
		if err != nil {
			for _, req := range sb.reqs {
				req.err = err
				close(req.done)
			}
			s.durableSeq.Store(sb.seq)
			idle <- struct{}{}
			continue
		}
		for _, req := range sb.reqs {
			req.changes = make([]*Change, len(req.ops))
			for _, oc := range sb.idx[req] {
				req.changes[oc.op] = &sb.changes[oc.change]
			}
		}
		if sb.dirty {
			s.oldest.Store(sb.oldest)
			s.rev.Store(sb.rev)
		}
		s.updateTree(sb.openBatch)
		s.durableSeq.Store(sb.seq)
		if len(sb.changes) > 0 && s.cfg.OnCommit != nil {
			s.cfg.OnCommit(sb.changes)
		}
		for _, req := range sb.reqs {
			close(req.done)
		}
		idle <- struct{}{}
	}
}

// fail stops the store's writes with err (the first failure wins).
func (s *Store) fail(err error) {
	if s.failed.CompareAndSwap(nil, &err) {
		close(s.failedCh)
	}
}

// syncBuffered fsyncs the batches written without one: an fsynced write to
// LevelDB's journal makes every earlier write to the same journal durable
// (see doc.go for one written before LevelDB switched journals). It rewrites
// the revision counter and, at Close (clean), lowers the revision
// reservation to the revision, so that the next Open knows no published
// revision can be missing. REQUIRES: the writer.
func (s *Store) syncBuffered(clean bool) error {
	var b batch
	rev := encodeUint64(uint64(s.rev.Load()))
	b.b.Put([]byte(metaRev), rev)
	if clean {
		b.b.Put([]byte(metaReserved), rev)
	}
	start := time.Now()
	if err := s.db.Write(&b.b, &opt.WriteOptions{Sync: true}); err != nil {
		return err
	}
	if s.cfg.OnWrite != nil {
		s.cfg.OnWrite(WriteInfo{Sync: true, Duration: time.Since(start)})
	}
	s.stats.syncs.Add(1)
	return nil
}

// failure returns the write error that stopped the store, if any.
func (s *Store) failure() error {
	if e := s.failed.Load(); e != nil {
		return *e
	}
	return nil
}
