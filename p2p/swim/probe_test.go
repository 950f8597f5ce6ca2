package swim

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// A member acked within the timeout stays Alive; a merely slow one that
// acks just before the timeout, every time, is never suspected.
func TestAckedWithinTimeoutStaysAlive(t *testing.T) {
	for _, delay := range []time.Duration{time.Millisecond, 499 * time.Millisecond} {
		t.Run(fmt.Sprint(delay), func(t *testing.T) {
			d := cluster(t, lan(3), 5)
			for range 200 {
				now := d.NextProbeAt()
				target, ok := d.StartProbe(now)
				if !ok {
					t.Fatal("no target")
				}
				if delay >= d.ProbeTimeout() {
					t.Fatalf("test bug: delay %v >= timeout %v", delay, d.ProbeTimeout())
				}
				d.Acked(target, now.Add(delay))
				if ups, _ := d.Tick(now.Add(delay)); len(ups) != 0 {
					t.Fatalf("Tick = %v", ups)
				}
			}
			for _, m := range d.Members() {
				if m.State != Alive || m.Incarnation != 0 {
					t.Fatalf("member %+v", m)
				}
			}
			if d.Health() != 0 {
				t.Fatalf("health %d", d.Health())
			}
		})
	}
}

// Every probeable member is probed once per round, in an order shuffled
// anew each round; left members are never probed.
func TestRoundRobin(t *testing.T) {
	d := cluster(t, lan(4), 10) // 9 others
	d.Apply(Update{ID: "m09", State: Left, From: "m09"}, t0)
	d.Apply(Update{ID: "m08", State: Suspect, From: "m07"}, t0)
	var want []string
	for i := 1; i <= 8; i++ {
		want = append(want, fmt.Sprintf("m%02d", i))
	}
	var orders [][]string
	for range 6 {
		var round []string
		for range len(want) {
			target, ok := d.StartProbe(d.NextProbeAt())
			if !ok {
				t.Fatal("no target")
			}
			d.Acked(target, d.NextProbeAt())
			round = append(round, target)
		}
		sorted := slices.Sorted(slices.Values(round))
		if !slices.Equal(sorted, want) {
			t.Fatalf("round %v, want each of %v once", round, want)
		}
		orders = append(orders, round)
	}
	distinct := map[string]bool{}
	for _, o := range orders {
		distinct[fmt.Sprint(o)] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("the order is not reshuffled: %v", orders)
	}
}

// A member added mid-round is probed in that round, and no other member is
// probed twice.
func TestAddMidRound(t *testing.T) {
	d := cluster(t, lan(5), 6)
	var round []string
	for i := range 5 {
		if i == 2 {
			d.Add("new", t0)
		}
		target, _ := d.StartProbe(d.NextProbeAt())
		round = append(round, target)
	}
	target, _ := d.StartProbe(d.NextProbeAt())
	round = append(round, target)
	if got := slices.Sorted(slices.Values(round)); !slices.Equal(got, []string{"m01", "m02", "m03", "m04", "m05", "new"}) {
		t.Fatalf("round %v", round)
	}
}

func TestNoTargets(t *testing.T) {
	d := cluster(t, lan(6), 1)
	if _, ok := d.StartProbe(t0); ok {
		t.Fatal("probed with no members")
	}
	if !d.NextProbeAt().Equal(t0.Add(time.Second)) {
		t.Fatalf("next probe %v", d.NextProbeAt())
	}
	d.Add("a", t0)
	d.Apply(Update{ID: "a", State: Left, From: "a"}, t0)
	if target, ok := d.StartProbe(d.NextProbeAt()); ok {
		t.Fatalf("probed left member %s", target)
	}
}

