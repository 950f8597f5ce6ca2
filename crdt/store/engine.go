package store

import (
	"errors"
	"fmt"
	"syscall"

	leveldb "github.com/ipfs/go-ds-leveldb"
	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/iterator"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// engine is the storage seam: all the store asks of its key-value engine.
// Missing keys are goleveldb.ErrNotFound. What the store relies on:
//
//   - Write applies a batch atomically, and with sync set returns only after
//     the batch is durable (LevelDB fsyncs its journal); without it, the
//     batch is durable after the next synced Write.
//   - A snapshot sees every Write that returned before it was taken, and
//     none after.
//   - Get and iterators see every Write that has returned.
//
// Both implementations are the same engine, goleveldb, through levelDB:
// over a folder through go-ds-leveldb (production), or over a
// storage.Storage (Config.Storage: memory for simulations, a
// fault-injecting storage for tests), so that every store runs the same
// code paths.
type engine interface {
	Get(key []byte, ro *opt.ReadOptions) ([]byte, error)
	NewIterator(r *util.Range, ro *opt.ReadOptions) iterator.Iterator
	GetSnapshot() (snapshot, error)
	Write(b *goleveldb.Batch, wo *opt.WriteOptions) error
	// CompactRange compacts the tables holding r (CompactDisk).
	CompactRange(r util.Range) error
	Close() error
}

// snapshot is a point-in-time view of an engine; Release it when done.
type snapshot interface {
	Get(key []byte, ro *opt.ReadOptions) ([]byte, error)
	NewIterator(r *util.Range, ro *opt.ReadOptions) iterator.Iterator
	Release()
}

var _ snapshot = (*goleveldb.Snapshot)(nil)

// levelDB is the engine over goleveldb. close closes what opened db: the
// go-ds-leveldb datastore, or db alone (a Config.Storage is the caller's).
type levelDB struct {
	db    *goleveldb.DB
	close func() error
}

var _ engine = levelDB{}

func (l levelDB) Get(key []byte, ro *opt.ReadOptions) ([]byte, error) { return l.db.Get(key, ro) }
func (l levelDB) NewIterator(r *util.Range, ro *opt.ReadOptions) iterator.Iterator {
	return l.db.NewIterator(r, ro)
}
func (l levelDB) GetSnapshot() (snapshot, error) {
	snap, err := l.db.GetSnapshot()
	if err != nil {
		return nil, err
	}
	return snap, nil
}
func (l levelDB) Write(b *goleveldb.Batch, wo *opt.WriteOptions) error { return l.db.Write(b, wo) }
func (l levelDB) CompactRange(r util.Range) error                      { return l.db.CompactRange(r) }
func (l levelDB) Close() error                                         { return l.close() }

// openEngine opens LevelDB where cfg says: over cfg.Storage, over a fresh
// memory storage when cfg.Path is empty, or in the folder cfg.Path through
// go-ds-leveldb (after checkFiles has refused a damaged one, which
// go-ds-leveldb would recover silently).
func openEngine(cfg Config) (engine, error) {
	o := leveldbOptions(cfg)
	if cfg.Path == "" {
		stor := cfg.Storage
		if stor == nil {
			stor = storage.NewMemStorage()
		}
		db, err := goleveldb.Open(stor, &o)
		if errors.Is(err, storage.ErrLocked) {
			return nil, fmt.Errorf("%w: its storage is open in another store: %w", ErrInUse, err)
		}
		if err != nil {
			return nil, fmt.Errorf("store: open leveldb on its storage: %w", damaged("storage", err))
		}
		return levelDB{db: db, close: db.Close}, nil
	}
	if err := checkFiles(cfg.Path, o); err != nil {
		if errors.Is(err, syscall.EAGAIN) {
			return nil, inUse(cfg.Path, err)
		}
		return nil, err
	}
	lo := leveldb.Options(o)
	d, err := leveldb.NewDatastore(cfg.Path, &lo)
	if errors.Is(err, syscall.EAGAIN) {
		return nil, inUse(cfg.Path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open leveldb at %q: %w", cfg.Path, damaged(cfg.Path, err))
	}
	return levelDB{db: d.DB, close: d.Close}, nil
}

func inUse(path string, err error) error {
	return fmt.Errorf("%w: %q is locked by another process (is another chorus agent using this data folder?): %w", ErrInUse, path, err)
}

// engineBootID is the boot id Open compares with the stored one: a
// Config.Storage's own (BootID() string, which a fault-injecting storage
// changes at each simulated crash), else the machine's.
func engineBootID(cfg Config) string {
	if b, ok := cfg.Storage.(interface{ BootID() string }); ok {
		return b.BootID()
	}
	return bootID()
}
