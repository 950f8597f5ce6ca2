package frontier

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt"
)

// reference is the naive view the Tracker's cached stable frontiers must
// agree with: every member's announced vector, the live set, every lag
// mark ever left, and every query a minimum or a scan computed afresh. It
// takes this node's own frontier from the Tracker (its rules are tested
// above: TestObserveBatch, TestPropertyAnyDeliveryOrder).
type reference struct {
	self  string
	peers map[string]*peerState
	live  map[string]bool
	marks map[string]map[crdt.Timestamp]bool
}

func newReference(self string) *reference {
	return &reference{self: self, peers: map[string]*peerState{}, live: map[string]bool{},
		marks: map[string]map[crdt.Timestamp]bool{}}
}

func (r *reference) announce(m string, epoch crdt.Timestamp, v Vector) {
	if m == r.self {
		return
	}
	p := r.peers[m]
	switch {
	case p == nil || epoch > p.epoch:
		r.peers[m] = &peerState{epoch: epoch, v: v.Clone()}
	case epoch == p.epoch:
		for o, f := range v {
			p.v[o] = max(p.v[o], f)
		}
	}
}

func (r *reference) mark(o string, first crdt.Timestamp) {
	if r.marks[o] == nil {
		r.marks[o] = map[crdt.Timestamp]bool{}
	}
	r.marks[o][first] = true
}

func (r *reference) forget(m string) {
	delete(r.peers, m)
	delete(r.live, m)
	if m != r.self {
		delete(r.marks, m)
		for _, p := range r.peers {
			delete(p.v, m)
		}
	}
}

// frontier is member m's frontier for o, own taken from the Tracker.
func (r *reference) frontier(tr *Tracker, m, o string) crdt.Timestamp {
	if m == r.self {
		return tr.Own(o)
	}
	if p := r.peers[m]; p != nil {
		return p.v[o]
	}
	return 0
}

func (r *reference) stable(tr *Tracker, o string) crdt.Timestamp {
	s := tr.Own(o)
	for m := range r.live {
		s = min(s, r.frontier(tr, m, o))
	}
	return s
}

