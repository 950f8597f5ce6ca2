package frontier

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt"
)

const epoch = crdt.Timestamp(1000)

func newTracker(t *testing.T, self string) *Tracker {
	t.Helper()
	tr, err := New(Config{Self: self, Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("an empty config was accepted")
	}
	if _, err := New(Config{Self: "a", Epoch: 1, MaxMarks: -1}); err == nil {
		t.Fatal("a negative MaxMarks was accepted")
	}
}

// TestObserveBatch drives one origin's frontier through batch sequences.
func TestObserveBatch(t *testing.T) {
	type batch struct{ prev, first, last crdt.Timestamp }
	tests := []struct {
		name        string
		batches     []batch
		merge       crdt.Timestamp // applied after the batches, if set
		wantF       crdt.Timestamp
		wantPending []Range
	}{
		{"in order", []batch{{0, 1, 3}, {3, 4, 5}, {5, 6, 9}}, 0, 9, nil},
		{"reversed", []batch{{5, 6, 9}, {3, 4, 5}, {0, 1, 3}}, 0, 9, []Range{}},
		{"duplicates", []batch{{0, 1, 3}, {0, 1, 3}, {3, 4, 5}, {3, 4, 5}}, 0, 5, nil},
		{"gap holds", []batch{{0, 1, 3}, {5, 6, 9}}, 0, 3, []Range{{5, 9}}},
		{"two gaps joined", []batch{{0, 1, 3}, {7, 8, 9}, {5, 6, 7}}, 0, 3, []Range{{5, 9}}},
		{"gap repaired by anti-entropy", []batch{{0, 1, 3}, {5, 6, 9}}, 5, 9, []Range{}},
		{"anti-entropy below the gap", []batch{{0, 1, 3}, {5, 6, 9}}, 4, 4, []Range{{5, 9}}},
		{"stale batch after repair", []batch{{0, 1, 3}}, 10, 10, nil},
		{"not a range is ignored", []batch{{3, 3, 3}, {5, 4, 6}}, 0, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker(t, "self")
			for _, b := range tc.batches {
				tr.ObserveBatch("o", b.prev, b.first, b.last)
			}
			if tc.merge != 0 {
				tr.Merge(Vector{"o": tc.merge})
			}
			if got := tr.Own("o"); got != tc.wantF {
				t.Fatalf("frontier %d, want %d", got, tc.wantF)
			}
			if got := tr.Pending("o"); len(got) != len(tc.wantPending) || (len(got) > 0 && !slices.Equal(got, tc.wantPending)) {
				t.Fatalf("pending %v, want %v", got, tc.wantPending)
			}
		})
	}
}

func TestPendingBounded(t *testing.T) {
	tr, err := New(Config{Self: "self", Epoch: epoch, MaxPendingRanges: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		p := crdt.Timestamp(10 + 10*i)
		tr.ObserveBatch("o", p, p+1, p+2)
	}
	got := tr.Pending("o")
	if len(got) != 4 || got[0].Prev != 10 || got[3].Prev != 40 {
		t.Fatalf("pending %v: want the 4 lowest ranges", got)
	}
}

// TestStableAndMembers covers joins, deaths, restarts and removals.
func TestStableAndMembers(t *testing.T) {
	tr := newTracker(t, "a")
	tr.ObserveBatch("o", 0, 1, 10)
	if got := tr.Stable("o"); got != 10 {
		t.Fatalf("alone: stable %d, want 10", got)
	}
	// A member joins: nothing converges until it announces.
	tr.SetLive([]string{"a", "b"})
	if got := tr.Stable("o"); got != 0 {
		t.Fatalf("silent member: stable %d, want 0", got)
	}
	if got := tr.Missing("o", 5); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("missing %v, want [b]", got)
	}
	tr.Announce("b", 50, Vector{"o": 4})
	if got := tr.Stable("o"); got != 4 {
		t.Fatalf("stable %d, want 4", got)
	}
	// Same epoch: max merge, order does not matter.
	tr.Announce("b", 50, Vector{"o": 8})
	tr.Announce("b", 50, Vector{"o": 6})
	if got := tr.Stable("o"); got != 8 {
		t.Fatalf("stable %d, want 8", got)
	}
	// b restarts (higher epoch) with less: it replaces.
	tr.Announce("b", 60, Vector{"o": 2})
	if got := tr.Stable("o"); got != 2 {
		t.Fatalf("after restart: stable %d, want 2", got)
	}
	// A late announcement of the old epoch is ignored.
	if tr.Announce("b", 50, Vector{"o": 9}) {
		t.Fatal("an old epoch's announcement moved the view")
	}
	// b dies: it does not count.
	tr.SetLive([]string{"a"})
	if got := tr.Stable("o"); got != 10 {
		t.Fatalf("b dead: stable %d, want 10", got)
	}
	// b comes back: it counts again from what it announced.
	tr.SetLive([]string{"a", "b"})
	if got := tr.Stable("o"); got != 2 {
		t.Fatalf("b back: stable %d, want 2", got)
	}
	// b is removed from the cluster: forgotten, as member and origin.
	tr.ObserveBatch("b", 0, 1, 3)
	tr.Forget("b")
	if got := tr.Stable("o"); got != 10 {
		t.Fatalf("b removed: stable %d, want 10", got)
	}
	if tr.Own("b") != 0 || tr.Announced("b") {
		t.Fatal("a removed member is still tracked")
	}
	// Own writes are always held here.
	tr.LocalWrite(epoch+1, epoch+5)
	if got := tr.Own("a"); got != epoch+5 {
		t.Fatalf("own frontier %d, want %d", got, epoch+5)
	}
}

