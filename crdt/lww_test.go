package crdt

import (
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"
)

// testSeed returns the seed for the property tests: CRDT_SEED if set, else a
// fresh one. It is logged so a failure can be replayed.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv("CRDT_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("CRDT_SEED=%q: %v", s, err)
		}
		t.Logf("seed %d (from CRDT_SEED)", seed)
		return seed
	}
	seed := rand.Uint64()
	t.Logf("seed %d (replay with CRDT_SEED=%d)", seed, seed)
	return seed
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

func entry(hlc Timestamp, origin, value string, tomb bool) *Entry {
	e := &Entry{Key: []byte("k"), HLC: hlc, Tombstone: tomb}
	if origin != "" {
		e.Origin = []byte(origin)
	}
	if value != "" {
		e.Value = []byte(value)
	}
	return e
}

func TestCompare(t *testing.T) {
	ts := func(p int64, l uint16) Timestamp { return NewTimestamp(p, l) }
	tests := []struct {
		name string
		a, b *Entry
		want int
	}{
		{"higher physical wins", entry(ts(2, 0), "a", "x", false), entry(ts(1, 9), "z", "z", true), 1},
		{"lower physical loses", entry(ts(1, 9), "z", "z", true), entry(ts(2, 0), "a", "x", false), -1},
		{"higher logical wins", entry(ts(1, 2), "a", "a", false), entry(ts(1, 1), "b", "b", true), 1},
		{"lower logical loses", entry(ts(1, 1), "b", "b", true), entry(ts(1, 2), "a", "a", false), -1},
		{"hlc beats tombstone", entry(ts(1, 1), "a", "x", false), entry(ts(1, 0), "a", "", true), 1},
		{"equal hlc higher origin wins", entry(ts(1, 1), "b", "a", false), entry(ts(1, 1), "a", "z", true), 1},
		{"equal hlc lower origin loses", entry(ts(1, 1), "a", "z", true), entry(ts(1, 1), "b", "a", false), -1},
		{"origin prefix loses", entry(ts(1, 1), "a", "", false), entry(ts(1, 1), "ab", "", false), -1},
		{"origin byte order", entry(ts(1, 1), "\xff", "", false), entry(ts(1, 1), "\x01\xff", "", false), 1},
		{"nil origin loses to any", entry(ts(1, 1), "", "z", true), entry(ts(1, 1), "\x00", "", false), -1},
		{"tie: tombstone wins", entry(ts(1, 1), "a", "", true), entry(ts(1, 1), "a", "zzz", false), 1},
		{"tie: value loses to tombstone", entry(ts(1, 1), "a", "zzz", false), entry(ts(1, 1), "a", "", true), -1},
		{"tie: higher value wins", entry(ts(1, 1), "a", "y", false), entry(ts(1, 1), "a", "x", false), 1},
		{"tie: lower value loses", entry(ts(1, 1), "a", "x", false), entry(ts(1, 1), "a", "y", false), -1},
		{"tie: longer value wins", entry(ts(1, 1), "a", "xx", false), entry(ts(1, 1), "a", "x", false), 1},
		{"tie: empty value loses", entry(ts(1, 1), "a", "", false), entry(ts(1, 1), "a", "\x00", false), -1},
		{"tie: tombstones by value", entry(ts(1, 1), "a", "b", true), entry(ts(1, 1), "a", "a", true), 1},
		{"identical value", entry(ts(1, 1), "a", "x", false), entry(ts(1, 1), "a", "x", false), 0},
		{"identical tombstone", entry(ts(1, 1), "a", "", true), entry(ts(1, 1), "a", "", true), 0},
		{"identical zero", &Entry{}, &Entry{}, 0},
		{"key is ignored", &Entry{Key: []byte("a"), HLC: 1}, &Entry{Key: []byte("b"), HLC: 1}, 0},
		{"max hlc wins", entry(Timestamp(^uint64(0)), "a", "", false), entry(Timestamp(^uint64(0)-1), "z", "", true), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Compare(tt.a, tt.b); got != tt.want {
				t.Errorf("Compare(a, b) = %d, want %d", got, tt.want)
			}
			if got := Compare(tt.b, tt.a); got != -tt.want {
				t.Errorf("Compare(b, a) = %d, want %d", got, -tt.want)
			}
			if got := Compare(tt.a, tt.a); got != 0 {
				t.Errorf("Compare(a, a) = %d, want 0", got)
			}
			if got, want := Wins(tt.a, tt.b), tt.want < 0; got != want {
				t.Errorf("Wins(a, b) = %v, want %v", got, want)
			}
			if got, want := Wins(tt.b, tt.a), tt.want > 0; got != want {
				t.Errorf("Wins(b, a) = %v, want %v", got, want)
			}
			wantMerge := tt.a
			if tt.want < 0 {
				wantMerge = tt.b
			}
			if got := Merge(tt.a, tt.b); got != wantMerge {
				t.Errorf("Merge(a, b) = %+v, want %+v", got, wantMerge)
			}
			if got := Merge(tt.b, tt.a); Compare(got, wantMerge) != 0 {
				t.Errorf("Merge(b, a) = %+v, want %+v", got, wantMerge)
			}
		})
	}
}

