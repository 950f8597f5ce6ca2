// Package nemesis is Chorus's fault-injection suite: five real agents, each
// in its own network namespace, under a random schedule of faults drawn from
// a seed, with checkers for what must hold whatever the faults.
//
// The test (TestNemesis, Linux only, as root; skipped, saying why, without
// root, ip or nft, with -short, or with CHORUS_NEMESIS=0):
//
//  1. builds the chorus binary and makes a network: a bridge in a namespace
//     of its own, one namespace per node with a veth to it and an address of
//     its own, and a veth from the test's namespace, through which clients
//     reach the nodes. Names carry the test process's id and a random id; a
//     run deletes what it made, and deletes namespaces left by an earlier run
//     whose process is gone. The host's firewall is never touched.
//  2. starts the agents, which find each other through --bootstrap addresses
//     without peer ids and a shared --join-secret.
//  3. runs a writer per node through the Go SDK (random keys of a shared key
//     space, unique values), recording every write with what the node
//     returned (HLC, origin, revision) or, after an error or a timeout, as a
//     write of unknown outcome; and a watcher per node, which resumes after
//     every break from the revision after the last event it received.
//  4. plays the schedule (NewSchedule): rounds of steps, each step one or two
//     faults held for a while and then healed: kill -9 (healed by a restart
//     on the same data folder), SIGSTOP (SIGCONT), partitions 1|4 and 2|3
//     (nftables rules in the nodes' namespaces dropping the other side's
//     packets), and clock skew (a restart with the agent's test-only
//     CHORUS_TEST_CLOCK_OFFSET, healed by a restart without it).
//  5. at the end of each round: pauses the writers, heals, and measures the
//     time until every node has the same Merkle root and holds every
//     acknowledged write; then checks, on every node, that no acknowledged
//     write is lost and that LWW winners agree and are right (History). A
//     round whose acknowledged writes are stamped more than the agents'
//     max clock offset past the heal (a clock that ran ahead) cannot
//     converge before the peers' clocks catch up (History.ClockWait): it
//     is reported apart, with that wait.
//  6. at the end: checks each watcher's stream against its node's change log
//     replayed over the same revisions (CheckStream: no gap, no duplicate),
//     and prints the seed, the writes, the faults, the problems, the
//     convergence times and each node's RSS and descriptor range.
//
// -nemesis.logs DIR keeps the agents' logs, at debug level, in DIR, with a
// line marking each fault's apply and heal in every node's log.
//
// The soak (-nemesis.soak) runs the same for 30 minutes, never restarting n0
// and n1, samples every node's VmRSS and open descriptors every 5 s into a
// CSV file, and requires n0's and n1's curves to stay flat
// (DefaultFlatCriterion).
//
// The schedule, the checkers and the growth criterion are pure functions of
// their inputs, tested without processes; the rest lives in the _test files.
// The schedule is reproducible by seed; the run is not (it runs on real time
// and a real scheduler), so a failure prints the seed and the nodes' logs.
package nemesis