func TestDelta(t *testing.T) {
	tr := newTracker(t, "a")
	if d := tr.TakeDelta(); len(d) != 1 || d["a"] != epoch {
		t.Fatalf("first delta %v, want self at the epoch", d)
	}
	if d := tr.TakeDelta(); len(d) != 0 {
		t.Fatalf("delta %v with no change", d)
	}
	tr.ObserveBatch("o", 0, 1, 5)
	tr.ObserveBatch("o", 9, 10, 12) // a gap: the frontier does not move
	if d := tr.TakeDelta(); len(d) != 1 || d["o"] != 5 {
		t.Fatalf("delta %v, want o=5", d)
	}
}

func TestLag(t *testing.T) {
	ms := func(m int64) crdt.Timestamp { return crdt.NewTimestamp(m, 0) }
	tr, err := New(Config{Self: "a", Epoch: ms(1000)})
	if err != nil {
		t.Fatal(err)
	}
	tr.SetLive([]string{"b", "c"})
	if _, known := tr.Lag("b", ms(5000)); known {
		t.Fatal("lag known for a member that announced nothing")
	}
	// Batches at t=2000 and t=3000 of origin o; b has the first, c none.
	tr.ObserveBatch("o", 0, ms(2000), ms(2000))
	tr.ObserveBatch("o", ms(2000), ms(3000), ms(3000))
	tr.Announce("b", 1, Vector{"o": ms(2000), "a": ms(1000)})
	tr.Announce("c", 1, Vector{"a": ms(1000)})
	tests := []struct {
		member string
		want   time.Duration
	}{
		{"a", 0},
		{"b", 2 * time.Second}, // lacks the write at 3000
		{"c", 3 * time.Second}, // lacks the write at 2000
	}
	for _, tc := range tests {
		got, known := tr.Lag(tc.member, ms(5000))
		if !known || got != tc.want {
			t.Errorf("lag of %s = %v (known %v), want %v", tc.member, got, known, tc.want)
		}
	}
	// Marks every live member passed are dropped.
	tr.Announce("c", 1, Vector{"o": ms(3000)})
	tr.Announce("b", 1, Vector{"o": ms(3000)})
	if n := len(tr.origins["o"].marks); n != 0 {
		t.Fatalf("%d marks kept after every member passed them", n)
	}
}

// model is one origin's writes and what a replica has received.
type model struct {
	writes []crdt.Timestamp // the origin's writes, ascending
}

// heldThrough returns the highest h such that every write at or below h
// is in got.
func (m model) heldThrough(got map[crdt.Timestamp]bool) crdt.Timestamp {
	var h crdt.Timestamp
	for _, w := range m.writes {
		if !got[w] {
			return h
		}
		h = w
	}
	return h
}

