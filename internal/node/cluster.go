package node

import (
	"context"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	clusterv1 "github.com/chorus-kv/chorus/proto/chorus/cluster/v1"
)

// clusterServer serves clusterv1.ClusterServiceServer.
type clusterServer struct {
	clusterv1.UnimplementedClusterServiceServer
	node *Node
}

func (s *clusterServer) Members(ctx context.Context, _ *clusterv1.MembersRequest) (*clusterv1.MembersResponse, error) {
	n := s.node
	resp := &clusterv1.MembersResponse{Cluster: n.cfg.Cluster}
	resp.Members = append(resp.Members, &clusterv1.Member{PeerId: n.ID(), Addrs: n.P2PAddrs(), Self: true})
	gossip := map[peer.ID]bool{}
	for _, p := range n.Replicator().TopicPeers() {
		gossip[p] = true
	}
	peers := n.host.Network().Peers()
	slices.Sort(peers)
	for _, p := range peers {
		m := &clusterv1.Member{PeerId: p.String(), Gossip: gossip[p]}
		for _, c := range n.host.Network().ConnsToPeer(p) {
			m.Addrs = append(m.Addrs, c.RemoteMultiaddr().String())
		}
		resp.Members = append(resp.Members, m)
	}
	return resp, nil
}
