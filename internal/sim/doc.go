// Package sim runs clusters of complete Chorus nodes on go-libp2p's
// simulated network (x/simlibp2p's QUIC transport over simnet) inside a
// testing/synctest bubble, so that time is virtual: a minute of a
// 300-node cluster's life runs in however long its CPU work takes, and
// timeouts, suspicion timers and sync intervals cost nothing to wait for.
//
// Each Node is the real store (LevelDB in memory), admission (open: every
// peer that connects is a member), Replicator (GossipSub), Syncer (Merkle
// anti-entropy), Membership (SWIM), Convergence and Bootstrapper, wired as
// the agent (internal/node) wires them, on a host made by p2p.NewHostWith.
// The agent's client servers (gRPC, HTTP, the watch hub) are left out.
//
// The network (internal/netsim, shared with the tests that run on virtual
// time) adds, on top of simnet's latency and bandwidth, jitter,
// random packet loss and partitions (faultConn drops what a node sends).
// Kill closes a node as a crash would. A Scenario drives a cluster through
// warm-up, steady writes, a crash and a 50/50 partition and measures, in
// virtual time, convergence, gossip and anti-entropy cost, detection,
// false suspicions and the heal; BenchmarkSimCluster runs it per cluster
// size and `go generate` draws scale.svg from testdata/bench.txt.
//
// Invariants:
//
//   - Every goroutine of a cluster is started inside the bubble and
//     stopped by Cluster.Close (Run waits 2 s of virtual time for
//     goleveldb's pool drainer, which outlives DB.Close by up to 1 s).
//   - The seed fixes the node identities, the bootstrap topology, the
//     detectors' probe order, and the scenario's choices (which node
//     writes, which is killed, who is on which side). Loss and jitter
//     draw from a seeded source too, but in the order goroutines send
//     packets, which the scheduler decides; GossipSub and QUIC draw from
//     their own sources. A run is therefore reproducible in its choices,
//     not bit for bit: figures move by a few percent between runs.
//   - Convergence is measured by the cluster, not by the nodes' own
//     tracker: each node's commit hook counts the followed keys (Put).
//
// What a caller does, in order: inside synctest.Test (or with Run), New;
// let the cluster warm up (time.Sleep in the bubble); Put, Kill,
// Partition and Heal; Close.
package sim

//go:generate go run ./cmd/simchart -in testdata/bench.txt -out scale.svg
