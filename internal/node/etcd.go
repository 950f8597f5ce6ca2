package node

import (
	"fmt"
	"net"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/internal/connlimit"
	"github.com/chorus-kv/chorus/internal/etcdapi"
)

// startEtcd serves the etcd v3 API on Config.ListenEtcd.
func (n *Node) startEtcd() error {
	srv, err := etcdapi.Start(etcdapi.Config{
		Listen:          n.cfg.ListenEtcd,
		Store:           n.store,
		Hub:             n.hub,
		NodeID:          n.identity.ID,
		Cluster:         n.cfg.Cluster,
		Host:            n.host,
		Peers:           func() []peer.ID { return n.Replicator().TopicPeers() },
		Members:         n.etcdMembers,
		DataDir:         n.cfg.DataDir,
		ShutdownTimeout: n.cfg.ShutdownTimeout,
		Logger:          n.cfg.Logger,
		ServerOptions:   append(append(serverTuning(n.cfg.ShutdownTimeout), idleOptions(n.cfg.ClientIdleTimeout)...), n.metrics.grpcOptions()...),
		WrapListener: func(l net.Listener) net.Listener {
			return connlimit.New(l, n.caps.Etcd, "etcd", n.cfg.Logger)
		},
		ProgressNotifyInterval:  n.cfg.WatchProgressNotifyInterval,
		MaxRangeResponseBytes:   n.cfg.MaxRangeResponseBytes,
		MaxConcurrentRangeReads: n.cfg.MaxConcurrentRangeReads,
		MaxWatchesPerStream:     n.cfg.MaxWatchesPerStream,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.etcd = srv
	return nil
}

// etcdMembers is the etcd API's Config.Members: the admitted members, and
// the gossip peers (all of them when admission is open).
func (n *Node) etcdMembers() []peer.ID {
	ids := n.admission.SortedIDs()
	for _, p := range n.Replicator().TopicPeers() {
		if !slices.Contains(ids, p) {
			ids = append(ids, p)
		}
	}
	return ids
}

// EtcdAddr returns the address the etcd API listens on, nil when it is off.
func (n *Node) EtcdAddr() net.Addr {
	if n.etcd == nil {
		return nil
	}
	return n.etcd.Addr()
}
