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

// Reader reads a snapshot file and checks it as it goes.
type Reader struct {
	r          *bufio.Reader
	sum        hash.Hash
	off        int64 // bytes consumed
	header     *maintenancev1.SnapshotHeader
	trailer    *maintenancev1.SnapshotTrailer
	buf        []byte
	last       []byte
	entries    int64
	tombstones int64
	err        error // sticky
}

// NewReader reads and checks the magic, version and header.
func NewReader(r io.Reader) (*Reader, error) {
	sr := &Reader{r: bufio.NewReaderSize(r, 256<<10), sum: sha256.New()}
	magic := make([]byte, len(Magic)+1)
	if n, err := io.ReadFull(sr.r, magic); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the file is empty", ErrNotSnapshot)
		}
		if !bytes.HasPrefix([]byte(Magic), magic[:n]) {
			return nil, fmt.Errorf("%w: it does not start with the snapshot magic", ErrNotSnapshot)
		}
		return nil, fmt.Errorf("%w: %d bytes, shorter than the file header", ErrTruncated, n)
	}
	if string(magic[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w: it does not start with the snapshot magic", ErrNotSnapshot)
	}
	if v := magic[len(Magic)]; v != Version {
		return nil, fmt.Errorf("%w: the file is version %d; this chorus reads version %d", ErrVersion, v, Version)
	}
	sr.sum.Write(magic)
	sr.off = int64(len(magic))
	kind, payload, err := sr.frame()
	if err != nil {
		return nil, err
	}
	if kind != kindHeader {
		return nil, fmt.Errorf("%w: the first frame is %q, not the header", ErrCorrupt, kind)
	}
	sr.header = &maintenancev1.SnapshotHeader{}
	if err := proto.Unmarshal(payload, sr.header); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	return sr, nil
}

// Header returns the file's header.
func (r *Reader) Header() *maintenancev1.SnapshotHeader { return r.header }

// Trailer returns the file's trailer once Next has returned io.EOF, else nil.
func (r *Reader) Trailer() *maintenancev1.SnapshotTrailer { return r.trailer }

// Offset returns how many bytes were read so far.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next entry, or io.EOF once the trailer has been read and
// checked. The entry is the caller's.
func (r *Reader) Next() (*replicationv1.Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	e, err := r.next()
	if err != nil {
		r.err = err
	}
	return e, err
}

func (r *Reader) next() (*replicationv1.Entry, error) {
	start := r.off
	sumBefore := r.sum.Sum(nil) // the checksum of every byte before this frame
	kind, payload, err := r.frame()
	if err != nil {
		return nil, err
	}
	switch kind {
	case kindEntry:
		e := &replicationv1.Entry{}
		if err := proto.Unmarshal(payload, e); err != nil {
			return nil, fmt.Errorf("%w: entry %d at byte %d: %v", ErrCorrupt, r.entries+1, start, err)
		}
		if len(e.GetKey()) == 0 {
			return nil, fmt.Errorf("%w: entry %d at byte %d has no key", ErrCorrupt, r.entries+1, start)
		}
		if r.entries > 0 && bytes.Compare(e.GetKey(), r.last) <= 0 {
			return nil, fmt.Errorf("%w: entry %d at byte %d is out of key order", ErrCorrupt, r.entries+1, start)
		}
		r.last = append(r.last[:0], e.GetKey()...)
		r.entries++
		if e.GetTombstone() {
			r.tombstones++
		}
		return e, nil
	case kindTrailer:
		t := &maintenancev1.SnapshotTrailer{}
		if err := proto.Unmarshal(payload, t); err != nil {
			return nil, fmt.Errorf("%w: trailer at byte %d: %v", ErrCorrupt, start, err)
		}
		if !bytes.Equal(t.GetSha256(), sumBefore) {
			return nil, fmt.Errorf("%w: checksum mismatch: the trailer says sha256 %x, the content is %x", ErrCorrupt, t.GetSha256(), sumBefore)
		}
		if t.GetEntries() != r.entries || t.GetTombstones() != r.tombstones {
			return nil, fmt.Errorf("%w: the trailer counts %d entries (%d tombstones), the file holds %d (%d)",
				ErrCorrupt, t.GetEntries(), t.GetTombstones(), r.entries, r.tombstones)
		}
		if _, err := r.r.ReadByte(); err == nil {
			return nil, fmt.Errorf("%w: bytes follow the trailer at byte %d", ErrCorrupt, r.off)
		} else if !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("snapshot: read: %w", err)
		}
		r.trailer = t
		return nil, io.EOF
	default:
		return nil, fmt.Errorf("%w: frame kind %q at byte %d", ErrCorrupt, kind, start)
	}
}

// frame reads one frame, hashing its bytes.
func (r *Reader) frame() (byte, []byte, error) {
	start := r.off
	kind, err := r.r.ReadByte()
	if errors.Is(err, io.EOF) {
		return 0, nil, fmt.Errorf("%w: the file ends at byte %d, before its trailer (after %d entries)", ErrTruncated, r.off, r.entries)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("snapshot: read: %w", err)
	}
	r.off++
	r.sum.Write([]byte{kind})
	var lenBuf [binary.MaxVarintLen64]byte
	n := 0
	var length uint64
	for shift := uint(0); ; shift += 7 {
		b, err := r.r.ReadByte()
		if errors.Is(err, io.EOF) {
			return 0, nil, fmt.Errorf("%w: the file ends inside the frame at byte %d", ErrTruncated, start)
		}
		if err != nil {
			return 0, nil, fmt.Errorf("snapshot: read: %w", err)
		}
		if n == len(lenBuf) {
			return 0, nil, fmt.Errorf("%w: frame length at byte %d overflows", ErrCorrupt, start)
		}
		lenBuf[n] = b
		n++
		length |= uint64(b&0x7f) << shift
		if b < 0x80 {
			break
		}
	}
	r.off += int64(n)
	r.sum.Write(lenBuf[:n])
	if length > MaxFrameBytes {
		return 0, nil, fmt.Errorf("%w: frame at byte %d is %d bytes long; the limit is %d", ErrCorrupt, start, length, MaxFrameBytes)
	}
	// Grow the buffer as bytes arrive, so that a corrupt length in a short
	// file does not allocate the whole of it.
	r.buf = r.buf[:0]
	for remaining := int(length); remaining > 0; {
		chunk := min(remaining, 1<<20)
		old := len(r.buf)
		r.buf = append(r.buf, make([]byte, chunk)...)
		got, err := io.ReadFull(r.r, r.buf[old:])
		r.off += int64(got)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, nil, fmt.Errorf("%w: the file ends inside the frame at byte %d (%d of its %d bytes present)", ErrTruncated, start, int(length)-remaining+got, length)
			}
			return 0, nil, fmt.Errorf("snapshot: read: %w", err)
		}
		remaining -= chunk
	}
	r.sum.Write(r.buf)
	return kind, r.buf, nil
}
