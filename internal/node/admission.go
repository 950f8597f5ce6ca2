package node

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/internal/apierr"
	"github.com/chorus-kv/chorus/p2p"
	clusterv1 "github.com/chorus-kv/chorus/proto/chorus/cluster/v1"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// CheckWritable refuses client writes under p2p.ReservedPrefix, with a gRPC
// InvalidArgument status.
func CheckWritable(key []byte) error {
	if err := p2p.CheckWritable(key); err != nil {
		// The message without the sentinel's "p2p: key is reserved: ": it
		// already says so, and the CLI adds its own prefix.
		msg := strings.TrimPrefix(err.Error(), p2p.ErrReserved.Error()+": ")
		return apierr.New(codes.InvalidArgument, apierr.ReasonBadRequest, msg, nil)
	}
	return nil
}

// defaultName is a node's name when none is given: the host name and the
// end of the peer id, so that nodes on one host differ.
func defaultName(id peer.ID) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	s := id.String()
	return host + "-" + s[max(0, len(s)-6):]
}

// logAdmission says at start where this node stands. A node founds a
// cluster lazily: alone, it needs no member list; the first AddMember on a
// node with an empty list and no bootstrap peers admits the node itself too.
// A node with bootstrap peers and an empty list is joining: it lets its
// bootstrap peers in until it has synced the list from them (and found
// itself on it).
func (n *Node) logAdmission(bootstrap int) {
	switch {
	case n.cfg.OpenAdmission:
		n.cfg.Logger.Warn("admission is open: any peer that reaches this node may join the cluster")
	case n.admission.JoinSecret() && n.admission.IsRemoved(n.identity.ID):
		// selfAdmit says so.
	case n.admission.JoinSecret():
		n.cfg.Logger.Info("join secret: peers holding it connect and join; this node adds itself to the member list after its first sync (at once without bootstrap peers)",
			"node_id", n.ID(), "member", n.admission.Joined())
	case n.admission.Joined():
	case len(n.admission.Members()) > 0:
		n.cfg.Logger.Warn("this node is not on the cluster's member list (it was removed, or not yet admitted): peers will refuse it",
			"node_id", n.ID(), "admit_with", n.admitCommand())
	case bootstrap > 0:
		n.cfg.Logger.Info("joining: waiting to be admitted by a member and to sync the member list from the bootstrap peers",
			"node_id", n.ID(), "admit_with", n.admitCommand())
	}
}

func (n *Node) writeMember(ctx context.Context, id peer.ID, name string) (int64, error) {
	rec, err := proto.Marshal(&replicationv1.MemberRecord{Name: name, AddedBy: n.ID(), AddedUnixMs: time.Now().UnixMilli()})
	if err != nil {
		return 0, err
	}
	c, err := n.store.Put(ctx, p2p.MemberKey(id), rec)
	if err != nil {
		return 0, err
	}
	return c.Record.ModRevision, nil
}

// enforceAdmission closes connections to peers that are no longer
// admitted: at once for those removed (from the commit hook), and every
// second for any other (a connection let in while joining, say).
//
// With a join secret it also adds this node to the member list once it may
// (selfAdmit): at once when it has no bootstrap peers, else after its first
// completed sync.
func (n *Node) enforceAdmission() {
	defer close(n.admitDone)
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	n.selfAdmit()
	joinState, _ := n.JoinState() // logAdmission said it at start
	cut := func(p peer.ID) {
		if err := n.admission.Check(p); err != nil && n.host.Network().Connectedness(p) == network.Connected {
			n.cfg.Logger.Info("closing the connections to a peer that is not a member", "peer", p)
			_ = n.host.Network().ClosePeer(p)
		}
	}
	for {
		select {
		case <-n.stopAdmit:
			return
		case p := <-n.removed:
			cut(p)
		case <-n.syncedCh:
			n.selfAdmit()
		case <-ticker.C:
			for _, p := range n.host.Network().Peers() {
				cut(p)
			}
		}
		n.logJoinChange(&joinState)
	}
}

// selfAdmit writes this node's own member record when it holds the join
// secret, is not on the list, was not removed, and either has no bootstrap
// peers (it founds the cluster) or has completed a sync (so its list, with
// the removal marks, is as complete as a peer's). It runs on
// enforceAdmission's goroutine.
func (n *Node) selfAdmit() {
	a := n.admission
	if !a.JoinSecret() || a.Joined() {
		return
	}
	if a.IsRemoved(n.identity.ID) {
		if !n.removedLogged {
			n.removedLogged = true
			n.cfg.Logger.Error("this node was removed from the cluster: the join secret does not admit it again under this identity",
				"node_id", n.ID(), "readmit_with", "chorus member add "+n.ID())
		}
		return
	}
	if len(n.cfg.Bootstrap) > 0 && !n.firstSync.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.writeMember(ctx, n.identity.ID, n.cfg.Name); err != nil {
		n.cfg.Logger.Warn("could not add this node to the member list", "err", err)
		return
	}
	n.cfg.Logger.Info("joined the cluster with the join secret: this node is on the member list", "node_id", n.ID(), "name", n.cfg.Name)
}

