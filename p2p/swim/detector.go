package swim

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Detector is the failure-detection state of one node: the member table,
// the probe schedule, the suspicion timers and the local health score. It
// is not safe for concurrent use: one goroutine (the driver) owns it.
type Detector struct {
	cfg     Config
	self    string
	members map[string]*member
	health  awareness

	// order is the shuffled probe list of one round; next is the index of
	// the next candidate in it.
	order []string
	next  int
	// nextProbe is when the driver should call StartProbe.
	nextProbe time.Time
	// inflight is the target of the last StartProbe whose outcome (Acked or
	// ProbeFailed) has not been reported yet; "" if none. Only that outcome
	// moves the health score, so a probe counts once.
	inflight string
	left     bool
	stats    Stats
}

// Stats counts events of a detector since New.
type Stats struct {
	// Suspicions counts members this node's view moved from Alive to
	// Suspect, on its own failed probe or on another member's word.
	Suspicions int64
	// Refutations counts the accusations of this node that it refuted
	// (each raised its incarnation).
	Refutations int64
}

// Stats returns the detector's counters.
func (d *Detector) Stats() Stats { return d.stats }

// New returns a Detector for the node self, alone and Alive at incarnation
// 0. The first probe is due at now. cfg's zero fields take their defaults;
// an invalid cfg is rejected with an error wrapping ErrInvalidConfig.
func New(self string, cfg Config, now time.Time) (*Detector, error) {
	if self == "" {
		return nil, ErrEmptyID
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	d := &Detector{
		cfg:       cfg,
		self:      self,
		members:   make(map[string]*member),
		health:    awareness{max: cfg.AwarenessMaxMultiplier},
		nextProbe: now,
	}
	d.members[self] = &member{Member: Member{ID: self, State: Alive, StateSince: now, LastHeard: now}}
	return d, nil
}

// Self returns this node's ID.
func (d *Detector) Self() string { return d.self }

// Config returns the configuration in use, defaults filled in.
func (d *Detector) Config() Config { return d.cfg }

// Add records an admitted member, Alive at incarnation 0, heard now. A
// member already known (self included) is left as it is, so incarnations
// never go back. The member is inserted at a random place of the rest of
// the current probe round. An empty id is ignored.
func (d *Detector) Add(id string, now time.Time) {
	if id == "" {
		return
	}
	if _, ok := d.members[id]; ok {
		return
	}
	d.members[id] = &member{Member: Member{ID: id, State: Alive, StateSince: now, LastHeard: now}}
	// Insert into [next, len(order)]: it is probed in this round, and no
	// member already in the round moves before next (probed twice).
	at := d.next + d.cfg.Rand.IntN(len(d.order)-d.next+1)
	d.order = slices.Insert(d.order, at, id)
}

// Remove forgets a member that is no longer part of the cluster. Self
// cannot be removed.
func (d *Detector) Remove(id string) {
	if id == d.self {
		return
	}
	if _, ok := d.members[id]; !ok {
		return
	}
	delete(d.members, id)
	if i := slices.Index(d.order, id); i >= 0 {
		d.order = slices.Delete(d.order, i, i+1)
		if i < d.next {
			d.next--
		}
	}
	if d.inflight == id {
		d.inflight = ""
	}
}

// Members returns a copy of every member, self included, sorted by ID.
func (d *Detector) Members() []Member {
	out := make([]Member, 0, len(d.members))
	for _, m := range d.members {
		out = append(out, m.Member)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Member returns a copy of one member and whether it is known.
func (d *Detector) Member(id string) (Member, bool) {
	m, ok := d.members[id]
	if !ok {
		return Member{}, false
	}
	return m.Member, true
}

// Heard records that a message from id arrived at now. It refreshes
// LastHeard only: a state changes through Apply.
func (d *Detector) Heard(id string, now time.Time) {
	if m, ok := d.members[id]; ok && now.After(m.LastHeard) {
		m.LastHeard = now
	}
}

// Health returns the Lifeguard local health score, from 0 (healthy) to
// AwarenessMaxMultiplier-1. Probe interval and timeout are multiplied by
// Health()+1.
func (d *Detector) Health() int { return d.health.score }

// SuspicionDeadline returns when a suspect member turns Dead if no
// refutation or further confirmation arrives; false if id is not Suspect.
func (d *Detector) SuspicionDeadline(id string) (time.Time, bool) {
	m, ok := d.members[id]
	if !ok || m.suspicion == nil {
		return time.Time{}, false
	}
	return m.suspicion.deadline, true
}

// Leave marks this node Left at its current incarnation and returns the
// update to broadcast. Afterwards StartProbe returns nothing and
// accusations against self are no longer refuted. Calling it again
// returns the same update.
func (d *Detector) Leave(now time.Time) Update {
	me := d.members[d.self]
	if !d.left {
		d.left = true
		me.State = Left
		me.StateSince = now
		d.inflight = ""
	}
	return Update{ID: d.self, State: Left, Incarnation: me.Incarnation, From: d.self}
}

// Tick turns every suspect member whose suspicion deadline is at or before
// now into Dead, returning the Dead updates to broadcast (sorted by ID),
// and forgets dead and left members that have been so for ReapAfter,
// returning their IDs (sorted) so the caller can drop their addresses.
func (d *Detector) Tick(now time.Time) (updates []Update, reaped []string) {
	for _, id := range d.sortedIDs() {
		m := d.members[id]
		switch {
		case m.State == Suspect && !now.Before(m.suspicion.deadline):
			d.markDead(m, Dead, m.Incarnation, now)
			updates = append(updates, Update{ID: id, State: Dead, Incarnation: m.Incarnation, From: d.self})
		case m.State.deadOrLeft() && id != d.self && now.Sub(m.StateSince) >= d.cfg.ReapAfter:
			d.Remove(id)
			reaped = append(reaped, id)
		}
	}
	return updates, reaped
}

// NextTickAt returns the earliest time at which Tick has something to do
// (a suspicion deadline or a reap), and false if nothing is pending.
func (d *Detector) NextTickAt() (time.Time, bool) {
	var at time.Time
	found := false
	consider := func(t time.Time) {
		if !found || t.Before(at) {
			at, found = t, true
		}
	}
	for id, m := range d.members {
		switch {
		case m.State == Suspect:
			consider(m.suspicion.deadline)
		case m.State.deadOrLeft() && id != d.self:
			consider(m.StateSince.Add(d.cfg.ReapAfter))
		}
	}
	return at, found
}

// markDead moves m to Dead or Left at incarnation inc and arms the
// dead-member probe backoff.
func (d *Detector) markDead(m *member, s State, inc uint64, now time.Time) {
	if s != Dead && s != Left {
		panic(fmt.Sprintf("swim: markDead with state %v", s))
	}
	m.State = s
	m.Incarnation = inc
	m.StateSince = now
	m.suspicion = nil
	m.deadBackoff = d.cfg.DeadRetryMin
	m.nextDeadProbe = now.Add(d.cfg.DeadRetryMin)
}

// sortedIDs returns the IDs of all members in order, so that every loop
// over the table is deterministic.
func (d *Detector) sortedIDs() []string {
	ids := make([]string, 0, len(d.members))
	for id := range d.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
