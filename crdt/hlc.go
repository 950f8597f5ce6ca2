package crdt

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// LogicalBits is the width of the logical counter in a Timestamp.
const LogicalBits = 16

const logicalMask = 1<<LogicalBits - 1

// Timestamp is a hybrid logical clock value: physical milliseconds since the
// Unix epoch in the high 48 bits and a logical counter in the low 16. Ordering
// timestamps as integers orders them as the HLC paper does.
type Timestamp uint64

// NewTimestamp builds a timestamp from its physical milliseconds and counter.
func NewTimestamp(physicalMillis int64, logical uint16) Timestamp {
	return Timestamp(uint64(physicalMillis)<<LogicalBits | uint64(logical))
}

// Physical returns the physical part, in milliseconds since the Unix epoch.
func (t Timestamp) Physical() int64 { return int64(uint64(t) >> LogicalBits) }

// Logical returns the logical counter.
func (t Timestamp) Logical() uint16 { return uint16(uint64(t) & logicalMask) }

// Time returns the physical part as a time.Time.
func (t Timestamp) Time() time.Time { return time.UnixMilli(t.Physical()).UTC() }

// String formats the timestamp as "<RFC 3339 time>+<counter>".
func (t Timestamp) String() string {
	return fmt.Sprintf("%s+%d", t.Time().Format("2006-01-02T15:04:05.000Z"), t.Logical())
}

// ErrClockSkew is returned by Clock.Update for a remote timestamp too far ahead
// of the local wall clock.
var ErrClockSkew = errors.New("crdt: remote clock too far ahead")

// DefaultMaxOffset is the default bound on how far ahead of the local wall clock
// a remote timestamp may be (CockroachDB uses the same default).
const DefaultMaxOffset = 500 * time.Millisecond

// WallClock returns the current wall-clock time in milliseconds since the Unix
// epoch. Production code passes a function reading time.Now; tests pass a fake.
type WallClock func() int64

// SystemWallClock reads the system clock.
func SystemWallClock() int64 { return time.Now().UnixMilli() }

// OffsetWallClock returns wall shifted by offset (truncated to milliseconds).
// It is for fault-injection tests only: the agent uses it when the test-only
// CHORUS_TEST_CLOCK_OFFSET environment variable is set, to give a node a skewed
// clock. A node without it reads SystemWallClock directly and pays nothing.
func OffsetWallClock(wall WallClock, offset time.Duration) WallClock {
	if wall == nil {
		wall = SystemWallClock
	}
	ms := offset.Milliseconds()
	return func() int64 { return wall() + ms }
}

// Clock is a hybrid logical clock (Kulkarni et al., 2014). It is safe for
// concurrent use.
type Clock struct {
	wall      WallClock
	maxOffset time.Duration

	mu struct {
		sync.Mutex
		last Timestamp // the greatest timestamp returned or accepted
	}
}

// NewClock returns a clock that reads wall and refuses remote timestamps more
// than maxOffset ahead of it. maxOffset <= 0 means DefaultMaxOffset.
func NewClock(wall WallClock, maxOffset time.Duration) *Clock {
	if wall == nil {
		wall = SystemWallClock
	}
	if maxOffset <= 0 {
		maxOffset = DefaultMaxOffset
	}
	return &Clock{wall: wall, maxOffset: maxOffset}
}

// Wall reads the clock's wall clock, in milliseconds since the Unix epoch.
func (c *Clock) Wall() int64 { return c.wall() }

// MaxOffset returns how far ahead of the wall clock a remote timestamp may be.
func (c *Clock) MaxOffset() time.Duration { return c.maxOffset }

// Now returns a timestamp greater than every one this clock returned or
// accepted before.
func (c *Clock) Now() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.last = tick(c.mu.last, c.wall())
	return c.mu.last
}

// Update merges a timestamp received from another node into the clock and
// returns the clock's new value, which is greater than both. It refuses,
// without changing the clock, a timestamp whose physical part is more than
// MaxOffset ahead of the local wall clock.
func (c *Clock) Update(remote Timestamp) (Timestamp, error) {
	if err := c.Check(remote); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if remote > c.mu.last {
		c.mu.last = remote
	}
	c.mu.last = tick(c.mu.last, c.wall())
	return c.mu.last, nil
}

// Check reports, without changing the clock, whether Update would accept remote.
func (c *Clock) Check(remote Timestamp) error {
	wall := c.wall()
	if ahead := remote.Physical() - wall; ahead > c.maxOffset.Milliseconds() {
		return fmt.Errorf("%w: timestamp %s is %v ahead of the local clock; the limit is %v",
			ErrClockSkew, remote, time.Duration(ahead)*time.Millisecond, c.maxOffset)
	}
	return nil
}

// Observe raises the clock to at least ts without the offset check. It is for
// timestamps this node issued itself, such as the last one persisted before a
// restart.
func (c *Clock) Observe(ts Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts > c.mu.last {
		c.mu.last = ts
	}
}

// Last returns the greatest timestamp returned or accepted so far.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.last
}

// tick returns the next timestamp after last given the wall clock: the wall
// clock's millisecond if it is ahead, else last with its counter advanced. A
// counter that would overflow carries into the physical part, so the result is
// always greater than last.
func tick(last Timestamp, wallMillis int64) Timestamp {
	if wallMillis > last.Physical() {
		return NewTimestamp(wallMillis, 0)
	}
	return last + 1
}
