package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	ds "github.com/ipfs/go-datastore"
	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/merkle"
)

// op is one write in a request: a local put or delete (stamped by the
// committer) or an entry from elsewhere (already stamped).
type op struct {
	local bool
	// purge removes the entry if it is still this tombstone (garbage
	// collection); it is not a change and gets no revision.
	purge bool
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
	// compactTo, if set, asks for the change log below this revision to be
	// deleted (Compact); such a request has no ops.
	compactTo int64
	// buffered: the request may be acknowledged once its batch is written,
	// before it is fsynced (ApplyBuffered).
	buffered bool
}

// submit queues req for the committer and waits until its batch is written:
// fsynced, unless every request in it is buffered.
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

// ErrWriteFailed is returned once a batch could not be written to disk: the
// store then refuses every write until it is reopened, because batches
// prepared after the failed one assumed its changes.
var ErrWriteFailed = errors.New("store: a write to disk failed; the store refuses writes until it is reopened")

// The write path is a two-stage pipeline, so that merging and encoding the
// next batch (CPU) overlaps the fsync of the current one (disk):
//
//   - the committer (commitLoop) takes requests from the queue one at a
//     time and merges each into the open batch at once, while
//   - the writer (writeLoop) makes the previous batch durable. When the
//     writer is idle, the committer seals the open batch and hands it over.
//
// A lone write is handed over as soon as it is merged, so it waits for no
// one; under load, every request that arrives during one fsync shares the
// next. Merges read the newest state: the open batch, then the batch being
// written, then LevelDB.

// openBatch is the batch the committer is filling.
type openBatch struct {
	seq  uint64
	reqs []*request
	b    *batch
	// sync: the batch must be fsynced before it is acknowledged (it holds a
	// request that is not buffered).
	sync    bool
	records map[string]int // index in changes of this batch's entry, by key; purgedRecord if purged
	changes []Change
	purges  []purge
	idx     map[*request][]opChange
	ops     int
	size    int
	err     error // a merge failed: every request of the batch fails
	// compactTo is the highest compactTo of the batch's requests.
	compactTo int64
}

type opChange struct{ op, change int }

// purgedRecord marks, in openBatch.records, a key the batch purges.
const purgedRecord = -1

// purge is a tombstone removed by garbage collection: its tree update.
type purge struct {
	bucket uint32
	hash   uint64
	hlc    crdt.Timestamp
}

// sealed is a batch handed to the writer.
type sealed struct {
	*openBatch
	rev, oldest int64 // the store's revision and oldest log revision once durable
	dirty       bool  // the batch writes something: changes, purges or a compaction
}

// pipeline is the committer's view of the state, ahead of what is durable.
// REQUIRES: the committer goroutine only.
type pipeline struct {
	rev, oldest int64
	seq         uint64
	purged      crdt.Timestamp // the newest tombstone purged
	inFlight    *sealed        // handed to the writer, maybe not durable yet
	// reserved is the revision reservation carried by the last fsynced batch
	// handed over: a batch that ends at or below it may skip the fsync.
	reserved int64
}

// commitLoop is the committer. It owns the writer goroutine and stops it
// after the queue is closed and drained.
func (s *Store) commitLoop() {
	defer close(s.committed)
	toWriter := make(chan *sealed)
	idle := make(chan struct{}, 1)
	writerDone := make(chan struct{})
	go s.writeLoop(toWriter, idle, writerDone)
	defer func() {
		close(toWriter)
		<-writerDone
	}()

	p := &pipeline{rev: s.rev.Load(), oldest: s.oldest.Load(), purged: crdt.Timestamp(s.purged.Load()), reserved: s.rev.Load()}
	var open *openBatch
	var carry *request // over the open batch's caps: the next batch's first
	idle <- struct{}{} // the writer starts idle
	for {
		if open == nil || len(open.reqs) == 0 {
			// Nothing to hand over: wait for a request.
			req := carry
			carry = nil
			if req == nil {
				var ok bool
				if req, ok = <-s.queue; !ok {
					return
				}
				s.taken.Add(1)
			}
			open = s.newOpenBatch(p)
			s.merge(p, open, req)
		}
		if carry != nil {
			// The open batch is full: hand it over as soon as the writer is free.
			<-idle
			s.handOver(p, open, toWriter)
			open = nil
			continue
		}
		select {
		case <-idle:
			s.handOver(p, open, toWriter)
			open = nil
		case req, ok := <-s.queue:
			if !ok {
				<-idle
				s.handOver(p, open, toWriter)
				<-idle // the last batch is durable
				return
			}
			s.taken.Add(1)
			if open.ops+len(req.ops) > s.cfg.MaxBatchOps || open.size+req.size > s.cfg.MaxBatchBytes {
				carry = req
				continue
			}
			s.merge(p, open, req)
		}
	}
}

