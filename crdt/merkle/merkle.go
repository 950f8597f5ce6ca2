package merkle

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/chorus-kv/chorus/crdt"
)

// The tree's fixed shape. A sync protocol version fixes them: peers with
// another shape cannot compare trees.
const (
	// Fanout is the number of children of an inner node.
	Fanout = 16
	// Depth is the number of levels below the root; level Depth holds the
	// buckets.
	Depth = 5
	// Buckets is the number of leaf buckets, Fanout^Depth.
	Buckets = 1 << (4 * Depth)
	// bucketShift turns a key hash into its bucket.
	bucketShift = 64 - 4*Depth
)

// KeyHash is the 64-bit hash that places a key in the tree.
func KeyHash(key []byte) uint64 {
	sum := sha256.Sum256(key)
	return binary.BigEndian.Uint64(sum[:8])
}

// BucketOf returns the bucket of a key hash.
func BucketOf(keyHash uint64) uint32 { return uint32(keyHash >> bucketShift) }

// EntryHash is the hash an entry adds to the tree. It covers the key, the
// HLC, the origin, the tombstone flag and the value, so that two replicas
// holding different values under one (HLC, origin) (two nodes that share an
// identity) have different trees and anti-entropy repairs them to
// crdt.Compare's winner. Never 0 for a real entry except by a 2^-64 chance,
// which only makes the entry invisible to the tree.
func EntryHash(e *crdt.Entry) uint64 {
	h := sha256.New()
	var buf [8 + 1 + 4 + 4]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(e.HLC))
	if e.Tombstone {
		buf[8] = 1
	}
	// Lengths keep (key, origin, value) unambiguous.
	binary.BigEndian.PutUint32(buf[9:], uint32(len(e.Key)))
	binary.BigEndian.PutUint32(buf[13:], uint32(len(e.Origin)))
	h.Write(buf[:])
	h.Write(e.Key)
	h.Write(e.Origin)
	h.Write(e.Value)
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0])[:8])
}

// Tree is the Merkle tree of one replica. It is not safe for concurrent use;
// its owner locks around it.
type Tree struct {
	// levels[l] holds the Fanout^l nodes of level l in pages of pageNodes;
	// a nil page is all zeros, allocated at its first update.
	levels [Depth + 1][]*page
}

// pageNodes is how many nodes of a level share one allocation. Pages are
// allocated as entries arrive, so that a replica holding few keys holds a
// small tree: an empty one takes about 140 KB of page tables rather than
// the full 8.9 MB, which matters for many stores in one process (a
// simulation). A multiple of Fanout, so that a node's children share a
// page.
const pageNodes = 4 * Fanout

type page [pageNodes]uint64

// NewTree returns the tree of an empty replica.
func NewTree() *Tree {
	t := &Tree{}
	n := 1
	for l := range t.levels {
		t.levels[l] = make([]*page, (n+pageNodes-1)/pageNodes)
		n *= Fanout
	}
	return t
}

// SizeBytes is the most memory the tree's hashes take (every page
// allocated), page tables aside.
func SizeBytes() int {
	n, total := 1, 0
	for range Depth + 1 {
		total += max(n, pageNodes) * 8
		n *= Fanout
	}
	return total
}

// node returns node i of level l.
func (t *Tree) node(l int, i uint32) uint64 {
	if p := t.levels[l][i/pageNodes]; p != nil {
		return p[i%pageNodes]
	}
	return 0
}

// children returns the Fanout children of node p of level l (nodes of level
// l+1), or nil if they are all zero.
func (t *Tree) children(l int, p uint32) []uint64 {
	first := p * Fanout
	pg := t.levels[l+1][first/pageNodes]
	if pg == nil {
		return nil
	}
	off := first % pageNodes
	return pg[off : off+Fanout]
}

// Update replaces, in bucket, an entry's old hash with its new one. Pass 0 as
// old for a new entry and 0 as new for a removed one.
func (t *Tree) Update(bucket uint32, old, new uint64) {
	delta := new - old
	if delta == 0 {
		return
	}
	i := bucket
	for l := Depth; l >= 0; l-- {
		pg := &t.levels[l][i/pageNodes]
		if *pg == nil {
			*pg = &page{}
		}
		(*pg)[i%pageNodes] += delta
		i /= Fanout
	}
}

