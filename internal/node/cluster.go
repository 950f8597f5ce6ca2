package node

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/grpc/codes"

	"github.com/chorus-kv/chorus/internal/apierr"
	clusterv1 "github.com/chorus-kv/chorus/proto/chorus/cluster/v1"
)

// statusTimeout bounds how long Members waits for a peer's status.
const statusTimeout = 2 * time.Second

// clusterServer serves clusterv1.ClusterServiceServer.
type clusterServer struct {
	clusterv1.UnimplementedClusterServiceServer
	node *Node
}

// Members lists this node and its connected peers, each with the Merkle
// root it reports, asked of all peers at once.
func (s *clusterServer) Members(ctx context.Context, _ *clusterv1.MembersRequest) (*clusterv1.MembersResponse, error) {
	n := s.node
	local := n.sync.LocalStatus()
	resp := &clusterv1.MembersResponse{Cluster: n.cfg.Cluster}
	resp.Members = append(resp.Members, &clusterv1.Member{
		PeerId: n.ID(), Addrs: n.P2PAddrs(), Self: true,
		MerkleRoot: local.GetMerkleRoot(), Converged: true, Revision: local.GetRevision(), Keys: local.GetKeys(),
	})
	gossip := map[peer.ID]bool{}
	for _, p := range n.Replicator().TopicPeers() {
		gossip[p] = true
	}
	peers := n.host.Network().Peers()
	slices.Sort(peers)
	members := make([]*clusterv1.Member, len(peers))
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, p := range peers {
		m := &clusterv1.Member{PeerId: p.String(), Gossip: gossip[p]}
		for _, c := range n.host.Network().ConnsToPeer(p) {
			m.Addrs = append(m.Addrs, c.RemoteMultiaddr().String())
		}
		members[i] = m
		wg.Go(func() {
			st, err := n.sync.QueryStatus(ctx, p)
			if err != nil {
				m.StatusError = err.Error()
				return
			}
			m.MerkleRoot, m.Revision, m.Keys = st.GetMerkleRoot(), st.GetRevision(), st.GetKeys()
			m.Converged = st.GetMerkleRoot() == n.store.MerkleRoot()
		})
	}
	wg.Wait()
	resp.Members = append(resp.Members, members...)
	return resp, nil
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
