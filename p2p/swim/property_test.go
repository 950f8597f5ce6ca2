package swim

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// Random event sequences never panic and keep the invariants: self is
// Alive unless Left, incarnations never decrease while a member is in the
// table, health stays in range, suspects have deadlines. The same seed
// gives the same trace. A failure prints the seed.
func TestPropertyRandomEvents(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		a := runRandom(t, seed)
		if b := runRandom(t, seed); a != b {
			t.Fatalf("seed %d: two runs differ", seed)
		}
	}
}

func runRandom(t *testing.T, seed uint64) string {
	ev := rand.New(rand.NewPCG(seed, 7)) // drives the events
	cfg := LoopbackConfig()
	cfg.Rand = seeded(seed)
	if seed%2 == 0 {
		cfg = lan(seed)
	}
	d, err := New("self", cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"self", "a", "b", "c", "d", "e", "f"}
	pick := func() string { return ids[ev.IntN(len(ids))] }
	now := t0
	var trace strings.Builder
	incs := map[string]uint64{}
	for step := range 400 {
		now = now.Add(time.Duration(ev.IntN(1500)) * time.Millisecond)
		op := ev.IntN(11)
		var out any
		switch op {
		case 0:
			d.Add(pick(), now)
		case 1:
			if ev.IntN(4) == 0 {
				id := pick()
				d.Remove(id)
				delete(incs, id)
			}
		case 2:
			target, ok := d.StartProbe(now)
			out = fmt.Sprint(target, ok)
		case 3:
			d.Acked(pick(), now)
		case 4:
			out = d.DirectFailed(pick(), now)
		case 5:
			out = d.ProbeFailed(pick(), now, ev.IntN(5)-1, ev.IntN(4))
		case 6, 7, 8:
			u := Update{ID: pick(), State: State(ev.IntN(5)), Incarnation: uint64(ev.IntN(6)), From: pick()}
			if ev.IntN(50) == 0 {
				u.Incarnation = ^uint64(0) - uint64(ev.IntN(2))
			}
			changed, o := d.Apply(u, now)
			out = fmt.Sprint(changed, o)
		case 9:
			ups, reaped := d.Tick(now)
			out = fmt.Sprint(ups, reaped)
			for _, id := range reaped {
				delete(incs, id)
			}
		case 10:
			if ev.IntN(20) == 0 {
				out = d.Leave(now)
			} else {
				d.Heard(pick(), now)
			}
		}
		fmt.Fprintf(&trace, "%d %d %v\n", step, op, out)

		ms := d.Members()
		for i, m := range ms {
			if i > 0 && ms[i-1].ID >= m.ID {
				t.Fatalf("seed %d step %d: members not sorted", seed, step)
			}
			if prev, ok := incs[m.ID]; ok && m.Incarnation < prev {
				t.Fatalf("seed %d step %d: %s incarnation %d < %d", seed, step, m.ID, m.Incarnation, prev)
			}
			incs[m.ID] = m.Incarnation
			if m.ID == "self" && m.State != Alive && !(d.left && m.State == Left) {
				t.Fatalf("seed %d step %d: self is %v", seed, step, m.State)
			}
			if _, ok := d.SuspicionDeadline(m.ID); ok != (m.State == Suspect) {
				t.Fatalf("seed %d step %d: %s is %v, deadline %v", seed, step, m.ID, m.State, ok)
			}
		}
		if _, ok := d.Member("self"); !ok {
			t.Fatalf("seed %d step %d: self gone", seed, step)
		}
		if h := d.Health(); h < 0 || h >= cfg.AwarenessMaxMultiplier {
			t.Fatalf("seed %d step %d: health %d", seed, step, h)
		}
	}
	return trace.String()
}
