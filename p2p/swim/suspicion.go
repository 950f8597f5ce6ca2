package swim

import (
	"math"
	"time"
)

// suspicion is the Lifeguard dynamic suspicion timer of one suspect member
// (memberlist's suspicion.go), without a real timer: it only computes the
// deadline, which Tick compares with now.
type suspicion struct {
	start    time.Time
	min, max time.Duration
	// k is the number of independent confirmations that drive the
	// timeout to min; n is how many were counted so far.
	k, n int
	// confirmed holds who accused the member: the first accuser, then one
	// entry per counted confirmation, so none counts twice.
	confirmed map[string]struct{}
	deadline  time.Time
}

// newSuspicion starts a suspicion at now raised by from, in a cluster of n
// members (self included), with cfg's multipliers.
func newSuspicion(from string, n int, cfg Config, now time.Time) *suspicion {
	k := cfg.SuspicionMult - 2
	if n-2 < k {
		k = 0
	}
	minT := suspicionMinTimeout(cfg.SuspicionMult, n, cfg.ProbeInterval)
	s := &suspicion{
		start:     now,
		min:       minT,
		max:       time.Duration(cfg.SuspicionMaxTimeoutMult) * minT,
		k:         max(k, 0),
		confirmed: map[string]struct{}{from: {}},
	}
	s.deadline = now.Add(suspicionTimeout(s.n, s.k, s.min, s.max))
	return s
}

// confirm counts an independent confirmation from another member and
// brings the deadline forward. It returns false, changing nothing, for a
// member already counted (or the first accuser) and once k were counted.
func (s *suspicion) confirm(from string) bool {
	if s.n >= s.k {
		return false
	}
	if _, ok := s.confirmed[from]; ok {
		return false
	}
	s.confirmed[from] = struct{}{}
	s.n++
	s.deadline = s.start.Add(suspicionTimeout(s.n, s.k, s.min, s.max))
	return true
}

// suspicionMinTimeout is memberlist's suspicionTimeout:
// mult * max(1, log10(n)) * interval, with the node scale kept to three
// decimals (as memberlist does, so both agree to the nanosecond).
func suspicionMinTimeout(mult, n int, interval time.Duration) time.Duration {
	nodeScale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	return time.Duration(mult) * time.Duration(nodeScale*1000) * interval / 1000
}

// suspicionTimeout is the total suspicion time, from the start, after n of
// k wanted confirmations (memberlist's remainingSuspicionTime plus the
// elapsed time):
//
//	max - (log(n+1) / log(k+1)) * (max - min), floored to the millisecond,
//	and never below min.
//
// With k < 1 no confirmation is awaited and the timeout is min.
func suspicionTimeout(n, k int, min, max time.Duration) time.Duration {
	if k < 1 {
		return min
	}
	frac := math.Log(float64(n)+1) / math.Log(float64(k)+1)
	raw := max.Seconds() - frac*(max.Seconds()-min.Seconds())
	timeout := time.Duration(math.Floor(1000*raw)) * time.Millisecond
	if timeout < min {
		timeout = min
	}
	return timeout
}
