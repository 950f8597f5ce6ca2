package p2p

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/p2p/swim"
)

// After a partition, this node must find the other side again within a
// probe timeout or so of the heal, and on a connection that works:
//
//   - A connection that stayed open across a partition (packets dropped,
//     nothing closed) does not work at once when the partition heals: TCP
//     retransmits what it sent into the partition with exponential backoff
//     (200 ms doubling: after an 8 s partition the next retransmission can
//     be 4.6 s after the heal), and every stream on it (gossip, probes, a
//     sync session) waits behind it. So a member already dead whose probe
//     fails again, directly and through the helpers, on a connection still
//     open has its connections closed (dropStalled): whatever was stuck on
//     them fails now, and the redials below open a new connection, whose
//     first packets go out at once. Not at the first failed probe, nor at
//     suspicion: a member that is only slow or stopped a moment (its
//     kernel still acknowledges what it is sent) would lose healthy
//     connections and the gossip on their way, and come back only at the
//     next redial (in one nemesis run that closed at the first failed
//     probe, a 1.4 s SIGSTOP took 1.19 s to converge after SIGCONT; 0.11 s
//     without). A partition shorter than the time to death is left to TCP.
//   - Nothing else dials such a member soon: the bootstrapper backs off (up
//     to MaxBackoff) while the partition lasts and knows only its bootstrap
//     peers, the detector probes a dead member only every DeadRetryMin to
//     DeadRetryMax, and libp2p refuses for seconds to dial an address whose
//     dial failed. So every probe timeout, each member held suspect or dead
//     (for less than redialFor) that this node has no connection to is
//     dialled afresh (redialLoop), each dial bounded by the probe timeout
//     and not subject to libp2p's dial backoff: a heal is found within a
//     probe timeout (500 ms on LAN timing), at the cost of about two
//     connection attempts a second per unreachable member while it lasts.
//   - The new connection does the rest: the Syncer starts a session on it
//     (the dialling side), and the detector probes a dead member at once
//     (Reachable), whose refutation brings it back alive (OnRecovered kicks
//     another session).

// redialFor is how long after a member became suspect or dead it is
// redialled every probe timeout; afterwards only the detector's backed-off
// probes of dead members look for it (a member gone for good costs two
// dials a second, on LAN timing, for this long).
const redialFor = 2 * time.Minute

// redial is the state of the fresh dials of one unreachable member.
type redial struct {
	last     time.Time // the last dial started
	inFlight bool
}

// redialLoop calls redialUnreachable every probe timeout until Close.
func (m *Membership) redialLoop() {
	defer m.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-timer.C:
		}
		m.redialUnreachable(time.Now())
		m.mu.Lock()
		every := m.det.ProbeTimeout()
		m.mu.Unlock()
		timer.Reset(every)
	}
}

// redialUnreachable starts, in the background, a fresh dial of every member
// held suspect or dead for less than redialFor that this node has no
// connection to, unless one is in flight or one started less than a probe
// timeout ago. The dials are owned by m.wg (Close waits for them).
func (m *Membership) redialUnreachable(now time.Time) {
	net := m.cfg.Host.Network()
	m.mu.Lock()
	timeout := m.det.ProbeTimeout()
	var targets []peer.ID
	members := m.det.Members()
	for id := range m.redials {
		if _, ok := m.det.Member(id); !ok {
			delete(m.redials, id) // removed from the cluster, or reaped
		}
	}
	for _, mem := range members {
		if mem.ID == m.self.String() || mem.State != swim.Suspect && mem.State != swim.Dead || now.Sub(mem.StateSince) >= redialFor {
			delete(m.redials, mem.ID)
			continue
		}
		r := m.redials[mem.ID]
		if r.inFlight || now.Sub(r.last) < timeout {
			continue
		}
		p, err := peer.Decode(mem.ID)
		if err != nil || net.Connectedness(p) == network.Connected {
			continue
		}
		m.redials[mem.ID] = redial{last: now, inFlight: true}
		targets = append(targets, p)
	}
	m.mu.Unlock()
	for _, p := range targets {
		m.wg.Add(1) // from redialLoop, itself in wg: Close has not waited yet
		go func() {
			defer m.wg.Done()
			// Not subject to the swarm's dial backoff: the dials that failed
			// during the partition must not delay the one after its heal.
			ctx, cancel := context.WithTimeout(network.WithForceDirectDial(m.ctx, "a suspect or dead member may be reachable again"), timeout)
			err := m.cfg.Host.Connect(ctx, peer.AddrInfo{ID: p})
			cancel()
			m.mu.Lock()
			if r, ok := m.redials[p.String()]; ok {
				r.inFlight = false
				m.redials[p.String()] = r
			}
			m.mu.Unlock()
			if err == nil {
				m.redialed.Add(1)
				m.cfg.Logger.Debug("reconnected to a member held suspect or dead", "peer", p)
			}
		}()
	}
}

// dropStalled closes this node's connections to p, a dead member whose
// probe just failed again: see the comment at the top of this file. If it
// is back after all, it comes back on a new connection at the next redial,
// within a probe timeout.
func (m *Membership) dropStalled(p peer.ID) {
	if m.ctx.Err() != nil || m.cfg.Host.Network().Connectedness(p) != network.Connected {
		return
	}
	m.stalledClosed.Add(1)
	m.cfg.Logger.Debug("closed the connections to a member that answered no probe", "peer", p)
	_ = m.cfg.Host.Network().ClosePeer(p)
}