func (r *reference) missing(tr *Tracker, o string, h crdt.Timestamp) []string {
	var out []string
	for _, m := range append(r.liveList(), r.self) {
		if r.frontier(tr, m, o) < h {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

func (r *reference) liveList() []string {
	var out []string
	for m := range r.live {
		out = append(out, m)
	}
	return out
}

// lag returns member's lag with every mark ever left (the most the
// Tracker can report) and with none (the least: the highest frontier's
// age, the documented lower bound).
func (r *reference) lag(tr *Tracker, member string, now crdt.Timestamp) (most, least time.Duration) {
	targets := tr.Vector()
	for m := range r.live {
		if p := r.peers[m]; p != nil {
			for o, f := range p.v {
				targets[o] = max(targets[o], f)
			}
		}
	}
	age := func(ts crdt.Timestamp) time.Duration {
		return time.Duration(now.Physical()-ts.Physical()) * time.Millisecond
	}
	for o, target := range targets {
		have := r.frontier(tr, member, o)
		if have >= target {
			continue
		}
		oldest := target
		for mk := range r.marks[o] {
			if mk > have && mk <= target {
				oldest = min(oldest, mk)
			}
		}
		most = max(most, age(oldest))
		least = max(least, age(target))
	}
	return most, least
}

// TestPropertyStableAgainstReference drives a Tracker and the naive
// reference through random operations (announcements in any order,
// duplicates, stale and new epochs, members going live and dead, members
// forgotten, own writes, gossip batches with gaps, anti-entropy merges) and
// checks after every one that Stable, Converged, Missing and Lag agree.
// Lag agrees exactly while no minimum ever went down (its marks are
// pruned lazily); after a change that can lower one (a member live again,
// a new epoch, a member forgotten), it stays between the naive bounds.
func TestPropertyStableAgainstReference(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 13))
	ms := func(m int) crdt.Timestamp { return crdt.NewTimestamp(int64(m), 0) }
	members := []string{"a", "b", "c", "d", "e"}
	origins := append([]string{"s"}, members...)
	for iter := range 100 {
		tr, err := New(Config{Self: "s", Epoch: ms(1), MaxMarks: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		ref := newReference("s")
		own := 1 // this node's last write, in ms
		lowered := false
		now := ms(200)
		for step := range 150 {
			var op string
			switch k := rng.IntN(100); {
			case k < 40: // an announcement: a delta, maybe a stale or new epoch
				m := members[rng.IntN(len(members))]
				epoch := ms(1 + rng.IntN(3))
				v := Vector{}
				for range rng.IntN(4) {
					v[origins[rng.IntN(len(origins))]] = ms(rng.IntN(120))
				}
				if p := ref.peers[m]; p != nil && epoch > p.epoch && ref.live[m] {
					lowered = true
				}
				op = fmt.Sprintf("announce %s epoch %d %v", m, epoch, v)
				tr.Announce(m, epoch, v)
				ref.announce(m, epoch, v)
			case k < 55: // the live set changes
				var live []string
				for _, m := range members {
					if rng.IntN(3) > 0 {
						live = append(live, m)
						if !ref.live[m] {
							lowered = true
						}
					}
				}
				if rng.IntN(4) == 0 {
					live = append(live, "s") // self may be listed: ignored
				}
				op = fmt.Sprintf("live %v", live)
				tr.SetLive(live)
				ref.live = map[string]bool{}
				for _, m := range live {
					if m != "s" {
						ref.live[m] = true
					}
				}
			case k < 58: // a member removed from the cluster
				m := members[rng.IntN(len(members))]
				op = "forget " + m
				tr.Forget(m)
				ref.forget(m)
				lowered = true
			case k < 73: // own writes
				first := own + 1
				own += 1 + rng.IntN(3)
				op = fmt.Sprintf("local write %d..%d", first, own)
				if len(ref.live) > 0 {
					ref.mark("s", ms(first))
				}
				tr.LocalWrite(ms(first), ms(own))
			case k < 93: // a gossip batch, maybe out of order or repeated
				o := members[rng.IntN(len(members))]
				prev := rng.IntN(110)
				first := prev + 1 + rng.IntN(3)
				last := first + rng.IntN(5)
				op = fmt.Sprintf("batch %s (%d, %d..%d]", o, prev, first, last)
				if ms(last) > tr.Own(o) {
					ref.mark(o, ms(first))
				}
				tr.ObserveBatch(o, ms(prev), ms(first), ms(last))
			default: // a completed anti-entropy session
				v := Vector{}
				for range 1 + rng.IntN(3) {
					v[members[rng.IntN(len(members))]] = ms(rng.IntN(120))
				}
				op = fmt.Sprintf("merge %v", v)
				tr.Merge(v)
			}
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("iteration %d step %d (seed %d) after %s: %s", iter, step, seed, op, fmt.Sprintf(format, args...))
			}
			for _, o := range origins {
				want := ref.stable(tr, o)
				if got := tr.Stable(o); got != want {
					fail("Stable(%s) = %d, want %d", o, got, want)
				}
				for _, h := range []crdt.Timestamp{want, want + 1, ms(rng.IntN(120))} {
					if got, want := tr.Converged(o, h), h <= want; got != want {
						fail("Converged(%s, %d) = %v, want %v", o, h, got, want)
					}
					if got, want := tr.Missing(o, h), ref.missing(tr, o, h); !slices.Equal(got, want) {
						fail("Missing(%s, %d) = %v, want %v", o, h, got, want)
					}
				}
			}
			lags := tr.Lags(now)
			for _, m := range append(ref.liveList(), "s") {
				got, known := tr.Lag(m, now)
				if known != (m == "s" || ref.peers[m] != nil) {
					fail("Lag(%s) known %v", m, known)
				}
				if !known {
					continue
				}
				if lags[m] != got {
					fail("Lags[%s] = %v, Lag = %v", m, lags[m], got)
				}
				most, least := ref.lag(tr, m, now)
				if !lowered && got != most {
					fail("Lag(%s) = %v, want %v", m, got, most)
				}
				if got < least || got > most {
					fail("Lag(%s) = %v, outside [%v, %v]", m, got, least, most)
				}
			}
		}
	}
}

// BenchmarkAnnounce measures one received announcement with every member
// live and announced, each origin's frontier advancing: a delta (one
// origin moved, as under a steady write load) and a full vector (every
// origin), then a query of the stable frontier of the origins announced,
// as a converged watch makes after each change.
func BenchmarkAnnounce(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		members := make([]string, n)
		for i := range members {
			members[i] = fmt.Sprintf("member-%04d", i)
		}
		setup := func(b *testing.B) *Tracker {
			tr, err := New(Config{Self: members[0], Epoch: 1})
			if err != nil {
				b.Fatal(err)
			}
			v := Vector{}
			for _, o := range members {
				v[o] = 10
			}
			tr.Merge(v)
			tr.SetLive(members)
			for _, m := range members[1:] {
				tr.Announce(m, 1, v)
			}
			return tr
		}
		for _, kind := range []string{"delta", "full"} {
			b.Run(fmt.Sprintf("members=%d/%s", n, kind), func(b *testing.B) {
				tr := setup(b)
				ts := crdt.Timestamp(10)
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					m := members[1+i%(n-1)]
					if i%(n-1) == 0 {
						ts++
						tr.Merge(Vector{members[i%n]: ts})
					}
					o := members[i%n]
					v := Vector{o: ts}
					if kind == "full" {
						v = make(Vector, n)
						for _, o := range members {
							v[o] = ts
						}
					}
					tr.Announce(m, 1, v)
					tr.Stable(o)
				}
			})
		}
	}
}
