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
// A connection that stays open across a partition is silent after the
// heal until TCP's next retransmission, and the retransmissions' backoff
// doubles (0.2, 0.4, 0.8, 1.6, 3.2 s...): after a 3 s partition the nemesis
// suite saw every member keep a healed node dead for 2.9 s, all recovering
// at the same instant, the next retransmission. So the loop also closes
// the connections to a member held suspect or dead that were opened before
// it was, and dials it afresh at once, then at every turn while there is
// no connection (a new connection connects at once after the heal).
// Closing when probes fail, during the partition, was tried before and
// measured worse: the close reaches only this side, and the other keeps a
// half-open connection that it uses for its new streams to this node until
// it next sends on it and gets a reset. That still happens here, but the
// fresh connection is this side's, and the session it starts (the dialler
// starts one) repairs both sides. The loop's period is the configured
// probe timeout, not stretched by the health score: the node cut off by a
// partition has the worst score, and it is the one that must find the
// heal soonest.

// redialFor is how long after a member became suspect or dead it is
// redialled every probe timeout; afterwards only the detector's backed-off
// probes of dead members look for it (a member gone for good costs two
// dials a second, on LAN timing, for this long).
const redialFor = 2 * time.Minute

// redial is the state of the fresh dials of one unreachable member.
type redial struct {
	last     time.Time // the last dial started
	inFlight bool
	// since is when the member was first seen suspect or dead here (this
	// state is deleted when it is alive again): the connections opened
	// before are the ones a partition may have left silent.
	since time.Time
}

// redialEvery is the period of the redial loop and the least time between
// two dials of one member: the configured probe timeout, not stretched by
// the health score. A node that was on the small side of a partition has
// the worst score (every probe failed), up to 9 times the timeout (4.5 s on
// LAN timing), and it is the one that must find the heal soonest.
func (m *Membership) redialEvery() time.Duration { return m.det.Config().ProbeTimeout }

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
		every := m.redialEvery()
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
	timeout, every := m.det.ProbeTimeout(), m.redialEvery()
	var targets []peer.ID
	var stalled []stale
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
		if r.since.IsZero() {
			r.since = mem.StateSince
			m.redials[mem.ID] = r
		}
		if r.inFlight || now.Sub(r.last) < every {
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
			// And close the connections opened before the member stopped
			// being alive, and dial afresh at once (then at the next turns
			// as long as there is no connection): after a heal, a
			// connection that was silent through the partition stays
			// silent until TCP's next retransmission (its backoff
			// doubles: seconds), while a new one connects at once. (A
			// partition of 8 s can end with every member still suspect,
			// and one of 3 s can be noticed only after its heal.) A
			// connection opened since is left alone: it is this fresh one,
			// or the member's own (closing those made two nodes that each
			// suspected the other close each other's new connections).
			if old := openedBefore(net.ConnsToPeer(p), r.since); len(old) > 0 {
				r.last, r.inFlight = now, true
				m.redials[mem.ID] = r
				stalled = append(stalled, stale{p, old})
			}
			continue
		}
		r.last, r.inFlight = now, true
		m.redials[mem.ID] = r
		targets = append(targets, p)
	}
	m.mu.Unlock()
	for _, p := range targets {
		m.redialInBackground(ctx, p, timeout, nil)
	}
	for _, st := range stalled {
		m.redialInBackground(ctx, st.p, timeout, st.conns)
	}
}

// stale is a member's connections opened before it stopped being alive.
type stale struct {
	p     peer.ID
	conns []network.Conn
}

// openedBefore returns the connections of conns opened before t.
func openedBefore(conns []network.Conn, t time.Time) []network.Conn {
	var out []network.Conn
	for _, c := range conns {
		if c.Stat().Opened.Before(t) {
			out = append(out, c)
		}
	}
	return out
}

// redialInBackground closes the connections old, then dials p afresh
// unless a connection remains. The goroutine is owned by m.wg (Close waits
// for it).
func (m *Membership) redialInBackground(ctx context.Context, p peer.ID, timeout time.Duration, old []network.Conn) {
	m.wg.Add(1) // from redialLoop, itself in wg: Close has not waited yet
	go func() {
		defer m.wg.Done()
		if len(old) > 0 {
			m.cfg.Logger.Debug("closing the connections to a member held suspect or dead opened before it was, to dial it afresh", "peer", p, "connections", len(old))
			for _, c := range old {
				_ = c.Close()
			}
		}
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
