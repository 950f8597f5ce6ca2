package store

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/merkle"
)

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("store: closed")

// ErrInUse is returned by Open when another process holds the store.
var ErrInUse = errors.New("store: in use")

// Store is a node's durable CRDT state. It is safe for concurrent use.
type Store struct {
	cfg Config
	db  engine // the storage seam: see engine.go

	queue     chan *request // to the committer
	committed chan struct{} // closed when the committer has exited

	// rev and oldest are written only by the committer (and Open); readers
	// load them atomically.
	rev    atomic.Int64
	oldest atomic.Int64
	// durableSeq is the sequence number of the last batch the writer
	// finished; failed holds the error that stopped writes, if one did.
	durableSeq atomic.Uint64
	failed     atomic.Pointer[error]
	failedCh   chan struct{} // closed when a write fails and the store stops taking writes
	// purged is the HLC of the newest tombstone purged; contact the HLC of
	// the last completed sync (see LastContact).
	purged  atomic.Uint64
	contact atomic.Uint64
	keys    atomic.Int64 // entries, tombstones included
	tombs   atomic.Int64 // entries that are tombstones
	tree    struct {
		sync.RWMutex
		t *merkle.Tree
	}
	// taken counts requests the committer has taken from the queue (tests).
	taken atomic.Int64
	// catchingUp is set while the store, repaired after damage, waits for a
	// complete anti-entropy session (see CatchingUp).
	catchingUp atomic.Bool
	stats      struct {
		batches, syncs, changes atomic.Int64
		skipped                 int64 // set by Open
	}

	mu struct {
		sync.RWMutex // held for reading while sending on queue
		closed       bool
	}
	closeOnce sync.Once
	closeErr  error
}

// Open opens (or creates) the store at cfg.Path and starts its committer.
// Damaged LevelDB files fail it with ErrDamaged, unless cfg.Repair is set.
func Open(cfg Config) (*Store, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := open(cfg, false)
	if errors.Is(err, ErrDamaged) && cfg.Repair {
		if rerr := recoverFiles(cfg); rerr != nil {
			return nil, fmt.Errorf("%w; %w", err, rerr)
		}
		s, err = open(cfg, true)
	}
	return s, err
}

// open is Open after the checks; repaired says recoverFiles has just run.
func open(cfg Config, repaired bool) (*Store, error) {
	d, err := openEngine(cfg)
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg:       cfg,
		db:        d,
		queue:     make(chan *request, cfg.QueueDepth),
		committed: make(chan struct{}),
		failedCh:  make(chan struct{}),
	}
	steps := []func() error{s.verify, s.loadMeta, s.buildTree, s.loadContact, s.loadRepaired}
	if repaired {
		steps = append([]func() error{s.verify, s.afterRepair}, steps[1:]...)
	}
	for _, step := range steps {
		if err := step(); err != nil {
			_ = d.Close()
			return nil, err
		}
	}
	go s.commitLoop()
	return s, nil
}

func (s *Store) loadMeta() error {
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
			return 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, key, err)
		}
		return v, nil
	}
	rev, err := read(metaRev, 0)
	if err != nil {
		return err
	}
	oldest, err := read(metaOldest, 1)
	if err != nil {
		return err
	}
	hlc, err := read(metaHLC, 0)
	if err != nil {
		return err
	}
	purged, err := read(metaPurged, 0)
	if err != nil {
		return err
	}
	reserved, err := read(metaReserved, rev)
	if err != nil {
		return err
	}
	boot := engineBootID(s.cfg)
	storedBoot, err := s.db.Get([]byte(metaBoot), nil)
	if err != nil && !errors.Is(err, goleveldb.ErrNotFound) {
		return fmt.Errorf("store: read %s: %w", metaBoot, err)
	}
	if reserved > rev {
		// Not closed cleanly: batches written without an fsync may have
		// had revisions up to reserved published to watchers. If the
		// machine may have crashed since (another boot, or one we cannot
		// tell), they may be lost: skip past them, so that no revision a
		// watcher saw is given to another change. After a crash of the
		// process alone, the OS still had them, and LevelDB replayed them.
		if boot == "" || string(storedBoot) != boot {
			// Record the gaps (ReadLog checks revisions are consecutive but
			// for recorded gaps) and the new revision, durably, before any
			// write can take a revision after it.
			skipped, err := s.recordGaps(int64(oldest), int64(rev), int64(reserved))
			if err != nil {
				return fmt.Errorf("store: skip revisions %d to %d: %w", rev+1, reserved, err)
			}
			s.stats.skipped = skipped
			rev = reserved
		}
	}
	if boot != "" && string(storedBoot) != boot {
		if err := s.putSync([]byte(metaBoot), []byte(boot)); err != nil {
			return fmt.Errorf("store: write %s: %w", metaBoot, err)
		}
	}
	s.rev.Store(int64(rev))
	s.oldest.Store(int64(oldest))
	s.purged.Store(purged)
	s.cfg.Clock.Observe(crdt.Timestamp(hlc))
	return nil
}

