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
	// counted holds the frontier for this origin of this node and of every
	// live member (0 for one that announced none): its minimum is the
	// stable frontier. Every change to one of them moves one value.
	counted minSet
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
	t.raise(cfg.Self, t.origin(cfg.Self), cfg.Epoch) // marks it dirty
	return t, nil
}

// Epoch returns the epoch this Tracker announces.
func (t *Tracker) Epoch() crdt.Timestamp { return t.cfg.Epoch }

func (t *Tracker) origin(o string) *originState {
	st := t.origins[o]
	if st == nil {
		st = &originState{}
		st.counted.add(0) // this node
		for m := range t.live {
			f, _ := t.frontierOf(m, o)
			st.counted.add(f)
		}
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
	old := st.f
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
	st.counted.move(old, st.f)
	t.dirty[o] = true
	return true
}

// mark keeps first as a lag mark of st, in order, after dropping those
// every live member passed; past MaxMarks every other one is dropped (the
// oldest is kept).
func (t *Tracker) mark(st *originState, first crdt.Timestamp) {
	st.prune()
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
	live := t.live[member]
	switch {
	case p == nil || epoch > p.epoch:
		next := &peerState{epoch: epoch, v: v.Clone()}
		if live { // its frontiers are replaced: each may go up or down
			var old Vector
			if p != nil {
				old = p.v
			}
			for o, f := range old {
				if st := t.origins[o]; st != nil {
					st.counted.move(f, next.v[o])
				}
			}
			for o, f := range next.v {
				if _, had := old[o]; had {
					continue // moved above
				}
				if st := t.origins[o]; st != nil {
					st.counted.move(0, f)
				}
			}
		}
		t.peers[member] = next
		return true
	case epoch < p.epoch:
		return false
	}
	moved := false
	for o, f := range v {
		old := p.v[o]
		if f <= old {
			continue
		}
		p.v[o] = f
		moved = true
		if st := t.origins[o]; live && st != nil {
			st.counted.move(old, f)
			st.prune()
		}
	}
	return moved
}

// EpochOf returns the epoch member last announced, and whether it
// announced any.
func (t *Tracker) EpochOf(member string) (crdt.Timestamp, bool) {
	if p := t.peers[member]; p != nil {
		return p.epoch, true
	}
	return 0, false
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
	if same {
		return false
	}
	for m := range t.live {
		if !next[m] {
			t.count(m, false)
		}
	}
	for m := range next {
		if !t.live[m] {
			t.count(m, true)
		}
	}
	t.live = next
	return true
}

// count adds member's frontiers to (or removes them from) every origin's
// counted set, as it goes live (or stops being live).
func (t *Tracker) count(member string, in bool) {
	for o, st := range t.origins {
		f, _ := t.frontierOf(member, o)
		if in {
			st.counted.add(f)
		} else {
			st.counted.remove(f)
		}
	}
}

// IsLive reports whether member counts as live (self excluded).
func (t *Tracker) IsLive(member string) bool { return t.live[member] }

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
	if t.live[member] {
		t.count(member, false)
	}
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
// nothing makes it 0. It costs O(1) amortized: each origin keeps the
// frontiers that count in a min-heap, updated as they move.
func (t *Tracker) Stable(o string) crdt.Timestamp {
	st := t.origins[o]
	if st == nil {
		return 0 // this node holds nothing of o
	}
	st.prune()
	return st.counted.min()
}

// prune drops the lag marks every live member passed.
func (st *originState) prune() {
	if len(st.marks) == 0 {
		return
	}
	if i, _ := slices.BinarySearch(st.marks, st.counted.min()+1); i > 0 {
		st.marks = st.marks[i:]
	}
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

// Lag returns how far behind member is at now: the age of the oldest write
// it is known to lack (see the package doc), 0 when it lacks nothing, and
// known false when member announced nothing.
func (t *Tracker) Lag(member string, now crdt.Timestamp) (lag time.Duration, known bool) {
	if member != t.cfg.Self && t.peers[member] == nil {
		return 0, false
	}
	return t.lag(member, now, t.targets()), true
}

// Lags returns the lag of every member that announced its frontiers and
// of this node, as Lag does, computing the targets once: O(members ×
// origins) where calling Lag for each would cost that per member.
func (t *Tracker) Lags(now crdt.Timestamp) map[string]time.Duration {
	targets := t.targets()
	out := make(map[string]time.Duration, len(t.peers)+1)
	out[t.cfg.Self] = t.lag(t.cfg.Self, now, targets)
	for m := range t.peers {
		out[m] = t.lag(m, now, targets)
	}
	return out
}

// lag is Lag against the given targets.
func (t *Tracker) lag(member string, now crdt.Timestamp, targets Vector) (lag time.Duration) {
	for o, target := range targets {
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
	return lag
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