// bothGaters lets a connection through only if both gaters do (tests add a
// partition to admission).
type bothGaters struct{ a, b connmgr.ConnectionGater }

func (g bothGaters) InterceptPeerDial(p peer.ID) bool {
	return g.a.InterceptPeerDial(p) && g.b.InterceptPeerDial(p)
}

func (g bothGaters) InterceptAddrDial(p peer.ID, m ma.Multiaddr) bool {
	return g.a.InterceptAddrDial(p, m) && g.b.InterceptAddrDial(p, m)
}

func (g bothGaters) InterceptAccept(c network.ConnMultiaddrs) bool {
	return g.a.InterceptAccept(c) && g.b.InterceptAccept(c)
}

func (g bothGaters) InterceptSecured(d network.Direction, p peer.ID, c network.ConnMultiaddrs) bool {
	return g.a.InterceptSecured(d, p, c) && g.b.InterceptSecured(d, p, c)
}

func (g bothGaters) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	if ok, r := g.a.InterceptUpgraded(c); !ok {
		return ok, r
	}
	return g.b.InterceptUpgraded(c)
}

// AddMember admits a peer.
func (s *clusterServer) AddMember(ctx context.Context, req *clusterv1.AddMemberRequest) (*clusterv1.AddMemberResponse, error) {
	p, err := decodePeer(req.GetPeerId())
	if err != nil {
		return nil, err
	}
	if len(req.GetName()) > 253 {
		return nil, apierr.New(codes.InvalidArgument, apierr.ReasonBadRequest, fmt.Sprintf("name is %d bytes; the limit is 253", len(req.GetName())), nil)
	}
	name := req.GetName()
	if name == "" {
		name = p.String()
	}
	n := s.node
	prev, existed := n.admission.Members()[p]
	if n.admission.IsRemoved(p) {
		// An operator re-admits a removed member: lift its removal mark.
		if _, err := n.store.Delete(ctx, p2p.RemovedKey(p)); err != nil {
			return nil, toStatus(err)
		}
	}
	if !n.admission.Joined() {
		if len(n.admission.Members()) > 0 || len(n.cfg.Bootstrap) > 0 {
			return nil, apierr.New(codes.FailedPrecondition, apierr.ReasonBadRequest,
				"this node is not a member of its cluster yet (it is joining, or was removed): add members from a node that is", nil)
		}
		// The first member added founds the cluster: this node admits itself.
		if _, err := n.writeMember(ctx, n.identity.ID, n.cfg.Name); err != nil {
			return nil, toStatus(err)
		}
		n.cfg.Logger.Info("founded a cluster: this node is its first member", "node_id", n.ID(), "name", n.cfg.Name)
	}
	rev, err := n.writeMember(ctx, p, name)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &clusterv1.AddMemberResponse{Revision: rev, Existed: existed, PreviousName: prev.GetName()}
	switch {
	case !existed:
		n.cfg.Logger.Info("admitted a peer to the member list: it joins at its next connection", "peer", p, "name", name)
	case prev.GetName() != name:
		n.cfg.Logger.Info("renamed a member", "peer", p, "from", prev.GetName(), "to", name)
	}
	return resp, nil
}

// RemoveMember removes a member.
func (s *clusterServer) RemoveMember(ctx context.Context, req *clusterv1.RemoveMemberRequest) (*clusterv1.RemoveMemberResponse, error) {
	p, err := decodePeer(req.GetPeerId())
	if err != nil {
		return nil, err
	}
	if p == s.node.identity.ID {
		return nil, apierr.New(codes.InvalidArgument, apierr.ReasonBadRequest, "a node cannot remove itself; run `chorus member remove` against another member", nil)
	}
	if !s.node.admission.IsMember(p) {
		return nil, apierr.New(codes.NotFound, apierr.ReasonBadRequest, "peer "+p.String()+" is not on the member list", nil)
	}
	// The removal mark first: a node that sees it refuses the peer whatever
	// the member key says, and the join secret cannot re-admit it.
	mark, err := proto.Marshal(&replicationv1.MemberRecord{Name: s.node.admission.Members()[p].GetName(), AddedBy: s.node.ID(), AddedUnixMs: time.Now().UnixMilli()})
	if err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.node.store.Put(ctx, p2p.RemovedKey(p), mark); err != nil {
		return nil, toStatus(err)
	}
	c, err := s.node.store.Delete(ctx, p2p.MemberKey(p))
	if err != nil {
		return nil, toStatus(err)
	}
	return &clusterv1.RemoveMemberResponse{Revision: c.Record.ModRevision}, nil
}

func decodePeer(s string) (peer.ID, error) {
	p, err := peer.Decode(s)
	if err != nil {
		return "", apierr.New(codes.InvalidArgument, apierr.ReasonBadRequest,
			"peer_id "+quote(s)+" is not a libp2p peer id: "+err.Error(), nil)
	}
	return p, nil
}
