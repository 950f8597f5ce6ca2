package merkle

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/chorus-kv/chorus/crdt"
)

// replica is an in-memory replica for the pure tests: its entries and tree.
type replica struct {
	entries map[string]crdt.Entry
	tree    *Tree
}

func newReplica() *replica { return &replica{entries: map[string]crdt.Entry{}, tree: NewTree()} }

// apply merges e as the store does, keeping the tree up to date.
func (r *replica) apply(e crdt.Entry) {
	cur, ok := r.entries[string(e.Key)]
	var curp *crdt.Entry
	if ok {
		curp = &cur
	}
	if !crdt.Wins(curp, &e) {
		return
	}
	var old uint64
	if ok {
		old = EntryHash(&cur)
	}
	r.tree.Update(BucketOf(KeyHash(e.Key)), old, EntryHash(&e))
	r.entries[string(e.Key)] = e
}

func (r *replica) remove(key string) {
	cur, ok := r.entries[key]
	if !ok {
		return
	}
	r.tree.Update(BucketOf(KeyHash(cur.Key)), EntryHash(&cur), 0)
	delete(r.entries, key)
}

func (r *replica) digests(buckets []uint32) []Digest {
	in := map[uint32]bool{}
	for _, b := range buckets {
		in[b] = true
	}
	var out []Digest
	for _, e := range r.entries {
		kh := KeyHash(e.Key)
		if in[BucketOf(kh)] {
			out = append(out, Digest{KeyHash: kh, HLC: e.HLC, Hash: EntryHash(&e)})
		}
	}
	return out
}

// diff runs the protocol's steps between a and b the way p2p does, each
// side seeing only the other's messages, and returns the key hashes a sends
// and asks for.
func diff(t *testing.T, a, b *replica) (send, want []uint64, levels int) {
	t.Helper()
	if a.tree.Root() == b.tree.Root() {
		return nil, nil, 0
	}
	sides := [2]*replica{a, b}
	parents := []uint32{0}
	for level := 0; level < Depth; level++ {
		sender, comparer := sides[level%2], sides[(level+1)%2]
		msg := sender.tree.AppendChildren(nil, level, parents)
		if err := CheckLevelMessage(level, parents, msg); err != nil {
			t.Fatal(err)
		}
		parents = comparer.tree.DiffChildren(level, parents, msg, 0)
		levels++
		if len(parents) == 0 {
			t.Fatalf("roots differ but no child differs at level %d", level+1)
		}
	}
	send, want = Reconcile(a.digests(parents), b.digests(parents))
	return send, want, levels
}

func entry(key string, hlc int64, origin byte, tomb bool) crdt.Entry {
	e := crdt.Entry{Key: []byte(key), HLC: crdt.NewTimestamp(hlc, 0), Origin: []byte{origin}, Tombstone: tomb}
	if !tomb {
		e.Value = fmt.Appendf(nil, "v%d", hlc)
	}
	return e
}

func TestRootIndependentOfOrder(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var writes []crdt.Entry
	for i := range 2000 {
		writes = append(writes, entry(fmt.Sprintf("k%d", rng.IntN(500)), int64(rng.IntN(1000)+1), byte(rng.IntN(3)), rng.IntN(5) == 0))
		_ = i
	}
	a, b := newReplica(), newReplica()
	for _, w := range writes {
		a.apply(w)
	}
	rng.Shuffle(len(writes), func(i, j int) { writes[i], writes[j] = writes[j], writes[i] })
	for _, w := range writes {
		b.apply(w)
		b.apply(w) // idempotent
	}
	if a.tree.Root() != b.tree.Root() {
		t.Fatalf("roots differ after the same writes in another order: %x vs %x", a.tree.Root(), b.tree.Root())
	}
	// A tree built from the final state alone agrees too.
	c := newReplica()
	for _, e := range a.entries {
		c.apply(e)
	}
	if c.tree.Root() != a.tree.Root() {
		t.Fatal("tree of the final state differs from the incrementally updated one")
	}
	checkSums(t, a.tree)
}

