package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/syndtr/goleveldb/leveldb/storage"

	"github.com/chorus-kv/chorus/crdt"
)

// Defaults for Config.
const (
	DefaultMaxBatchOps      = 4096
	DefaultMaxBatchBytes    = 8 << 20 // 8 MiB
	DefaultQueueDepth       = 8192
	DefaultRetainRevisions  = 100_000
	DefaultPageLimit        = 1000
	MaxPageLimit            = 10_000
	DefaultMaxPageBytes     = 4 << 20 // 4 MiB
	DefaultSyncDelay        = 50 * time.Millisecond
	DefaultReserveRevisions = 4096
	DefaultWriteBufferBytes = memtableBytes
	DefaultBlockCacheBytes  = blockCacheBytes
)

// Config configures a Store. The zero value of every field but NodeID means
// its default.
type Config struct {
	// Path is the LevelDB folder, created if missing. Empty means LevelDB
	// runs on Storage, or on a fresh in-memory storage (lost on Close) when
	// Storage is nil too. Path and Storage cannot both be set.
	Path string
	// Storage, if set, holds LevelDB's files instead of a folder (Path must
	// be empty): goleveldb's storage.NewMemStorage() for a simulation that
	// reopens its stores, or a fault-injecting storage (package
	// crdt/store/faultstorage) for tests. The same LevelDB engine runs on it
	// as on a folder. The store never closes it: a store may be reopened on
	// it after Close, and only one store may have it open at a time
	// (ErrInUse). If it has a method BootID() string, Open takes that as the
	// machine's boot id (see doc.go): a storage that simulates crashes
	// changes it with each. Default nil.
	Storage storage.Storage
	// WriteBufferBytes is LevelDB's write buffer (memtable): each store
	// allocates it when it opens, and while a full one is flushed a second
	// one fills. Default 4 MiB (see memtableBytes). A simulation of many
	// stores in one process sets it low, with BlockCacheBytes and
	// QueueDepth: at 64 KiB, 64 KiB and 64, an in-memory store holding one
	// key takes about 0.3 MB of heap, against 4.5 MB at the defaults
	// (BenchmarkIdleInMemoryStores), at the cost of more frequent flushes.
	WriteBufferBytes int
	// BlockCacheBytes bounds LevelDB's cache of table blocks. Default 32 MiB.
	BlockCacheBytes int
	// NodeID is this node's id (its libp2p peer id, raw bytes). It is the
	// origin of every local write. Required.
	NodeID []byte
	// Limits bounds keys and values. Default: 4 KiB keys, 1 MiB values.
	Limits crdt.Limits
	// Clock stamps local writes and checks remote ones. Default: a clock on
	// the system wall clock with crdt.DefaultMaxOffset (500 ms).
	Clock *crdt.Clock
	// MaxBatchOps caps how many changes share one batch and one fsync.
	// Default 4096.
	MaxBatchOps int
	// MaxBatchBytes caps the key and value bytes of one batch; a single larger
	// request still gets a batch of its own. Default 8 MiB.
	MaxBatchBytes int
	// QueueDepth is how many write requests may wait for the committer before
	// writers block. Default 8192.
	QueueDepth int
	// RetainRevisions is how many of the latest change-log records are kept
	// for watches that resume from a revision; older ones are deleted, a few
	// with each batch. Default 100,000.
	RetainRevisions int64
	// MaxPageBytes caps the key and value bytes of one Range page (at least
	// one key is always returned). Default 4 MiB.
	MaxPageBytes int
	// TombstoneGrace is how long a tombstone is kept: older ones are purged
	// by PurgeTombstones and dropped when they arrive from peers. It must
	// exceed the longest time a node may be out of contact and still sync.
	// Default 24 h.
	TombstoneGrace time.Duration
	// SyncDelay bounds how long a batch written by ApplyBuffered may stay
	// without an fsync when no other batch brings one. Default 50 ms.
	SyncDelay time.Duration
	// ReserveRevisions is how far past its revision every fsynced batch
	// reserves revisions for buffered batches (see doc.go): at most one
	// extra fsync per this many buffered changes, and at most this many
	// revisions skipped when the machine crashed. Default 4096.
	ReserveRevisions int64
	// Repair opens a store whose LevelDB files are damaged (Open fails with
	// ErrDamaged without it): what is readable is recovered, the revisions
	// that may be lost are recorded as gaps, and CatchingUp is true (the
	// node refuses client reads) until a complete anti-entropy session with
	// a peer has brought back the rest (SetLastContact). On an undamaged store it does
	// nothing. Default false.
	Repair bool
	// OnCommit, if set, is called by the writer goroutine with every batch's changes,
	// in revision order, after the batch is written (and fsynced, unless it
	// holds only ApplyBuffered requests) and before its writers are
	// acknowledged. It must not block: it runs on the write path.
	OnCommit func([]Change)
	// OnWrite, if set, is called by the writer goroutine after every write
	// to LevelDB (a batch, or the fsync of buffered batches), for metrics.
	// It must not block: it runs on the write path. Nil costs nothing.
	OnWrite func(WriteInfo)
}

