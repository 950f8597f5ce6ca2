package store

import (
	"context"
	"fmt"

	ds "github.com/ipfs/go-datastore"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/merkle"
)

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
