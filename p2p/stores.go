package p2p

import (
	"context"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/p2p/antientropy"
)

// The three consumers of the local store in this package each take the
// narrow interface below rather than *store.Store, so that what a layer
// needs of the one below it is stated here. *store.Store satisfies all
// three (asserted in stores_test.go).

// ReplicatorStore is what the Replicator uses of the store: it applies the
// entries that gossip and pushes bring, checks them against the store's
// limits and clock, and measures their lag on that clock.
type ReplicatorStore interface {
	// Apply merges entries and returns once they are durable.
	Apply(ctx context.Context, entries []crdt.Entry) ([]store.Change, error)
	// ApplyBuffered merges entries and may return before the fsync.
	ApplyBuffered(ctx context.Context, entries []crdt.Entry) ([]store.Change, error)
	Limits() crdt.Limits
	Clock() *crdt.Clock
}

// SyncStore is what the Syncer uses of the store: the Merkle tree and
// key-hash index a session reads (antientropy.Replica), the entries it
// applies, the facts its hello and the status protocol report, and the
// last-contact time a complete session records.
type SyncStore interface {
	antientropy.Replica
	// Apply merges entries and returns once they are durable.
	Apply(ctx context.Context, entries []crdt.Entry) ([]store.Change, error)
	Limits() crdt.Limits
	Clock() *crdt.Clock
	MerkleRoot() uint64
	Revision() int64
	Keys() int64
	PurgedThrough() crdt.Timestamp
	LastContact() crdt.Timestamp
	SetLastContact(crdt.Timestamp) error
}

// AdmissionStore is what NewAdmission reads of the store: the member list,
// the records under ReservedPrefix, read by range.
type AdmissionStore interface {
	Range(store.RangeOptions) (store.RangeResult, error)
}