// recordGaps is Open's part after a machine crash that may have lost
// buffered batches: it makes reserved the store's revision and records as
// gaps the revisions after rev up to reserved, and every hole in the change
// log between oldest and rev. A hole is a lost buffered batch whose later
// batches survived: a power loss may keep the journal's later pages and lose
// earlier unsynced ones, and LevelDB closes a full journal without an fsync,
// so an fsynced batch in the next journal may outlive buffered ones in the
// previous. Adjacent gaps are merged into one record, as ReadLog expects. Log
// records below oldest (a lost batch's compaction, redone by a later one) are
// deleted. It returns how many revisions the new gaps cover.
func (s *Store) recordGaps(oldest, rev, reserved int64) (int64, error) {
	var b goleveldb.Batch
	type gap struct{ first, last int64 }
	var gaps []gap
	missing := func(first, last int64) {
		if n := len(gaps); n > 0 && gaps[n-1].last+1 == first {
			gaps[n-1].last = last
			return
		}
		gaps = append(gaps, gap{first, last})
	}
	// Existing gap records are rewritten, merged with the new ones.
	var before int64
	it := s.db.NewIterator(util.BytesPrefix([]byte(gapPrefix)), nil)
	for it.Next() {
		first, err := parseRevKey(it.Key(), gapPrefix)
		if err != nil {
			it.Release()
			return 0, err
		}
		last, err := decodeUint64(it.Value())
		if err != nil {
			it.Release()
			return 0, fmt.Errorf("%w: %q: %v", ErrCorrupt, it.Key(), err)
		}
		if int64(last) >= oldest {
			before += int64(last) - max(first, oldest) + 1
			b.Delete(bytes.Clone(it.Key()))
		}
	}
	it.Release()
	if err := it.Error(); err != nil {
		return 0, err
	}
	next := oldest // the next revision expected in the log
	it = s.db.NewIterator(&util.Range{Start: []byte(logPrefix), Limit: logKeyEnd()}, &opt.ReadOptions{DontFillCache: true})
	for it.Next() {
		r, err := parseRevKey(it.Key(), logPrefix)
		if err != nil {
			it.Release()
			return 0, err
		}
		switch {
		case r < oldest:
			b.Delete(bytes.Clone(it.Key()))
			continue
		case r > rev:
			// Cannot be (rev is written with its batch's records), but such
			// a record would sit inside the skipped revisions.
			b.Delete(bytes.Clone(it.Key()))
			continue
		case r > next:
			missing(next, r-1)
		}
		next = r + 1
	}
	it.Release()
	if err := it.Error(); err != nil {
		return 0, err
	}
	if next <= reserved {
		missing(next, reserved)
	}
	var after int64
	for _, g := range gaps {
		b.Put(gapKey(g.first), encodeUint64(uint64(g.last)))
		after += g.last - g.first + 1
	}
	b.Put([]byte(metaRev), encodeUint64(uint64(reserved)))
	if err := s.db.Write(&b, &opt.WriteOptions{Sync: true}); err != nil {
		return 0, err
	}
	return after - before, nil
}

