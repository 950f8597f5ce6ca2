// Package node wires one Chorus node together: its identity (package p2p),
// its store (crdt/store), its watch hub (watch) and its gRPC client API
// (proto/chorus/kv/v1). cmd/chorus's agent command is a thin shell around it,
// and tests start nodes with it in-process.
//
// What a caller does, in order:
//
//  1. Start(cfg): loads or creates the identity, opens the store, starts the
//     hub and serves the client API on cfg.ListenClient.
//  2. ClientAddr tells where it listens (useful with port 0).
//  3. Close, once: ends watches, drains in-flight calls (for at most
//     Config.ShutdownTimeout), stops the gRPC server, and closes the store
//     after its queued writes are durable.
//
// Invariants: the node owns every goroutine it starts (the gRPC server's),
// and Close waits for them; an error from the store reaches the client as a
// gRPC status that says what was wrong and, for a limit, what the limit is.
package node
