package swim

import (
	"testing"
	"time"
)

func TestSuspicionMinTimeout(t *testing.T) {
	cases := []struct {
		mult, n  int
		interval time.Duration
		want     time.Duration
	}{
		{4, 0, time.Second, 4 * time.Second},
		{4, 1, time.Second, 4 * time.Second},
		{4, 5, time.Second, 4 * time.Second},          // log10 5 < 1
		{4, 10, time.Second, 4 * time.Second},         // log10 10 = 1
		{4, 50, time.Second, 6792 * time.Millisecond}, // 1.69897 kept as 1.698
		{4, 100, time.Second, 8 * time.Second},
		{4, 1000, time.Second, 12 * time.Second},
		{2, 3, 200 * time.Millisecond, 400 * time.Millisecond},
	}
	for _, c := range cases {
		if got := suspicionMinTimeout(c.mult, c.n, c.interval); got != c.want {
			t.Errorf("suspicionMinTimeout(%d, %d, %v) = %v, want %v", c.mult, c.n, c.interval, got, c.want)
		}
	}
}

// The cases of memberlist's TestSuspicion_remainingSuspicionTime, as total
// times (remaining + elapsed), plus the k < 1 case.
func TestSuspicionTimeout(t *testing.T) {
	const minT, maxT = 2 * time.Second, 30 * time.Second
	cases := []struct {
		n, k int
		want time.Duration
	}{
		{0, 3, 30 * time.Second},
		{1, 3, 16 * time.Second},
		{2, 3, 7810 * time.Millisecond},
		{3, 3, 2 * time.Second},
		{4, 3, 2 * time.Second}, // never below min
		{5, 3, 2 * time.Second},
		{0, 0, 2 * time.Second}, // no confirmations awaited: min at once
	}
	for _, c := range cases {
		if got := suspicionTimeout(c.n, c.k, minT, maxT); got != c.want {
			t.Errorf("suspicionTimeout(n=%d, k=%d) = %v, want %v", c.n, c.k, got, c.want)
		}
	}
}

// A member that misses direct and indirect probes becomes Suspect, then
// Dead exactly at its suspicion deadline.
func TestProbeFailureSuspectThenDead(t *testing.T) {
	cases := []struct {
		name string
		n    int
		want time.Duration // suspicion timeout with no confirmation
	}{
		// k = SuspicionMult-2 = 2 but N-2 = 1 < k: k = 0, the minimum applies.
		{"N=3 no confirmations awaited", 3, 4 * time.Second},
		// min = 4*1*1s, max = 6*min.
		{"N=5", 5, 24 * time.Second},
		// min = 4*log10(100)*1s = 8s, max = 48s.
		{"N=100", 100, 48 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := cluster(t, lan(1), c.n)
			now := d.NextProbeAt()
			target, ok := d.StartProbe(now)
			if !ok {
				t.Fatal("no target")
			}
			helpers := d.DirectFailed(target, now.Add(d.ProbeTimeout()))
			if want := min(3, c.n-2); len(helpers) != want {
				t.Fatalf("helpers = %v, want %d", helpers, want)
			}
			failedAt := now.Add(d.ProbeInterval())
			out := d.ProbeFailed(target, failedAt, len(helpers), len(helpers))
			want := []Update{{ID: target, State: Suspect, Incarnation: 0, From: "self"}}
			if len(out) != 1 || out[0] != want[0] {
				t.Fatalf("ProbeFailed = %v, want %v", out, want)
			}
			m := mustState(t, d, target, Suspect)
			if !m.StateSince.Equal(failedAt) {
				t.Fatalf("StateSince = %v, want %v", m.StateSince, failedAt)
			}
			deadline := failedAt.Add(c.want)
			if got, _ := d.SuspicionDeadline(target); !got.Equal(deadline) {
				t.Fatalf("deadline = %v, want %v", got, deadline)
			}
			if at, ok := d.NextTickAt(); !ok || !at.Equal(deadline) {
				t.Fatalf("NextTickAt = %v %v, want %v", at, ok, deadline)
			}
			if ups, _ := d.Tick(deadline.Add(-time.Nanosecond)); len(ups) != 0 {
				t.Fatalf("dead before the deadline: %v", ups)
			}
			mustState(t, d, target, Suspect)
			ups, _ := d.Tick(deadline)
			if len(ups) != 1 || ups[0] != (Update{ID: target, State: Dead, Incarnation: 0, From: "self"}) {
				t.Fatalf("Tick at deadline = %v", ups)
			}
			mustState(t, d, target, Dead)
			if ups, _ := d.Tick(deadline.Add(time.Second)); len(ups) != 0 {
				t.Fatalf("second Tick = %v", ups)
			}
		})
	}
}

// Independent confirmations shorten the timeout per memberlist's formula;
// duplicates, the first accuser and confirmations past k do not.
func TestSuspicionConfirmations(t *testing.T) {
	// N = 10: min = 4s, max = 24s, k = 2.
	d := cluster(t, lan(2), 10)
	steps := []struct {
		from         string
		wantChanged  bool
		wantDeadline time.Duration // after t0
	}{
		{"m02", true, 24 * time.Second},         // starts the suspicion at max
		{"m02", false, 24 * time.Second},        // the accuser cannot confirm
		{"m03", true, 11381 * time.Millisecond}, // 24 - log2/log3*20 = 11.3814..
		{"m03", false, 11381 * time.Millisecond},
		{"self", true, 4 * time.Second}, // our own probe counts too: n = k, min
		{"m04", false, 4 * time.Second}, // k reached
	}
	for i, s := range steps {
		now := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		changed, out := d.Apply(Update{ID: "m01", State: Suspect, From: s.from}, now)
		if changed != s.wantChanged || (len(out) == 1) != s.wantChanged {
			t.Fatalf("step %d (%s): changed=%v out=%v, want changed=%v", i, s.from, changed, out, s.wantChanged)
		}
		if got, _ := d.SuspicionDeadline("m01"); !got.Equal(t0.Add(s.wantDeadline)) {
			t.Fatalf("step %d (%s): deadline %v, want t0+%v", i, s.from, got.Sub(t0), s.wantDeadline)
		}
	}
	if ups, _ := d.Tick(t0.Add(4 * time.Second)); len(ups) != 1 || ups[0].ID != "m01" {
		t.Fatalf("Tick = %v", ups)
	}
}