func TestDirectFailedHelpers(t *testing.T) {
	d := cluster(t, lan(7), 8) // m01..m07
	d.Apply(Update{ID: "m02", State: Suspect, From: "m03"}, t0)
	d.Apply(Update{ID: "m03", State: Dead, From: "m04"}, t0)
	d.Apply(Update{ID: "m04", State: Left, From: "m04"}, t0)
	seen := map[string]bool{}
	for range 50 {
		h := d.DirectFailed("m01", t0)
		if len(h) != 3 {
			t.Fatalf("helpers %v, want 3", h)
		}
		for _, id := range h {
			if !slices.Contains([]string{"m05", "m06", "m07"}, id) {
				t.Fatalf("helper %s is self, the target, or not alive", id)
			}
			seen[id] = true
		}
	}
	d.Remove("m07")
	if h := d.DirectFailed("m01", t0); len(h) != 2 {
		t.Fatalf("helpers %v, want m05 and m06", h)
	}
}

// Dead members are probed with exponential backoff between DeadRetryMin and
// DeadRetryMax, without touching the health score, and reaped after
// ReapAfter.
func TestDeadBackoffAndReap(t *testing.T) {
	cfg := LoopbackConfig() // interval 200ms, retry 200ms..2s, reap 10s
	cfg.Rand = seeded(8)
	d := cluster(t, cfg, 2)
	if changed, _ := d.Apply(Update{ID: "m01", State: Dead, From: "m99"}, t0); !changed {
		t.Fatal("dead not applied")
	}
	var probes []time.Duration
	for now := t0; now.Before(t0.Add(10 * time.Second)); now = d.NextProbeAt() {
		if target, ok := d.StartProbe(now); ok {
			probes = append(probes, now.Sub(t0))
			if up, ok := d.Accusation(target); !ok || up.State != Dead {
				t.Fatalf("accusation %v %v", up, ok)
			}
			if out := d.ProbeFailed(target, now.Add(cfg.ProbeInterval), 0, 0); len(out) != 0 {
				t.Fatalf("ProbeFailed on a dead member = %v", out)
			}
		}
		if d.Health() != 0 {
			t.Fatalf("dead probes moved health to %d", d.Health())
		}
	}
	ms := time.Millisecond
	want := []time.Duration{200 * ms, 600 * ms, 1400 * ms, 3000 * ms, 5000 * ms, 7000 * ms, 9000 * ms}
	if !slices.Equal(probes, want) {
		t.Fatalf("dead probes at %v, want %v", probes, want)
	}
	if _, reaped := d.Tick(t0.Add(cfg.ReapAfter - time.Nanosecond)); len(reaped) != 0 {
		t.Fatalf("reaped early: %v", reaped)
	}
	if _, reaped := d.Tick(t0.Add(cfg.ReapAfter)); !slices.Equal(reaped, []string{"m01"}) {
		t.Fatalf("reaped %v", reaped)
	}
	if _, ok := d.Member("m01"); ok {
		t.Fatal("still a member")
	}
	if changed, _ := d.Apply(Update{ID: "m01", State: Alive, Incarnation: 9, From: "m01"}, t0); changed {
		t.Fatal("update about a reaped member applied")
	}
}

// An ack from a dead member resets its backoff.
func TestDeadAckResetsBackoff(t *testing.T) {
	cfg := LoopbackConfig()
	cfg.Rand = seeded(9)
	d := cluster(t, cfg, 2)
	d.Apply(Update{ID: "m01", State: Dead, From: "m99"}, t0)
	d.StartProbe(t0.Add(200 * time.Millisecond)) // probed; next after 400ms
	d.Acked("m01", t0.Add(300*time.Millisecond)) // next after 200ms from here
	if _, ok := d.StartProbe(t0.Add(400 * time.Millisecond)); ok {
		t.Fatal("probed before the reset backoff")
	}
	if _, ok := d.StartProbe(t0.Add(500 * time.Millisecond)); !ok {
		t.Fatal("not probed after the reset backoff")
	}
	mustState(t, d, "m01", Dead) // only its refutation revives it
	if d.Health() != 0 {
		t.Fatalf("health %d", d.Health())
	}
}

