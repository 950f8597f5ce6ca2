package node

import (
	"fmt"
	"net"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/internal/etcdapi"
)

// startEtcd serves the etcd v3 API on Config.ListenEtcd.
func (n *Node) startEtcd() error {
	srv, err := etcdapi.Start(etcdapi.Config{
		Listen:                 n.cfg.ListenEtcd,
		Store:                  n.store,
		Hub:                    n.hub,
		NodeID:                 n.identity.ID,
		Cluster:                n.cfg.Cluster,
		Host:                   n.host,
		Peers:                  func() []peer.ID { return n.Replicator().TopicPeers() },
		DataDir:                n.cfg.DataDir,
		ShutdownTimeout:        n.cfg.ShutdownTimeout,
		Logger:                 n.cfg.Logger,
		ServerOptions:          append(serverTuning(n.cfg.ShutdownTimeout), n.metrics.grpcOptions()...),
		ProgressNotifyInterval: n.cfg.WatchProgressNotifyInterval,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.etcd = srv
	return nil
}

// EtcdAddr returns the address the etcd API listens on, nil when it is off.
func (n *Node) EtcdAddr() net.Addr {
	if n.etcd == nil {
		return nil
	}
	return n.etcd.Addr()
}
