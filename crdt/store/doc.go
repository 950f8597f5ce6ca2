// Package store keeps a node's CRDT state durably in go-datastore on
// go-ds-leveldb. It is the I/O driver around the pure logic of package crdt,
// kept in a package of its own so that crdt stays free of I/O and goroutines.
//
// Every change, local (Put, Delete) or from elsewhere (Apply), goes through
// one path, a two-stage pipeline. The committer goroutine merges each request
// as it arrives against the newest state of its key with crdt.Wins, gives
// each real change the next local revision, and encodes the key's entry and
// its change-log record into the open LevelDB batch. The writer goroutine
// makes the previous batch durable (one fsync) meanwhile; when it is idle,
// the committer hands it the open batch. So merging overlaps the disk, a lone
// write waits for no one, and every write that arrives during one fsync
// shares the next (group commit): throughput grows with concurrency.
//
// A failed batch write stops the store: every later write fails with
// ErrWriteFailed until it is reopened, because the batch after it was
// merged assuming its changes.
//
// Invariants:
//
//   - A call returns success only after its batch is on disk (go-ds-leveldb
//     fsyncs every batch): an acknowledged write survives a crash.
//   - Revisions increase by one per change, with no gaps, in commit order.
//     A duplicate or stale entry changes nothing and gets no revision.
//   - The entry, the log record and the revision counter of a change are in
//     the same atomic batch, so after a crash they agree.
//   - The hybrid logical clock is persisted with every batch, so a restarted
//     node never stamps a write lower than one it stamped or accepted before.
//   - The Merkle tree (package crdt/merkle) holds exactly the durable
//     entries: the committer computes each change's tree update, the writer
//     applies it after the batch is on disk, and Open rebuilds the tree from
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
//     it is durable and before the writer is acknowledged. It runs on the
//     writer goroutine.
//
// What a caller does, in order:
//
//  1. Open with a Config whose NodeID is set (the node's libp2p peer id).
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
//	/m/indexed          set once the indexes exist (older stores get them at Open)
//
// User keys are hex-encoded so that arbitrary bytes survive go-datastore's key
// rules and byte order is kept; ranges are read with LevelDB iterators.
package store
