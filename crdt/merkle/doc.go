// Package merkle is the pure logic of anti-entropy: a Merkle tree over a
// replica's entries and the steps that find where two trees differ. It does
// no I/O and keeps no goroutines; package crdt/store keeps a Tree up to date
// and p2p runs the sync protocol with these steps.
//
// Shape: a fixed-fanout tree over key hashes. A key's 64-bit hash
// (KeyHash) places it in one of Buckets leaf buckets by its top 20 bits;
// the tree has Depth levels of Fanout children above the buckets. Every
// node's hash is the sum, modulo 2^64, of the hashes (EntryHash) of the
// entries below it, so:
//
//   - a change is an O(Depth) update (subtract the old entry's hash, add the
//     new one's) with no rebuild and no ordering: two replicas with the same
//     entries have the same tree whatever order the entries arrived in;
//   - the tree's shape never depends on the data, so two trees are compared
//     node by node without exchanging their structure (a Merkle search tree
//     would adapt its shape to the keys, at the cost of a structure to
//     persist and rebalance).
//
// Fanout 16 and depth 5 (1,048,576 buckets) fit a million keys at about one
// key a bucket: finding d differing keys costs about 16·8 bytes of hashes per
// differing node at each level, and the leaf step sends one Digest (24
// bytes) per key of a differing bucket. The tree takes at most 8.9 MB,
// allocated in pages as keys arrive (about 140 KB for an empty replica).
//
// Invariants:
//
//   - An entry's hash covers what replicas agree on: key, HLC, origin,
//     tombstone and value. One (HLC, origin) should name one write, but two
//     nodes that share an identity (a copied data folder) can give one
//     (HLC, origin) two values; hashing the value makes that divergence show
//     in the roots, and Reconcile's tie rule (exchange both ways) lets the
//     merge settle it by crdt.Compare's total order. Local fields
//     (revisions) are not hashed.
//   - Hash(level, i) == sum of Hash(level+1, i*Fanout+j) for j in 0..Fanout-1,
//     and the buckets' hashes are the sums of their entries' hashes.
//   - The sum is not a cryptographic commitment: a peer allowed to sync can
//     send any entry anyway, and entries are validated on arrival.
package merkle
