package antientropy_test

import (
	"slices"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/merkle"
	"github.com/chorus-kv/chorus/p2p/antientropy"
)

// memReplica is an in-memory Replica for the fuzz and property tests: a
// Merkle tree and a map of entries by key hash (one key per hash: the
// tests' keys do not collide). Apply merges like the store (crdt.Wins) but
// keeps every tombstone (no grace period).
type memReplica struct {
	tree     *merkle.Tree
	entries  map[uint64]crdt.Entry
	byBucket map[uint32][]uint64 // ascending key hashes
}

var _ antientropy.Replica = (*memReplica)(nil)

func newMemReplica(es []crdt.Entry) *memReplica {
	m := &memReplica{tree: merkle.NewTree(), entries: map[uint64]crdt.Entry{}, byBucket: map[uint32][]uint64{}}
	m.Apply(es)
	return m
}

// reset empties m and applies es (the tests reuse their replicas rather
// than allocate a tree for each round).
func (m *memReplica) reset(es []crdt.Entry) {
	for kh, e := range m.entries {
		m.tree.Update(merkle.BucketOf(kh), merkle.EntryHash(&e), 0)
	}
	clear(m.entries)
	clear(m.byBucket)
	m.Apply(es)
}

// Apply merges entries and returns how many changed the replica.
func (m *memReplica) Apply(es []crdt.Entry) int {
	changed := 0
	for _, e := range es {
		kh := merkle.KeyHash(e.Key)
		old, ok := m.entries[kh]
		if ok && !crdt.Wins(&old, &e) {
			continue
		}
		var oldHash uint64
		if ok {
			oldHash = merkle.EntryHash(&old)
		} else {
			b := merkle.BucketOf(kh)
			i, _ := slices.BinarySearch(m.byBucket[b], kh)
			m.byBucket[b] = slices.Insert(m.byBucket[b], i, kh)
		}
		e = crdt.Entry{Key: slices.Clone(e.Key), Value: slices.Clone(e.Value), HLC: e.HLC, Origin: slices.Clone(e.Origin), Tombstone: e.Tombstone}
		m.entries[kh] = e
		m.tree.Update(merkle.BucketOf(kh), oldHash, merkle.EntryHash(&e))
		changed++
	}
	return changed
}

func (m *memReplica) local() antientropy.Local { return antientropy.Local{Root: m.tree.Root()} }

func (m *memReplica) MerkleChildren(dst []uint64, level int, parents []uint32) []uint64 {
	return m.tree.AppendChildren(dst, level, parents)
}

func (m *memReplica) MerkleDiff(level int, parents []uint32, theirs []uint64, max int) []uint32 {
	return m.tree.DiffChildren(level, parents, theirs, max)
}

func (m *memReplica) BucketDigests(buckets []uint32) ([]merkle.Digest, error) {
	var out []merkle.Digest
	for _, b := range buckets {
		for _, kh := range m.byBucket[b] {
			e := m.entries[kh]
			out = append(out, merkle.Digest{KeyHash: kh, HLC: e.HLC, Hash: merkle.EntryHash(&e)})
		}
	}
	return out, nil
}

func (m *memReplica) EntriesByKeyHash(hashes []uint64, fn func(*crdt.Entry) error) error {
	for _, h := range hashes {
		if e, ok := m.entries[h]; ok {
			if err := fn(&e); err != nil {
				return err
			}
		}
	}
	return nil
}