// checkSums verifies that every inner node is the sum of its children.
func checkSums(t *testing.T, tr *Tree) {
	t.Helper()
	for l := range Depth {
		for i := range uint32(1) << (4 * l) {
			var sum uint64
			for _, h := range tr.AppendChildren(nil, l, []uint32{i}) {
				sum += h
			}
			if sum != tr.Hash(l, i) {
				t.Fatalf("node %d of level %d is %x; its children sum to %x", i, l, tr.Hash(l, i), sum)
			}
		}
	}
}

func TestEntryHashCoversReplicatedFields(t *testing.T) {
	base := entry("k", 10, 1, false)
	same := base
	same.Value = bytes.Clone(base.Value)
	if EntryHash(&base) != EntryHash(&same) {
		t.Fatal("equal entries hash differently")
	}
	otherValue := base
	otherValue.Value = []byte("another value under the same (hlc, origin): a twin's write")
	// Lengths keep fields apart: moving bytes between key, origin and value
	// changes the hash.
	shifted := base
	shifted.Origin = append(bytes.Clone(base.Origin), base.Value[0])
	shifted.Value = base.Value[1:]
	for name, e := range map[string]crdt.Entry{
		"value":                 otherValue,
		"origin/value boundary": shifted,
		"key":                   entry("k2", 10, 1, false),
		"hlc":                   entry("k", 11, 1, false),
		"origin":                entry("k", 10, 2, false),
		"tombstone":             entry("k", 10, 1, true),
	} {
		if EntryHash(&e) == EntryHash(&base) {
			t.Errorf("changing the %s left the hash unchanged", name)
		}
	}
	// Key and origin bytes cannot slide into each other.
	x := crdt.Entry{Key: []byte("ab"), Origin: []byte("c")}
	y := crdt.Entry{Key: []byte("a"), Origin: []byte("bc")}
	if EntryHash(&x) == EntryHash(&y) {
		t.Fatal("(ab, c) and (a, bc) hash alike")
	}
}

func TestDiffFindsExactlyTheDifferingKeys(t *testing.T) {
	cases := []struct {
		name                  string
		shared, onlyA, onlyB  int
		newerOnA, newerOnB    int
		tombsOnA, tieConflict int
	}{
		{name: "equal", shared: 1000},
		{name: "one missing on b", shared: 1000, onlyA: 1},
		{name: "one missing on a", shared: 1000, onlyB: 1},
		{name: "both sides missing some", shared: 5000, onlyA: 50, onlyB: 70},
		{name: "newer writes", shared: 5000, newerOnA: 40, newerOnB: 60},
		{name: "deletes", shared: 2000, tombsOnA: 30},
		{name: "hlc ties between origins", shared: 500, tieConflict: 5},
		{name: "empty a", onlyB: 3000},
		{name: "mixed", shared: 20000, onlyA: 300, onlyB: 200, newerOnA: 100, newerOnB: 100, tombsOnA: 100, tieConflict: 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 2))
			a, b := newReplica(), newReplica()
			wantSend, wantWant := map[uint64]bool{}, map[uint64]bool{}
			n := 0
			key := func() string { n++; return fmt.Sprintf("key-%d-%d", rng.Uint32(), n) }
			for range tc.shared {
				e := entry(key(), int64(rng.IntN(1000)+1), 1, false)
				a.apply(e)
				b.apply(e)
			}
			for range tc.onlyA {
				e := entry(key(), 5, 1, false)
				a.apply(e)
				wantSend[KeyHash(e.Key)] = true
			}
			for range tc.onlyB {
				e := entry(key(), 5, 2, false)
				b.apply(e)
				wantWant[KeyHash(e.Key)] = true
			}
			pair := func(newer *replica, tomb bool) uint64 {
				e := entry(key(), 100, 1, false)
				a.apply(e)
				b.apply(e)
				newer.apply(entry(string(e.Key), 200, 2, tomb))
				return KeyHash(e.Key)
			}
			for range tc.newerOnA {
				wantSend[pair(a, false)] = true
			}
			for range tc.newerOnB {
				wantWant[pair(b, false)] = true
			}
			for range tc.tombsOnA {
				wantSend[pair(a, true)] = true
			}
			for range tc.tieConflict {
				k := key()
				a.apply(entry(k, 300, 1, false))
				b.apply(entry(k, 300, 2, false))
				wantSend[KeyHash([]byte(k))] = true
				wantWant[KeyHash([]byte(k))] = true
			}
			send, want, _ := diff(t, a, b)
			if !slices.Equal(send, sortedKeys(wantSend)) {
				t.Errorf("a sends %d keys; want %d", len(send), len(wantSend))
			}
			if !slices.Equal(want, sortedKeys(wantWant)) {
				t.Errorf("a asks for %d keys; want %d", len(want), len(wantWant))
			}
			// Exchanging what the diff found converges the replicas.
			for _, kh := range send {
				for _, e := range a.entries {
					if KeyHash(e.Key) == kh {
						b.apply(e)
					}
				}
			}
			for _, kh := range want {
				for _, e := range b.entries {
					if KeyHash(e.Key) == kh {
						a.apply(e)
					}
				}
			}
			if a.tree.Root() != b.tree.Root() {
				t.Fatal("roots differ after exchanging the diff")
			}
		})
	}
}

