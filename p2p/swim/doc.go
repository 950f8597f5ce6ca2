// Package swim decides what failure detection does and when: which member
// to probe, how long to wait, whom to ask for indirect probes, when a
// member becomes Suspect and then Dead, how accusations are refuted, and
// when dead members are forgotten. It follows SWIM (Das, Gupta and
// Motivala, "SWIM: Scalable Weakly-consistent Infection-style Process
// Group Membership Protocol", DSN 2002) with the Lifeguard refinements
// (Dadgar, Phillips and Currey, "Lifeguard: Local Health Awareness for More
// Accurate Failure Detection", 2018), as hashicorp/memberlist implements
// them (state.go, suspicion.go, awareness.go):
//
//   - Local health (awareness): a score 0..AwarenessMaxMultiplier-1 that
//     rises when this node's probes fail without the helpers' nacks, or
//     when it must refute an accusation, and falls with each successful
//     probe. The probe interval and timeout are multiplied by score+1, so a
//     node that is itself slow (CPU starved, GC pauses, a saturated link)
//     accuses others less eagerly.
//   - Dynamic suspicion timeouts: a suspicion starts at
//     SuspicionMaxTimeoutMult times the minimum timeout and shrinks toward
//     the minimum, SuspicionMult * max(1, log10 N) * ProbeInterval, as
//     independent confirmations arrive from other members.
//
// Beyond memberlist, dead members keep being probed with exponential
// backoff (DeadRetryMin..DeadRetryMax) so a healed partition or a
// restarted node is noticed, and are reaped after ReapAfter.
//
// The package is pure: no goroutines, no I/O, no clock reads and no global
// randomness. Every method takes the current time as an argument and all
// randomness comes from Config.Rand, so a test drives a Detector with a
// fake clock and a seeded source and gets the same run every time; the
// timing rules are checked to the millisecond without sleeping. The
// network side (libp2p streams, piggybacking updates on gossip) lives
// around it.
//
// Invariants:
//
//   - Self is always a member and always Alive, unless Leave was called;
//     then it is Left for good.
//   - A member's incarnation never decreases while it is in the table
//     (only Remove or reaping, then Add, start it again at 0). Self's
//     incarnation only rises by refuting.
//   - An update with a lower incarnation than the member's changes
//     nothing; Dead and Left are final for their incarnation.
//   - Every Suspect member has a suspicion deadline; Tick turns it Dead at
//     that deadline, not before.
//   - Updates about members not added are ignored: admission decides who
//     is a member, gossip only what state a member is in.
//   - Each StartProbe moves the health score at most once, by the outcome
//     (Acked or ProbeFailed) of that probe.
//   - Every output (Members, Tick's updates and reaps) is sorted, so the
//     same inputs and seed give the same outputs.
//
// What a caller (the driver, one goroutine owning the Detector) does:
//
//  1. New with this node's ID, a Config with a seeded Rand, and now; Add
//     each admitted member (Remove those that are no longer).
//  2. At NextProbeAt: StartProbe. If it returns a target, ping it, with
//     Accusation(target) piggybacked when there is one.
//  3. If the ack comes within ProbeTimeout, call Acked. If not, ask the
//     members DirectFailed returns to probe the target; an indirect ack
//     before the end of ProbeInterval is also Acked. Otherwise call
//     ProbeFailed with the nacks received and expected, and broadcast the
//     updates it returns.
//  4. For every update received from a peer call Apply, and broadcast the
//     updates it returns. Call Heard for any message from a member.
//  5. Call Tick at NextTickAt (or often, e.g. every gossip interval);
//     broadcast its Dead updates and drop the reaped members' addresses.
//  6. To leave, broadcast the update Leave returns, then stop.
package swim
