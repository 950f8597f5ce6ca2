package merkle

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/chorus-kv/chorus/crdt"
)

// FuzzCheckLevelMessage feeds arbitrary level messages, as a peer could send
// them, to the checks and then to DiffChildren: a message that passes the
// checks must never make DiffChildren index out of range.
func FuzzCheckLevelMessage(f *testing.F) {
	f.Add(0, []byte{0, 0, 0, 0}, 16)
	f.Add(4, []byte{0, 0, 0xff, 0xff}, 16)
	f.Add(5, []byte{0, 0, 0, 1}, 16)
	f.Add(-1, []byte{}, 0)
	tree := NewTree()
	tree.Update(12345, 0, 99)
	f.Fuzz(func(t *testing.T, level int, parentBytes []byte, hashes int) {
		if hashes < 0 || hashes > 1<<16 {
			return
		}
		var parents []uint32
		for len(parentBytes) >= 4 {
			parents = append(parents, binary.BigEndian.Uint32(parentBytes))
			parentBytes = parentBytes[4:]
		}
		theirs := make([]uint64, hashes)
		if err := CheckLevelMessage(level, parents, theirs); err != nil {
			return
		}
		got := tree.DiffChildren(level, parents, theirs, 0)
		if !slices.IsSorted(got) {
			t.Fatalf("DiffChildren returned unsorted nodes %v", got)
		}
		width := uint32(1) << (4 * (level + 1))
		for _, c := range got {
			if c >= width {
				t.Fatalf("child %d outside level %d", c, level+1)
			}
		}
	})
}

// FuzzReconcile checks Reconcile's promises on arbitrary digests: results
// ascend without duplicates, send names only this side's keys and want only
// the peer's, and equal digests are never exchanged.
func FuzzReconcile(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6}, []byte{1, 2, 3, 4, 5, 7})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		parse := func(raw []byte) []Digest {
			var out []Digest
			seen := map[uint64]bool{}
			for len(raw) >= 3 {
				d := Digest{KeyHash: uint64(raw[0]), HLC: crdt.Timestamp(raw[1]), Hash: uint64(raw[2])}
				raw = raw[3:]
				if !seen[d.KeyHash] { // a replica holds one entry per key
					seen[d.KeyHash] = true
					out = append(out, d)
				}
			}
			return out
		}
		mine, theirs := parse(a), parse(b)
		send, want := Reconcile(mine, theirs)
		has := func(ds []Digest, kh uint64) (Digest, bool) {
			for _, d := range ds {
				if d.KeyHash == kh {
					return d, true
				}
			}
			return Digest{}, false
		}
		for name, list := range map[string][]uint64{"send": send, "want": want} {
			for i := 1; i < len(list); i++ {
				if list[i] <= list[i-1] {
					t.Fatalf("%s is not strictly ascending: %v", name, list)
				}
			}
		}
		for _, kh := range send {
			m, ok := has(mine, kh)
			if !ok {
				t.Fatalf("send names %d, which this side lacks", kh)
			}
			if p, ok := has(theirs, kh); ok && p.Hash == m.Hash {
				t.Fatalf("send names %d, equal on both sides", kh)
			}
		}
		for _, kh := range want {
			p, ok := has(theirs, kh)
			if !ok {
				t.Fatalf("want names %d, which the peer lacks", kh)
			}
			if m, ok := has(mine, kh); ok && p.Hash == m.Hash {
				t.Fatalf("want names %d, equal on both sides", kh)
			}
		}
	})
}
