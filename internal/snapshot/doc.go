// Package snapshot is the snapshot file format of Chorus (chorus snapshot
// save, restore and status): a consistent copy of one node's entries, with
// their HLC and origin, that a new node's data folder is built from.
//
// The format (see proto/chorus/maintenance/v1/snapshot.proto):
//
//	magic    8 bytes: 0x89 "CHORUS" 0x0a
//	version  1 byte: 1
//	frames   kind (1 byte), length (uvarint), payload (length bytes)
//	  'H'    SnapshotHeader, once, first
//	  'E'    chorus.replication.v1.Entry, once per entry, in key order
//	  'T'    SnapshotTrailer, once, last: entry and tombstone counts and the
//	         SHA-256 of every byte before this frame
//
// Invariants:
//
//   - A Reader returns io.EOF only after the trailer was read, its counts
//     match the entries returned, its checksum matches, and nothing follows
//     it. Any other end is ErrTruncated or ErrCorrupt, and a caller must
//     discard what it built from the entries (restore builds in a temporary
//     folder for that reason).
//   - The Reader never panics and never allocates more than MaxFrameBytes
//     for one frame, whatever its input.
//   - Entries are strictly in key order, keys non-empty and unique.
//
// What a writer does, in order: NewWriter with the header, Add each entry,
// Close (writes the trailer). A reader: NewReader (reads the header), Next
// until io.EOF or an error, then Trailer.
package snapshot
