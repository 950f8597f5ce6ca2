package testutil

import (
	"testing"
	"time"
)

// PollInterval is how often Eventually checks its condition.
const PollInterval = 5 * time.Millisecond

// Eventually polls cond every PollInterval until it holds, and fails tb
// with "timed out after d waiting until what" if d passes first. cond is
// checked once more after the deadline has passed before failing.
func Eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	EventuallyWhy(tb, d, PollInterval, what, func() (bool, string) { return cond(), "" })
}

// EventuallyWhy polls cond every interval until it holds, and returns how
// long that took. If d passes first it fails tb with "timed out after d
// waiting until what: why", where why is what the last failed check said.
// A slow condition (one that runs a command, say) wants a longer interval.
func EventuallyWhy(tb testing.TB, d, interval time.Duration, what string, cond func() (ok bool, why string)) time.Duration {
	tb.Helper()
	start := time.Now()
	deadline := start.Add(d)
	for {
		ok, why := cond()
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			if why == "" {
				tb.Fatalf("timed out after %v waiting until %s", d, what)
			}
			tb.Fatalf("timed out after %v waiting until %s: %s", d, what, why)
		}
		time.Sleep(interval) // polling interval, not synchronization
	}
}
