// Package p2p is Chorus's libp2p layer: the node's identity, its host, how
// it finds peers (bootstrap addresses, optionally mDNS), and the Replicator
// that spreads writes over GossipSub and pushes them to peers on demand.
//
// Invariants:
//
//   - The identity key is created once per data folder, written atomically
//     with mode 0600, and never replaced silently: the peer id is the origin
//     id of the node's writes, and a new one would make them look like
//     another node's.
//   - A node publishes only its own writes (origin = its peer id), signed
//     (StrictSign). The topic validator and the push handler reject, and
//     count, any batch that does not decode, is over the size limits, holds
//     an entry over the key or value limits, has a timestamp more than the
//     clock's max offset ahead, or holds an entry whose origin is not the
//     signing (or sending) peer.
//   - Received entries are applied only through store.Apply, so duplicates
//     and stale entries change nothing and every real change gets exactly
//     one revision and one watch event.
//   - Enqueue, called from the store's commit hook, never blocks a writer:
//     past MaxQueueBytes local writes are dropped from gossip and counted.
//   - Topics and protocols are scoped by the cluster name.
//   - Every goroutine here (bootstrapper, publisher, appliers, push handlers,
//     mDNS dials) is stopped by its owner's Close, which waits for it.
//
// What a caller does, in order: LoadOrCreateIdentity; NewHost;
// StartReplicator with the host and the store, and pass Enqueue to the
// store's commit hook; StartBootstrapper (and StartMDNS); at the end Close
// the bootstrapper and mDNS, then the replicator, then the host.
//
// GossipSub is best effort: a message published before the streams to a new
// peer are open, or while a peer is down, is lost. Anti-entropy (next
// issue) repairs that; until then Push (min_replicas) is the way to know a
// write is on other nodes.
package p2p
