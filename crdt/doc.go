// Package crdt holds Chorus's pure replication logic: the hybrid logical
// clock, the last-writer-wins register that every key is, and the limits an
// entry must respect. It does no I/O, starts no goroutines and never reads
// the wall clock itself: the caller passes a clock function in, so every
// rule here can be tested deterministically.
//
// Invariants:
//
//   - A Clock never goes backwards: each Now is greater than every
//     timestamp it returned or accepted before, even when the wall clock
//     steps back.
//   - A Clock refuses (ErrClockSkew) a remote timestamp whose physical part
//     is more than MaxOffset ahead of its own wall clock, so one node with a
//     fast clock cannot win every conflict.
//   - Merge is a total order over entries: the higher (HLC, origin) wins, and
//     the rare exact tie is broken by the tombstone flag and then the value
//     bytes. So merging is commutative, associative and idempotent, and
//     replicas that saw the same set of entries hold the same state, in
//     whatever order the entries arrived.
//   - A delete is a tombstone entry and wins or loses like any other write.
//
// The store (package crdt/store) drives this logic against LevelDB; the
// gossip and anti-entropy layers feed it entries from other nodes.
package crdt