// TestCompareNilVersusEmptyValue pins down that Compare treats a nil value
// and an empty non-nil value as the same write (bytes.Compare does). See the
// report: such entries are Compare-equal but not reflect.DeepEqual, so which
// representation a State keeps depends on arrival order.
func TestCompareNilVersusEmptyValue(t *testing.T) {
	a := &Entry{Key: []byte("k"), HLC: 7, Origin: []byte("n1"), Tombstone: true, Value: nil}
	b := &Entry{Key: []byte("k"), HLC: 7, Origin: []byte("n1"), Tombstone: true, Value: []byte{}}
	if got := Compare(a, b); got != 0 {
		t.Errorf("Compare(nil value, empty value) = %d, want 0", got)
	}
	if Wins(a, b) || Wins(b, a) {
		t.Errorf("Wins between nil and empty value = true, want false both ways")
	}
	// Same for origin.
	c := &Entry{HLC: 7, Origin: nil}
	d := &Entry{HLC: 7, Origin: []byte{}}
	if got := Compare(c, d); got != 0 {
		t.Errorf("Compare(nil origin, empty origin) = %d, want 0", got)
	}
}

func TestWins(t *testing.T) {
	x := entry(NewTimestamp(5, 0), "n1", "v", false)
	older := entry(NewTimestamp(4, 0), "n9", "v", false)
	newer := entry(NewTimestamp(5, 1), "n0", "", true)
	dup := entry(NewTimestamp(5, 0), "n1", "v", false) // equal, not the same pointer

	tests := []struct {
		name              string
		current, incoming *Entry
		want              bool
	}{
		{"nil current loses to value", nil, x, true},
		{"nil current loses to tombstone", nil, newer, true},
		{"nil current loses to zero entry", nil, &Entry{}, true},
		{"same pointer is idempotent", x, x, false},
		{"equal copy is idempotent", x, dup, false},
		{"older does not win", x, older, false},
		{"newer wins", x, newer, true},
		{"tombstone replaced by newer", newer, entry(NewTimestamp(6, 0), "n0", "w", false), true},
		{"tombstone not replaced by older", newer, x, false},
	}
	for _, tt := range tests {
		if got := Wins(tt.current, tt.incoming); got != tt.want {
			t.Errorf("%s: Wins = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMergeReturnsAnArgument(t *testing.T) {
	a := entry(1, "a", "x", false)
	b := entry(2, "a", "x", false)
	if got := Merge(a, b); got != b {
		t.Errorf("Merge(a, b) returned %p, want b %p", got, b)
	}
	if got := Merge(b, a); got != b {
		t.Errorf("Merge(b, a) returned %p, want b %p", got, b)
	}
	if got := Merge(a, a); got != a {
		t.Errorf("Merge(a, a) returned %p, want a %p", got, a)
	}
}

// randEntry draws an entry from small domains so that HLC, origin and even
// exact ties are frequent. Values are never empty-but-non-nil, so that entries
// that Compare equal are also reflect.DeepEqual (see
// TestCompareNilVersusEmptyValue).
func randEntry(r *rand.Rand, keys int) Entry {
	origins := [][]byte{nil, []byte("a"), []byte("b"), []byte("ab")}
	values := [][]byte{nil, []byte("x"), []byte("y"), []byte("xy")}
	e := Entry{
		Key:       []byte{'k', byte('0' + r.IntN(keys))},
		HLC:       NewTimestamp(r.Int64N(2), uint16(r.IntN(2))),
		Origin:    origins[r.IntN(len(origins))],
		Tombstone: r.IntN(3) == 0,
	}
	// Tombstones usually carry no value, but sometimes do, so that the
	// value tie-break is exercised for them too.
	if !e.Tombstone || r.IntN(4) == 0 {
		e.Value = values[r.IntN(len(values))]
	}
	return e
}

func TestMergeProperties(t *testing.T) {
	r := newRand(testSeed(t))
	const n = 20000
	var ties, exact int
	for i := 0; i < n; i++ {
		a0, b0, c0 := randEntry(r, 1), randEntry(r, 1), randEntry(r, 1)
		a, b, c := &a0, &b0, &c0
		if Compare(a, b) == 0 && !reflect.DeepEqual(a0, b0) {
			t.Fatalf("Compare = 0 for different entries %+v and %+v", a0, b0)
		}
		if a.HLC == b.HLC && string(a.Origin) == string(b.Origin) {
			ties++
			if Compare(a, b) == 0 {
				exact++
			}
		}

		// Commutative.
		if ab, ba := Merge(a, b), Merge(b, a); !reflect.DeepEqual(*ab, *ba) || Compare(ab, ba) != 0 {
			t.Fatalf("not commutative:\n a=%+v\n b=%+v\n Merge(a,b)=%+v\n Merge(b,a)=%+v", a0, b0, *ab, *ba)
		}
		// Associative.
		l := Merge(Merge(a, b), c)
		rr := Merge(a, Merge(b, c))
		if !reflect.DeepEqual(*l, *rr) || Compare(l, rr) != 0 {
			t.Fatalf("not associative:\n a=%+v\n b=%+v\n c=%+v\n (ab)c=%+v\n a(bc)=%+v", a0, b0, c0, *l, *rr)
		}
		// Idempotent.
		if aa := Merge(a, a); aa != a {
			t.Fatalf("not idempotent: Merge(a, a) = %+v, want %+v", *aa, a0)
		}
		if abb := Merge(Merge(a, b), b); !reflect.DeepEqual(*abb, *Merge(a, b)) {
			t.Fatalf("merging b twice changed the result: a=%+v b=%+v", a0, b0)
		}
		// The winner is one of the inputs and no input beats it.
		w := Merge(Merge(a, b), c)
		if w != a && w != b && w != c {
			t.Fatalf("Merge returned an entry that was not an input")
		}
		for _, x := range []*Entry{a, b, c} {
			if Compare(x, w) > 0 {
				t.Fatalf("input %+v beats the merge result %+v", *x, *w)
			}
			if Wins(w, x) {
				t.Fatalf("input %+v Wins over the merge result %+v", *x, *w)
			}
		}
		// Antisymmetry and transitivity over the triple.
		checkTotalOrder(t, a, b, c)
	}
	// About 1 in 16 pairs should tie on (HLC, origin) and about 1 in 200
	// be identical; insist on a fraction of that so the tie-breaks are used.
	if ties < n/25 || exact < n/1000 {
		t.Errorf("only %d (HLC, origin) ties and %d identical pairs out of %d; domain too large to test tie-breaks", ties, exact, n)
	}
	t.Logf("%d (HLC, origin) ties, %d identical pairs out of %d", ties, exact, n)
}

// checkTotalOrder fails t if Compare is not antisymmetric, reflexive or
// transitive over a, b, c.
func checkTotalOrder(t testing.TB, a, b, c *Entry) {
	t.Helper()
	es := []*Entry{a, b, c}
	for _, x := range es {
		if got := Compare(x, x); got != 0 {
			t.Fatalf("Compare(x, x) = %d for %+v", got, *x)
		}
		for _, y := range es {
			cxy := Compare(x, y)
			if cxy < -1 || cxy > 1 {
				t.Fatalf("Compare returned %d, want -1, 0 or 1", cxy)
			}
			if cyx := Compare(y, x); cxy != -cyx {
				t.Fatalf("not antisymmetric: Compare(x,y)=%d Compare(y,x)=%d\n x=%+v\n y=%+v", cxy, cyx, *x, *y)
			}
			for _, z := range es {
				cyz, cxz := Compare(y, z), Compare(x, z)
				switch {
				case cxy <= 0 && cyz <= 0 && cxz > 0,
					cxy == 0 && cyz == 0 && cxz != 0,
					(cxy < 0 && cyz <= 0 || cxy <= 0 && cyz < 0) && cxz >= 0:
					t.Fatalf("not transitive: Compare(x,y)=%d Compare(y,z)=%d Compare(x,z)=%d\n x=%+v\n y=%+v\n z=%+v",
						cxy, cyz, cxz, *x, *y, *z)
				}
			}
		}
	}
}

func TestStateApply(t *testing.T) {
	s := State{}
	v1 := Entry{Key: []byte("k"), Value: []byte("v1"), HLC: 10, Origin: []byte("a")}
	v0 := Entry{Key: []byte("k"), Value: []byte("v0"), HLC: 9, Origin: []byte("z")}
	del := Entry{Key: []byte("k"), HLC: 11, Origin: []byte("a"), Tombstone: true}
	other := Entry{Key: []byte("j"), Value: []byte("o"), HLC: 1, Origin: []byte("a")}

	steps := []struct {
		e       Entry
		changed bool
		want    State
	}{
		{v1, true, State{"k": v1}},
		{v1, false, State{"k": v1}},
		{v0, false, State{"k": v1}},
		{other, true, State{"k": v1, "j": other}},
		{del, true, State{"k": del, "j": other}},
		{v1, false, State{"k": del, "j": other}},
		{del, false, State{"k": del, "j": other}},
	}
	for i, st := range steps {
		if got := s.Apply(st.e); got != st.changed {
			t.Errorf("step %d: Apply(%+v) = %v, want %v", i, st.e, got, st.changed)
		}
		if !reflect.DeepEqual(s, st.want) {
			t.Errorf("step %d: state = %+v, want %+v", i, s, st.want)
		}
	}
}

func TestStateConvergence(t *testing.T) {
	r := newRand(testSeed(t))
	const (
		rounds       = 200
		permutations = 30
	)
	for round := 0; round < rounds; round++ {
		keys := 1 + r.IntN(4)
		writes := make([]Entry, 1+r.IntN(25))
		for i := range writes {
			writes[i] = randEntry(r, keys)
		}
		// Some exact duplicates in the write set itself.
		for range r.IntN(4) {
			writes = append(writes, writes[r.IntN(len(writes))])
		}

		// The expected state: per key, the maximum under Compare.
		want := State{}
		for i := range writes {
			e := &writes[i]
			cur, ok := want[string(e.Key)]
			if !ok || Compare(e, &cur) > 0 {
				want[string(e.Key)] = *e
			}
		}

		var first State
		for p := 0; p < permutations; p++ {
			deliveries := slices.Clone(writes)
			// Random duplicated deliveries.
			for range r.IntN(len(writes) + 1) {
				deliveries = append(deliveries, writes[r.IntN(len(writes))])
			}
			r.Shuffle(len(deliveries), func(i, j int) {
				deliveries[i], deliveries[j] = deliveries[j], deliveries[i]
			})
			s := State{}
			applied := make(map[string]int)
			for _, e := range deliveries {
				before := s[string(e.Key)]
				_, had := s[string(e.Key)]
				changed := s.Apply(e)
				after := s[string(e.Key)]
				if changed == (had && reflect.DeepEqual(before, after)) {
					t.Fatalf("round %d: Apply reported changed=%v but %+v -> %+v", round, changed, before, after)
				}
				if had && Compare(&after, &before) < 0 {
					t.Fatalf("round %d: Apply moved key %q backwards: %+v -> %+v", round, e.Key, before, after)
				}
				if changed {
					applied[string(e.Key)]++
				}
				// Applying the same delivery again changes nothing.
				if s.Apply(e) {
					t.Fatalf("round %d: re-applying %+v changed the state", round, e)
				}
			}
			if !reflect.DeepEqual(s, want) {
				t.Fatalf("round %d permutation %d: state\n %s\nwant (max per key)\n %s\nwrites: %s",
					round, p, fmtState(s), fmtState(want), fmtEntries(writes))
			}
			if first == nil {
				first = s
			} else if !reflect.DeepEqual(s, first) {
				t.Fatalf("round %d: permutation %d diverged:\n %s\nvs\n %s", round, p, fmtState(s), fmtState(first))
			}
		}
	}
}

// TestStateConvergenceAcrossReplicas splits a write set between replicas
// that each apply their share, then exchange full states in random order.
func TestStateConvergenceAcrossReplicas(t *testing.T) {
	r := newRand(testSeed(t))
	for round := 0; round < 200; round++ {
		writes := make([]Entry, 1+r.IntN(30))
		for i := range writes {
			writes[i] = randEntry(r, 3)
		}
		replicas := make([]State, 2+r.IntN(3))
		for i := range replicas {
			replicas[i] = State{}
		}
		// Each write reaches at least one replica, possibly several.
		for _, e := range writes {
			replicas[r.IntN(len(replicas))].Apply(e)
			for range r.IntN(2) {
				replicas[r.IntN(len(replicas))].Apply(e)
			}
		}
		// Anti-entropy: every replica pushes its whole state to every other,
		// in random order. One all-to-all pass is enough for a join
		// semilattice (a replica's state only grows); do two to also check
		// that extra pushes are harmless.
		for pass := 0; pass < 2; pass++ {
			order := r.Perm(len(replicas) * len(replicas))
			for _, k := range order {
				from, to := k/len(replicas), k%len(replicas)
				if from == to {
					continue
				}
				src := replicas[from]
				keys := make([]string, 0, len(src))
				for key := range src {
					keys = append(keys, key)
				}
				r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
				for _, key := range keys {
					replicas[to].Apply(src[key])
				}
			}
		}
		for i := 1; i < len(replicas); i++ {
			if !reflect.DeepEqual(replicas[i], replicas[0]) {
				t.Fatalf("round %d: replica %d diverged:\n %s\nvs\n %s", round, i, fmtState(replicas[i]), fmtState(replicas[0]))
			}
		}
	}
}

func fmtEntry(e Entry) string {
	return fmt.Sprintf("{%s %v o=%q v=%q t=%v}", e.Key, e.HLC, e.Origin, e.Value, e.Tombstone)
}

func fmtEntries(es []Entry) string {
	s := ""
	for _, e := range es {
		s += fmtEntry(e) + " "
	}
	return s
}

func fmtState(s State) string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := ""
	for _, k := range keys {
		out += fmtEntry(s[k]) + " "
	}
	return out
}
