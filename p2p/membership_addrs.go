package p2p

// Address learning: a member's alive update carries its listen
// addresses, which the others add to their peerstores.

import (
	ma "github.com/multiformats/go-multiaddr"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// maxAnnouncedAddrs bounds the addresses of one announcement.
const maxAnnouncedAddrs = 16

// withAddrs attaches this node's listen addresses, boot and client URLs to
// its own alive update.
func (m *Membership) withAddrs(u *replicationv1.MemberUpdate) *replicationv1.MemberUpdate {
	if u.GetId() != m.self.String() || u.GetState() != replicationv1.MemberUpdate_STATE_ALIVE {
		return u
	}
	u.Boot, u.StartedUnixNano = m.boot.nonce, m.boot.started
	u.ClientUrls = m.urls.own()
	for _, a := range m.cfg.Host.Addrs() {
		if len(u.Addrs) == maxAnnouncedAddrs {
			break
		}
		u.Addrs = append(u.Addrs, a.Bytes())
	}
	return u
}

// learnAddrs adds the addresses a member announced for itself to the
// peerstore, so this node can dial it.
func (m *Membership) learnAddrs(u *replicationv1.MemberUpdate) {
	if u.GetId() != u.GetFrom() || u.GetId() == m.self.String() || len(u.GetAddrs()) == 0 {
		return
	}
	id, err := peer.Decode(u.GetId())
	if err != nil {
		return
	}
	if m.cfg.Admit != nil && m.cfg.Admit(id) != nil {
		return
	}
	var addrs []ma.Multiaddr
	for _, b := range u.GetAddrs()[:min(len(u.GetAddrs()), maxAnnouncedAddrs)] {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			addrs = append(addrs, a)
		}
	}
	m.cfg.Host.Peerstore().AddAddrs(id, addrs, peerstore.RecentlyConnectedAddrTTL)
}
