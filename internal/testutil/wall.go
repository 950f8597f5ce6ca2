package testutil

import "sync/atomic"

// FakeWall is a settable wall clock in milliseconds since the Unix epoch,
// safe for concurrent use. Its Now method fits crdt.WallClock, so a test
// decides what time a hybrid logical clock reads.
type FakeWall struct{ ms atomic.Int64 }

// NewFakeWall returns a wall clock that reads ms until it is Set.
func NewFakeWall(ms int64) *FakeWall {
	w := &FakeWall{}
	w.ms.Store(ms)
	return w
}

// Now returns the time the clock was last set to.
func (w *FakeWall) Now() int64 { return w.ms.Load() }

// Set makes the clock read ms.
func (w *FakeWall) Set(ms int64) { w.ms.Store(ms) }

// Add moves the clock by ms (backwards when ms is negative), atomically with
// other calls.
func (w *FakeWall) Add(ms int64) { w.ms.Add(ms) }
