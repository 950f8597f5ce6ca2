package swim

import (
	"math"
	"slices"
	"testing"
	"time"
)

// Being suspected (or declared dead, or claimed alive at a higher
// incarnation) is refuted: own incarnation jumps past the accusation, an
// Alive update is returned and the health score rises; stale and
// equal-incarnation Alive updates are ignored.
func TestRefutation(t *testing.T) {
	cases := []struct {
		name    string
		u       Update
		wantInc uint64 // self's incarnation after, from 0
		refuted bool
	}{
		{"suspect at our incarnation", Update{ID: "self", State: Suspect, Incarnation: 0, From: "m01"}, 1, true},
		{"suspect at a higher one", Update{ID: "self", State: Suspect, Incarnation: 5, From: "m01"}, 6, true},
		{"dead", Update{ID: "self", State: Dead, Incarnation: 2, From: "m01"}, 3, true},
		{"left, not by us", Update{ID: "self", State: Left, Incarnation: 0, From: "m01"}, 1, true},
		{"alive at a higher one (an older life)", Update{ID: "self", State: Alive, Incarnation: 7, From: "m01"}, 8, true},
		{"alive at ours", Update{ID: "self", State: Alive, Incarnation: 0, From: "m01"}, 0, false},
		{"largest incarnation saturates", Update{ID: "self", State: Suspect, Incarnation: math.MaxUint64, From: "m01"}, math.MaxUint64, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := cluster(t, lan(11), 3)
			changed, out := d.Apply(c.u, t0)
			me := mustState(t, d, "self", Alive)
			if me.Incarnation != c.wantInc || changed != c.refuted {
				t.Fatalf("incarnation %d changed %v, want %d %v", me.Incarnation, changed, c.wantInc, c.refuted)
			}
			if !c.refuted {
				if len(out) != 0 || d.Health() != 0 || d.Stats().Refutations != 0 {
					t.Fatalf("out %v health %d stats %+v", out, d.Health(), d.Stats())
				}
				return
			}
			want := Update{ID: "self", State: Alive, Incarnation: c.wantInc, From: "self"}
			if len(out) != 1 || out[0] != want {
				t.Fatalf("out %v, want %v", out, want)
			}
			if st := d.Stats(); st.Refutations != 1 || st.Suspicions != 0 {
				t.Fatalf("stats %+v, want 1 refutation and no suspicion (self is not suspected in its own view)", st)
			}
			if d.Health() != 1 {
				t.Fatalf("health %d, want 1", d.Health())
			}
			// The same accusation again is now stale.
			if c.u.Incarnation < math.MaxUint64 {
				if changed, out := d.Apply(c.u, t0); changed || len(out) != 0 || d.Stats().Refutations != 1 {
					t.Fatalf("stale accusation applied: %v, stats %+v", out, d.Stats())
				}
			}
		})
	}
}

