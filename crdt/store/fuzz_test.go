package store

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/chorus-kv/chorus/crdt"
)

func seedRecords() []Record {
	return []Record{
		{Entry: crdt.Entry{Key: []byte("k"), Value: []byte("v"), HLC: crdt.NewTimestamp(testWall, 3), Origin: []byte("node-a")},
			CreateRevision: 1, ModRevision: 2, Version: 2},
		{Entry: crdt.Entry{Key: []byte("gone"), HLC: crdt.NewTimestamp(testWall, 0), Origin: []byte("node-b"), Tombstone: true},
			ModRevision: 9},
		{Entry: crdt.Entry{Key: []byte{0, 0xff, '/'}, Value: bytes.Repeat([]byte{0xff}, 300), HLC: ^crdt.Timestamp(0), Origin: []byte{0}},
			CreateRevision: 1 << 40, ModRevision: 1<<63 - 1, Version: -1},
		{Entry: crdt.Entry{Key: []byte("x")}},
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range seedRecords() {
		b, err := encodeRecord(&r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Add([]byte{0x0a, 0x00})                  // key, empty
	f.Add([]byte{0x0a, 0x05, 'a'})             // key, truncated
	f.Add([]byte{0x0a, 0x01, 'a', 0x78, 0x01}) // key and an unknown field
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRecord error %v is not ErrCorrupt", err)
			}
			return
		}
		if len(r.Key) == 0 {
			t.Fatalf("decodeRecord accepted an entry without a key")
		}
		enc, err := encodeRecord(&r)
		if err != nil {
			t.Fatalf("encodeRecord(decoded %s): %v", fmtRecord(&r), err)
		}
		r2, err := decodeRecord(enc)
		if err != nil {
			t.Fatalf("decodeRecord(encodeRecord(%s)): %v", fmtRecord(&r), err)
		}
		if !recordEqual(&r, &r2) {
			t.Fatalf("round trip changed %s into %s", fmtRecord(&r), fmtRecord(&r2))
		}
		enc2, err := encodeRecord(&r2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding is not stable: %x then %x (%v)", enc, enc2, err)
		}
	})
}

func FuzzDecodeLogRecord(f *testing.F) {
	for i, r := range seedRecords() {
		b, err := encodeLogRecord(&Change{Record: r, PrevModRevision: int64(i) - 1})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})                   // an empty entry
	f.Add([]byte{0x10, 0x05})                   // prev only
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 'k'})  // entry with a key
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x05, 'k'})  // truncated inside
	f.Add([]byte{0x0a, 0x02, 0xff, 0xff, 0x10}) // garbage
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeLogRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeLogRecord error %v is not ErrCorrupt", err)
			}
			return
		}
		if len(c.Record.Key) == 0 || c.Prev != nil {
			t.Fatalf("decodeLogRecord returned key %q prev %v", c.Record.Key, c.Prev)
		}
		enc, err := encodeLogRecord(&c)
		if err != nil {
			t.Fatalf("encodeLogRecord: %v", err)
		}
		c2, err := decodeLogRecord(enc)
		if err != nil {
			t.Fatalf("decodeLogRecord(encodeLogRecord(%s)): %v", fmtRecord(&c.Record), err)
		}
		if !recordEqual(&c.Record, &c2.Record) || c.PrevModRevision != c2.PrevModRevision {
			t.Fatalf("round trip changed %s prev %d into %s prev %d", fmtRecord(&c.Record), c.PrevModRevision, fmtRecord(&c2.Record), c2.PrevModRevision)
		}
		enc2, err := encodeLogRecord(&c2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding is not stable: %x then %x (%v)", enc, enc2, err)
		}
	})
}

func FuzzUserKey(f *testing.F) {
	f.Add([]byte("a"), []byte("b"))
	f.Add([]byte("a"), []byte("a\x00"))
	f.Add([]byte("a/"), []byte("a0"))
	f.Add([]byte{}, []byte{0})
	f.Add([]byte{0xff}, []byte{0xff, 0x00})
	f.Add([]byte{0x0f}, []byte{0xf0})
	f.Add([]byte("/k/"), []byte("k"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, k := range [][]byte{a, b} {
			ek := entryKey(k)
			got, err := userKey(ek)
			if err != nil || !bytes.Equal(got, k) {
				t.Fatalf("userKey(entryKey(%q)) = %q, %v", k, got, err)
			}
			if !bytes.HasPrefix(ek, []byte(entryPrefix)) || bytes.Compare(ek, entryKeyEnd()) >= 0 {
				t.Fatalf("entryKey(%q) = %q is outside [%q, %q)", k, ek, entryPrefix, entryKeyEnd())
			}
		}
		if ca, ce := bytes.Compare(a, b), bytes.Compare(entryKey(a), entryKey(b)); ca != ce {
			t.Fatalf("bytes.Compare(%q, %q) = %d but their entry keys compare %d", a, b, ca, ce)
		}
		// The key Range continues from (After plus a zero byte) sorts right after a.
		if next := entryKey(append(bytes.Clone(a), 0)); bytes.Compare(next, entryKey(a)) <= 0 {
			t.Fatalf("entryKey(%q+0x00) is not above entryKey(%q)", a, a)
		}
		// userKey never panics on arbitrary input.
		_, _ = userKey(a)
		_, _ = userKey(append([]byte(entryPrefix), b...))
	})
}

// userKey decodes an entryKey: the inverse that shows entryKey loses nothing.
func userKey(k []byte) ([]byte, error) {
	if len(k) < len(entryPrefix) || string(k[:len(entryPrefix)]) != entryPrefix {
		return nil, fmt.Errorf("store: %q is not an entry key", k)
	}
	out := make([]byte, hex.DecodedLen(len(k)-len(entryPrefix)))
	if _, err := hex.Decode(out, k[len(entryPrefix):]); err != nil {
		return nil, fmt.Errorf("store: entry key %q: %w", k, err)
	}
	return out, nil
}
