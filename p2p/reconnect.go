package p2p

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/p2p/swim"
)

// After a partition that closed the connections between its sides (it
// lasted long enough for the transport to give up, a process was killed
// inside it, or a test's gater), this node must find the other side again
// soon after the heal. Nothing else dials such a member soon: a
// bootstrapper backs off (up to MaxBackoff) while the partition lasts and
// knows only its bootstrap peers, the detector probes a dead member only
// every DeadRetryMin to DeadRetryMax, and libp2p refuses for seconds to dial
// an address whose dial failed. So every probe timeout, each member held
// suspect or dead (for less than redialFor) that this node has no
// connection to is dialled afresh (redialLoop), each dial bounded by the
// probe timeout and not subject to libp2p's dial backoff: a heal is found
// within a probe timeout (500 ms on LAN timing), at the cost of about two
// connection attempts a second per unreachable member while it lasts. The
// new connection does the rest: the Syncer starts a session on it (the
// dialling side), and the detector probes a dead member at once
// (Reachable), whose refutation brings it back alive (OnRecovered kicks
// another session).
//
// A member held dead that still has a connection (a partition that drops
// packets leaves it open) is made probeable at every turn of the loop
// (Reachable), so it is probed once a round of probes rather than at its
// dead backoff: the heal is found within a round, where the backoff could
// leave both sides holding each other dead for up to DeadRetryMax after it
// (the sync sessions skip dead peers meanwhile).
//
// Connections that stay open across a partition are left to TCP. Closing a
// member's connections when its probes fail was tried, and measured worse
// in the nemesis suite: the close reaches only this side (the partition
// drops the FIN), and the other side keeps a half-open connection, which it
// uses for every new stream to this node until it next sends on it and
// gets a reset: one 2|3 partition heal took 4.8 s that way. A connection
// that the transport keeps stalled after a heal (TCP's retransmission
// backoff, when a partition drops packets between the hosts rather than at
// them) is an open problem (see the README).

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
func (m *Membership) redialLoop(ctx context.Context) {
	defer m.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		m.redialUnreachable(ctx, time.Now())
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
func (m *Membership) redialUnreachable(ctx context.Context, now time.Time) {
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
		if err != nil {
			continue
		}
		if net.Connectedness(p) == network.Connected {
			// A member held dead that still has a connection (a partition
			// that drops packets keeps it open): probe it at its next turn
			// rather than at its dead backoff (up to DeadRetryMax), so the
			// heal is found within a round of probes.
			if mem.State == swim.Dead {
				m.det.Reachable(mem.ID, now)
			}
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
			ctx, cancel := context.WithTimeout(network.WithForceDirectDial(ctx, "a suspect or dead member may be reachable again"), timeout)
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
