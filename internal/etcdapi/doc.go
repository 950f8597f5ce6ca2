// Package etcdapi serves the etcd v3 gRPC API (the official generated code of
// go.etcd.io/etcd/api/v3) over a Chorus node's store, so that etcd clients
// and tools (clientv3, etcdctl, kube-apiserver's storage layer) can use a
// Chorus node. See README, "The etcd v3 API", for the user's view. The same
// port answers HTTP/1.1 JSON with etcd's own gateway (etcdserverpb/gw),
// calling the gRPC API over a loopback connection: a connection that starts
// with the HTTP/2 preface is gRPC's, any other the gateway's (split.go).
//
// What maps to what:
//
//   - Revisions. etcd's revision is the node's local revision
//     (store.Revision) plus one, everywhere the API shows or takes one
//     (headers, create_revision and mod_revision, Range and watch start
//     revisions, compares, Compact, compact_revision, Status): every change
//     the node's merge makes, local or replicated, gets the next one. The
//     offset is etcd's own numbering: etcd's empty store is at revision 1
//     and its first change gets 2, and kube-apiserver refuses a storage
//     revision of 0, which an empty store has. It is applied here, at the
//     API boundary, rather than by starting the store at 1, because the
//     store's numbering is also the Chorus API's, its watch resume points,
//     its change log and its on-disk records: those stay as they are, and a
//     data folder of an earlier version opens unchanged (its etcd revisions
//     are one higher than that version showed: an etcd client that carries
//     a revision across the upgrade replays one more event from a watch, or
//     fails a Txn guarded on an old mod_revision and reads again). A key's
//     version is the store's. There is no cluster-wide revision: the same
//     key has different revisions on different nodes.
//   - Range reads the node's current state (etcd's serializable read). A
//     Range at a past revision is rebuilt from the current state by undoing,
//     from the change log, every change made since (recordsAt). A revision
//     below the compaction fails with ErrCompacted, as in etcd, even when
//     the log could still rebuild it; a future one with ErrFutureRev.
//   - RangeStream (etcd 3.7) sends a Range in chunks as etcd does: 10 keys
//     first, then doubled or halved toward MaxRequestBytes; every chunk read
//     at the revision current when the stream started (or the request's),
//     rebuilt from the change log if writes landed meanwhile; the header,
//     More and Count on the last chunk only. Sort orders other than key
//     order and revision filters answer Unimplemented, as in etcd.
//   - Put, DeleteRange and a Txn's writes go through store.WriteBatch: one
//     LevelDB batch, fsynced before the answer, replicated by gossip like any
//     write. A DeleteRange of one key writes a tombstone even when the key is
//     unknown here, so it wins over older writes still on their way.
//   - Txn is atomic on this node only: its compares and writes are serialized
//     (keyLocks) against every other etcd-API writer of this node, and its
//     writes land in one batch. Writes through the Chorus API and writes
//     replicated from other nodes do not take these locks, so a Txn's
//     compare-and-write can interleave with them; and two nodes can both
//     accept a Txn guarded on the same mod_revision (the later HLC then wins,
//     cluster-wide). A Txn's writes get consecutive revisions, not one. Its
//     compares, including those of nested Txns, see the state before its
//     writes; a Range that follows a write in the same Txn sees it.
//   - Watch maps a key range to a hub watcher on the range's common prefix
//     and filters the rest. Watch ids are assigned by the server per stream;
//     a start revision below the node's change log gets etcd's compacted
//     response (created, then canceled with compact_revision). A watcher
//     too slow for the hub's buffer is resumed from the change log, as etcd
//     catches up an unsynced watcher. Progress (requests, and progress_notify
//     every ProgressNotifyInterval: the agent's
//     --watch-progress-notify-interval, 10 minutes by default as in etcd)
//     carries a revision up to which every
//     event has been sent (watch.Watcher.Progress).
//   - Compact(C) deletes this node's change log below C (store.Compact to
//     store revision C-1, so the change at C stays and a watch can start at
//     C, as in etcd); it does not touch other nodes. etcd's compact revision
//     is derived from the store's oldest retained revision O (O+1, or 0
//     while the log was never trimmed), so it survives restarts and also
//     follows the node's own trimming (--retain-revisions). A Compact at or
//     below it fails with ErrCompacted. On a store never trimmed, Compact(2)
//     trims nothing, so revision 1 (the empty state) stays readable.
//   - Leases live on the node that granted them. They are saved in
//     Config.LeaseFile (rewritten at most once a second and at
//     Close) and reloaded at start, each with its full TTL again, as etcd
//     does on a leader change; a crash may lose the last second of grants
//     and attachments, and a node that never comes back leaves the keys of
//     its leases (documented limit). A key is attached at the revision of
//     the put that named the lease; a later write of it detaches it. At
//     expiry or Revoke, the keys still attached are deleted in one store
//     batch, so the deletes replicate like any other.
//   - MemberList lists this node (Config.NodeID, with its own client URL)
//     and every member Config.Members returns: the node's one view of its
//     cluster (the member list and the failure detector's states), in which
//     each member's client URLs travel with its own SWIM alive updates
//     (internal/node's etcdMembers, over package p2p's clienturls.go). The
//     package knows members only through the Membership interface: it
//     imports neither package p2p nor libp2p. Nodes of earlier versions
//     served their URL on a JSON protocol of their own
//     (/chorus/<cluster>/etcd-member/1) and do not announce it: in a
//     cluster of mixed versions each side lists the other's members without
//     URLs (an old node's ask of a new one fails: protocol not supported),
//     and no call fails.
//     Each member is named by its peer id's text, and its etcd member id is
//     derived from that text (hashID), so a member has the same id on every
//     node, in their lists and in its own headers. A member held dead or
//     left is listed without URLs (memberList). Status reports APIVersion,
//     the size of the store folder (Config.StorePath), the revision, and the
//     node as its own leader. Alarm lists none.
//   - gRPC's health service (grpc.health.v1) answers SERVING until Close.
//   - Every other call answers Unimplemented with a message naming it.
//
// Limits are etcd's where etcd has them: requests up to 1.5 MiB
// (ErrRequestTooLarge), 128 operations per Txn branch (ErrTooManyOps), a key
// written once per Txn (ErrDuplicateKey), lease TTLs up to 9e9 s; and the
// node's own key and value limits, reported as InvalidArgument with the limit
// (also on keys a request only names: range, delete, compare and watch keys).
// Beyond etcd, bounds on what one client may make the server hold: Txns nest
// at most MaxTxnDepth levels (checked on the wire form before decoding: see
// decodeTxn); the key-values a Range or a Txn holds are bounded in bytes
// (Config.MaxRangeResponseBytes, ResourceExhausted saying to read in pages;
// RangeStream is not bounded by it); expensive reads (expensiveRange) take a
// slot of a semaphore (Config.MaxConcurrentRangeReads); a stream holds at
// most Config.MaxWatchesPerStream watches, and the hub bounds the node's.
//
// What a caller does, in order: Start with the node's store, hub and
// membership view, and the paths it chose in its data folder (StorePath,
// LeaseFile: the layout of the folder is the node's); Close before closing
// the hub and the store. CheckWrite, when given, is the node's rule on
// which keys clients may write (the node refuses its reserved prefix). The server owns its goroutines
// (stream receivers, one sender per watch, the lease expiry loop) and Close
// waits for them.
package etcdapi

import _ "github.com/chorus-kv/chorus/internal/protoconflict" // before etcd's generated code registers