// TestPropertyAnyDeliveryOrder: batches of an origin delivered in any
// order, duplicated or lost, never raise the frontier over a write not
// held (safety); delivering them all, or an anti-entropy merge from a
// replica that holds them, brings it to the last write (liveness).
func TestPropertyAnyDeliveryOrder(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for iter := range 500 {
		var m model
		h := crdt.Timestamp(100)
		for range 1 + rng.IntN(40) {
			h += crdt.Timestamp(1 + rng.IntN(5))
			m.writes = append(m.writes, h)
		}
		// Cut the writes into batches chained by prev.
		type batch struct {
			prev    crdt.Timestamp
			entries []crdt.Timestamp
		}
		var batches []batch
		prev := crdt.Timestamp(100)
		for i := 0; i < len(m.writes); {
			n := 1 + rng.IntN(4)
			n = min(n, len(m.writes)-i)
			batches = append(batches, batch{prev, m.writes[i : i+n]})
			prev = m.writes[i+n-1]
			i += n
		}
		// The replica starts having synced up to the origin's start.
		tr, err := New(Config{Self: "r", Epoch: 1, MaxPendingRanges: 1 + rng.IntN(8)})
		if err != nil {
			t.Fatal(err)
		}
		tr.Merge(Vector{"o": 100})
		got := map[crdt.Timestamp]bool{}
		order := rng.Perm(len(batches))
		lost := map[int]bool{}
		for _, i := range order {
			if rng.IntN(5) == 0 {
				lost[i] = true
				continue
			}
			for range 1 + rng.IntN(2) { // maybe twice
				b := batches[i]
				for _, e := range b.entries {
					got[e] = true
				}
				tr.ObserveBatch("o", b.prev, b.entries[0], b.entries[len(b.entries)-1])
				if f, held := tr.Own("o"), m.heldThrough(got); f > max(held, 100) {
					t.Fatalf("iteration %d (seed %d): frontier %d above the held prefix %d", iter, seed, f, held)
				}
			}
		}
		// Liveness holds when no gap range had to be dropped.
		if len(lost) == 0 && len(batches) <= tr.cfg.MaxPendingRanges && tr.Own("o") != m.writes[len(m.writes)-1] {
			t.Fatalf("iteration %d (seed %d): all delivered, frontier %d, want %d (pending %v)", iter, seed, tr.Own("o"), m.writes[len(m.writes)-1], tr.Pending("o"))
		}
		// Anti-entropy with a replica that holds everything repairs the rest.
		tr.Merge(Vector{"o": m.writes[len(m.writes)-1]})
		if f := tr.Own("o"); f != m.writes[len(m.writes)-1] {
			t.Fatalf("iteration %d (seed %d): after repair frontier %d, want %d", iter, seed, f, m.writes[len(m.writes)-1])
		}
		if p := tr.Pending("o"); len(p) != 0 {
			t.Fatalf("iteration %d (seed %d): pending %v after repair", iter, seed, p)
		}
	}
}

// TestPropertyStableIsMinimum: the stable frontier is the minimum over
// live members whatever the order of announcements, and never above what a
// live member announced.
func TestPropertyStableIsMinimum(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	for iter := range 300 {
		tr := newTracker(t, "self")
		tr.Merge(Vector{"o": crdt.Timestamp(1 + rng.IntN(100))})
		members := []string{"m0", "m1", "m2", "m3", "m4"}
		highest := map[string]crdt.Timestamp{}
		var msgs []struct {
			m string
			f crdt.Timestamp
		}
		for _, m := range members {
			for range 1 + rng.IntN(4) {
				f := crdt.Timestamp(rng.IntN(100))
				msgs = append(msgs, struct {
					m string
					f crdt.Timestamp
				}{m, f})
				highest[m] = max(highest[m], f)
			}
		}
		rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
		for _, msg := range msgs {
			tr.Announce(msg.m, 7, Vector{"o": msg.f})
		}
		var live []string
		want := tr.Own("o")
		for _, m := range members {
			if rng.IntN(3) > 0 {
				live = append(live, m)
				want = min(want, highest[m])
			}
		}
		tr.SetLive(live)
		if got := tr.Stable("o"); got != want {
			t.Fatalf("iteration %d (seed %d): stable %d, want %d", iter, seed, got, want)
		}
		for _, m := range tr.Missing("o", want+1) {
			if m != "self" && !slices.Contains(live, m) {
				t.Fatalf("iteration %d: %s missing but not live", iter, m)
			}
		}
		if want > 0 && len(tr.Missing("o", want)) != 0 {
			t.Fatalf("iteration %d: members missing a converged write: %v", iter, tr.Missing("o", want))
		}
	}
}

func ExampleTracker() {
	tr, _ := New(Config{Self: "a", Epoch: 1})
	tr.SetLive([]string{"b"})
	tr.ObserveBatch("o", 0, 10, 12) // a batch of origin o applied here
	fmt.Println(tr.Converged("o", 12))
	tr.Announce("b", 5, Vector{"o": 12}) // b says it holds them too
	fmt.Println(tr.Converged("o", 12), tr.Missing("o", 13))
	// Output:
	// false
	// true [a b]
}
