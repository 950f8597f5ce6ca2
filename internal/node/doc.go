// Package node wires one Chorus node together: its identity (package p2p),
// its store (crdt/store), its watch hub (watch) and its gRPC client API
// (proto/chorus/kv/v1). cmd/chorus's agent command is a thin shell around it,
// and tests start nodes with it in-process.
//
// What a caller does, in order:
//
//  1. Start(cfg): loads or creates the identity, opens the store, starts the
//     hub, starts the cluster-facing components through Peering
//     (peering.go: admission, libp2p host, replicator, syncer, membership,
//     convergence, bootstrapper, wired to each other and to the store's
//     commit hook; internal/sim runs the same Peering on simulated hosts)
//     and serves the client API on cfg.ListenClient.
//  2. ClientAddr tells where it listens (useful with port 0); HTTPAddr where
//     /healthz, /readyz, /metrics and the JSON API (gateway.go, /v1/...)
//     are served (Config.ListenHTTP), and HTTPMux lets a caller add
//     handlers there; RegisterMetrics adds Prometheus collectors to the
//     node's own registry (metrics.go says where a new metric goes).
//  3. Close, once: ends watches, drains in-flight calls (for at most
//     Config.ShutdownTimeout), stops the gRPC server, and closes the store
//     after its queued writes are durable.
//
// The data folder's layout is the node's alone: the identity key
// (p2p.IdentityFile), the store (StoreDir) and, with the etcd API, its
// leases (EtcdLeaseFile); the packages it wires get paths, not the folder.
// The etcd API reads the cluster's members from the node's member view
// (etcd.go: etcdMembers, the one view `chorus members` shows too), where
// each member's etcd client URL comes with its own failure-detector
// updates (p2p.Membership.SetClientURLs).
//
// Snapshots: MaintenanceService.Snapshot streams the store's entries from one
// LevelDB snapshot; RestoreSnapshot builds a new data folder from such a
// file, all or nothing (restore.go).
//
// Invariants: the node owns every goroutine it starts (the gRPC and HTTP
// servers'), and Close waits for them; /readyz answers 200 only once the
// store takes writes and a sync with a peer has completed, or at once for a
// node with no bootstrap peers and no mDNS; with a join secret the node adds
// itself to the member list only when it is not marked removed, and only
// after its first sync when it has bootstrap peers (so it has seen the
// marks); an error from the store reaches the client as a
// gRPC status that says what was wrong and, for a limit, what the limit is.
package node
