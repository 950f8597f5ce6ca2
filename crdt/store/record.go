package store

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/crdtpb"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// ErrCorrupt reports a stored record that does not decode.
var ErrCorrupt = errors.New("store: corrupt record")

// Record is a key's register with the local metadata this node keeps for it.
type Record struct {
	crdt.Entry
	// CreateRevision is the revision at which the key was created, 0 for a
	// tombstone.
	CreateRevision int64
	// ModRevision is the revision of the key's last change.
	ModRevision int64
	// Version counts the changes since the key was created, 0 for a tombstone.
	Version int64
}

// Live reports whether the record holds a value (is not a tombstone).
func (r *Record) Live() bool { return r != nil && !r.Tombstone }

// Change is one change the merge made, with the record it replaced.
type Change struct {
	// Record is the key's state after the change; Record.ModRevision is the
	// change's revision.
	Record Record
	// Prev is the key's state before the change, nil if it was unknown here
	// (or, in a change read back from the log, no longer retained).
	Prev *Record
	// PrevModRevision is the mod revision of Prev, 0 if the key was unknown.
	PrevModRevision int64
	// PrevLive is true when the key held a value before the change. It is
	// kept in the log, so it is known even when Prev is not.
	PrevLive bool

	// The Merkle tree update of the change, computed by the committer and
	// applied by the writer once the change is durable.
	bucket           uint32
	oldHash, newHash uint64
}

// Visible reports whether the change is seen by a reader: it did not merely
// replace a missing or deleted key with a tombstone.
func (c *Change) Visible() bool {
	return c.Record.Live() || c.PrevLive
}

func toProto(r *Record) *replicationv1.Entry {
	m := crdtpb.FromEntry(&r.Entry)
	m.CreateRevision, m.ModRevision, m.Version = r.CreateRevision, r.ModRevision, r.Version
	return m
}

func fromProto(e *replicationv1.Entry) Record {
	return Record{
		Entry:          crdtpb.ToEntry(e),
		CreateRevision: e.GetCreateRevision(),
		ModRevision:    e.GetModRevision(),
		Version:        e.GetVersion(),
	}
}

func encodeRecord(r *Record) ([]byte, error) {
	return proto.Marshal(toProto(r))
}

// decodeRecord decodes a stored entry. It never panics on bad input.
func decodeRecord(b []byte) (Record, error) {
	var e replicationv1.Entry
	if err := proto.Unmarshal(b, &e); err != nil {
		return Record{}, fmt.Errorf("%w: entry: %v", ErrCorrupt, err)
	}
	if len(e.GetKey()) == 0 {
		return Record{}, fmt.Errorf("%w: entry has no key", ErrCorrupt)
	}
	return fromProto(&e), nil
}

// appendLogRecord appends to dst the replicationv1.LogRecord of c, whose
// record is already encoded as entry (encodeRecord): the same bytes as
// proto.Marshal of the LogRecord, without encoding the entry twice.
func appendLogRecord(dst, entry []byte, c *Change) []byte {
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendBytes(dst, entry)
	if c.PrevModRevision != 0 {
		dst = protowire.AppendTag(dst, 2, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(c.PrevModRevision))
	}
	if c.PrevLive {
		dst = protowire.AppendTag(dst, 3, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
	}
	return dst
}

// decodeLogRecord decodes a change-log record (without its Prev, which the
// reader looks up by PrevModRevision). It never panics on bad input.
func decodeLogRecord(b []byte) (Change, error) {
	var lr replicationv1.LogRecord
	if err := proto.Unmarshal(b, &lr); err != nil {
		return Change{}, fmt.Errorf("%w: log record: %v", ErrCorrupt, err)
	}
	if lr.GetEntry() == nil || len(lr.GetEntry().GetKey()) == 0 {
		return Change{}, fmt.Errorf("%w: log record has no entry", ErrCorrupt)
	}
	return Change{Record: fromProto(lr.GetEntry()), PrevModRevision: lr.GetPrevModRevision(), PrevLive: lr.GetPrevLive()}, nil
}
