package p2p

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/crdtpb"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// Reasons a message from a peer is rejected. Each is counted.
var (
	ErrUndecodable  = errors.New("p2p: message does not decode")
	ErrEmptyBatch   = errors.New("p2p: batch has no entries")
	ErrTooLarge     = errors.New("p2p: message too large")
	ErrBadEntry     = errors.New("p2p: entry out of limits")
	ErrClockAhead   = errors.New("p2p: entry timestamp beyond the max clock offset")
	ErrForeignEntry = errors.New("p2p: entry origin is not the signing peer")
	ErrBadChain     = errors.New("p2p: batch's prev_hlc is not below its ascending entries")
)

// Rejections counts rejected messages, by reason.
type Rejections struct {
	Undecodable, Empty, TooLarge, BadEntry, ClockAhead, Foreign, NotMember atomic.Int64
}

// RejectionCounts is a snapshot of Rejections.
type RejectionCounts struct {
	Undecodable, Empty, TooLarge, BadEntry, ClockAhead, Foreign, NotMember int64
}

// Snapshot reads the counters.
func (r *Rejections) Snapshot() RejectionCounts {
	return RejectionCounts{
		Undecodable: r.Undecodable.Load(), Empty: r.Empty.Load(), TooLarge: r.TooLarge.Load(),
		BadEntry: r.BadEntry.Load(), ClockAhead: r.ClockAhead.Load(), Foreign: r.Foreign.Load(),
		NotMember: r.NotMember.Load(),
	}
}

func (r *Rejections) count(err error) {
	switch {
	case errors.Is(err, ErrUndecodable):
		r.Undecodable.Add(1)
	case errors.Is(err, ErrEmptyBatch):
		r.Empty.Add(1)
	case errors.Is(err, ErrTooLarge):
		r.TooLarge.Add(1)
	case errors.Is(err, ErrClockAhead):
		r.ClockAhead.Add(1)
	case errors.Is(err, ErrForeignEntry):
		r.Foreign.Add(1)
	case errors.Is(err, ErrNotMember):
		r.NotMember.Add(1)
	default:
		r.BadEntry.Add(1)
	}
}

// Validator checks batches from peers. It holds no state but the limits
// and the clock it checks against.
type Validator struct {
	Limits          crdt.Limits
	Clock           *crdt.Clock
	MaxMessageBytes int
}

// DecodeBatch decodes and checks a batch signed (or sent) by from: it must
// decode, be within the size limits, hold at least one entry, every entry
// well formed and within limits, no timestamp beyond the clock's max
// offset, and, when ownOnly is set, every entry's origin must be from (a
// node gossips only its own writes). It never panics on bad input.
func (v *Validator) DecodeBatch(data []byte, from peer.ID, ownOnly bool) ([]crdt.Entry, error) {
	b, err := v.DecodeGossip(data, from, ownOnly)
	if err != nil {
		return nil, err
	}
	return b.Entries, nil
}

// GossipBatch is a decoded, checked batch.
type GossipBatch struct {
	Entries []crdt.Entry
	// Prev is the origin's write before the batch (Batch.prev_hlc), when
	// HasPrev: the batch then holds every write of its origin in
	// (Prev, last entry's HLC], entries in ascending HLC order.
	Prev    crdt.Timestamp
	HasPrev bool
}

// DecodeGossip is DecodeBatch that also checks and returns the batch's
// chain (prev_hlc): when present, it must be below the first entry's HLC,
// the entries strictly ascending, and not beyond the clock's max offset.
func (v *Validator) DecodeGossip(data []byte, from peer.ID, ownOnly bool) (*GossipBatch, error) {
	if len(data) > v.MaxMessageBytes {
		return nil, fmt.Errorf("%w: %d bytes; the limit is %d", ErrTooLarge, len(data), v.MaxMessageBytes)
	}
	var b replicationv1.Batch
	if err := proto.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUndecodable, err)
	}
	if len(b.GetEntries()) == 0 {
		return nil, ErrEmptyBatch
	}
	entries := make([]crdt.Entry, len(b.GetEntries()))
	for i, e := range b.GetEntries() {
		entries[i] = crdtpb.ToEntry(e)
		if err := v.Limits.CheckEntry(&entries[i]); err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrBadEntry, i, err)
		}
		if ownOnly && peer.ID(entries[i].Origin) != from {
			return nil, fmt.Errorf("%w: entry %d has origin %s, signed by %s", ErrForeignEntry, i, peer.ID(entries[i].Origin), from)
		}
		if err := v.Clock.Check(entries[i].HLC); err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrClockAhead, i, err)
		}
	}
	out := &GossipBatch{Entries: entries}
	if b.PrevHlc != nil {
		prev := crdt.Timestamp(b.GetPrevHlc())
		if !ownOnly {
			return nil, fmt.Errorf("%w: only an origin's own batch has a chain", ErrBadChain)
		}
		for i := range entries {
			if entries[i].HLC <= prev {
				return nil, fmt.Errorf("%w: entry %d at %d, prev_hlc %d", ErrBadChain, i, entries[i].HLC, prev)
			}
			prev = entries[i].HLC
		}
		out.Prev, out.HasPrev = crdt.Timestamp(b.GetPrevHlc()), true
	}
	return out, nil
}

// EncodeBatch encodes entries for the wire: only the replicated fields.
func EncodeBatch(entries []crdt.Entry) ([]byte, error) {
	b := &replicationv1.Batch{Entries: make([]*replicationv1.Entry, len(entries))}
	for i := range entries {
		b.Entries[i] = crdtpb.FromEntry(&entries[i])
	}
	return proto.Marshal(b)
}

// encodeGossip encodes a gossip batch: its entries and, when known, the
// HLC of the origin's write before them.
func encodeGossip(items []queued) ([]byte, error) {
	b := &replicationv1.Batch{Entries: make([]*replicationv1.Entry, len(items))}
	for i := range items {
		b.Entries[i] = crdtpb.FromEntry(&items[i].entry)
	}
	if p := items[0].prev; p != 0 {
		prev := uint64(p)
		b.PrevHlc = &prev
	}
	return proto.Marshal(b)
}
