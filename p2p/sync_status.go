package p2p

import (
	"bufio"
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// StatusProtocol is the stream protocol that answers a node's NodeStatus.
func StatusProtocol(cluster string) protocol.ID {
	return protocol.ID("/chorus/" + cluster + "/status/1")
}

// QueryStatus asks a connected peer for its NodeStatus.
func (s *Syncer) QueryStatus(ctx context.Context, p peer.ID) (*replicationv1.NodeStatus, error) {
	st, err := s.cfg.Host.NewStream(network.WithNoDial(ctx, "status"), p, StatusProtocol(s.cfg.Cluster))
	if err != nil {
		return nil, fmt.Errorf("p2p: status of %s: %w", p, err)
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(d)
	}
	b, err := readFrame(bufio.NewReader(st), 4<<10)
	if err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("p2p: status of %s: %w", p, err)
	}
	out := &replicationv1.NodeStatus{}
	if err := proto.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("p2p: status of %s: %w: %w", p, ErrUndecodable, err)
	}
	return out, nil
}

// LocalStatus is this node's NodeStatus.
func (s *Syncer) LocalStatus() *replicationv1.NodeStatus {
	st := s.cfg.Store
	return &replicationv1.NodeStatus{
		MerkleRoot: st.MerkleRoot(), Revision: st.Revision(), Hlc: uint64(st.Clock().Last()),
		LastContact: uint64(st.LastContact()), Keys: st.Keys(),
	}
}

func (s *Syncer) handleStatus(st network.Stream) {
	defer st.Close()
	if s.cfg.Admit != nil && s.cfg.Admit(st.Conn().RemotePeer()) != nil {
		_ = st.Reset()
		return
	}
	_ = st.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := proto.Marshal(s.LocalStatus())
	if err := writeFrame(st, b); err != nil {
		_ = st.Reset()
	}
}
