package antientropy

import (
	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/merkle"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// Replica is what a session reads of this side's replica: its Merkle tree
// and its key-hash index. *store.Store implements it. A session only
// reads; the entries it receives come out in Output.Apply for the driver
// to write. The replica may change while a session runs (local writes,
// applied batches): the protocol tolerates it, at worst repairing a
// difference in the next session.
type Replica interface {
	// MerkleChildren appends the hashes of the children of parents, nodes
	// of level, to dst (merkle.Tree.AppendChildren).
	MerkleChildren(dst []uint64, level int, parents []uint32) []uint64
	// MerkleDiff returns the children of parents (nodes of level) whose
	// hashes differ from theirs, ascending, at most max
	// (merkle.Tree.DiffChildren). theirs has passed
	// merkle.CheckLevelMessage.
	MerkleDiff(level int, parents []uint32, theirs []uint64, max int) []uint32
	// BucketDigests returns the digests of the entries in the given
	// buckets (ascending), in key-hash order.
	BucketDigests(buckets []uint32) ([]merkle.Digest, error)
	// EntriesByKeyHash calls fn with the entries (tombstones too) whose
	// keys have the given hashes (ascending).
	EntriesByKeyHash(hashes []uint64, fn func(*crdt.Entry) error) error
}

// Local is what this side's hello says about its replica, read by the
// driver when the session starts: the frontier first, then the root (so
// that everything the frontier covers is in the tree the root describes).
type Local struct {
	Root          uint64
	LastContact   crdt.Timestamp // the replica's last completed session (or its creation)
	PurgedThrough crdt.Timestamp // the newest tombstone it purged, 0 if none
	// Frontier is this node's frontiers (package crdt/frontier), passed
	// through to the peer; nil sends none.
	Frontier []*replicationv1.OriginFrontier
}

// Output is what the driver does after a call to Start, Step or Continue,
// in this order:
//
//  1. write each batch of Apply to the replica, each durable before the
//     next (an entry that does not merge, or whose limits or clock offset
//     the store refuses, is the driver's error);
//  2. send the messages of Send, in order;
//  3. if Done, end the session with Err (nil: it completed); else if More,
//     call Continue; else read the peer's next message and call Step.
type Output struct {
	Apply [][]crdt.Entry
	Send  []*replicationv1.SyncMessage
	More  bool
	Done  bool
	Err   error
}

// Stats describe a session from this side, so far.
type Stats struct {
	EntriesSent, EntriesReceived int
	// Partial: a level was capped at the session's per-level limit (by
	// either side), so the session repaired only part of the difference.
	Partial  bool
	PeerRoot uint64
	// DifferingBuckets are the buckets of the leaf step; DigestsSent and
	// DigestsReceived the digests exchanged in it.
	DifferingBuckets, DigestsSent, DigestsReceived int
}