func (s *Store) newOpenBatch(p *pipeline) *openBatch {
	p.seq++
	return &openBatch{seq: p.seq, b: &batch{}, records: map[string]int{}, idx: map[*request][]opChange{}}
}

// current returns the newest state of key: from the open batch, the batch
// being written, or LevelDB.
func (s *Store) current(p *pipeline, ob *openBatch, key []byte) (*Record, error) {
	if i, ok := ob.records[string(key)]; ok {
		if i == purgedRecord {
			return nil, nil
		}
		return &ob.changes[i].Record, nil
	}
	if f := p.inFlight; f != nil {
		if s.durableSeq.Load() >= f.seq {
			p.inFlight = nil // durable: LevelDB has it
		} else if i, ok := f.records[string(key)]; ok {
			if i == purgedRecord {
				return nil, nil
			}
			return &f.changes[i].Record, nil
		}
	}
	return s.getRecord(key)
}

// merge adds req's ops to the open batch: each op that wins its merge gets
// the next revision and is encoded into the batch.
func (s *Store) merge(p *pipeline, ob *openBatch, req *request) {
	ctx := context.Background()
	ob.reqs = append(ob.reqs, req)
	ob.sync = ob.sync || !req.buffered
	ob.ops += len(req.ops)
	ob.size += req.size
	ob.compactTo = max(ob.compactTo, req.compactTo)
	if ob.err != nil {
		return
	}
	for i := range req.ops {
		o := &req.ops[i]
		cur, err := s.current(p, ob, o.entry.Key)
		if err != nil {
			ob.err = err
			return
		}
		if o.purge {
			if err := s.mergePurge(ctx, ob, cur, &o.entry); err != nil {
				ob.err = err
				return
			}
			continue
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
		rev := p.rev + int64(len(ob.changes)) + 1
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
		c.bucket = merkle.BucketOf(merkle.KeyHash(c.Record.Key))
		c.newHash = merkle.EntryHash(&c.Record.Entry)
		if cur != nil {
			c.oldHash = merkle.EntryHash(&cur.Entry)
		}
		if err := putChange(ob.b, &c); err != nil {
			ob.err = err
			return
		}
		ob.changes = append(ob.changes, c)
		ob.records[string(o.entry.Key)] = len(ob.changes) - 1
		ob.idx[req] = append(ob.idx[req], opChange{op: i, change: len(ob.changes) - 1})
	}
}

// handOver seals the open batch (compaction, metadata) and gives it to the
// writer, which must be idle.
func (s *Store) handOver(p *pipeline, ob *openBatch, toWriter chan<- *sealed) {
	sb := &sealed{openBatch: ob, rev: p.rev, oldest: p.oldest}
	if ob.err == nil && (len(ob.changes) > 0 || len(ob.purges) > 0 || ob.compactTo > p.oldest) {
		ctx := context.Background()
		rev := p.rev + int64(len(ob.changes))
		oldest, err := s.compact(ctx, ob.b, p.oldest, rev, len(ob.changes), ob.compactTo)
		purged := p.purged
		for _, pu := range ob.purges {
			purged = max(purged, pu.hlc)
		}
		if err == nil && purged != p.purged {
			err = ob.b.Put(ctx, ds.RawKey(metaPurged), encodeUint64(uint64(purged)))
		}
		if err == nil {
			err = ob.b.Put(ctx, ds.RawKey(metaRev), encodeUint64(uint64(rev)))
		}
		if err == nil {
			err = ob.b.Put(ctx, ds.RawKey(metaHLC), encodeUint64(uint64(s.cfg.Clock.Last())))
		}
		// A buffered batch may skip the fsync only while its revisions are
		// covered by a durable reservation (see doc.go); otherwise it is
		// fsynced, and every fsynced batch renews the reservation.
		if !ob.sync && rev > p.reserved {
			ob.sync = true
		}
		reserved := p.reserved
		if err == nil && ob.sync {
			reserved = rev + s.cfg.ReserveRevisions
			err = ob.b.Put(ctx, ds.RawKey(metaReserved), encodeUint64(uint64(reserved)))
		}
		if err != nil {
			ob.err = fmt.Errorf("store: batch: %w", err)
		} else {
			sb.rev, sb.oldest, sb.dirty = rev, oldest, true
			p.rev, p.oldest, p.purged, p.reserved = rev, oldest, purged, reserved
			p.inFlight = sb
		}
	}
	toWriter <- sb
}

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

// batch is a LevelDB batch behind go-datastore's Batch interface, so that
// the writer chooses per batch whether its write is fsynced (go-ds-leveldb's
// own batches always are). Commit is not used: the writer writes b.
type batch struct{ b goleveldb.Batch }

var _ ds.Batch = (*batch)(nil)

func (b *batch) Put(_ context.Context, k ds.Key, v []byte) error {
	b.b.Put(k.Bytes(), v)
	return nil
}

func (b *batch) Delete(_ context.Context, k ds.Key) error {
	b.b.Delete(k.Bytes())
	return nil
}

func (b *batch) Commit(context.Context) error {
	return errors.New("store: internal batches are written by the writer goroutine")
}

// failure returns the write error that stopped the store, if any.
func (s *Store) failure() error {
	if e := s.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// putChange encodes a change into the batch: the key's entry, its change-log
// record and the anti-entropy indexes. The entry is encoded once: the log
// record embeds the same bytes (see appendLogRecord).
func putChange(b *batch, c *Change) error {
	entry, err := encodeRecord(&c.Record)
	if err != nil {
		return fmt.Errorf("store: encode entry %q: %w", c.Record.Key, err)
	}
	key := c.Record.Key
	b.b.Put(entryKey(key), entry)
	b.b.Put(logKey(c.Record.ModRevision), appendLogRecord(make([]byte, 0, len(entry)+24), entry, c))
	// The anti-entropy indexes: the key-hash index holds the entry's digest,
	// and the tombstone index follows the key's tombstone.
	b.b.Put(hashKey(merkle.KeyHash(key), key), digestValue(&c.Record.Entry))
	if c.Prev != nil && c.Prev.Tombstone {
		b.b.Delete(tombKey(c.Prev.HLC, key))
	}
	if c.Record.Tombstone {
		b.b.Put(tombKey(c.Record.HLC, key), nil)
	}
	return nil
}

// mergePurge removes, in the open batch, the key's entry if it is still the
// tombstone t; a newer write since makes it a no-op.
func (s *Store) mergePurge(ctx context.Context, ob *openBatch, cur *Record, t *crdt.Entry) error {
	if cur == nil || !cur.Tombstone || cur.HLC != t.HLC || !bytes.Equal(cur.Origin, t.Origin) {
		return nil
	}
	key := cur.Key
	kh := merkle.KeyHash(key)
	for _, k := range [][]byte{entryKey(key), hashKey(kh, key), tombKey(cur.HLC, key)} {
		if err := ob.b.Delete(ctx, ds.RawKey(string(k))); err != nil {
			return fmt.Errorf("store: batch: %w", err)
		}
	}
	ob.purges = append(ob.purges, purge{bucket: merkle.BucketOf(kh), hash: merkle.EntryHash(&cur.Entry), hlc: cur.HLC})
	ob.records[string(key)] = purgedRecord
	return nil
}

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
