// Package store keeps a node's CRDT state durably in go-datastore on
// go-ds-leveldb. It is the I/O driver around the pure logic of package crdt,
// kept in a package of its own so that crdt stays free of I/O and goroutines.
//
// The storage seam: the store reads and writes only through engine (see
// engine.go): Get, iterators, snapshots, and an atomic batch Write with or
// without an fsync (and CompactRange). Its one implementation is goleveldb,
// the same engine everywhere: in a folder through go-ds-leveldb
// (Config.Path, production), or on a goleveldb storage.Storage
// (Config.Storage, or a fresh memory storage when both are unset): memory
// for simulations of many nodes in one process (Config.WriteBufferBytes and
// BlockCacheBytes make each store light), and package
// crdt/store/faultstorage for tests of a write that fails, an fsync that
// fails, and a power loss that drops what was not fsynced. The invariants
// below hold on every storage; a storage that simulates machine crashes
// gives its own boot id (a BootID method), since the process's does not
// change with a simulated reboot.
//
// Every change, local (Put, Delete) or from elsewhere (Apply), goes through
// one path, a two-stage pipeline. The committer goroutine merges each request
// as it arrives against the newest state of its key with crdt.Wins, gives
// each real change the next local revision, and encodes the key's entry and
// its change-log record into the open LevelDB batch. The writer goroutine
// makes the previous batch durable (one fsync) meanwhile; when it is idle,
// the committer hands it the open batch. So merging overlaps the disk, a lone
// write waits for no one, and every write that arrives during one fsync
// shares the next (group commit): throughput grows with concurrency. The
// code follows the path: submit.go (a request queued and awaited),
// commit.go (the committer), writer.go (the writer and its fsync policy),
// leveldb_batch.go (the LevelDB batch both fill), purge.go and compact.go
// (tombstone purges and change-log compaction inside a batch).
//
// Apply waits for its batch's fsync, like Put. ApplyBuffered, for entries
// that another node holds durably and anti-entropy can bring again (gossip),
// does not: a batch of only such requests is written to LevelDB's journal
// without an fsync, published and acknowledged, and made durable by the next
// fsynced batch, by the writer Config.SyncDelay later, or at Close. (When
// LevelDB switches to a new journal, it closes the old one without an fsync:
// buffered batches written just before the switch become durable when LevelDB
// flushes the old memtable to a table, usually within a second.) So a
// replicated write costs one fsync, on its origin, and its watchers on other
// nodes do not wait for a second.
//
// A failed batch write stops the store: every later write fails with
// ErrWriteFailed until it is reopened, because the batch after it was
// merged assuming its changes.
//
// Invariants:
//
//   - Put, Delete, WriteBatch, Apply and Compact return success only after
//     their batch is fsynced: an acknowledged write survives a crash. A
//     buffered batch survives a crash of the process (the OS holds the
//     journal) but not always one of the machine.
//   - Revisions increase by one per change, in commit order. A duplicate or
//     stale entry changes nothing and gets no revision.
//   - No revision is ever given to two changes, even after a machine crash
//     lost buffered batches whose revisions were published: every fsynced
//     batch reserves Config.ReserveRevisions revisions past its own
//     (/m/reserved), a buffered batch past the reservation is fsynced, and
//     Close lowers the reservation to the revision. Open after an unclean
//     shutdown on another boot of the machine (/m/boot; or where the boot is
//     unknown) skips to the reservation and records the gap (/g/). It also
//     records as gaps the holes a power loss can leave in the change log: a
//     lost buffered batch whose later batches survived (the journal's later
//     pages written back before earlier ones, or an fsynced batch in a new
//     journal after buffered ones in the old). It scans the retained log for
//     them (about 25 ms more for 100,000 records here). Recorded gaps are the
//     only places revisions are not consecutive (Stats.SkippedRevisions).
//     After a crash of the process alone nothing is lost and nothing is
//     skipped.
//   - The entry, the log record and the revision counter of a change are in
//     the same atomic batch, so after a crash they agree.
//   - The hybrid logical clock is persisted with every batch, so a restarted
//     node never stamps a write lower than one it stamped or accepted before.
//   - The Merkle tree (package crdt/merkle) holds exactly the written
//     entries: the committer computes each change's tree update, the writer
//     applies it after the batch is written, and Open rebuilds the tree from
//     the entries (about 1.3 s for a million keys here).
//   - Every entry has a key-hash index key, and every tombstone a tombstone
//     index key, written in the entry's batch: anti-entropy lists a Merkle
//     bucket's keys, and garbage collection finds old tombstones, without a
//     full scan.
//   - A purged tombstone (older than Config.TombstoneGrace) is removed with
//     its index keys in one batch, through the committer, only if it is
//     still the key's entry; it gets no revision and no event (its delete
//     had them). Apply drops tombstones already past the grace period.
//   - Config.OnCommit sees every change exactly once, in revision order, after
//     it is written (fsynced, unless buffered) and before the writer is
//     acknowledged. It runs on the writer goroutine.
//
// What a caller does, in order:
//
//  1. Open with a Config whose NodeID is set (the node's libp2p peer id),
//     and Path (the data folder) or, for simulations and tests, Storage.
//  2. Put, Delete, Apply, Get, Range and ReadLog from any goroutine.
//  3. Close, once: it refuses new writes, commits those already queued,
//     stops the committer and closes LevelDB.
//
// On-disk layout (go-datastore keys, all under one LevelDB):
//
//	/k/<hex(key)>       replicationv1.Entry, the key's register (tombstones too)
//	/l/<%016x revision> replicationv1.LogRecord, the change log
//	/h/<%016x key hash><hex(key)>  empty: the key-hash index (Merkle buckets)
//	/t/<%016x hlc><hex(key)>       empty: the tombstone index, oldest first
//	/m/rev, /m/oldest, /m/hlc  the revision counter, the oldest retained log
//	                    revision and the clock, as 8-byte big-endian integers
//	/m/purged, /m/contact  the newest purged tombstone's HLC and the last
//	                    completed sync's, for the stale-node check
//	/m/indexed          the indexes' version, set once they exist: 1, then 2 since
//	                    digests cover the value (older stores get them at Open)
//	/m/reserved, /m/boot  the revision reservation for buffered batches, and
//	                    the boot id of the machine that last opened the store
//	/g/<%016x first>    the last revision of a gap Open skipped
//
// User keys are hex-encoded so that arbitrary bytes survive go-datastore's key
// rules and byte order is kept; ranges are read with LevelDB iterators.
package store
