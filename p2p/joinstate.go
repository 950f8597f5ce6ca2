package p2p

import "fmt"

// JoinState is where a node stands with its cluster: `chorus status`,
// `chorus members` and the SDK show it, and the node logs each change.
type JoinState string

// Join states.
const (
	// JoinStandalone: no member list and no bootstrap peers, a cluster of
	// one; its first `chorus member add` founds a cluster.
	JoinStandalone JoinState = "standalone"
	// JoinJoining: not on the member list yet; waiting to reach a
	// bootstrap peer, be admitted and sync the list (or, with the join
	// secret, to add itself after its first sync).
	JoinJoining JoinState = "joining"
	// JoinNotAdmitted: its peers refuse it (they close its connections
	// right after the handshake), or the list it synced does not hold it.
	JoinNotAdmitted JoinState = "not-admitted"
	// JoinMember: on its own member list, or admission is open.
	JoinMember JoinState = "member"
	// JoinRemoved: removed from the cluster; peers refuse it until an
	// operator admits it again.
	JoinRemoved JoinState = "removed"
)

// RefusalsToConclude is how many of its bootstrap peers' connections,
// closed right after the handshake, make a node that is not on its member
// list conclude that it is not admitted (one could be a peer restarting).
const RefusalsToConclude = 2

// JoinFacts are what DecideJoinState decides from.
type JoinFacts struct {
	Self, Name string // this node's peer id and name, for the admit command
	Open       bool   // --admission open
	JoinSecret bool   // the node holds the join secret
	Removed    bool   // this node carries a removal mark
	Member     bool   // this node is on its own member list
	ListSize   int    // members on the list
	Bootstrap  bool   // the node has bootstrap peers (or looks for peers by mDNS)
	// Refusals counts the bootstrap peers' connections closed right after
	// the handshake since the last completed sync.
	Refusals int
}

// AdmitCommand is the command that admits the node on a member.
func (f JoinFacts) AdmitCommand() string {
	cmd := "chorus member add " + f.Self
	if f.Name != "" {
		cmd += " --name " + f.Name
	}
	return cmd
}

// DecideJoinState returns the join state and a sentence that explains it,
// with what to do when something is to be done. It is pure: the caller
// gathers the facts.
func DecideJoinState(f JoinFacts) (JoinState, string) {
	switch {
	case f.Open:
		return JoinMember, "admission is open: every peer that reaches this node is let in"
	case f.Removed:
		return JoinRemoved, fmt.Sprintf("this node was removed from the cluster and its peers refuse it; to admit it again, run on a member: %s", f.AdmitCommand())
	case f.Member:
		return JoinMember, fmt.Sprintf("on the cluster's member list (%d members)", f.ListSize)
	case f.JoinSecret && f.Bootstrap:
		return JoinJoining, "holds the join secret: it adds itself to the member list after its first sync with a peer"
	case f.JoinSecret:
		return JoinJoining, "holds the join secret: it adds itself to the member list"
	case f.ListSize > 0:
		return JoinNotAdmitted, fmt.Sprintf("the member list it holds (%d members) does not name this node; to admit it, run on a member: %s", f.ListSize, f.AdmitCommand())
	case !f.Bootstrap:
		return JoinStandalone, "no member list and no bootstrap peers: a cluster of one; its first `chorus member add` founds a cluster"
	case f.Refusals >= RefusalsToConclude:
		return JoinNotAdmitted, fmt.Sprintf("its bootstrap peers closed %d connections right after the handshake: they do not admit it; to admit it, run on a member: %s", f.Refusals, f.AdmitCommand())
	default:
		return JoinJoining, fmt.Sprintf("waiting to reach a bootstrap peer, be admitted and sync the member list; a member admits it with: %s", f.AdmitCommand())
	}
}