// memberlist's precedence rules for other members.
func TestApplyRules(t *testing.T) {
	type step struct {
		u         Update
		changed   bool
		wantState State
		wantInc   uint64
		// suspicions is Stats().Suspicions after the step: only a move from
		// Alive to Suspect counts, not a confirmation.
		suspicions int64
	}
	up := func(s State, inc uint64, from string) Update {
		return Update{ID: "m01", State: s, Incarnation: inc, From: from}
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"alive needs a higher incarnation", []step{
			{up(Alive, 0, "m01"), false, Alive, 0, 0},
			{up(Alive, 3, "m01"), true, Alive, 3, 0},
			{up(Alive, 2, "m01"), false, Alive, 3, 0},
		}},
		{"stale suspect ignored", []step{
			{up(Alive, 3, "m01"), true, Alive, 3, 0},
			{up(Suspect, 2, "m02"), false, Alive, 3, 0},
			{up(Suspect, 3, "m02"), true, Suspect, 3, 1},
		}},
		{"alive with higher incarnation overrides suspect, equal does not", []step{
			{up(Suspect, 1, "m02"), true, Suspect, 1, 1},
			{up(Alive, 1, "m01"), false, Suspect, 1, 1},
			{up(Alive, 2, "m01"), true, Alive, 2, 1},
		}},
		{"suspect at a higher incarnation raises it", []step{
			{up(Suspect, 1, "m02"), true, Suspect, 1, 1},
			{up(Suspect, 2, "m02"), true, Suspect, 2, 1},
			{up(Alive, 2, "m01"), false, Suspect, 2, 1},
		}},
		{"a member suspected again after refuting counts twice", []step{
			{up(Suspect, 1, "m02"), true, Suspect, 1, 1},
			{up(Alive, 2, "m01"), true, Alive, 2, 1},
			{up(Suspect, 2, "m03"), true, Suspect, 2, 2},
		}},
		{"dead is final for its incarnation", []step{
			{up(Dead, 1, "m02"), true, Dead, 1, 0},
			{up(Alive, 1, "m01"), false, Dead, 1, 0},
			{up(Suspect, 1, "m03"), false, Dead, 1, 0},
			{up(Dead, 4, "m03"), false, Dead, 1, 0},
			{up(Left, 1, "m01"), false, Dead, 1, 0},
		}},
		{"restarted dead member comes back", []step{
			{up(Dead, 1, "m02"), true, Dead, 1, 0},
			{up(Alive, 2, "m01"), true, Alive, 2, 0},
		}},
		{"left at once, rejoins with a higher incarnation", []step{
			{up(Left, 0, "m01"), true, Left, 0, 0},
			{up(Suspect, 0, "m02"), false, Left, 0, 0},
			{up(Alive, 1, "m01"), true, Alive, 1, 0},
		}},
		{"invalid state ignored", []step{
			{up(State(9), 5, "m02"), false, Alive, 0, 0},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := cluster(t, lan(12), 5)
			for i, s := range c.steps {
				changed, out := d.Apply(s.u, t0.Add(time.Duration(i)*time.Millisecond))
				m := mustState(t, d, "m01", s.wantState)
				if changed != s.changed || m.Incarnation != s.wantInc {
					t.Fatalf("step %d %+v: changed %v inc %d, want %v %d", i, s.u, changed, m.Incarnation, s.changed, s.wantInc)
				}
				if got := d.Stats().Suspicions; got != s.suspicions {
					t.Fatalf("step %d %+v: %d suspicions counted, want %d", i, s.u, got, s.suspicions)
				}
				if s.changed && s.u.State != Suspect && (len(out) != 1 || out[0] != s.u) {
					t.Fatalf("step %d: out %v, want the update passed on", i, out)
				}
				if !s.changed && len(out) != 0 {
					t.Fatalf("step %d: out %v for no change", i, out)
				}
			}
		})
	}
}

func TestApplyUnknownMemberIgnored(t *testing.T) {
	d := cluster(t, lan(13), 2)
	if changed, out := d.Apply(Update{ID: "stranger", State: Alive, Incarnation: 3}, t0); changed || out != nil {
		t.Fatal("applied")
	}
	if len(d.Members()) != 2 {
		t.Fatal("stranger added")
	}
}

// Left is applied at once and never probed; Leave returns the update and
// stops probing and refuting.
func TestLeave(t *testing.T) {
	d := cluster(t, lan(14), 4)
	d.Apply(Update{ID: "m02", State: Left, Incarnation: 0, From: "m02"}, t0)
	mustState(t, d, "m02", Left)
	for range 30 {
		if target, _ := d.StartProbe(d.NextProbeAt()); target == "m02" {
			t.Fatal("left member probed")
		}
	}
	d.Apply(Update{ID: "self", State: Suspect, From: "m01"}, t0) // refute: inc 1
	want := Update{ID: "self", State: Left, Incarnation: 1, From: "self"}
	if got := d.Leave(t0); got != want {
		t.Fatalf("Leave = %v, want %v", got, want)
	}
	if got := d.Leave(t0.Add(time.Second)); got != want {
		t.Fatalf("second Leave = %v", got)
	}
	mustState(t, d, "self", Left)
	if _, ok := d.StartProbe(d.NextProbeAt()); ok {
		t.Fatal("probing after Leave")
	}
	if changed, out := d.Apply(Update{ID: "self", State: Dead, Incarnation: 5, From: "m01"}, t0); changed || out != nil {
		t.Fatal("refuted after Leave")
	}
	if _, reaped := d.Tick(t0.Add(48 * time.Hour)); slices.Contains(reaped, "self") {
		t.Fatal("self reaped")
	}
	mustState(t, d, "self", Left)
}

func TestMembersSortedAndHeard(t *testing.T) {
	d, _ := New("m", lan(15), t0)
	for _, id := range []string{"z", "a", "q", "a", "m", ""} {
		d.Add(id, t0)
	}
	var ids []string
	for _, m := range d.Members() {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"a", "m", "q", "z"}) {
		t.Fatalf("members %v", ids)
	}
	d.Heard("q", t0.Add(time.Minute))
	d.Heard("q", t0.Add(time.Second)) // older: ignored
	if m, _ := d.Member("q"); !m.LastHeard.Equal(t0.Add(time.Minute)) || m.State != Alive {
		t.Fatalf("%+v", m)
	}
	d.Remove("m") // self: ignored
	d.Remove("q")
	if _, ok := d.Member("q"); ok {
		t.Fatal("not removed")
	}
	if _, ok := d.Member("m"); !ok {
		t.Fatal("self removed")
	}
}