func TestProbeFailedDelta(t *testing.T) {
	cases := []struct{ nacks, expected, want int }{
		{0, 0, 1}, {0, 3, 3}, {1, 3, 2}, {3, 3, 0}, {5, 3, 0}, {-1, 2, 2},
	}
	for _, c := range cases {
		if got := probeFailedDelta(c.nacks, c.expected); got != c.want {
			t.Errorf("probeFailedDelta(%d, %d) = %d, want %d", c.nacks, c.expected, got, c.want)
		}
	}
}

// Failed probes with missing nacks raise the health score, acks lower it,
// and the probe interval and timeout scale with it.
func TestAwareness(t *testing.T) {
	d := cluster(t, lan(10), 6)
	steps := []struct {
		name          string
		ack           bool
		nacks, expect int
		want          int
	}{
		{"all nacks: target's fault", false, 2, 2, 0},
		{"no nack expected", false, 0, 0, 1},
		{"two nacks missing", false, 1, 3, 3},
		{"ack", true, 0, 0, 2},
		{"three missing", false, 0, 3, 5},
		{"clamped to max-1", false, 0, 3, 7},
		{"ack", true, 0, 0, 6},
	}
	for _, s := range steps {
		now := d.NextProbeAt()
		target, ok := d.StartProbe(now)
		if !ok {
			t.Fatal("no target")
		}
		if s.ack {
			d.Acked(target, now)
			d.Acked(target, now) // a duplicate ack counts once
		} else {
			d.ProbeFailed(target, now, s.nacks, s.expect)
			d.ProbeFailed(target, now, s.nacks, s.expect) // counts once
		}
		if d.Health() != s.want {
			t.Fatalf("%s: health %d, want %d", s.name, d.Health(), s.want)
		}
		if got, want := d.ProbeInterval(), time.Duration(s.want+1)*time.Second; got != want {
			t.Fatalf("%s: interval %v, want %v", s.name, got, want)
		}
		if got, want := d.ProbeTimeout(), time.Duration(s.want+1)*500*time.Millisecond; got != want {
			t.Fatalf("%s: timeout %v, want %v", s.name, got, want)
		}
	}
	// StartProbe schedules with the current score.
	now := d.NextProbeAt()
	d.StartProbe(now)
	if got, want := d.NextProbeAt(), now.Add(7*time.Second); !got.Equal(want) {
		t.Fatalf("next probe %v, want now+7s", got.Sub(now))
	}
}

// A dead member found reachable again (a new connection, a message from it)
// is probed at the next probe, not after its backed-off wait.
func TestReachableDeadMemberProbedAtOnce(t *testing.T) {
	cfg := LoopbackConfig() // retry 200ms..2s
	cfg.Rand = seeded(10)
	d := cluster(t, cfg, 2)
	d.Apply(Update{ID: "m01", State: Dead, From: "m99"}, t0)
	now := t0
	// Back the probes off to the maximum.
	for range 6 {
		now = now.Add(cfg.DeadRetryMax)
		if _, ok := d.StartProbe(now); !ok {
			t.Fatal("dead member not probed after DeadRetryMax")
		}
	}
	soon := now.Add(cfg.ProbeInterval)
	if _, ok := d.StartProbe(soon); ok {
		t.Fatal("probed before its backoff")
	}
	d.Reachable("m01", soon)
	if target, ok := d.StartProbe(soon.Add(time.Millisecond)); !ok || target != "m01" {
		t.Fatalf("after Reachable: StartProbe = %q, %v; want m01 at once", target, ok)
	}
	// The backoff starts over from DeadRetryMin.
	if _, ok := d.StartProbe(soon.Add(time.Millisecond + cfg.DeadRetryMin)); !ok {
		t.Fatal("not probed DeadRetryMin after the reset")
	}
	// Reachable does nothing to members that are not dead.
	d.Reachable("self", soon)
	d.Reachable("unknown", soon)
	mustState(t, d, "m01", Dead) // only its refutation revives it
}
