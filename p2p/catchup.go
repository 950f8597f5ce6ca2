package p2p

import "fmt"

// CatchUpState says whether a node still receives, by anti-entropy, what
// its peers held: `chorus status`, `chorus members`, the SDK and the
// metrics show it.
type CatchUpState string

// Catch-up states.
const (
	// CatchingUp: no anti-entropy session with a peer has completed since
	// the node started, or since a session found a difference too large
	// for one session (a node back from a long partition).
	CatchingUp CatchUpState = "catching-up"
	// CaughtUp: a session with a peer completed since: this node holds all
	// that peer held when the session began. Also a node with nothing to
	// catch up from (no bootstrap peers, no other members).
	CaughtUp CatchUpState = "caught-up"
)

// CatchUpFacts are what EstimateCatchUp decides from.
type CatchUpFacts struct {
	// Active: the node is catching up (see CatchingUp).
	Active bool
	// Alone: the node has no bootstrap peers and no other member: nothing
	// to catch up from.
	Alone bool
	// Received counts the entries received by anti-entropy since the
	// catch-up began (Syncer.Received at the time, minus at the start);
	// once caught up, those of the last catch-up.
	Received int64
	// LocalKeys and PeerKeys are the keys this node holds now and the most
	// keys a connected member reported by the status protocol during the
	// catch-up, tombstones included; PeerKeys < 0: no peer answered yet.
	LocalKeys, PeerKeys int64
}

// CatchUp is a node's catch-up progress.
type CatchUp struct {
	State CatchUpState
	// Received counts the entries received by anti-entropy since the
	// catch-up began (of the last catch-up, once caught up).
	Received int64
	// Total estimates the entries the catch-up receives in all: Received
	// plus the keys the fullest peer holds beyond this node's; 0 when no
	// peer reported its key count yet. Never less than Received.
	Total int64
	// Detail is a sentence that explains the state.
	Detail string
}

// Percent is Received of Total in percent, 0 when Total is unknown.
func (c CatchUp) Percent() float64 {
	if c.Total <= 0 {
		return 0
	}
	return 100 * float64(min(c.Received, c.Total)) / float64(c.Total)
}

// EstimateCatchUp returns a node's catch-up progress. It is pure: the
// caller gathers the facts.
//
// The estimate counts keys, not versions: it is right for a new node (every
// key it receives is new) and low for a node back after downtime whose
// peers overwrote or deleted keys it already holds (those arrive as
// entries but add no key). It moves as peers take writes, and a peer that
// is itself behind makes it low; a complete session ends the catch-up
// whatever the estimate says.
func EstimateCatchUp(f CatchUpFacts) CatchUp {
	c := CatchUp{State: CaughtUp, Received: max(f.Received, 0)}
	switch {
	case !f.Active && f.Alone:
		c.Detail = "no peers to catch up from"
		return c
	case !f.Active:
		c.Total = c.Received
		c.Detail = fmt.Sprintf("an anti-entropy session with a peer completed: this node holds all that peer held when it began (%d entries received while catching up)", c.Received)
		return c
	}
	c.State = CatchingUp
	if f.PeerKeys < 0 {
		c.Detail = fmt.Sprintf("received %d entries from peers; no connected member has reported its key count yet", c.Received)
		return c
	}
	c.Total = c.Received + max(f.PeerKeys-max(f.LocalKeys, 0), 0)
	c.Detail = fmt.Sprintf("received %d of about %d entries (%.0f%%): the estimate adds the keys the fullest connected member holds beyond this node's (%d against %d) to those received",
		c.Received, c.Total, c.Percent(), f.PeerKeys, f.LocalKeys)
	return c
}

// Received returns how many entries this node received from peers by
// anti-entropy since it started, counted as each batch is applied, so that
// it moves during a long session.
func (s *Syncer) Received() int64 { return s.received.Load() }
