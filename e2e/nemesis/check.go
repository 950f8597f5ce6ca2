package nemesis

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/chorus-kv/chorus/crdt"
)

// Write is one write a writer attempted.
type Write struct {
	Key, Value string
	// Acked is true when the node acknowledged the write; the fields below
	// are then the ones it returned.
	Acked bool
	// HLC and Origin are the write's timestamp and the raw bytes of the
	// writing node's peer id: LWW orders writes by (HLC, Origin).
	HLC      uint64
	Origin   string
	Revision int64
	Node     int // the node written to
}

// Version is a key's winning write as one node holds it.
type Version struct {
	Value  string
	HLC    uint64
	Origin string
}

// less orders versions as LWW does: by HLC, then by origin bytes.
func less(hlcA uint64, originA string, hlcB uint64, originB string) bool {
	if hlcA != hlcB {
		return hlcA < hlcB
	}
	return originA < originB
}

// History is what the writers know of: every acknowledged write, and the
// values of writes whose outcome is unknown (an error or a timeout: they may
// have been applied).
type History struct {
	latest    map[string]Write  // per key, the greatest acknowledged write
	acked     map[string]Write  // by value
	attempted map[string]string // value -> key, acknowledged or not
	Acked     int
	Unknown   int
	maxStamp  uint64 // the greatest HLC of an acknowledged write
}

// NewHistory builds a history from writes.
func NewHistory(writes []Write) *History {
	h := &History{latest: map[string]Write{}, acked: map[string]Write{}, attempted: map[string]string{}}
	for _, w := range writes {
		h.attempted[w.Value] = w.Key
		if !w.Acked {
			h.Unknown++
			continue
		}
		h.Acked++
		h.acked[w.Value] = w
		h.maxStamp = max(h.maxStamp, w.HLC)
		if cur, ok := h.latest[w.Key]; !ok || less(cur.HLC, cur.Origin, w.HLC, w.Origin) {
			h.latest[w.Key] = w
		}
	}
	return h
}

// ClockWait returns how long after healed the peers' clocks must run
// before they accept every acknowledged write: a node whose clock ran ahead
// (the skew fault) stamped its writes ahead, a node restarted on the same
// data keeps stamping from there until its clock catches up, and a peer
// refuses a timestamp more than maxOffset ahead of its own clock
// (--max-clock-offset) until its clock gets there. No node can converge
// sooner, whatever the network does. Zero when no acknowledged write is
// stamped that far ahead of healed.
func (h *History) ClockWait(healed time.Time, maxOffset time.Duration) time.Duration {
	if h.maxStamp == 0 {
		return 0
	}
	return max(0, crdt.Timestamp(h.maxStamp).Time().Add(-maxOffset).Sub(healed))
}

// Problem is one violation a checker found.
type Problem struct {
	Check string // "lost", "lww", "watch"
	Node  int    // -1 when it concerns no single node
	Key   string
	What  string
}

func (p Problem) String() string {
	if p.Node < 0 {
		return fmt.Sprintf("%s: key %q: %s", p.Check, p.Key, p.What)
	}
	return fmt.Sprintf("%s: node n%d: key %q: %s", p.Check, p.Node, p.Key, p.What)
}

// Lost returns the acknowledged writes missing from the nodes' states: a
// node must hold, for every key written, the greatest acknowledged write or
// a write that LWW orders after it. states[i] is node i's keys.
func (h *History) Lost(states []map[string]Version) []Problem {
	var out []Problem
	for _, key := range sortedKeys(h.latest) {
		want := h.latest[key]
		for i, st := range states {
			got, ok := st[key]
			switch {
			case !ok:
				out = append(out, Problem{"lost", i, key, fmt.Sprintf("missing; acknowledged %q (HLC %d) on n%d", want.Value, want.HLC, want.Node)})
			case less(got.HLC, got.Origin, want.HLC, want.Origin):
				out = append(out, Problem{"lost", i, key, fmt.Sprintf("holds %q (HLC %d), older than the acknowledged %q (HLC %d) on n%d", got.Value, got.HLC, want.Value, want.HLC, want.Node)})
			}
		}
	}
	return out
}

