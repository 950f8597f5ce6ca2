package crdtpb

import (
	"github.com/chorus-kv/chorus/crdt"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// FromEntry returns e's wire form: the replicated fields only.
func FromEntry(e *crdt.Entry) *replicationv1.Entry {
	return &replicationv1.Entry{Key: e.Key, Value: e.Value, Hlc: uint64(e.HLC), Origin: e.Origin, Tombstone: e.Tombstone}
}

// ToEntry returns the entry m carries; its revision fields are ignored.
func ToEntry(m *replicationv1.Entry) crdt.Entry {
	return crdt.Entry{
		Key:       m.GetKey(),
		Value:     m.GetValue(),
		HLC:       crdt.Timestamp(m.GetHlc()),
		Origin:    m.GetOrigin(),
		Tombstone: m.GetTombstone(),
	}
}

// entryOverhead bounds the encoding of an entry beyond its key, value and
// origin bytes when each is under 2 MiB: the tags and length prefixes of
// key, value and origin (1+3 bytes each), the HLC (1+10), the tombstone
// flag (1+1), and the entry's own tag and length prefix in the message
// that holds it (1+4): 30, rounded up. (A larger value, past the default
// limits, adds one byte of length prefix per 128 times its size.)
const entryOverhead = 32

// WireBytes is an upper bound on the bytes e takes in a batch or frame of
// entries, for filling one up to a size budget.
func WireBytes(e *crdt.Entry) int { return len(e.Key) + len(e.Value) + len(e.Origin) + entryOverhead }
