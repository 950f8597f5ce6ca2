package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/apierr"
	"github.com/chorus-kv/chorus/p2p/swim"
	clusterv1 "github.com/chorus-kv/chorus/proto/chorus/cluster/v1"
)

// statusTimeout bounds how long Members waits for a peer's status.
const statusTimeout = 2 * time.Second

// clusterServer serves clusterv1.ClusterServiceServer.
type clusterServer struct {
	clusterv1.UnimplementedClusterServiceServer
	node *Node
}

// Members lists this node, the admitted members and the connected peers,
// each with its failure-detector state and, for this node and connected
// peers, the Merkle root it reports (asked of all peers at once).
func (s *clusterServer) Members(ctx context.Context, _ *clusterv1.MembersRequest) (*clusterv1.MembersResponse, error) {
	n := s.node
	members := n.memberView()
	resp := &clusterv1.MembersResponse{Cluster: n.cfg.Cluster}
	state, detail := n.JoinState()
	resp.JoinState, resp.JoinDetail = string(state), detail
	gossip := map[string]bool{}
	for _, p := range n.Replicator().TopicPeers() {
		gossip[p.String()] = true
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	lags := n.Convergence().Lag()
	var wg sync.WaitGroup
	for _, m := range members {
		if p, err := peer.Decode(m.PeerId); err == nil {
			if l := lags[p]; l.Known {
				ms := l.Lag.Milliseconds()
				m.LagMs = &ms
			}
		}
		if m.Self {
			local := n.sync.LocalStatus()
			m.Addrs = n.P2PAddrs()
			m.MerkleRoot, m.Converged, m.Revision, m.Keys, m.Hlc = local.GetMerkleRoot(), true, local.GetRevision(), local.GetKeys(), local.GetHlc()
			continue
		}
		p, err := peer.Decode(m.PeerId)
		if err != nil {
			continue
		}
		m.Gossip = gossip[m.PeerId]
		if n.host.Network().Connectedness(p) != network.Connected {
			m.StatusError = "not connected"
			continue
		}
		for _, c := range n.host.Network().ConnsToPeer(p) {
			m.Addrs = append(m.Addrs, c.RemoteMultiaddr().String())
		}
		wg.Go(func() {
			st, err := n.sync.QueryStatus(ctx, p)
			if err != nil {
				m.StatusError = err.Error()
				return
			}
			m.MerkleRoot, m.Revision, m.Keys, m.Hlc = st.GetMerkleRoot(), st.GetRevision(), st.GetKeys(), st.GetHlc()
			n.catchUp.notePeerKeys(p, st.GetKeys())
			m.Converged = st.GetMerkleRoot() == n.store.MerkleRoot()
		})
	}
	wg.Wait()
	resp.Members = members
	// After the queries, which noted the members' key counts.
	cu := n.CatchUp(ctx, false)
	resp.CatchUpState, resp.CatchUpDetail, resp.CatchUpReceived, resp.CatchUpTotal = string(cu.State), cu.Detail, cu.Received, cu.Total
	return resp, nil
}

// memberView merges the member list, the failure detector's view and the
// connected peers, sorted by peer id; self first.
func (n *Node) memberView() []*clusterv1.Member {
	states := map[string]swim.Member{}
	for _, m := range n.members.Members() {
		states[m.ID] = m
	}
	admitted := n.admission.Members()
	ids := map[string]bool{n.ID(): true}
	for id := range admitted {
		ids[id.String()] = true
	}
	for _, p := range n.host.Network().Peers() {
		ids[p.String()] = true
	}
	for id := range states {
		ids[id] = true
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		if id != n.ID() {
			sorted = append(sorted, id)
		}
	}
	slices.Sort(sorted)
	sorted = append([]string{n.ID()}, sorted...)
	out := make([]*clusterv1.Member, 0, len(sorted))
	for _, id := range sorted {
		m := &clusterv1.Member{PeerId: id, Self: id == n.ID(), State: "unknown"}
		if p, err := peer.Decode(id); err == nil {
			if rec, ok := admitted[p]; ok {
				m.Admitted, m.Name = true, rec.GetName()
			}
		}
		if n.cfg.OpenAdmission || m.Self && len(admitted) == 0 {
			m.Admitted = true // a lone node needs no list until it admits a second
		}
		if m.Self && m.Name == "" {
			m.Name = n.cfg.Name
		}
		st, ok := states[id]
		if !ok && m.Admitted && !m.Self {
			if p, err := peer.Decode(id); err == nil && !n.everSeen(p) {
				m.State = "unseen" // admitted, not yet in the failure detector
			}
		}
		if ok {
			m.State, m.Incarnation = st.State.String(), st.Incarnation
			if !st.LastHeard.IsZero() {
				m.LastHeardUnixMs = st.LastHeard.UnixMilli()
			}
			// The detector adds a member as alive at incarnation 0; a
			// node that ever ran announces a clock-based incarnation. At 0
			// and never connected, this node has not heard from it at all.
			if p, err := peer.Decode(id); err == nil && !m.Self && st.Incarnation == 0 && !n.everSeen(p) {
				m.State, m.LastHeardUnixMs = "unseen", 0
			}
		}
		out = append(out, m)
	}
	return out
}

// WatchMembers streams the member view: all of it first, then the members
// whose state, incarnation, name or admission changed, and those gone.
func (s *clusterServer) WatchMembers(_ *clusterv1.WatchMembersRequest, stream grpc.ServerStreamingServer[clusterv1.WatchMembersResponse]) error {
	n := s.node
	key := func(m *clusterv1.Member) string {
		return fmt.Sprintf("%s|%d|%s|%v", m.GetState(), m.GetIncarnation(), m.GetName(), m.GetAdmitted())
	}
	sent := map[string]string{}
	for {
		changed := n.members.Changed()
		view := n.memberView()
		resp := &clusterv1.WatchMembersResponse{}
		seen := map[string]bool{}
		for _, m := range view {
			seen[m.PeerId] = true
			if k := key(m); sent[m.PeerId] != k {
				sent[m.PeerId] = k
				resp.Members = append(resp.Members, m)
			}
		}
		for id := range sent {
			if !seen[id] {
				delete(sent, id)
				resp.Removed = append(resp.Removed, id)
			}
		}
		slices.Sort(resp.Removed)
		if len(resp.Members) > 0 || len(resp.Removed) > 0 {
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
		select {
		case <-stream.Context().Done():
			return toStatus(stream.Context().Err())
		case <-n.closing:
			return toStatus(store.ErrClosed)
		case <-changed:
		case <-time.After(time.Second): // connections come and go without a detector change
		}
	}
}

// Sync runs one anti-entropy session with a connected peer.
func (s *clusterServer) Sync(ctx context.Context, req *clusterv1.SyncRequest) (*clusterv1.SyncResponse, error) {
	p, err := peer.Decode(req.GetPeerId())
	if err != nil {
		return nil, apierr.New(codes.InvalidArgument, apierr.ReasonBadRequest,
			"peer_id "+quote(req.GetPeerId())+" is not a libp2p peer id: "+err.Error(), nil)
	}
	if p == s.node.identity.ID {
		return nil, apierr.New(codes.InvalidArgument, apierr.ReasonBadRequest, "peer_id is this node's own id; name a peer", nil)
	}
	if s.node.host.Network().Connectedness(p) != network.Connected {
		return nil, apierr.New(codes.FailedPrecondition, apierr.ReasonPeerNotConnected,
			"peer "+p.String()+" is not connected to this node; `chorus members` lists the connected ones", nil)
	}
	st, err := s.node.sync.SyncWith(ctx, p)
	if err != nil {
		return nil, toStatus(err)
	}
	return &clusterv1.SyncResponse{
		PeerId:          p.String(),
		EntriesSent:     int64(st.EntriesSent),
		EntriesReceived: int64(st.EntriesReceived),
		EntriesApplied:  int64(st.EntriesApplied),
		BytesSent:       st.BytesSent,
		BytesReceived:   st.BytesReceived,
		RoundTrips:      int64(st.RoundTrips),
		Partial:         st.Partial,
		DurationSeconds: st.Duration.Seconds(),
		LocalRoot:       st.LocalRoot,
		PeerRoot:        st.PeerRoot,
	}, nil
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return "\"" + s + "\""
}
