package swim

import (
	"fmt"
	"time"
)

// State is what this node believes about a member.
type State int

const (
	// Alive: the member answers probes, or refuted the last accusation.
	Alive State = iota
	// Suspect: a probe failed; the member is Dead unless it refutes (an
	// Alive update with a higher incarnation) before its suspicion timeout.
	Suspect
	// Dead: the suspicion timed out. Final for that incarnation. Dead
	// members are still probed, with backoff, until reaped.
	Dead
	// Left: the member announced it leaves. Final for that incarnation;
	// never probed.
	Left
)

// String returns the state's name ("alive", "suspect", "dead", "left").
func (s State) String() string {
	switch s {
	case Alive:
		return "alive"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	case Left:
		return "left"
	default:
		return fmt.Sprintf("State(%d)", int(s))
	}
}

func (s State) valid() bool { return s >= Alive && s <= Left }

// deadOrLeft reports whether s is a final state for its incarnation.
func (s State) deadOrLeft() bool { return s == Dead || s == Left }

// Member is a copy of what this node knows about one member.
type Member struct {
	// ID identifies the member (in Chorus, its peer ID).
	ID string
	// State is the member's current state.
	State State
	// Incarnation is the member's own counter: only the member raises it,
	// to refute an accusation. Higher incarnations win.
	Incarnation uint64
	// StateSince is when this node moved the member to State.
	StateSince time.Time
	// LastHeard is the last time any message from the member was reported
	// (Add, Heard, Acked).
	LastHeard time.Time
}

// Update is a state change to disseminate, or one received from another
// member. A Left update is a member's own announcement (From == ID).
type Update struct {
	// ID is the member the update is about.
	ID string
	// State is the member's new state.
	State State
	// Incarnation is the incarnation the state applies to.
	Incarnation uint64
	// From is the member that originated the update (not the relay): it is
	// how independent suspicion confirmations are told apart.
	From string
}

// member is the Detector's record of one member.
type member struct {
	Member
	// suspicion is set while State == Suspect.
	suspicion *suspicion
	// deadBackoff is the last wait between probes of a dead member (it
	// doubles at each probe); nextDeadProbe is the earliest next probe.
	deadBackoff   time.Duration
	nextDeadProbe time.Time
}
