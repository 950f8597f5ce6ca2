package p2p

// Duplicate identities: one peer id live in two processes (a copied data
// folder), found from the boots that probes carry (see twins).

import (
	ma "github.com/multiformats/go-multiaddr"

	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// twinGrace is how long after a newer boot of a member was first heard an
// older one must still be heard for both to count as live (see twins). Boots
// are taken from probes only, which come straight from the live process, and
// two processes cannot share a data folder (its store is locked): the grace
// covers probes in flight.
const twinGrace = time.Second

// checkTwins records the boot of from, heard in its probe (u, its own alive
// update), and returns the notice to answer with if that process is refused:
// its identity is live in an older process too.
func (m *Membership) checkTwins(from peer.ID, u *replicationv1.MemberUpdate, now time.Time) *replicationv1.DuplicateIdentity {
	b := boot{nonce: u.GetBoot(), started: u.GetStartedUnixNano()}
	var addrs []string
	for _, a := range u.GetAddrs()[:min(len(u.GetAddrs()), maxAnnouncedAddrs)] {
		if addr, err := ma.NewMultiaddrBytes(a); err == nil {
			addrs = append(addrs, addr.String())
		}
	}
	m.mu.Lock()
	found := m.twins.heard(from.String(), b, addrs, now)
	winner, waddrs, refused := m.twins.refused(from.String(), b)
	warn := found && !m.warned[from.String()]
	if warn {
		m.warned[from.String()] = true
	}
	m.mu.Unlock()
	if warn {
		m.cfg.Logger.Error("a member's peer id is live in two processes (a copied data folder); the one started last is told to stop",
			"peer", from, "started", time.Unix(0, winner.started).UTC(), "addrs", waddrs)
	}
	if !refused {
		return nil
	}
	d := &replicationv1.DuplicateIdentity{Boot: b.nonce, OtherStartedUnixNano: winner.started}
	for _, a := range waddrs {
		if addr, err := ma.NewMultiaddr(a); err == nil {
			d.OtherAddrs = append(d.OtherAddrs, addr.Bytes())
		}
	}
	return d
}

// refuse reports, once, that a member (by) found this node's identity live
// in an older process.
func (m *Membership) refuse(by peer.ID, d *replicationv1.DuplicateIdentity) {
	m.refused.Do(func() {
		e := &DuplicateIdentityError{ID: m.self.String(), OtherStarted: time.Unix(0, d.GetOtherStartedUnixNano()), ReportedBy: by.String()}
		for _, b := range d.GetOtherAddrs()[:min(len(d.GetOtherAddrs()), maxAnnouncedAddrs)] {
			if a, err := ma.NewMultiaddrBytes(b); err == nil {
				e.OtherAddrs = append(e.OtherAddrs, a.String())
			}
		}
		m.cfg.Logger.Error("this node's identity is live in another process; stopping", "err", e)
		if m.cfg.OnDuplicateIdentity != nil {
			m.cfg.OnDuplicateIdentity(e)
		}
	})
}
