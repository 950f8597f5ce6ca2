package swim

import (
	"math"
	"time"
)

// Apply merges an update received from another member (or produced by
// this node) into the member table, with memberlist's rules:
//
//   - Updates about unknown members are ignored: membership comes from
//     admission (Add), not from gossip.
//   - An update with a lower incarnation than the member's is stale and
//     ignored.
//   - Alive wins only with a higher incarnation. It clears a suspicion and
//     brings a Dead or Left member back (a restarted or rejoined node).
//   - Suspect of an Alive member starts its suspicion timer, at the
//     update's incarnation. Suspect of a Suspect member is a confirmation:
//     if it comes from a member that has not accused it yet, the timer
//     shortens (Lifeguard) and the update is passed on; duplicates change
//     nothing. Suspect of a Dead or Left member is ignored.
//   - Dead and Left are final for their incarnation: they override Alive
//     and Suspect, and are ignored by a member already Dead or Left.
//   - An accusation of self (Suspect, Dead or Left at an incarnation at
//     least ours), or an Alive of self with a higher incarnation, is
//     refuted: self's incarnation jumps past it, the health score rises by
//     one, and an Alive update for self is returned. After Leave nothing
//     about self is applied.
//
// changed reports whether the table changed (a state, an incarnation or a
// suspicion deadline); out holds the updates to broadcast: the update
// itself when it was news, or the refutation.
func (d *Detector) Apply(u Update, now time.Time) (changed bool, out []Update) {
	m, ok := d.members[u.ID]
	if !ok || !u.State.valid() || u.Incarnation < m.Incarnation {
		return false, nil
	}
	if u.ID == d.self {
		return d.applySelf(m, u)
	}
	switch u.State {
	case Alive:
		if u.Incarnation <= m.Incarnation {
			return false, nil
		}
		m.Incarnation = u.Incarnation
		if m.State != Alive {
			m.State = Alive
			m.StateSince = now
			m.suspicion = nil
		}
		return true, []Update{u}
	case Suspect:
		switch m.State {
		case Alive:
			m.State = Suspect
			m.Incarnation = u.Incarnation
			m.StateSince = now
			m.suspicion = newSuspicion(u.From, len(d.members), d.cfg, now)
			d.stats.Suspicions++
			return true, []Update{u}
		case Suspect:
			// A suspicion at a higher incarnation means the member refuted
			// and was accused again: keep the timer, raise the incarnation,
			// so that the refutation we missed cannot clear this one.
			raised := u.Incarnation > m.Incarnation
			m.Incarnation = u.Incarnation
			if m.suspicion.confirm(u.From) {
				return true, []Update{u}
			}
			return raised, nil
		default:
			return false, nil
		}
	default: // Dead, Left
		if m.State.deadOrLeft() {
			return false, nil
		}
		d.markDead(m, u.State, u.Incarnation, now)
		return true, []Update{u}
	}
}

// applySelf handles an update about this node: refute or ignore.
func (d *Detector) applySelf(me *member, u Update) (bool, []Update) {
	if d.left {
		return false, nil
	}
	if u.State == Alive && u.Incarnation == me.Incarnation {
		return false, nil
	}
	// Suspect, Dead or Left at >= our incarnation, or Alive above it.
	// Saturate rather than wrap: an incarnation never goes back, even if
	// a faulty peer sent the largest one (then refuting is impossible).
	if inc := max(me.Incarnation, u.Incarnation); inc < math.MaxUint64 {
		me.Incarnation = inc + 1
	} else {
		me.Incarnation = inc
	}
	d.health.apply(1)
	d.stats.Refutations++
	return true, []Update{{ID: d.self, State: Alive, Incarnation: me.Incarnation, From: d.self}}
}