// putSync writes one key durably, outside the write path (Open, and the
// contact marks).
func (s *Store) putSync(key, value []byte) error {
	var b goleveldb.Batch
	b.Put(key, value)
	return s.db.Write(&b, &opt.WriteOptions{Sync: true})
}

// parseRevKey parses the revision of a log or gap key.
func parseRevKey(key []byte, prefix string) (int64, error) {
	hex, ok := bytes.CutPrefix(key, []byte(prefix))
	if !ok || len(hex) != 16 {
		return 0, fmt.Errorf("%w: key %q", ErrCorrupt, key)
	}
	v, err := strconv.ParseUint(string(hex), 16, 64)
	if err != nil || v > math.MaxInt64 {
		return 0, fmt.Errorf("%w: key %q", ErrCorrupt, key)
	}
	return int64(v), nil
}

// bootID identifies the running kernel's boot (Linux); "" where unknown.
// A variable so that tests can simulate a machine crash and reboot, which
// they cannot cause.
var bootID = func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

// Stats are a store's write counters since Open.
type Stats struct {
	Batches int64 // LevelDB batches written
	Syncs   int64 // fsyncs: of batches, of buffered batches, at Close
	Changes int64 // changes written (revisions given)
	// SkippedRevisions is how many revisions Open recorded as gaps because
	// the store was not closed cleanly and the machine may have crashed
	// since: the reserved revisions skipped, and holes a lost buffered batch
	// left in the change log (see the package doc, on ApplyBuffered and
	// revision reservations).
	SkippedRevisions int64
}

// Stats returns the store's write counters.
func (s *Store) Stats() Stats {
	return Stats{
		Batches: s.stats.batches.Load(), Syncs: s.stats.syncs.Load(), Changes: s.stats.changes.Load(),
		SkippedRevisions: s.stats.skipped,
	}
}

// Close refuses new writes, commits the ones already queued, stops the
// committer and closes LevelDB. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.mu.closed = true
		close(s.queue)
		s.mu.Unlock()
		<-s.committed
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Failed is closed when a batch write fails; from then on every write fails
// with ErrWriteFailed until the store is reopened. Err says why.
func (s *Store) Failed() <-chan struct{} { return s.failedCh }

// Err returns the write error that stopped the store, or nil.
func (s *Store) Err() error { return s.failure() }

// NodeID returns the origin id of this store's local writes.
func (s *Store) NodeID() []byte { return s.cfg.NodeID }

// Limits returns the limits the store enforces.
func (s *Store) Limits() crdt.Limits { return s.cfg.Limits }

// Clock returns the store's hybrid logical clock.
func (s *Store) Clock() *crdt.Clock { return s.cfg.Clock }

// Revision returns the revision of the latest durable change, 0 if none.
func (s *Store) Revision() int64 { return s.rev.Load() }

// OldestRevision returns the oldest revision still in the change log.
func (s *Store) OldestRevision() int64 { return s.oldest.Load() }

// Get returns the key's live record, or nil if the key does not exist or is
// deleted.
func (s *Store) Get(key []byte) (*Record, error) {
	if err := s.cfg.Limits.CheckKey(key); err != nil {
		return nil, err
	}
	release, err := s.readGuard()
	if err != nil {
		return nil, err
	}
	defer release()
	r, err := s.getRecord(key)
	if err != nil || !r.Live() {
		return nil, err
	}
	return r, nil
}

// GetEntry returns the key's register, tombstone included, or nil if the key
// is unknown here.
func (s *Store) GetEntry(key []byte) (*Record, error) {
	if err := s.cfg.Limits.CheckKey(key); err != nil {
		return nil, err
	}
	release, err := s.readGuard()
	if err != nil {
		return nil, err
	}
	defer release()
	return s.getRecord(key)
}

