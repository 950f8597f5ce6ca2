package nemesis

import (
	"strings"
	"testing"
	"time"
)

func TestHistoryLostAndLWW(t *testing.T) {
	writes := []Write{
		{Key: "a", Value: "a1", Acked: true, HLC: 10, Origin: "x"},
		{Key: "a", Value: "a2", Acked: true, HLC: 20, Origin: "y"},
		{Key: "a", Value: "a3", Acked: false},                      // outcome unknown
		{Key: "b", Value: "b1", Acked: true, HLC: 30, Origin: "x"}, // ties with b2 on HLC
		{Key: "b", Value: "b2", Acked: true, HLC: 30, Origin: "y"}, // wins on origin
	}
	h := NewHistory(writes)
	a2 := Version{"a2", 20, "y"}
	b2 := Version{"b2", 30, "y"}
	tests := []struct {
		name     string
		states   []map[string]Version
		wantLost []string // "node:key"
		wantLWW  []string // substrings of the LWW problems, in order
	}{
		{
			name:   "every node holds the winners",
			states: []map[string]Version{{"a": a2, "b": b2}, {"a": a2, "b": b2}},
		},
		{
			name:   "an unknown write may win when it orders after the acknowledged ones",
			states: []map[string]Version{{"a": {"a3", 25, "x"}, "b": b2}, {"a": {"a3", 25, "x"}, "b": b2}},
		},
		{
			name:     "a node misses a key",
			states:   []map[string]Version{{"a": a2, "b": b2}, {"b": b2}},
			wantLost: []string{"1:a"},
			wantLWW:  []string{"nodes disagree"},
		},
		{
			name:     "a node holds an older write",
			states:   []map[string]Version{{"a": a2, "b": b2}, {"a": {"a1", 10, "x"}, "b": b2}},
			wantLost: []string{"1:a"},
			wantLWW:  []string{"nodes disagree"},
		},
		{
			name:     "the HLC tie went to the lower origin everywhere",
			states:   []map[string]Version{{"a": a2, "b": {"b1", 30, "x"}}, {"a": a2, "b": {"b1", 30, "x"}}},
			wantLost: []string{"0:b", "1:b"},
			wantLWW:  []string{"orders before"},
		},
		{
			name:    "a value never written",
			states:  []map[string]Version{{"a": {"zz", 99, "x"}, "b": b2}},
			wantLWW: []string{"never written"},
		},
		{
			name:    "an acknowledged value under another timestamp (twin identities)",
			states:  []map[string]Version{{"a": {"a2", 21, "y"}, "b": b2}},
			wantLWW: []string{"acknowledged with HLC 20"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lost []string
			for _, p := range h.Lost(tt.states) {
				lost = append(lost, strings.Join([]string{string(rune('0' + p.Node)), p.Key}, ":"))
			}
			if strings.Join(lost, ",") != strings.Join(tt.wantLost, ",") {
				t.Errorf("Lost = %v, want %v", lost, tt.wantLost)
			}
			lww := h.LWW(tt.states)
			if len(lww) != len(tt.wantLWW) {
				t.Fatalf("LWW = %v, want %d problems (%v)", lww, len(tt.wantLWW), tt.wantLWW)
			}
			for i, p := range lww {
				if !strings.Contains(p.What, tt.wantLWW[i]) {
					t.Errorf("LWW problem %d = %v, want it to say %q", i, p, tt.wantLWW[i])
				}
			}
		})
	}
	if h.Acked != 4 || h.Unknown != 1 {
		t.Errorf("Acked, Unknown = %d, %d; want 4, 1", h.Acked, h.Unknown)
	}
}

func TestCheckStream(t *testing.T) {
	ev := func(revs ...int64) []Event {
		out := make([]Event, len(revs))
		for i, r := range revs {
			out[i] = Event{Revision: r, Key: "k", HLC: uint64(r)}
		}
		return out
	}
	tests := []struct {
		name        string
		stream, log []Event
		want        []string
	}{
		{"identical", ev(3, 4, 5, 7), ev(3, 4, 5, 7), nil},
		{"a gap at a resume", ev(3, 4, 7), ev(3, 4, 5, 7), []string{"gap: revision 5"}},
		{"a duplicate after a resume", ev(3, 4, 4, 5), ev(3, 4, 5), []string{"revision 4 after 4"}},
		{"out of order", ev(3, 5, 4), ev(3, 4, 5), []string{"revision 4 after 5"}},
		{"an event the log lacks", ev(3, 4, 5), ev(3, 5), []string{"revision 4 delivered but not"}},
		{"the log was compacted below the stream's start", ev(1, 2, 3, 4), ev(3, 4), nil},
		{"a different write under a revision", ev(3, 4), []Event{{3, "k", 3}, {4, "other", 4}}, []string{`stream delivered "k"/4, log holds "other"/4`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckStream(2, tt.stream, tt.log)
			if len(got) != len(tt.want) {
				t.Fatalf("CheckStream = %v, want %d problems (%v)", got, len(tt.want), tt.want)
			}
			for i, p := range got {
				if !strings.Contains(p.What, tt.want[i]) || p.Node != 2 || p.Check != "watch" {
					t.Errorf("problem %d = %v, want a watch problem of n2 saying %q", i, p, tt.want[i])
				}
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	tests := []struct {
		p    float64
		want time.Duration
	}{{50, 3}, {100, 5}, {0, 1}, {90, 5}, {20, 1}}
	for _, tt := range tests {
		if got := Percentile(ds, tt.p); got != tt.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", ds, tt.p, got, tt.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
}

func TestHistoryClockWait(t *testing.T) {
	healed := time.UnixMilli(1_000_000_000_000)
	stamp := func(d time.Duration) uint64 { return uint64(healed.Add(d).UnixMilli()) << 16 }
	tests := []struct {
		name   string
		writes []Write
		want   time.Duration
	}{
		{"no write", nil, 0},
		{"stamped before the heal", []Write{{Key: "a", Value: "1", Acked: true, HLC: stamp(-time.Second)}}, 0},
		{"ahead, within the offset", []Write{{Key: "a", Value: "1", Acked: true, HLC: stamp(400 * time.Millisecond)}}, 0},
		{"2 s ahead", []Write{
			{Key: "a", Value: "1", Acked: true, HLC: stamp(2 * time.Second)},
			{Key: "b", Value: "2", Acked: true, HLC: stamp(time.Second)},
		}, 1500 * time.Millisecond},
		{"an unacknowledged write does not count", []Write{{Key: "a", Value: "1", HLC: stamp(2 * time.Second)}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewHistory(tt.writes).ClockWait(healed, 500*time.Millisecond); got != tt.want {
				t.Errorf("ClockWait = %v, want %v", got, tt.want)
			}
		})
	}
}
