// Package crdtpb converts crdt entries to and from their wire form, the
// replicationv1.Entry message that gossip batches, anti-entropy sessions,
// snapshots and the store's records carry.
//
// Invariants: ToEntry(FromEntry(e)) equals e for every entry (the five
// replicated fields: key, value, HLC, origin, tombstone); FromEntry leaves
// the store-local revision fields unset; WireBytes(e) is at least the bytes
// e adds to a replicationv1.Batch (or to an anti-entropy entries frame) for
// keys, values and origins under 2 MiB each, so that a batch filled up to a
// budget by WireBytes does not exceed it.
// Entries are not copied: the message and the entry share the byte slices.
package crdtpb
