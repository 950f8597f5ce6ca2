package snapshot

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"google.golang.org/protobuf/proto"

	maintenancev1 "github.com/chorus-kv/chorus/proto/chorus/maintenance/v1"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// Magic starts every snapshot file: a high byte (caught by 7-bit channels),
// the name, and a newline (caught by line-ending conversion), as PNG does.
const Magic = "\x89CHORUS\n"

// Version is the format version this package writes and reads.
const Version = 1

// Frame kinds.
const (
	kindHeader  = 'H'
	kindEntry   = 'E'
	kindTrailer = 'T'
)

// MaxFrameBytes bounds one frame's payload: far above the default limits
// (4 KiB keys, 1 MiB values), small enough that a corrupt length cannot
// exhaust memory.
const MaxFrameBytes = 80 << 20

// Errors a Reader returns, wrapped with where and what.
var (
	// ErrNotSnapshot: the input does not start with Magic.
	ErrNotSnapshot = errors.New("snapshot: not a chorus snapshot file")
	// ErrVersion: the file's format version is not Version.
	ErrVersion = errors.New("snapshot: unsupported format version")
	// ErrTruncated: the input ends before the trailer (an interrupted save,
	// an incomplete copy).
	ErrTruncated = errors.New("snapshot: truncated")
	// ErrCorrupt: a frame does not decode, the entries are out of order, or
	// the trailer's counts or checksum do not match.
	ErrCorrupt = errors.New("snapshot: corrupt")
)

// Writer writes a snapshot file.
type Writer struct {
	w          *bufio.Writer
	sum        hash.Hash
	buf        []byte
	last       []byte
	entries    int64
	tombstones int64
	err        error
}

// NewWriter writes the magic, the version and the header to w.
func NewWriter(w io.Writer, h *maintenancev1.SnapshotHeader) (*Writer, error) {
	sw := &Writer{w: bufio.NewWriterSize(w, 256<<10), sum: sha256.New()}
	sw.write([]byte(Magic))
	sw.write([]byte{Version})
	b, err := proto.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("snapshot: encode header: %w", err)
	}
	sw.frame(kindHeader, b)
	return sw, sw.err
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	w.sum.Write(b)
	if _, err := w.w.Write(b); err != nil {
		w.err = fmt.Errorf("snapshot: write: %w", err)
	}
}

func (w *Writer) frame(kind byte, payload []byte) {
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = kind
	n := binary.PutUvarint(hdr[1:], uint64(len(payload)))
	w.write(hdr[:1+n])
	w.write(payload)
}

// Add writes one entry. Entries must come in strictly increasing key order.
func (w *Writer) Add(e *replicationv1.Entry) error {
	if w.err != nil {
		return w.err
	}
	if len(e.GetKey()) == 0 {
		return fmt.Errorf("snapshot: entry %d has no key", w.entries+1)
	}
	if w.entries > 0 && bytes.Compare(e.GetKey(), w.last) <= 0 {
		return fmt.Errorf("snapshot: entry %q is not after %q", e.GetKey(), w.last)
	}
	var err error
	w.buf, err = proto.MarshalOptions{}.MarshalAppend(w.buf[:0], e)
	if err != nil {
		return fmt.Errorf("snapshot: encode entry %q: %w", e.GetKey(), err)
	}
	if len(w.buf) > MaxFrameBytes {
		return fmt.Errorf("snapshot: entry %q is %d bytes; the limit is %d", e.GetKey(), len(w.buf), MaxFrameBytes)
	}
	w.frame(kindEntry, w.buf)
	w.last = append(w.last[:0], e.GetKey()...)
	w.entries++
	if e.GetTombstone() {
		w.tombstones++
	}
	return w.err
}

// Close writes the trailer and flushes. It does not close the underlying
// writer.
func (w *Writer) Close() (*maintenancev1.SnapshotTrailer, error) {
	if w.err != nil {
		return nil, w.err
	}
	t := &maintenancev1.SnapshotTrailer{Entries: w.entries, Tombstones: w.tombstones, Sha256: w.sum.Sum(nil)}
	b, err := proto.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("snapshot: encode trailer: %w", err)
	}
	w.frame(kindTrailer, b)
	if w.err != nil {
		return nil, w.err
	}
	if err := w.w.Flush(); err != nil {
		return nil, fmt.Errorf("snapshot: write: %w", err)
	}
	return t, nil
}

// Entries returns how many entries were added so far.
func (w *Writer) Entries() int64 { return w.entries }
