package main

import "testing"

func TestAgentProcs(t *testing.T) {
	for _, tc := range []struct{ cpus, want int }{{1, 4}, {2, 4}, {3, 6}, {16, 32}} {
		if got := agentProcs(tc.cpus); got != tc.want {
			t.Errorf("agentProcs(%d) = %d; want %d", tc.cpus, got, tc.want)
		}
	}
}
