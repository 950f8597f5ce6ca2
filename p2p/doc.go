// Package p2p is Chorus's libp2p layer. For now it holds the node's
// identity: an Ed25519 key created on first start in the data folder and
// reused after, so that the node's peer id, which is also the origin id of
// its writes, never changes across restarts. The host, GossipSub broadcast
// and anti-entropy come with replication.
//
// Invariants: the key file is written atomically (temporary file, fsync,
// rename) with mode 0600, and a key file that does not decode is an error,
// never silently replaced, because a new identity would make this node's
// past writes look like another node's.
package p2p