// WriteInfo describes one write of the store's writer to LevelDB.
type WriteInfo struct {
	// Changes is how many changes the write carried: 0 for the fsync of
	// buffered batches, or for a batch of only purges or a compaction.
	Changes int
	// Sync: the write was fsynced.
	Sync bool
	// Duration is how long the write took, its fsync included.
	Duration time.Duration
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.Limits = c.Limits.WithDefaults()
	if c.Clock == nil {
		c.Clock = crdt.NewClock(crdt.SystemWallClock, crdt.DefaultMaxOffset)
	}
	if c.MaxBatchOps == 0 {
		c.MaxBatchOps = DefaultMaxBatchOps
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.QueueDepth == 0 {
		c.QueueDepth = DefaultQueueDepth
	}
	if c.RetainRevisions == 0 {
		c.RetainRevisions = DefaultRetainRevisions
	}
	if c.MaxPageBytes == 0 {
		c.MaxPageBytes = DefaultMaxPageBytes
	}
	if c.TombstoneGrace == 0 {
		c.TombstoneGrace = DefaultTombstoneGrace
	}
	if c.SyncDelay == 0 {
		c.SyncDelay = DefaultSyncDelay
	}
	if c.ReserveRevisions == 0 {
		c.ReserveRevisions = DefaultReserveRevisions
	}
	if c.WriteBufferBytes == 0 {
		c.WriteBufferBytes = DefaultWriteBufferBytes
	}
	if c.BlockCacheBytes == 0 {
		c.BlockCacheBytes = DefaultBlockCacheBytes
	}
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Path != "" && c.Storage != nil {
		errs = append(errs, fmt.Errorf("store: both Path (%q) and Storage are set; set one (an empty Path with a nil Storage is a fresh in-memory store)", c.Path))
	}
	if len(c.NodeID) == 0 {
		errs = append(errs, errors.New("store: NodeID is required"))
	}
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxBatchOps < 0 {
		errs = append(errs, fmt.Errorf("store: MaxBatchOps is %d; it must not be negative (0 means the default)", c.MaxBatchOps))
	}
	if c.MaxBatchBytes < 0 {
		errs = append(errs, fmt.Errorf("store: MaxBatchBytes is %d; it must not be negative (0 means the default)", c.MaxBatchBytes))
	}
	if c.QueueDepth < 0 {
		errs = append(errs, fmt.Errorf("store: QueueDepth is %d; it must not be negative (0 means the default)", c.QueueDepth))
	}
	if c.RetainRevisions < 0 {
		errs = append(errs, fmt.Errorf("store: RetainRevisions is %d; it must not be negative (0 means the default)", c.RetainRevisions))
	}
	if c.MaxPageBytes < 0 {
		errs = append(errs, fmt.Errorf("store: MaxPageBytes is %d; it must not be negative (0 means the default)", c.MaxPageBytes))
	}
	if c.TombstoneGrace < 0 {
		errs = append(errs, fmt.Errorf("store: TombstoneGrace is %v; it must not be negative (0 means the default %v)", c.TombstoneGrace, DefaultTombstoneGrace))
	}
	if c.SyncDelay < 0 {
		errs = append(errs, fmt.Errorf("store: SyncDelay is %v; it must not be negative (0 means the default %v)", c.SyncDelay, DefaultSyncDelay))
	}
	if c.ReserveRevisions < 0 {
		errs = append(errs, fmt.Errorf("store: ReserveRevisions is %d; it must not be negative (0 means the default %d)", c.ReserveRevisions, DefaultReserveRevisions))
	}
	if c.WriteBufferBytes < 0 {
		errs = append(errs, fmt.Errorf("store: WriteBufferBytes is %d; it must not be negative (0 means the default %d)", c.WriteBufferBytes, DefaultWriteBufferBytes))
	}
	if c.BlockCacheBytes < 0 {
		errs = append(errs, fmt.Errorf("store: BlockCacheBytes is %d; it must not be negative (0 means the default %d)", c.BlockCacheBytes, DefaultBlockCacheBytes))
	}
	return errors.Join(errs...)
}