// Root returns the root hash; equal roots mean equal entries (up to hash
// collisions). 0 is the empty tree's root.
func (t *Tree) Root() uint64 { return t.node(0, 0) }

// Hash returns node i of level l.
func (t *Tree) Hash(level int, i uint32) uint64 { return t.node(level, i) }

// AppendChildren appends the Fanout hashes of the children of each parent,
// which are nodes of level, and returns dst.
func (t *Tree) AppendChildren(dst []uint64, level int, parents []uint32) []uint64 {
	var zeros [Fanout]uint64
	for _, p := range parents {
		if c := t.children(level, p); c != nil {
			dst = append(dst, c...)
		} else {
			dst = append(dst, zeros[:]...)
		}
	}
	return dst
}

// CheckLevelMessage validates the shape of a peer's hashes of the children
// of parents at level: the level exists, every parent is a node of it, the
// parents ascend, and there are Fanout hashes per parent.
func CheckLevelMessage(level int, parents []uint32, hashes []uint64) error {
	if level < 0 || level >= Depth {
		return fmt.Errorf("merkle: level %d: parents must be at levels 0 to %d", level, Depth-1)
	}
	width := uint32(1) << (4 * level)
	for i, p := range parents {
		if p >= width {
			return fmt.Errorf("merkle: parent %d is not a node of level %d (it has %d)", p, level, width)
		}
		if i > 0 && p <= parents[i-1] {
			return fmt.Errorf("merkle: parents are not in ascending order at %d", i)
		}
	}
	if len(hashes) != len(parents)*Fanout {
		return fmt.Errorf("merkle: %d hashes for %d parents; want %d", len(hashes), len(parents), len(parents)*Fanout)
	}
	return nil
}

// DiffChildren compares a peer's hashes of the children of parents (nodes
// of level) with this tree's and returns the children that differ, as nodes
// of level+1 in ascending order, at most max of them (0: no cap). The
// message must have passed CheckLevelMessage.
func (t *Tree) DiffChildren(level int, parents []uint32, theirs []uint64, max int) []uint32 {
	var zeros [Fanout]uint64
	var out []uint32
	for i, p := range parents {
		child := t.children(level, p)
		if child == nil {
			child = zeros[:]
		}
		for j := range Fanout {
			c := p*Fanout + uint32(j)
			if child[j] != theirs[i*Fanout+j] {
				if max > 0 && len(out) == max {
					return out
				}
				out = append(out, c)
			}
		}
	}
	return out
}

// Digest is what the leaf step sends for a key of a differing bucket: enough
// to tell which side holds the winning entry without sending it.
type Digest struct {
	KeyHash uint64
	HLC     crdt.Timestamp
	Hash    uint64 // EntryHash
}

// Reconcile compares this replica's digests with a peer's for the same
// buckets and returns the key hashes whose entries this replica should send
// (the peer lacks them, or this replica's is newer) and those it should ask
// for (it lacks them, or the peer's is newer). On an HLC tie between
// different entries (two origins), both are exchanged and the merge decides.
// Both results are ascending.
func Reconcile(mine, theirs []Digest) (send, want []uint64) {
	peer := make(map[uint64]Digest, len(theirs))
	for _, d := range theirs {
		peer[d.KeyHash] = d
	}
	seen := make(map[uint64]bool, len(mine))
	for _, m := range mine {
		seen[m.KeyHash] = true
		p, ok := peer[m.KeyHash]
		switch {
		case !ok:
			send = append(send, m.KeyHash)
		case p.Hash == m.Hash:
		case m.HLC > p.HLC:
			send = append(send, m.KeyHash)
		case m.HLC < p.HLC:
			want = append(want, m.KeyHash)
		default:
			send = append(send, m.KeyHash)
			want = append(want, m.KeyHash)
		}
	}
	for _, d := range theirs {
		if !seen[d.KeyHash] {
			want = append(want, d.KeyHash)
			seen[d.KeyHash] = true
		}
	}
	sortUint64(send)
	sortUint64(want)
	return send, want
}

func sortUint64(s []uint64) { slices.Sort(s) }
