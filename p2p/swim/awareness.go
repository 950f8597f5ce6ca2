package swim

import "time"

// awareness is Lifeguard's local health score (memberlist's awareness.go):
// 0 is healthy, max-1 is the worst. A node that misses acks and nacks, or
// has to refute accusations, is probably the slow one itself, so it
// stretches its own probe interval and timeout rather than accuse others.
type awareness struct {
	max   int
	score int
}

// apply adds delta to the score and clamps it to 0..max-1.
func (a *awareness) apply(delta int) {
	a.score += delta
	if a.score > a.max-1 {
		a.score = a.max - 1
	}
	if a.score < 0 {
		a.score = 0
	}
}

// scale returns d multiplied by score+1.
func (a *awareness) scale(d time.Duration) time.Duration {
	return d * time.Duration(a.score+1)
}

// probeFailedDelta is memberlist's penalty for a probe that got no ack:
// one point per expected nack that did not arrive, or one point if no nack
// was expected. When every expected nack arrived, the helpers could reach
// us and the target is what failed, so our health is not blamed.
func probeFailedDelta(nacks, expectedNacks int) int {
	if expectedNacks <= 0 {
		return 1
	}
	nacks = max(nacks, 0)
	if nacks >= expectedNacks {
		return 0
	}
	return expectedNacks - nacks
}
