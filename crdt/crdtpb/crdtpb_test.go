package crdtpb

import (
	"bytes"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

func TestRoundTripAndWireBytes(t *testing.T) {
	origin := []byte("12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo")
	tests := []struct {
		name  string
		entry crdt.Entry
	}{
		{"empty", crdt.Entry{}},
		{"small put", crdt.Entry{Key: []byte("k"), Value: []byte("v"), HLC: 1, Origin: origin}},
		{"tombstone", crdt.Entry{Key: []byte("gone"), HLC: 1 << 40, Origin: origin, Tombstone: true}},
		{"largest HLC", crdt.Entry{Key: []byte("k"), Value: []byte("v"), HLC: math.MaxUint64, Origin: origin}},
		{"default limits", crdt.Entry{Key: bytes.Repeat([]byte("k"), crdt.DefaultMaxKeyBytes),
			Value: bytes.Repeat([]byte("v"), crdt.DefaultMaxValueBytes), HLC: math.MaxUint64, Origin: origin, Tombstone: true}},
		{"just under 2 MiB", crdt.Entry{Key: bytes.Repeat([]byte("k"), 2<<20-1),
			Value: bytes.Repeat([]byte("v"), 2<<20-1), HLC: math.MaxUint64, Origin: bytes.Repeat([]byte("o"), 2<<20-1), Tombstone: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := FromEntry(&tt.entry)
			if m.GetCreateRevision() != 0 || m.GetModRevision() != 0 || m.GetVersion() != 0 {
				t.Errorf("FromEntry set revision fields: %v", m)
			}
			// Through the encoding, as a peer receives it.
			b, err := proto.Marshal(&replicationv1.Batch{Entries: []*replicationv1.Entry{m}})
			if err != nil {
				t.Fatal(err)
			}
			var got replicationv1.Batch
			if err := proto.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			back := ToEntry(got.GetEntries()[0])
			if !sameFields(&back, &tt.entry) {
				t.Errorf("ToEntry(FromEntry(e)) = %+v, want %+v", back, tt.entry)
			}
			if w := WireBytes(&tt.entry); w < len(b) {
				t.Errorf("WireBytes = %d, but the entry takes %d bytes in a batch", w, len(b))
			}
		})
	}
}

func sameFields(a, b *crdt.Entry) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.HLC == b.HLC &&
		bytes.Equal(a.Origin, b.Origin) && a.Tombstone == b.Tombstone
}
