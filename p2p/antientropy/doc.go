// Package antientropy is Chorus's anti-entropy session as a pure state
// machine: two replicas compare their Merkle trees (package crdt/merkle)
// and exchange exactly the entries that differ. A Session takes the peer's
// messages one at a time (Step) and says what to do (Output): the
// messages to send, the received entries to apply, and whether the session
// ended and how. It does no I/O, reads no clock, starts no goroutine and
// imports no networking: package p2p drives it over a libp2p stream, and
// tests and simulations step it directly, message by message.
//
// The protocol (the messages are replicationv1.SyncMessage):
//
//  1. The initiator sends a hello: tree shape, root, last contact, purged
//     through, its per-level cap and its frontiers.
//  2. The responder refuses (a hello with error set, then ends) a peer it
//     does not admit, a tree of another shape, or a stale side (below).
//     Otherwise it answers with its hello; equal roots end the session
//     there. Else it also sends level 0: the hashes of the root's children.
//  3. The sides take turns: each compares the level it received with its
//     own tree and sends the next level down for the children that
//     differ, at most the session's cap of them (the smaller of both
//     hellos' caps; a capped level makes the session partial, a flag
//     every later level and digest message carries). No difference left:
//     it sends done and the session is complete.
//  4. The side that receives the last level (its children are buckets)
//     sends digests (key hash, HLC, entry hash) of its keys in the
//     differing buckets, in frames of DigestsPerFrame.
//  5. The other side reconciles them with its own (merkle.Reconcile) and
//     answers with the entries the first lacks or holds older, in frames
//     of about EntryFrameBytes, the first carrying the key hashes it
//     wants.
//  6. The first side applies those, sends the wanted entries, and the
//     other applies them and confirms with done.
//
// A done carrying an error ends the session at any point (the peer gave
// up). A complete (not partial) session means each side now holds
// everything the other held when it sent its hello: the driver then
// records the contact time and merges the peer's frontiers.
//
// Invariants:
//
//   - Nothing received is trusted. A message of the wrong kind for the
//     state, a tree of another shape, a level that is not the next one
//     down or names a node not below those this side sent, digests or
//     entries outside the session's buckets, wants that are not ascending
//     key hashes in those buckets or outnumber the digests sent, and
//     entries nobody asked for end the session with ErrMalformed; more
//     than MaxDiffNodes nodes in a level, MaxDigests digests or MaxEntries
//     entries, with ErrTooLarge. The entries of a message that fails are
//     never output for applying.
//   - Every level sent holds at most MaxDiffNodes nodes (after the
//     hellos, the smaller cap of the two), so a session's cost follows
//     the difference, up to the caps, and a larger difference is repaired
//     over several sessions, each partial but the last.
//   - Staleness: a session is refused (ErrStale, *StaleError) when either
//     side's last contact is older than a tombstone the other purged: it
//     could bring deleted keys back. Tombstones themselves travel as
//     entries; dropping those past the grace period is the store's job.
//   - Output.Apply holds batches of at most ApplyBatchEntries entries and
//     ApplyBatchBytes (a larger single entry alone), and an output never
//     asks to send before its batches are applied: the done that ends the
//     leaf step goes out after the entries it confirms are durable.
//   - Continue ends: each call reads at most ReadBatch key hashes' entries
//     from the Replica, and the reply has finitely many.
//   - Every call returns; after an output with Done, Step and Continue
//     return ErrEnded. Only a broken internal invariant panics.
//
// What a driver does, in order:
//
//  1. Read this side's Local (the frontier before the root) and create the
//     session: NewInitiator, or NewResponder with the admission decision.
//  2. Call Start, then loop on its Output: write each Apply batch durably,
//     in order; send Send, in order; if Done, stop with Err; if More, call
//     Continue; otherwise read and decode the peer's next message (a
//     frame that does not decode, or a stream error, ends the session
//     without the machine) and call Step with it.
//  3. After a complete session that is not partial, record the contact
//     time read before step 1, and take PeerFrontier.
//  4. On ErrRefused, let the peer read the refusal (close the stream
//     rather than resetting it).
package antientropy
