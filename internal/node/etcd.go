package node

import (
	"fmt"
	"net"
	"path/filepath"

	"github.com/chorus-kv/chorus/internal/connlimit"
	"github.com/chorus-kv/chorus/internal/etcdapi"
	"github.com/chorus-kv/chorus/p2p"
	"github.com/chorus-kv/chorus/p2p/swim"
)

// EtcdLeaseFile is the file, in the data folder, where the etcd API keeps
// its leases.
const EtcdLeaseFile = "etcd-leases.json"

// startEtcd serves the etcd v3 API on Config.ListenEtcd, and announces its
// client URL to the other members with this node's own membership updates
// (Membership.SetClientURLs), where their etcd API's MemberList finds it.
func (n *Node) startEtcd() error {
	srv, err := etcdapi.Start(etcdapi.Config{
		Listen:          n.cfg.ListenEtcd,
		Store:           n.store,
		Hub:             n.hub,
		NodeID:          n.ID(),
		Cluster:         n.cfg.Cluster,
		Members:         etcdMembers{n},
		CheckWrite:      p2p.CheckWritable,
		StorePath:       filepath.Join(n.cfg.DataDir, StoreDir),
		LeaseFile:       filepath.Join(n.cfg.DataDir, EtcdLeaseFile),
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
	if err := n.members.SetClientURLs([]string{srv.ClientURL()}); err != nil {
		srv.Close()
		return fmt.Errorf("node: %w", err)
	}
	n.etcd = srv
	return nil
}

// etcdMembers is the etcd API's view of the cluster (etcdapi.Membership):
// the node's own member view (memberView: the member list, the failure
// detector's states, the connected peers), its admitted members only
// (every one with open admission), each with the client URLs it announced
// in its membership updates.
type etcdMembers struct{ n *Node }

// Members implements etcdapi.Membership.
func (e etcdMembers) Members() []etcdapi.Member {
	urls := e.n.members.ClientURLs()
	view := e.n.memberView()
	out := make([]etcdapi.Member, 0, len(view))
	for _, m := range view {
		if !m.Admitted && !m.Self {
			continue
		}
		out = append(out, etcdapi.Member{ID: m.PeerId, ClientURLs: urls[m.PeerId], State: etcdState(m.State)})
	}
	return out
}

// etcdState maps memberView's state names to etcdapi's states.
func etcdState(s string) etcdapi.MemberState {
	switch s {
	case swim.Alive.String():
		return etcdapi.MemberAlive
	case swim.Suspect.String():
		return etcdapi.MemberSuspect
	case swim.Dead.String():
		return etcdapi.MemberDead
	case swim.Left.String():
		return etcdapi.MemberLeft
	default: // "unknown", "unseen"
		return etcdapi.MemberUnknown
	}
}

// EtcdAddr returns the address the etcd API listens on, nil when it is off.
func (n *Node) EtcdAddr() net.Addr {
	if n.etcd == nil {
		return nil
	}
	return n.etcd.Addr()
}
