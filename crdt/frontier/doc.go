// Package frontier decides when a write has reached every live member of
// the cluster: causal stability (Baquero, Almeida and Shoker, "Pure
// operation-based replicated data types", 2017) for a gossip store whose
// writes are LWW registers stamped with an HLC and an origin.
//
// The frontier of origin o at member m, F_m[o], is an HLC such that m holds
// every write of o with a timestamp at or below it, or a newer write for
// the same key (LWW: a newer write replaces an older one, and holding it
// is all a reader of that key can ask for). The stable frontier of o is the
// minimum of F_m[o] over the live members m, this node included; a write
// (o, h) has converged when h is at or below it.
//
// A Tracker holds one node's view: its own frontier per origin, the
// frontiers the other members last announced, which members are live, and
// a few timestamps per origin for the lag figures. It is pure: no
// goroutines, no I/O, no clock reads; every input is an argument, so tests
// drive it deterministically. It is not safe for concurrent use: its owner
// (package p2p's Convergence) guards it with a mutex.
//
// How the own frontier moves (the rules, in order of how often they apply):
//
//  1. Own writes. This node holds all its writes: LocalWrite raises
//     F[self] to the newest committed one. Local timestamps are assigned by
//     the store's single committer, in revision order, so the commit hook
//     sees them in timestamp order.
//  2. Gossip. Every gossip batch of origin o carries prev, the timestamp of
//     o's write just before the batch's first entry (whether that write was
//     gossiped or not), and holds every write of o in (prev, last]. Once
//     the batch is applied here, ObserveBatch raises F[o] to last when
//     F[o] >= prev. Otherwise the range waits as a gap (at most
//     Config.MaxPendingRanges per origin; past it the highest is dropped,
//     which only delays), and is absorbed as soon as F[o] reaches its prev.
//     Batches may arrive in any order, twice, or never: F[o] only moves
//     over ranges it can prove contiguous.
//  3. Anti-entropy. A complete (not partial) session repairs both sides: at
//     its end each holds every entry the other held when it sent its hello
//     (or a newer one for the key). The hello carries the sender's frontier,
//     read before its Merkle root, so Merge takes the element-wise maximum.
//     A session whose roots are equal at the hello is the simplest case of
//     this rule. This is what repairs every gap: lost gossip, writes an
//     origin made while alone or dropped from its full queue, restarts.
//
// Members, joins, leaves, deaths and restarts:
//
//   - Live members are those the failure detector holds Alive or Suspect;
//     Dead and Left members do not count (SetLive). An admitted member the
//     detector has not added yet (it joined a moment ago) counts as live
//     while it announces (package p2p's Convergence decides; without that,
//     a write could converge before the newcomer holds it). The stable frontier
//     therefore moves up when a member dies or leaves, and a member coming
//     back counts again from its last announced frontier: the stable
//     frontier is not monotone across membership changes, and a write that
//     converged among the members live at the time stays converged.
//   - A live member that has announced no frontier (it just joined, runs an
//     older version, or its announcements are lost) holds every origin's
//     stable frontier at zero: nothing converges until it speaks. A joining
//     member starts from nothing and catches up through anti-entropy (which
//     runs on every new connection), so a join holds converged events back
//     until the newcomer has synced.
//   - Announcements carry the sender's epoch, the HLC at which its Tracker
//     was created. Within an epoch a frontier only grows, so announcements
//     merge by maximum, in any order, and a delta (only the origins that
//     moved) is enough. A higher epoch (a restart) replaces what was known
//     of the member; a lower one is ignored.
//
// Dissemination (package p2p's Convergence; the rules that keep it safe and
// its cost per node bounded as the cluster grows):
//
//   - Missing or late announcements only delay: a member's frontier as
//     this node knows it is at most what the member holds, so a lost delta,
//     a full vector not sent yet, or an interval that grows with the
//     cluster hold converged events back and never release one early.
//   - Deltas: what moved since the last announcement, at most every
//     max(Interval, N / ClusterRate) for N live members (100 ms and 200 a
//     second by default), so the whole cluster makes at most ClusterRate
//     announcements a second, whatever N: each is flooded to every node and
//     its signature verified there, so this bounds every node's receiving
//     cost in messages (their bytes grow with the origins that moved).
//   - Full vectors, only when a peer needs one: at start (a new epoch); when
//     a member becomes live or announces an epoch not seen before (it
//     joined or restarted and knows nothing of this node), at most every
//     tenth of the anti-drift interval; and on the anti-drift schedule,
//     every max(FullInterval, N / FullRate) (5 s and 2 a second by
//     default), for a member that missed a delta of an origin that has not
//     moved since. A member that joined learns the others' frontiers from
//     their next deltas and these full vectors: until then it holds its own
//     converged events back, never anyone else's.
//   - A member the failure detector does not know yet counts as live for two
//     anti-drift intervals after its last announcement (it announces a full
//     vector at start).
//   - Mixed versions: the message is unchanged (FrontierUpdate; full is a
//     hint, receivers merge both kinds alike). A node from before this rule
//     announces deltas every 100 ms and full vectors every 5 s whatever N,
//     and counts a member it has not in its detector's view only for 10 s
//     after its last announcement; a newer member that stays idle longer
//     than that in the moment between its join and the older node's
//     detector adding it is not counted by the older node then.
//   - A restarted node starts its own frontier at its epoch for itself (its
//     own writes are durable) and at zero for every other origin; its first
//     gossip batch chains to the epoch, so peers see a gap until a complete
//     anti-entropy session with it (or with a member that has synced with
//     it) proves they hold what it wrote before. A machine crash can lose
//     gossip applied without an fsync; the restarted member announces a
//     lower frontier under its new epoch, and anti-entropy brings the writes
//     back.
//   - A node whose store was removed and rebuilt from its peers (the reset
//     after ErrStale keeps the identity) claims its own earlier writes from
//     its epoch on, before anti-entropy brings them back. They are the
//     writes of a node out of contact for longer than the tombstone grace
//     period: those its peers got converged long ago, and those they never
//     got are gone with its store, so no event waits for them.
//   - A member removed from the member list (Forget) is dropped entirely:
//     its announcements and its frontier as an origin. Its writes that had
//     not converged by then never will; the state stays bounded by the
//     active origins.
//   - Tombstone garbage collection never lowers a frontier. A purged
//     tombstone was older than the grace period, which is far beyond any
//     convergence time, and anti-entropy refuses a peer that could bring the
//     purged key back (package p2p, ErrStale).
//
// Cost: the state is one timestamp per (member, origin) pair, at most
// MaxPendingRanges gap ranges and MaxMarks lag marks per origin, and per
// origin a count and a min-heap entry per distinct frontier among the live
// members (the stable frontier is their minimum); nothing grows with the
// number of writes. An announcement costs O(its origins × log members),
// Stable O(1) amortized; a member going live or dead, or announcing a new
// epoch, costs O(origins × log members).
//
// Lag: for a member m and an origin o, the writes m lacks are those above
// F_m[o] up to the highest frontier any live member holds for o. Its lag is
// the age of the oldest of them this node knows the time of: each own
// commit and each gossip batch leaves a mark (its first timestamp) that is
// kept while some live member has not reached it. When no mark is left
// above F_m[o] (the writes came through anti-entropy), the age of the
// highest frontier is used, a lower bound.
package frontier
