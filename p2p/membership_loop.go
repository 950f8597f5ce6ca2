package p2p

// Membership's driver: the probe loop (syncs the member list, announces
// this node, ticks the detector and starts probes), the receive loop of
// the members topic, and how an update is applied and spread.

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/p2p/swim"

	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// syncMembers adds admitted members to the detector and removes those no
// longer admitted (or, with open admission, adds connected peers).
func (m *Membership) syncMembers(now time.Time) {
	var want []peer.ID
	open := m.cfg.Members == nil
	if open {
		want = m.cfg.Host.Network().Peers()
	} else {
		want = m.cfg.Members()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := false
	set := map[string]bool{}
	for _, p := range want {
		set[p.String()] = true
		if _, ok := m.det.Member(p.String()); !ok && p != m.self && !m.reaped[p.String()] {
			m.det.Add(p.String(), now)
			changed = true
		}
	}
	if !open {
		for _, mem := range m.det.Members() {
			if mem.ID != m.self.String() && !set[mem.ID] {
				m.det.Remove(mem.ID)
				changed = true
			}
		}
	}
	if changed {
		m.notifyLocked()
	}
}

func (m *Membership) probeLoop(ctx context.Context) {
	defer m.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	lastSync := time.Now()
	var lastAnnounce time.Time
	announcedToPeers := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		if now.Sub(lastSync) >= time.Second {
			m.syncMembers(now)
			lastSync = now
		}
		// Announce this node (alive, with its addresses) every 30 probe
		// intervals, and as soon as the topic first has peers, so members
		// that are not connected to it learn where it is.
		hasPeers := len(m.topic.ListPeers()) > 0
		// One critical section decides the turn: the announcement, the
		// detector's timeouts, and the probe to start.
		m.mu.Lock()
		every := 30 * m.det.Config().ProbeInterval
		me, _ := m.det.Member(m.self.String())
		announce := me.State == swim.Alive && (now.Sub(lastAnnounce) >= every || hasPeers && !announcedToPeers)
		updates, reaped := m.det.Tick(now)
		for _, id := range reaped {
			m.reaped[id] = true
		}
		if len(updates) > 0 || len(reaped) > 0 {
			m.notifyLocked()
		}
		var target string
		var ok bool
		if !now.Before(m.det.NextProbeAt()) {
			target, ok = m.det.StartProbe(now)
		}
		m.mu.Unlock()
		if announce {
			m.publish(ctx, []swim.Update{{ID: me.ID, State: swim.Alive, Incarnation: me.Incarnation, From: me.ID}})
			lastAnnounce, announcedToPeers = now, hasPeers
		}
		for _, u := range updates {
			m.cfg.Logger.Debug("member state changed by a timeout", "peer", u.ID, "to", u.State)
		}
		m.publish(ctx, updates)
		if ok {
			m.probe(ctx, target)
		}
		// After the probe, which moved the next probe's time.
		m.mu.Lock()
		next := m.det.NextProbeAt()
		if t, ok := m.det.NextTickAt(); ok && t.Before(next) {
			next = t
		}
		m.mu.Unlock()
		wait := min(time.Until(next), time.Second)
		timer.Reset(max(wait, time.Millisecond))
	}
}

func (m *Membership) receiveLoop(ctx context.Context) {
	defer m.wg.Done()
	for {
		msg, err := m.sub.Next(ctx)
		if err != nil {
			return
		}
		if msg.Local {
			continue
		}
		us, _ := msg.ValidatorData.(*replicationv1.MemberUpdates)
		m.heard(msg.GetFrom().String(), time.Now())
		for _, u := range us.GetUpdates() {
			if su, ok := fromProtoUpdate(u); ok {
				m.learnAddrs(u)
				m.urls.learn(msg.GetFrom(), u)
				m.apply(ctx, su)
			}
		}
	}
}

// apply applies an update and spreads it on if it changed this node's view
// (SWIM dissemination: a node that learned something passes it on once),
// with what it leads to (a refutation).
func (m *Membership) apply(ctx context.Context, u swim.Update) {
	m.mu.Lock()
	before, known := m.det.Member(u.ID)
	changed, out := m.det.Apply(u, time.Now())
	after, _ := m.det.Member(u.ID)
	if changed || len(out) > 0 {
		m.notifyLocked()
	}
	m.mu.Unlock()
	if known && u.ID != m.self.String() {
		if p, err := peer.Decode(u.ID); err == nil {
			m.noteUnreachable(p, before.State, after.State)
		}
	}
	if recovered := known && (before.State == swim.Suspect || before.State == swim.Dead) && after.State == swim.Alive; recovered && u.ID != m.self.String() && m.cfg.OnRecovered != nil {
		if p, err := peer.Decode(u.ID); err == nil {
			m.cfg.OnRecovered(p)
		}
	}
	if changed {
		out = append([]swim.Update{u}, out...)
	}
	m.publish(ctx, out)
}

func (m *Membership) publish(ctx context.Context, updates []swim.Update) {
	if len(updates) == 0 {
		return
	}
	msg := &replicationv1.MemberUpdates{}
	for _, u := range updates {
		msg.Updates = append(msg.Updates, m.withAddrs(toProtoUpdate(u)))
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		return
	}
	if err := m.topic.Publish(ctx, b); err == nil {
		m.updatesOut.Add(int64(len(updates)))
	}
}

// heard records a message from id; a member reaped after it stayed dead is
// added back (the detector ignores updates about unknown members).
func (m *Membership) heard(id string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reaped[id] {
		delete(m.reaped, id)
		m.det.Add(id, now)
		m.notifyLocked()
	}
	m.det.Heard(id, now)
	m.det.Reachable(id, now) // a dead member is probed at once
}

func (m *Membership) acked(target string) {
	m.mu.Lock()
	m.det.Acked(target, time.Now())
	m.det.Heard(target, time.Now())
	m.mu.Unlock()
}

// noteUnreachable calls OnUnreachable if a member went from alive to
// suspect or dead.
func (m *Membership) noteUnreachable(p peer.ID, before, after swim.State) {
	if before != after {
		m.cfg.Logger.Debug("member state changed", "peer", p, "from", before, "to", after)
	}
	if before == swim.Alive && (after == swim.Suspect || after == swim.Dead) && p != m.self && m.cfg.OnUnreachable != nil {
		m.cfg.OnUnreachable(p)
	}
}
