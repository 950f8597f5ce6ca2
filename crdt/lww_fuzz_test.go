package crdt

import (
	"bytes"
	"testing"
)

// FuzzCompareTotalOrder checks that Compare is a total order over arbitrary
// entries: reflexive, antisymmetric and transitive, that it returns 0 exactly
// for entries with equal (HLC, origin, tombstone, value), and that Merge and
// Wins agree with it.
//
// Arbitrary HLCs rarely collide, so the ties byte forces equalities between
// the three entries' HLCs, origins and tombstone flags, and the value bytes
// then decide.
func FuzzCompareTotalOrder(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint64(3), []byte("a"), []byte("b"), []byte("c"), []byte("x"), []byte("y"), []byte("z"), byte(0), byte(0))
	f.Add(uint64(5), uint64(5), uint64(5), []byte("a"), []byte("a"), []byte("a"), []byte("x"), []byte("x"), []byte("x"), byte(0xFF), byte(0))
	f.Add(uint64(5), uint64(5), uint64(5), []byte("a"), []byte("a"), []byte("a"), []byte(""), []byte("y"), []byte("x"), byte(0x0F), byte(0b001))
	f.Add(uint64(5), uint64(5), uint64(5), []byte("a"), []byte("b"), []byte("a"), []byte("v"), []byte(""), []byte("v"), byte(0x03), byte(0b110))
	f.Add(uint64(0), uint64(0), uint64(0), []byte{}, []byte(nil), []byte{0}, []byte{}, []byte(nil), []byte{0}, byte(0x0F), byte(0b111))
	f.Add(^uint64(0), uint64(0), ^uint64(0)-1, []byte("\xff"), []byte("\x00"), []byte("\xff\x00"), []byte("a"), []byte("ab"), []byte("a\x00"), byte(0x05), byte(0b010))
	f.Add(uint64(1<<16), uint64(1<<16|1), uint64(0xFFFF), []byte("n1"), []byte("n2"), []byte("n1"), []byte("v1"), []byte("v2"), []byte("v3"), byte(0x08), byte(0b100))

	f.Fuzz(func(t *testing.T, hA, hB, hC uint64, oA, oB, oC, vA, vB, vC []byte, ties, tombs byte) {
		a := &Entry{Key: []byte("k"), HLC: Timestamp(hA), Origin: oA, Value: vA, Tombstone: tombs&1 != 0}
		b := &Entry{Key: []byte("k"), HLC: Timestamp(hB), Origin: oB, Value: vB, Tombstone: tombs&2 != 0}
		c := &Entry{Key: []byte("k"), HLC: Timestamp(hC), Origin: oC, Value: vC, Tombstone: tombs&4 != 0}
		if ties&0x01 != 0 {
			b.HLC = a.HLC
		}
		if ties&0x02 != 0 {
			c.HLC = a.HLC
		}
		if ties&0x04 != 0 {
			b.Origin = a.Origin
		}
		if ties&0x08 != 0 {
			c.Origin = a.Origin
		}
		if ties&0x10 != 0 {
			b.Value = a.Value
		}
		if ties&0x20 != 0 {
			c.Value = b.Value
		}

		checkTotalOrder(t, a, b, c)

		es := []*Entry{a, b, c}
		for _, x := range es {
			for _, y := range es {
				cxy := Compare(x, y)
				same := x.HLC == y.HLC && bytes.Equal(x.Origin, y.Origin) &&
					x.Tombstone == y.Tombstone && bytes.Equal(x.Value, y.Value)
				if (cxy == 0) != same {
					t.Fatalf("Compare = %d but fields equal = %v:\n x=%+v\n y=%+v", cxy, same, *x, *y)
				}
				// The primary key is the HLC.
				if x.HLC > y.HLC && cxy != 1 || x.HLC < y.HLC && cxy != -1 {
					t.Fatalf("Compare = %d ignores HLC order %v vs %v", cxy, x.HLC, y.HLC)
				}
				if Wins(y, x) != (cxy > 0) {
					t.Fatalf("Wins(y, x) = %v but Compare(x, y) = %d", Wins(y, x), cxy)
				}
				m := Merge(x, y)
				if m != x && m != y {
					t.Fatalf("Merge returned neither argument")
				}
				if Compare(m, x) < 0 || Compare(m, y) < 0 {
					t.Fatalf("Merge result loses to an argument")
				}
				if Compare(Merge(x, y), Merge(y, x)) != 0 {
					t.Fatalf("Merge not commutative")
				}
			}
		}
		if Compare(Merge(Merge(a, b), c), Merge(a, Merge(b, c))) != 0 {
			t.Fatalf("Merge not associative")
		}
	})
}