// readGuard fails with ErrClosed once Close has begun; otherwise it holds
// Close off until release is called, so LevelDB stays open for the read.
func (s *Store) readGuard() (release func(), err error) {
	s.mu.RLock()
	if s.mu.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	return s.mu.RUnlock, nil
}

func (s *Store) getRecord(key []byte) (*Record, error) {
	b, err := s.db.Get(entryKey(key), nil)
	if errors.Is(err, goleveldb.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %q: %w", key, err)
	}
	r, err := decodeRecord(b)
	if err != nil {
		return nil, fmt.Errorf("store: get %q: %w", key, err)
	}
	return &r, nil
}

// RangeOptions selects keys for Range.
type RangeOptions struct {
	// Start is the first key (inclusive); empty means the first key.
	Start []byte
	// End is the key after the last (exclusive); nil means no upper bound.
	End []byte
	// After, when set, continues a previous Range: only keys greater than it.
	After []byte
	// Limit is the most keys returned; 0 means DefaultPageLimit. At most
	// MaxPageLimit.
	Limit int
	// KeysOnly leaves values out.
	KeysOnly bool
}

// ErrBadRange reports RangeOptions that select nothing sensible.
var ErrBadRange = errors.New("store: bad range")

// RangeResult is one page of a Range.
type RangeResult struct {
	Records []Record
	// More is true when keys remain after the page; pass NextKey as After.
	More    bool
	NextKey []byte
	// Revision is the store's revision when the page was read.
	Revision int64
}

// Range returns live keys in [Start, End), in key order, one page at a time.
func (s *Store) Range(opts RangeOptions) (RangeResult, error) {
	limit := opts.Limit
	switch {
	case limit < 0:
		return RangeResult{}, fmt.Errorf("%w: limit is %d; it must be 0 (default %d) to %d", ErrBadRange, limit, DefaultPageLimit, MaxPageLimit)
	case limit == 0:
		limit = DefaultPageLimit
	case limit > MaxPageLimit:
		limit = MaxPageLimit
	}
	if opts.End != nil && bytes.Compare(opts.Start, opts.End) > 0 {
		return RangeResult{}, fmt.Errorf("%w: start %q is after end %q", ErrBadRange, opts.Start, opts.End)
	}
	start := opts.Start
	if opts.After != nil && bytes.Compare(opts.After, start) >= 0 {
		start = append(append([]byte(nil), opts.After...), 0) // the first key after After
	}
	rng := &util.Range{Start: entryKey(start), Limit: entryKeyEnd()}
	if opts.End != nil {
		rng.Limit = entryKey(opts.End)
	}
	release, err := s.readGuard()
	if err != nil {
		return RangeResult{}, err
	}
	defer release()
	snap, err := s.db.GetSnapshot()
	if err != nil {
		return RangeResult{}, fmt.Errorf("store: range: %w", err)
	}
	defer snap.Release()
	var res RangeResult
	// The revision as of the snapshot, so that the page and its revision agree.
	if b, err := snap.Get([]byte(metaRev), nil); err == nil {
		rev, err := decodeUint64(b)
		if err != nil {
			return RangeResult{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, metaRev, err)
		}
		res.Revision = int64(rev)
	}
	it := snap.NewIterator(rng, nil)
	defer it.Release()
	size := 0
	for it.Next() {
		r, err := decodeRecord(it.Value())
		if err != nil {
			return RangeResult{}, fmt.Errorf("store: range at %q: %w", it.Key(), err)
		}
		if r.Tombstone {
			continue
		}
		if opts.KeysOnly {
			r.Value = nil
		}
		if len(res.Records) == limit || (len(res.Records) > 0 && size+len(r.Key)+len(r.Value) > s.cfg.MaxPageBytes) {
			res.More = true
			break
		}
		size += len(r.Key) + len(r.Value)
		res.Records = append(res.Records, r)
	}
	if err := it.Error(); err != nil {
		return RangeResult{}, fmt.Errorf("store: range: %w", err)
	}
	if res.More {
		res.NextKey = res.Records[len(res.Records)-1].Key
	}
	return res, nil
}
