// Package netsim is a simulated network for libp2p hosts: go-libp2p's
// simnet (x/simlibp2p's QUIC over simulated UDP links with latency and
// bandwidth) with the faults Chorus's tests and simulations need on top:
// jitter, random packet loss and partitions. It is shared by the
// simulation harness (internal/sim) and by the tests of p2p and
// internal/node that run on virtual time; it imports nothing of Chorus,
// so that p2p's own tests can use it without an import cycle.
//
// Used inside a testing/synctest bubble (Run), every timer of the hosts,
// the links and the code under test runs on the bubble's virtual clock:
// a suspicion timeout or a sync interval costs no wall time.
//
// Invariants:
//
//   - Node i's address is ListenAddr(i); Partition and Isolate name nodes
//     by that index.
//   - A partition drops a packet between nodes of different groups where
//     it is sent (faultConn): the connections stay open, as they do when a
//     real network drops packets, until the transport gives up on them.
//   - Loss and jitter draw from one seeded source, in the order goroutines
//     send packets.
//   - Close the hosts before the network. In a bubble, Run waits
//     LingerAfterClose of virtual time at the end for goroutines that
//     outlive Close and cannot be waited for (goleveldb's pool drainer
//     lingers up to 1 s after DB.Close).
//
// Pitfalls met so far: identify's address discovery stalls synctest (off
// in HostOptions); a component closed one by one while the others keep
// running keeps the clock busy (close them together); a real socket or a
// goroutine started outside the bubble does not advance its clock.
package netsim