// LWW checks the winners: every node holds the same version of each key, and
// that version is the greatest (HLC, origin) among the writes the writers
// know of: it is the greatest acknowledged write itself, or a write whose
// outcome the writers do not know that orders after it. A version whose
// value matches an acknowledged write must carry that write's HLC and origin.
func (h *History) LWW(states []map[string]Version) []Problem {
	var out []Problem
	keys := map[string]bool{}
	for _, st := range states {
		for k := range st {
			keys[k] = true
		}
	}
	for _, key := range sortedKeys(keys) {
		var first *Version
		same := true
		for _, st := range states {
			v, ok := st[key]
			if !ok {
				same = false
				continue
			}
			if first == nil {
				first = &v
			} else if v != *first {
				same = false
			}
		}
		if !same {
			var vs []string
			for i, st := range states {
				if v, ok := st[key]; ok {
					vs = append(vs, fmt.Sprintf("n%d=%q/%d", i, v.Value, v.HLC))
				} else {
					vs = append(vs, fmt.Sprintf("n%d=absent", i))
				}
			}
			out = append(out, Problem{"lww", -1, key, "nodes disagree: " + strings.Join(vs, " ")})
			continue
		}
		v := *first
		if k, ok := h.attempted[v.Value]; !ok || k != key {
			out = append(out, Problem{"lww", -1, key, fmt.Sprintf("winner %q was never written to this key", v.Value)})
			continue
		}
		if a, ok := h.acked[v.Value]; ok && (a.HLC != v.HLC || a.Origin != v.Origin) {
			out = append(out, Problem{"lww", -1, key, fmt.Sprintf("winner %q carries HLC %d, acknowledged with HLC %d", v.Value, v.HLC, a.HLC)})
			continue
		}
		if want, ok := h.latest[key]; ok && less(v.HLC, v.Origin, want.HLC, want.Origin) {
			out = append(out, Problem{"lww", -1, key, fmt.Sprintf("winner %q (HLC %d) orders before the acknowledged %q (HLC %d)", v.Value, v.HLC, want.Value, want.HLC)})
		}
	}
	return out
}

// Event is one watch event as a stream delivered it.
type Event struct {
	Revision int64
	Key      string
	HLC      uint64
}

// CheckStream checks one node's watch stream, recorded across resumes,
// against the node's change log replayed afterwards over the same revisions
// (log: every event from the stream's first revision still retained to its
// last). The stream must be strictly increasing (no duplicate) and hold
// exactly the log's events (no gap, no event the log lacks).
func CheckStream(node int, stream, log []Event) []Problem {
	var out []Problem
	for i := 1; i < len(stream); i++ {
		if stream[i].Revision <= stream[i-1].Revision {
			out = append(out, Problem{"watch", node, stream[i].Key, fmt.Sprintf("revision %d after %d: duplicate or out of order", stream[i].Revision, stream[i-1].Revision)})
		}
	}
	if len(log) == 0 {
		return out
	}
	from, to := log[0].Revision, log[len(log)-1].Revision
	got := map[int64]Event{}
	for _, e := range stream {
		if e.Revision >= from && e.Revision <= to {
			got[e.Revision] = e
		}
	}
	want := map[int64]bool{}
	for _, e := range log {
		want[e.Revision] = true
		g, ok := got[e.Revision]
		switch {
		case !ok:
			out = append(out, Problem{"watch", node, e.Key, fmt.Sprintf("gap: revision %d is in the change log but the stream never delivered it", e.Revision)})
		case g.Key != e.Key || g.HLC != e.HLC:
			out = append(out, Problem{"watch", node, e.Key, fmt.Sprintf("revision %d: stream delivered %q/%d, log holds %q/%d", e.Revision, g.Key, g.HLC, e.Key, e.HLC)})
		}
	}
	for _, e := range stream {
		if e.Revision >= from && e.Revision <= to && !want[e.Revision] {
			out = append(out, Problem{"watch", node, e.Key, fmt.Sprintf("revision %d delivered but not in the change log", e.Revision)})
		}
	}
	return out
}

// Percentile returns the p-th percentile (0..100, nearest rank) of ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