func TestRemoveRestoresRoot(t *testing.T) {
	r := newReplica()
	r.apply(entry("a", 1, 1, false))
	root := r.tree.Root()
	r.apply(entry("b", 1, 1, true))
	r.remove("b")
	if r.tree.Root() != root {
		t.Fatal("removing an entry did not restore the root")
	}
	r.remove("a")
	if r.tree.Root() != 0 {
		t.Fatalf("empty tree's root is %x; want 0", r.tree.Root())
	}
}

func TestCheckLevelMessage(t *testing.T) {
	cases := []struct {
		name    string
		level   int
		parents []uint32
		hashes  int
		ok      bool
	}{
		{"root", 0, []uint32{0}, Fanout, true},
		{"level 4", 4, []uint32{1, 65535}, 2 * Fanout, true},
		{"no parents", 2, nil, 0, true},
		{"negative level", -1, []uint32{0}, Fanout, false},
		{"leaf level has no children", Depth, []uint32{0}, Fanout, false},
		{"parent outside level", 1, []uint32{16}, Fanout, false},
		{"unsorted", 2, []uint32{5, 3}, 2 * Fanout, false},
		{"duplicate", 2, []uint32{3, 3}, 2 * Fanout, false},
		{"short", 1, []uint32{1}, Fanout - 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLevelMessage(tc.level, tc.parents, make([]uint64, tc.hashes))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v; want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestDiffChildrenCap(t *testing.T) {
	a, b := newReplica(), newReplica()
	for i := range 100 {
		a.apply(entry(fmt.Sprint(i), 1, 1, false))
	}
	got := b.tree.DiffChildren(0, []uint32{0}, a.tree.AppendChildren(nil, 0, []uint32{0}), 3)
	if len(got) != 3 || !slices.IsSorted(got) {
		t.Fatalf("capped diff = %v; want 3 ascending children", got)
	}
}

func sortedKeys(m map[uint64]bool) []uint64 {
	var out []uint64
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func BenchmarkUpdate(b *testing.B) {
	tr := NewTree()
	e := entry("key", 1, 1, false)
	for i := 0; b.Loop(); i++ {
		e.HLC = crdt.NewTimestamp(int64(i), 0)
		tr.Update(BucketOf(KeyHash(e.Key)), 0, EntryHash(&e))
	}
}
