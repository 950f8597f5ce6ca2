package main

import (
	"testing"
	"time"
)

func TestAgentProcs(t *testing.T) {
	for _, tc := range []struct{ cpus, want int }{{1, 4}, {2, 4}, {3, 6}, {16, 32}} {
		if got := agentProcs(tc.cpus); got != tc.want {
			t.Errorf("agentProcs(%d) = %d; want %d", tc.cpus, got, tc.want)
		}
	}
}

func TestParseTestClockOffset(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"2s", 2 * time.Second, false},
		{"-750ms", -750 * time.Millisecond, false},
		{"0", 0, false},
		{"1h", time.Hour, false},
		{"61m", 0, true},
		{"-2h", 0, true},
		{"2", 0, true},
		{"soon", 0, true},
	}
	for _, tt := range tests {
		got, err := parseTestClockOffset(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseTestClockOffset(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
