package frontier

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/chorus-kv/chorus/crdt"
)

// Vector maps an origin (the raw bytes of its id, as a string) to a
// frontier.
type Vector map[string]crdt.Timestamp

// Clone returns a copy of v.
func (v Vector) Clone() Vector {
	out := make(Vector, len(v))
	for o, t := range v {
		out[o] = t
	}
	return out
}

// Range is a gossip batch's span of its origin's writes: every write with a
// timestamp in (Prev, Last].
type Range struct{ Prev, Last crdt.Timestamp }

// Defaults for Config.
const (
	DefaultMaxPendingRanges = 256
	DefaultMaxMarks         = 1024
)

// Config configures a Tracker.
type Config struct {
	// Self is this node's id, as origins are keyed (the raw peer id). Required.
	Self string
	// Epoch is the HLC at which this run started: above every write this node
	// made before, so its own frontier starts there. Announcements carry it.
	// Required.
	Epoch crdt.Timestamp
	// MaxPendingRanges bounds the gap ranges kept per origin. Default 256.
	MaxPendingRanges int
	// MaxMarks bounds the lag marks kept per origin; past it every other
	// mark is dropped (the oldest is kept). Default 1024.
	MaxMarks int
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.MaxPendingRanges == 0 {
		c.MaxPendingRanges = DefaultMaxPendingRanges
	}
	if c.MaxMarks == 0 {
		c.MaxMarks = DefaultMaxMarks
	}
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Self == "" {
		errs = append(errs, errors.New("frontier: Self is required"))
	}
	if c.Epoch == 0 {
		errs = append(errs, errors.New("frontier: Epoch is required (the clock's value at start)"))
	}
	if c.MaxPendingRanges < 0 || c.MaxMarks < 0 {
		errs = append(errs, fmt.Errorf("frontier: MaxPendingRanges %d and MaxMarks %d must not be negative (0 means the default)", c.MaxPendingRanges, c.MaxMarks))
	}
	return errors.Join(errs...)
}

type originState struct {
	f       crdt.Timestamp
	pending []Range          // sorted by Prev, disjoint, every Prev above f
	marks   []crdt.Timestamp // ascending first timestamps of batches held here
}

type peerState struct {
	epoch crdt.Timestamp
	v     Vector
}

// Tracker is one node's view of the cluster's frontiers. See the package
// doc for the rules. Not safe for concurrent use.
type Tracker struct {
	cfg     Config
	origins map[string]*originState
	peers   map[string]*peerState
	live    map[string]bool // live members other than self
	dirty   map[string]bool // origins whose own frontier moved since TakeDelta
}

// New returns a Tracker whose own frontier holds Epoch for itself.
func New(cfg Config) (*Tracker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Tracker{cfg: cfg, origins: map[string]*originState{}, peers: map[string]*peerState{},
		live: map[string]bool{}, dirty: map[string]bool{}}
	t.origin(cfg.Self).f = cfg.Epoch
	t.dirty[cfg.Self] = true
	return t, nil
}

// Epoch returns the epoch this Tracker announces.
func (t *Tracker) Epoch() crdt.Timestamp { return t.cfg.Epoch }

func (t *Tracker) origin(o string) *originState {
	st := t.origins[o]
	if st == nil {
		st = &originState{}
		t.origins[o] = st
	}
	return st
}

// Own returns this node's frontier for origin o.
func (t *Tracker) Own(o string) crdt.Timestamp {
	if st := t.origins[o]; st != nil {
		return st.f
	}
	return 0
}

// Pending returns the gap ranges waiting for origin o, for tests and
// diagnostics.
func (t *Tracker) Pending(o string) []Range {
	if st := t.origins[o]; st != nil {
		return slices.Clone(st.pending)
	}
	return nil
}

// LocalWrite records this node's own committed writes, first to last. It
// allocates nothing in the steady state: it runs on the store's write path.
func (t *Tracker) LocalWrite(first, last crdt.Timestamp) {
	st := t.origin(t.cfg.Self)
	if len(t.live) > 0 { // alone, every write is stable at once: no mark
		t.mark(st, first)
	}
	t.raise(t.cfg.Self, st, last)
}

