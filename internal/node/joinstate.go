package node

import (
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/p2p"
)

// JoinState returns where this node stands with its cluster and a sentence
// that explains it (p2p.DecideJoinState).
func (n *Node) JoinState() (p2p.JoinState, string) {
	f := n.admission.JoinFacts()
	f.Name = n.cfg.Name
	f.Bootstrap = len(n.cfg.Bootstrap) > 0 || n.cfg.MDNS
	return p2p.DecideJoinState(f)
}

// admitCommand is the command that admits this node, run on a member.
func (n *Node) admitCommand() string {
	return p2p.JoinFacts{Self: n.ID(), Name: n.cfg.Name}.AdmitCommand()
}

// logJoinChange logs the join state when it differs from *last, and
// records it there. The states a newcomer's operator needs to see are
// logged once each: not admitted (with the command that admits the node),
// joined, removed. It runs on enforceAdmission's goroutine.
func (n *Node) logJoinChange(last *p2p.JoinState) {
	state, detail := n.JoinState()
	if state == *last {
		return
	}
	prev := *last
	*last = state
	if n.admission.JoinSecret() && (state == p2p.JoinMember || state == p2p.JoinRemoved) {
		return // selfAdmit logs these with the join secret
	}
	if prev == p2p.JoinStandalone && state == p2p.JoinMember {
		return // AddMember logged that this node founded a cluster
	}
	switch state {
	case p2p.JoinNotAdmitted:
		n.cfg.Logger.Warn("not admitted: "+detail, "node_id", n.ID(), "admit_with", n.admitCommand())
	case p2p.JoinMember:
		n.cfg.Logger.Info("joined the cluster: this node is on the member list", "node_id", n.ID(), "name", n.cfg.Name, "was", string(prev))
	case p2p.JoinRemoved:
		n.cfg.Logger.Error("removed from the cluster: "+detail, "node_id", n.ID(), "readmit_with", n.admitCommand())
	case p2p.JoinJoining:
		n.cfg.Logger.Info("joining: "+detail, "node_id", n.ID(), "was", string(prev))
	}
}

// watchSeen records every peer this node has had a connection to since it
// started, so that members shows an admitted member it never heard from as
// unseen rather than alive, then dead.
func (n *Node) watchSeen() {
	n.host.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) { n.seen.Store(c.RemotePeer(), true) },
	})
}

// everSeen reports whether this node has had a connection to p since it
// started.
func (n *Node) everSeen(p peer.ID) bool {
	_, ok := n.seen.Load(p)
	return ok
}
