// Package p2p is Chorus's libp2p layer: the node's identity, its host, how
// it finds peers (bootstrap addresses, optionally mDNS), the Replicator
// that spreads writes over GossipSub and pushes them to peers on demand,
// and the Syncer that repairs what gossip lost (Merkle anti-entropy).
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
//     While the node is connected to no peer it gossips nothing
//     (Stats.SkippedAlone): anti-entropy, run on every new connection,
//     brings those writes to the first peer.
//   - Topics and protocols are scoped by the cluster name.
//   - A sync session compares the two stores' Merkle trees (package
//     crdt/merkle) level by level; its logic is package p2p/antientropy, a
//     pure state machine that the Syncer drives over the stream (read a
//     frame, Step, apply the batches it returns, write the frames it
//     returns). Its cost follows the difference, not
//     the store: about 16 hashes per differing node per level, one digest
//     per key of a differing bucket, and the differing entries. Every frame
//     is bounded (4 MiB plus one largest entry), a session has a deadline,
//     descends into at most MaxDiffNodes nodes a level (a larger difference
//     is repaired over several sessions), and everything received is
//     checked: the tree shape, node indexes, that digests and entries fall
//     in the session's buckets or answer this node's wants, and, through
//     store.Apply, each entry's limits and clock offset. Entries of any
//     origin are accepted here (a peer relays what it holds). Received
//     entries are applied in batches of at most 256 entries / 256 KiB, each
//     durable before the next is queued, so local writes interleave.
//   - Sessions start on an outbound connection, on Kick (a member alive
//     again after a suspicion or death; at most one per peer per
//     KickInterval; it dials the peer, past libp2p's dial backoff, when
//     there is no connection), every Interval, and as a retry after a failure (250 ms
//     doubling to 4 s, five times; not for a stale node). The periodic
//     sessions and the retries leave out a peer SyncConfig.Skip reports
//     (the node's failure detector holds it suspect or dead), and Abandon
//     cancels the sessions under way with a peer that became suspect. The
//     sessions a node starts run concurrently, at most MaxOutgoingSessions
//     at once and one per peer, so one waiting across a partition holds up
//     no repair with the peers that are back.
//   - Admission: only members on the replicated list (MembersPrefix) may
//     connect (the Admission gater, both directions), gossip, push, sync,
//     ask for status or probe; a joining node trusts its bootstrap peers
//     until it has synced the list and found itself on it. A swarm key
//     (HostConfig.SwarmKey) keeps outsiders from completing a handshake.
//     A removed member carries a mark (RemovedPrefix) that outranks the
//     list and any secret until an operator adds it again.
//   - Join secret (trust model): the cluster's private-network key is
//     derived from a shared secret file and the cluster name
//     (LoadJoinSecret). Completing a libp2p handshake therefore proves the
//     secret, so a host without it cannot connect (it cannot even learn a
//     member's peer id), publish, sync or be admitted. Every host holding
//     it and not marked removed is admitted (Admission.UseJoinSecret) and
//     writes its own record to the member list, so the list still records
//     every node that joined; `member remove` marks a node removed, which
//     cuts it off everywhere, and the secret does not let that identity
//     back in. What the secret does not give: a removed node's operator
//     can start it again under a NEW identity, since it still holds the
//     secret; rotate the secret (restart every node with a new one) to
//     shut out a host, not only an identity. The secret is as strong as
//     its file's protection (mode 0600, a Kubernetes Secret). As with a
//     swarm key, QUIC is off (go-libp2p refuses a private network over it).
//   - Bootstrap by address alone: go-libp2p cannot dial a peer whose id it
//     does not know (the upgrader refuses an outbound connection with no
//     expected id; Noise and TLS check the remote key against it). For an
//     address without /p2p/, the Bootstrapper dials a throwaway id first
//     and reads the id the remote presented from the handshake's
//     sec.ErrPeerIDMismatch (LearnPeerID), then dials that id, which the
//     second handshake authenticates. The learned id is trusted as a
//     bootstrap peer only as an explicit /p2p/ one would be; without a join
//     secret, whoever answers at the address is the one asked for the
//     member list, as whoever holds the /p2p/ id was before. It is learned
//     again at every redial, so a host restarted with a new identity or
//     address behind the same DNS name is found.
//   - Membership drives package swim's failure detector: one probe per
//     interval, indirect probes through others, updates on MembersTopic
//     accepted only from members (each passes on, once, an update that
//     changed its view), a leave announced directly to every peer before
//     Close. A probe's ack carries the responder's suspicion or death of the
//     prober, which refutes it at once; a dead member is probed at once
//     when a connection to it opens or a message from it arrives. Every
//     probe timeout (as configured, not stretched by the health score),
//     each member held suspect or dead for less than redialFor that this
//     node has no connection to is dialled afresh (past libp2p's dial
//     backoff), so a healed partition is found within a probe timeout; the
//     connections to a member held suspect or dead are closed for that,
//     once until it is alive again, and it is dialled at once, since one left
//     open across a partition stays silent after the heal until TCP's next
//     retransmission (reconnect.go).
//   - One peer id, one process: a member's probes carry its process's boot
//     (random number, start time); a member that hears an older boot after
//     a newer one was first heard (by more than twinGrace) answers the
//     newer's probes with a DuplicateIdentity, and that process calls
//     MembershipConfig.OnDuplicateIdentity (the node stops).
//   - Convergence (package crdt/frontier holds the logic): every gossip
//     batch carries the HLC of its origin's previous write (prev_hlc,
//     checked by the validator: below the batch's strictly ascending
//     entries), every sync hello carries the sender's frontiers (read before
//     its root; taken by the other side once the session completes), and
//     each node announces its frontiers on FrontierTopic (what moved, at
//     intervals that grow with the cluster so that it makes at most
//     ConvergenceConfig.ClusterRate announcements a second; everything at
//     start, at a new member or epoch, and against drift: see
//     ConvergenceConfig and crdt/frontier's doc), accepted only from members
//     and within MaxFrontierOrigins. A write has
//     converged once every live member's frontier for its origin reaches it.
//   - A session is refused (ErrStale) when either side's last completed sync
//     is older than a tombstone the other has purged: it could bring deleted
//     keys back.
//   - Every goroutine here (bootstrapper, publisher, appliers, push handlers,
//     mDNS dials, the syncer's loop and sessions) is stopped by its owner's
//     Close, which waits for it.
//
// Each component takes the narrow view of the store it uses (stores.go:
// ReplicatorStore, SyncStore, AdmissionStore), which *store.Store
// satisfies. The Syncer's code is split by concern: sync.go (the Syncer
// and its loop: kicks, retries, periodic sessions), sync_session.go (one
// session over a stream), sync_config.go, sync_stats.go (counters and the
// byte-counting stream), sync_errors.go and sync_status.go (the status
// protocol).
//
// What a caller does, in order (internal/node's Peering does exactly this,
// for the agent and for the simulation in internal/sim):
// LoadOrCreateIdentity; NewAdmission (the member list, from the store);
// NewHost (the admission as its gater); StartReplicator with the host and
// the store (ChainStart: the clock's
// value now, the epoch; OnBatch: Convergence.ObserveBatch), and pass
// Enqueue to the store's commit hook; StartSyncer (LocalFrontier and
// OnMerge: the Convergence's); StartMembership; StartConvergence with the
// same epoch, and pass LocalCommit to the commit hook too;
// StartBootstrapper (and StartMDNS); at the end Close the bootstrapper and
// mDNS, then the convergence, the membership, the syncer, the replicator,
// and the host.
//
// GossipSub is best effort: a message published before the streams to a new
// peer are open, or while a peer is down, is lost. The Syncer repairs that:
// with every peer this node dials, as soon as it connects, and with a random
// connected peer every SyncConfig.Interval. Push (min_replicas) is the way
// to know a write is on other nodes before the call returns.
package p2p
