package swim

import (
	"slices"
	"time"
)

// NextProbeAt returns when the driver should call StartProbe next.
func (d *Detector) NextProbeAt() time.Time { return d.nextProbe }

// ProbeInterval returns the configured probe interval multiplied by
// Health()+1.
func (d *Detector) ProbeInterval() time.Duration { return d.health.scale(d.cfg.ProbeInterval) }

// ProbeTimeout returns how long to wait for a direct ack before asking
// helpers: the configured timeout multiplied by Health()+1. Indirect acks
// may arrive until the end of ProbeInterval().
func (d *Detector) ProbeTimeout() time.Duration { return d.health.scale(d.cfg.ProbeTimeout) }

// StartProbe picks the member to probe now and schedules the next probe at
// now + ProbeInterval(). Members are taken round-robin from a list of all
// other members shuffled anew each round (as memberlist does): alive and
// suspect members once per round, dead ones only when their backoff allows
// (the first DeadRetryMin after death, then waits doubling up to
// DeadRetryMax; a round may add to the wait), left ones never. ok is
// false when there is no member to probe, or after Leave.
//
// For a target that is not Alive, the driver should send Accusation(target)
// with the ping, so that the target learns it is accused and can refute.
func (d *Detector) StartProbe(now time.Time) (target string, ok bool) {
	d.nextProbe = now.Add(d.ProbeInterval())
	d.inflight = ""
	if d.left {
		return "", false
	}
	// One full pass over the rest of this round and one over a fresh
	// round is enough to find any eligible member.
	reshuffled := false
	for {
		if d.next >= len(d.order) {
			if reshuffled {
				return "", false
			}
			d.reshuffle()
			reshuffled = true
			if len(d.order) == 0 {
				return "", false
			}
		}
		id := d.order[d.next]
		d.next++
		m, known := d.members[id]
		if !known || !d.probeable(m, now) {
			continue
		}
		if m.State == Dead {
			m.deadBackoff = min(2*m.deadBackoff, d.cfg.DeadRetryMax)
			m.nextDeadProbe = now.Add(m.deadBackoff)
		}
		d.inflight = id
		return id, true
	}
}

// Reachable records a sign that id is reachable again at now (a new
// connection to it, a message from it): a Dead member becomes probeable at
// once, its backoff back to DeadRetryMin, so that a partition's heal is
// found by the next probe of it (which carries the accusation it refutes)
// rather than by a probe backed off to DeadRetryMax.
func (d *Detector) Reachable(id string, now time.Time) {
	m, ok := d.members[id]
	if !ok || m.State != Dead || !now.Before(m.nextDeadProbe) {
		return
	}
	m.deadBackoff = d.cfg.DeadRetryMin / 2 // doubled when probed
	m.nextDeadProbe = now
}

// probeable reports whether m may be probed at now.
func (d *Detector) probeable(m *member, now time.Time) bool {
	switch m.State {
	case Alive, Suspect:
		return m.ID != d.self
	case Dead:
		return !now.Before(m.nextDeadProbe)
	default:
		return false
	}
}

// reshuffle starts a new round: every other member, in a random order.
func (d *Detector) reshuffle() {
	d.order = d.order[:0]
	for _, id := range d.sortedIDs() {
		if id != d.self {
			d.order = append(d.order, id)
		}
	}
	d.cfg.Rand.Shuffle(len(d.order), func(i, j int) {
		d.order[i], d.order[j] = d.order[j], d.order[i]
	})
	d.next = 0
}

// Accusation returns the update the driver should piggyback on a ping to
// a member that is not Alive (Suspect or Dead, from this node), so the
// member can refute it; false for an Alive, Left or unknown member.
func (d *Detector) Accusation(id string) (Update, bool) {
	m, ok := d.members[id]
	if !ok || (m.State != Suspect && m.State != Dead) {
		return Update{}, false
	}
	return Update{ID: id, State: m.State, Incarnation: m.Incarnation, From: d.self}, true
}

// Acked records a direct or indirect ack from target at now: it refreshes
// LastHeard. If target is the probe in flight, the probe succeeded and the
// health score improves by one (unless the target is Dead: probes of dead
// members do not move the score, and an ack resets the target's backoff to
// DeadRetryMin so it is probed again soon while its refutation travels).
// An ack does not clear a suspicion: only the member's own refutation (an
// Alive update with a higher incarnation) does, as in SWIM.
func (d *Detector) Acked(target string, now time.Time) {
	m, ok := d.members[target]
	if !ok {
		return
	}
	d.Heard(target, now)
	if m.State == Dead {
		m.deadBackoff = d.cfg.DeadRetryMin
		m.nextDeadProbe = now.Add(d.cfg.DeadRetryMin)
	}
	if d.inflight != target {
		return
	}
	d.inflight = ""
	if m.State != Dead {
		d.health.apply(-1)
	}
}

// DirectFailed is called when the direct probe of target got no ack within
// ProbeTimeout(). It returns up to IndirectChecks random Alive members,
// other than self and target, to ask for an indirect probe.
func (d *Detector) DirectFailed(target string, now time.Time) (helpers []string) {
	for _, id := range d.sortedIDs() {
		if id != d.self && id != target && d.members[id].State == Alive {
			helpers = append(helpers, id)
		}
	}
	d.cfg.Rand.Shuffle(len(helpers), func(i, j int) {
		helpers[i], helpers[j] = helpers[j], helpers[i]
	})
	if len(helpers) > d.cfg.IndirectChecks {
		helpers = slices.Clip(helpers[:d.cfg.IndirectChecks])
	}
	return helpers
}

// ProbeFailed is called when neither the direct probe nor the indirect
// ones got an ack by the end of the probe interval. nacks is how many
// helpers answered that they could not reach the target, expectedNacks
// how many helpers were asked (and can send nacks).
//
// If target is the probe in flight and not Dead, the health score rises
// (Lifeguard): by each missing nack, since helpers that could not even
// answer us suggest that we are the slow one, or by one if no nack was
// expected. Then an Alive target becomes Suspect, and a Suspect one gets
// this node's confirmation; the returned update is to broadcast. A Dead
// target stays Dead (its backoff already advanced in StartProbe).
func (d *Detector) ProbeFailed(target string, now time.Time, nacks int, expectedNacks int) []Update {
	m, ok := d.members[target]
	if !ok || target == d.self {
		return nil
	}
	if d.inflight == target {
		d.inflight = ""
		if m.State != Dead {
			d.health.apply(probeFailedDelta(nacks, expectedNacks))
		}
	}
	if m.State != Alive && m.State != Suspect {
		return nil
	}
	_, out := d.Apply(Update{ID: target, State: Suspect, Incarnation: m.Incarnation, From: d.self}, now)
	return out
}
