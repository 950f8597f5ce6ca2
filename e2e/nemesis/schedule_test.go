package nemesis

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestNewScheduleReproducible(t *testing.T) {
	cfg := ScheduleConfig{Duration: 5 * time.Minute}
	a, b := NewSchedule(42, cfg), NewSchedule(42, cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("seed 42 gave two schedules:\n%v\n%v", a, b)
	}
	if c := NewSchedule(43, cfg); reflect.DeepEqual(a.Rounds, c.Rounds) {
		t.Errorf("seeds 42 and 43 gave the same schedule")
	}
}

func TestNewScheduleShape(t *testing.T) {
	tests := []struct {
		name       string
		cfg        ScheduleConfig
		wantRounds int
	}{
		{"defaults", ScheduleConfig{}, 4},
		{"two minutes in rounds of 15 s", ScheduleConfig{Duration: 2 * time.Minute, RoundLength: 15 * time.Second}, 8},
		{"shorter than a round", ScheduleConfig{Duration: 10 * time.Second}, 1},
		{"soak", ScheduleConfig{Duration: 30 * time.Minute, Protected: []int{0, 1}}, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.defaults()
			for seed := range uint64(50) {
				s := NewSchedule(seed, tt.cfg)
				if len(s.Rounds) != tt.wantRounds {
					t.Fatalf("seed %d: %d rounds, want %d", seed, len(s.Rounds), tt.wantRounds)
				}
				for _, r := range s.Rounds {
					if r.Duration() < cfg.RoundLength || r.Duration() >= cfg.RoundLength+cfg.HoldMax+cfg.PauseMax {
						t.Errorf("seed %d: round of %v, want [%v, %v)", seed, r.Duration(), cfg.RoundLength, cfg.RoundLength+cfg.HoldMax+cfg.PauseMax)
					}
					for _, st := range r.Steps {
						checkStep(t, seed, st, cfg)
					}
				}
			}
		})
	}
}

func checkStep(t *testing.T, seed uint64, st Step, cfg ScheduleConfig) {
	t.Helper()
	if st.Hold < cfg.HoldMin || st.Hold > cfg.HoldMax || st.Pause < cfg.PauseMin || st.Pause > cfg.PauseMax {
		t.Errorf("seed %d: %v: hold or pause out of bounds", seed, st)
	}
	if len(st.Faults) < 1 || len(st.Faults) > 2 {
		t.Errorf("seed %d: %v: %d faults, want 1 or 2", seed, st, len(st.Faults))
	}
	kinds := map[Kind]bool{}
	targets := map[int]bool{}
	for _, f := range st.Faults {
		if kinds[f.Kind] {
			t.Errorf("seed %d: %v: two faults of one kind", seed, st)
		}
		kinds[f.Kind] = true
		if f.Kind == Partition {
			if n := len(f.Nodes); n < 1 || n > 2 {
				t.Errorf("seed %d: %v: a side of %d nodes, want 1|4 or 2|3", seed, st, n)
			}
			continue
		}
		n := f.Nodes[0]
		if targets[n] {
			t.Errorf("seed %d: %v: two process faults on n%d", seed, st, n)
		}
		targets[n] = true
		if f.Kind != Stop && slices.Contains(cfg.Protected, n) {
			t.Errorf("seed %d: %v: restarts the protected n%d", seed, st, n)
		}
		if f.Kind == Skew && f.Offset == 0 {
			t.Errorf("seed %d: %v: a skew without an offset", seed, st)
		}
	}
}

func TestNewScheduleDrawsEveryKind(t *testing.T) {
	faults := NewSchedule(7, ScheduleConfig{Duration: 10 * time.Minute}).Faults()
	for _, k := range []Kind{Kill, Stop, Partition, Skew} {
		if faults[k] == 0 {
			t.Errorf("10 minutes of schedule without a %v: %v", k, faults)
		}
	}
}