// ObserveBatch records a gossip batch of origin o, applied here, that holds
// every write of o in (prev, last]; first is its first timestamp. It
// reports whether the frontier of o moved.
func (t *Tracker) ObserveBatch(o string, prev, first, last crdt.Timestamp) bool {
	if last <= prev || first <= prev || first > last {
		return false // not a range: the caller validates, this only guards
	}
	st := t.origin(o)
	if last <= st.f {
		return false // a duplicate, or already repaired
	}
	t.mark(st, first)
	if prev <= st.f {
		return t.raise(o, st, last)
	}
	st.pending = addRange(st.pending, Range{Prev: prev, Last: last}, t.cfg.MaxPendingRanges)
	return false
}

// addRange inserts r into the sorted, disjoint ranges rs, joining the ones
// it overlaps or touches, and keeps at most limit ranges (the highest go).
func addRange(rs []Range, r Range, limit int) []Range {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Prev > r.Prev })
	rs = slices.Insert(rs, i, r)
	out := rs[:1]
	for _, x := range rs[1:] {
		last := &out[len(out)-1]
		if x.Prev <= last.Last { // overlaps or touches: (a, b] and (b, c] join
			last.Last = max(last.Last, x.Last)
			continue
		}
		out = append(out, x)
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// raise lifts the frontier of o to at least to and absorbs the gap ranges
// that now connect. It reports whether the frontier moved.
func (t *Tracker) raise(o string, st *originState, to crdt.Timestamp) bool {
	if to <= st.f {
		return false
	}
	st.f = to
	n := 0
	for _, r := range st.pending {
		if r.Prev <= st.f {
			st.f = max(st.f, r.Last)
			continue
		}
		st.pending[n] = r
		n++
	}
	st.pending = st.pending[:n]
	t.dirty[o] = true
	return true
}

// mark keeps first as a lag mark of st, in order, thinning past MaxMarks.
func (t *Tracker) mark(st *originState, first crdt.Timestamp) {
	i, found := slices.BinarySearch(st.marks, first)
	if found {
		return
	}
	st.marks = slices.Insert(st.marks, i, first)
	if len(st.marks) > t.cfg.MaxMarks {
		n := 0
		for j := 0; j < len(st.marks); j += 2 {
			st.marks[n] = st.marks[j]
			n++
		}
		st.marks = st.marks[:n]
	}
}

// Merge takes, origin by origin, the higher of this node's frontier and v:
// the frontier a peer sent in the hello of an anti-entropy session that then
// completed. It reports whether any frontier moved.
func (t *Tracker) Merge(v Vector) bool {
	moved := false
	for o, f := range v {
		if f == 0 {
			continue
		}
		if t.raise(o, t.origin(o), f) {
			moved = true
		}
	}
	return moved
}

// Vector returns this node's frontiers.
func (t *Tracker) Vector() Vector {
	out := make(Vector, len(t.origins))
	for o, st := range t.origins {
		if st.f > 0 {
			out[o] = st.f
		}
	}
	return out
}

// TakeDelta returns the frontiers that moved since the last call, and
// forgets that they moved.
func (t *Tracker) TakeDelta() Vector {
	out := make(Vector, len(t.dirty))
	for o := range t.dirty {
		if st := t.origins[o]; st != nil && st.f > 0 {
			out[o] = st.f
		}
		delete(t.dirty, o)
	}
	return out
}

// Announce records a member's announced frontiers under its epoch: a
// higher epoch replaces what was known, the same epoch merges by maximum,
// a lower one is ignored. It reports whether anything moved.
func (t *Tracker) Announce(member string, epoch crdt.Timestamp, v Vector) bool {
	if member == t.cfg.Self {
		return false
	}
	p := t.peers[member]
	switch {
	case p == nil || epoch > p.epoch:
		t.peers[member] = &peerState{epoch: epoch, v: v.Clone()}
		t.prune(v)
		return true
	case epoch < p.epoch:
		return false
	}
	moved := false
	for o, f := range v {
		if f > p.v[o] {
			p.v[o] = f
			moved = true
		}
	}
	if moved {
		t.prune(v)
	}
	return moved
}

// Announced reports whether member has announced its frontiers.
func (t *Tracker) Announced(member string) bool { return t.peers[member] != nil }

// SetLive sets the live members (Alive or Suspect), self excluded or not.
// It reports whether the set changed.
func (t *Tracker) SetLive(members []string) bool {
	next := make(map[string]bool, len(members))
	for _, m := range members {
		if m != t.cfg.Self {
			next[m] = true
		}
	}
	same := len(next) == len(t.live)
	for m := range next {
		same = same && t.live[m]
	}
	t.live = next
	if !same {
		for o := range t.origins {
			t.pruneOrigin(o)
		}
	}
	return !same
}

// Live returns the live members other than self, sorted.
func (t *Tracker) Live() []string {
	out := make([]string, 0, len(t.live))
	for m := range t.live {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// Forget drops a member removed from the cluster: its announcements and its
// frontier as an origin.
func (t *Tracker) Forget(member string) {
	delete(t.peers, member)
	delete(t.live, member)
	if member != t.cfg.Self {
		delete(t.origins, member)
		delete(t.dirty, member)
		for _, p := range t.peers {
			delete(p.v, member)
		}
	}
}

// frontierOf returns member's frontier for o as this node knows it, and
// whether it knows it.
func (t *Tracker) frontierOf(member, o string) (crdt.Timestamp, bool) {
	if member == t.cfg.Self {
		return t.Own(o), true
	}
	p := t.peers[member]
	if p == nil {
		return 0, false
	}
	return p.v[o], true
}

// Stable returns the stable frontier of origin o: the lowest frontier for o
// among the live members and this node. A live member that announced
// nothing makes it 0.
func (t *Tracker) Stable(o string) crdt.Timestamp {
	s := t.Own(o)
	for m := range t.live {
		f, _ := t.frontierOf(m, o)
		s = min(s, f)
	}
	return s
}

// Converged reports whether the write (o, h) has converged.
func (t *Tracker) Converged(o string, h crdt.Timestamp) bool { return h <= t.Stable(o) }

// Missing returns the members, this node included, that are live and not
// known to hold the write (o, h), sorted.
func (t *Tracker) Missing(o string, h crdt.Timestamp) []string {
	var out []string
	if t.Own(o) < h {
		out = append(out, t.cfg.Self)
	}
	for m := range t.live {
		if f, _ := t.frontierOf(m, o); f < h {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// prune drops the lag marks of v's origins that every live member has
// passed.
func (t *Tracker) prune(v Vector) {
	for o := range v {
		t.pruneOrigin(o)
	}
}

func (t *Tracker) pruneOrigin(o string) {
	st := t.origins[o]
	if st == nil || len(st.marks) == 0 {
		return
	}
	s := t.Stable(o)
	i, _ := slices.BinarySearch(st.marks, s+1)
	st.marks = st.marks[i:]
}

// Lag returns how far behind member is at now: the age of the oldest write
// it is known to lack (see the package doc), 0 when it lacks nothing, and
// known false when member announced nothing.
func (t *Tracker) Lag(member string, now crdt.Timestamp) (lag time.Duration, known bool) {
	if member != t.cfg.Self && t.peers[member] == nil {
		return 0, false
	}
	for o, target := range t.targets() {
		have, _ := t.frontierOf(member, o)
		if have >= target {
			continue
		}
		oldest := target
		if st := t.origins[o]; st != nil {
			i, _ := slices.BinarySearch(st.marks, have+1)
			if i < len(st.marks) && st.marks[i] <= target {
				oldest = st.marks[i]
			}
		}
		lag = max(lag, time.Duration(now.Physical()-oldest.Physical())*time.Millisecond)
	}
	return lag, true
}

// targets returns, per origin, the highest frontier among this node and the
// live members.
func (t *Tracker) targets() Vector {
	out := t.Vector()
	for m := range t.live {
		if p := t.peers[m]; p != nil {
			for o, f := range p.v {
				out[o] = max(out[o], f)
			}
		}
	}
	return out
}

// Members returns the members that announced frontiers, sorted.
func (t *Tracker) Members() []string {
	out := make([]string, 0, len(t.peers))
	for m := range t.peers {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}
