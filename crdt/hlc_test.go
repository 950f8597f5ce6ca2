package crdt

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/internal/testutil"
)

// countingWall is a wall clock that records how often it was read.
type countingWall struct {
	testutil.FakeWall
	reads atomic.Int64
}

func (w *countingWall) Now() int64 {
	w.reads.Add(1)
	return w.FakeWall.Now()
}

const maxPhysical = 1<<(64-LogicalBits) - 1

func TestTimestampPacking(t *testing.T) {
	tests := []struct {
		physical int64
		logical  uint16
		want     uint64
	}{
		{0, 0, 0},
		{0, 1, 1},
		{0, math.MaxUint16, 0xFFFF},
		{1, 0, 1 << 16},
		{1, 1, 1<<16 | 1},
		{1000, 7, 1000<<16 | 7},
		{1_700_000_000_000, 42, 1_700_000_000_000<<16 | 42},
		{maxPhysical, 0, uint64(maxPhysical) << 16},
		{maxPhysical, math.MaxUint16, math.MaxUint64},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d", tt.physical, tt.logical), func(t *testing.T) {
			ts := NewTimestamp(tt.physical, tt.logical)
			if uint64(ts) != tt.want {
				t.Errorf("NewTimestamp(%d, %d) = %#x, want %#x", tt.physical, tt.logical, uint64(ts), tt.want)
			}
			if got := ts.Physical(); got != tt.physical {
				t.Errorf("Physical() = %d, want %d", got, tt.physical)
			}
			if got := ts.Logical(); got != tt.logical {
				t.Errorf("Logical() = %d, want %d", got, tt.logical)
			}
		})
	}
}

func TestTimestampOrderMatchesPhysicalLogical(t *testing.T) {
	physicals := []int64{0, 1, 2, 999, 1000, 1001, 1 << 40, maxPhysical - 1, maxPhysical}
	logicals := []uint16{0, 1, 2, 0x7FFF, 0x8000, math.MaxUint16 - 1, math.MaxUint16}
	type pl struct {
		p int64
		l uint16
	}
	var all []pl
	for _, p := range physicals {
		for _, l := range logicals {
			all = append(all, pl{p, l})
		}
	}
	cmpPL := func(a, b pl) int {
		switch {
		case a.p < b.p:
			return -1
		case a.p > b.p:
			return 1
		case a.l < b.l:
			return -1
		case a.l > b.l:
			return 1
		}
		return 0
	}
	cmpTS := func(a, b Timestamp) int {
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	}
	for _, a := range all {
		for _, b := range all {
			ta, tb := NewTimestamp(a.p, a.l), NewTimestamp(b.p, b.l)
			if got, want := cmpTS(ta, tb), cmpPL(a, b); got != want {
				t.Fatalf("order of %v vs %v as integers = %d, want %d (physical, logical order)", a, b, got, want)
			}
		}
	}
}

func TestTimestampTimeAndString(t *testing.T) {
	ts := NewTimestamp(time.Date(2024, 3, 5, 6, 7, 8, 9_000_000, time.UTC).UnixMilli(), 12)
	if got, want := ts.Time(), time.Date(2024, 3, 5, 6, 7, 8, 9_000_000, time.UTC); !got.Equal(want) {
		t.Errorf("Time() = %v, want %v", got, want)
	}
	if loc := ts.Time().Location(); loc != time.UTC {
		t.Errorf("Time().Location() = %v, want UTC", loc)
	}
	if got, want := ts.String(), "2024-03-05T06:07:08.009Z+12"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := Timestamp(0).String(), "1970-01-01T00:00:00.000Z+0"; got != want {
		t.Errorf("Timestamp(0).String() = %q, want %q", got, want)
	}
}

func TestNewClockDefaults(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{0, DefaultMaxOffset},
		{-1, DefaultMaxOffset},
		{-time.Hour, DefaultMaxOffset},
		{time.Millisecond, time.Millisecond},
		{250 * time.Millisecond, 250 * time.Millisecond},
		{time.Minute, time.Minute},
	}
	for _, tt := range tests {
		c := NewClock(testutil.NewFakeWall(0).Now, tt.in)
		if got := c.MaxOffset(); got != tt.want {
			t.Errorf("NewClock(_, %v).MaxOffset() = %v, want %v", tt.in, got, tt.want)
		}
	}
	if DefaultMaxOffset != 500*time.Millisecond {
		t.Errorf("DefaultMaxOffset = %v, want 500ms", DefaultMaxOffset)
	}
	c := NewClock(testutil.NewFakeWall(1234).Now, 0)
	if got := c.Last(); got != 0 {
		t.Errorf("new clock Last() = %v, want 0", got)
	}
	if got, want := c.Now(), NewTimestamp(1234, 0); got != want {
		t.Errorf("first Now() = %v, want %v", got, want)
	}
}

// TestNewClockNilWall checks that a nil wall clock falls back to the system
// clock. It only checks the physical part is plausible, not the exact time.
func TestNewClockNilWall(t *testing.T) {
	c := NewClock(nil, 0)
	ts := c.Now()
	// 2020-01-01 in ms; any real system clock is past it.
	if ts.Physical() < 1_577_836_800_000 {
		t.Errorf("Now() with nil wall = %v, want a physical part from the system clock", ts)
	}
}

func TestClockNowStrictlyIncreasing(t *testing.T) {
	tests := []struct {
		name  string
		walls []int64 // wall clock before each call to Now
		want  []Timestamp
	}{
		{
			name:  "wall stands still",
			walls: []int64{1000, 1000, 1000, 1000},
			want: []Timestamp{
				NewTimestamp(1000, 0), NewTimestamp(1000, 1),
				NewTimestamp(1000, 2), NewTimestamp(1000, 3),
			},
		},
		{
			name:  "wall moves forward",
			walls: []int64{1000, 1001, 1005, 2000},
			want: []Timestamp{
				NewTimestamp(1000, 0), NewTimestamp(1001, 0),
				NewTimestamp(1005, 0), NewTimestamp(2000, 0),
			},
		},
		{
			name:  "forward then still resets counter",
			walls: []int64{1000, 1000, 1001, 1001},
			want: []Timestamp{
				NewTimestamp(1000, 0), NewTimestamp(1000, 1),
				NewTimestamp(1001, 0), NewTimestamp(1001, 1),
			},
		},
		{
			name:  "wall moves backwards",
			walls: []int64{1000, 900, 500, 999, 1000, 1001},
			want: []Timestamp{
				NewTimestamp(1000, 0), NewTimestamp(1000, 1),
				NewTimestamp(1000, 2), NewTimestamp(1000, 3),
				NewTimestamp(1000, 4), NewTimestamp(1001, 0),
			},
		},
		{
			name:  "wall jumps far back",
			walls: []int64{1_700_000_000_000, 0, -5},
			want: []Timestamp{
				NewTimestamp(1_700_000_000_000, 0),
				NewTimestamp(1_700_000_000_000, 1),
				NewTimestamp(1_700_000_000_000, 2),
			},
		},
		{
			name:  "wall at zero",
			walls: []int64{0, 0},
			want:  []Timestamp{NewTimestamp(0, 1), NewTimestamp(0, 2)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := testutil.NewFakeWall(0)
			c := NewClock(w.Now, 0)
			var prev Timestamp
			for i, ms := range tt.walls {
				w.Set(ms)
				got := c.Now()
				if got != tt.want[i] {
					t.Errorf("Now() #%d with wall %d = %v, want %v", i, ms, got, tt.want[i])
				}
				if i > 0 && got <= prev {
					t.Errorf("Now() #%d = %v, not greater than previous %v", i, got, prev)
				}
				if last := c.Last(); last != got {
					t.Errorf("Last() after Now() #%d = %v, want %v", i, last, got)
				}
				prev = got
			}
		})
	}
}

func TestClockLogicalOverflowCarries(t *testing.T) {
	w := testutil.NewFakeWall(1000)
	c := NewClock(w.Now, 0)
	c.Observe(NewTimestamp(1000, math.MaxUint16-1))

	steps := []struct {
		wall int64
		want Timestamp
	}{
		{1000, NewTimestamp(1000, math.MaxUint16)},
		{1000, NewTimestamp(1001, 0)}, // counter overflows into physical
		{1000, NewTimestamp(1001, 1)},
		{1001, NewTimestamp(1001, 2)}, // wall caught up but is not ahead
		{1002, NewTimestamp(1002, 0)},
	}
	prev := c.Last()
	for i, s := range steps {
		w.Set(s.wall)
		got := c.Now()
		if got != s.want {
			t.Errorf("step %d: Now() with wall %d = %v (%d/%d), want %v",
				i, s.wall, got, got.Physical(), got.Logical(), s.want)
		}
		if got <= prev {
			t.Errorf("step %d: Now() = %v not greater than %v", i, got, prev)
		}
		prev = got
	}
}

func TestClockNowManyTicksWallStill(t *testing.T) {
	// Run the counter through more than one full wrap with a frozen wall.
	w := testutil.NewFakeWall(5000)
	c := NewClock(w.Now, 0)
	prev := c.Now()
	const n = 3 * (1 << LogicalBits)
	for i := 0; i < n; i++ {
		ts := c.Now()
		if ts <= prev {
			t.Fatalf("tick %d: Now() = %v not greater than %v", i, ts, prev)
		}
		prev = ts
	}
	if got, want := prev, NewTimestamp(5000, 0)+n; got != want {
		t.Errorf("after %d ticks Now() = %v, want %v", n, got, want)
	}
	if prev.Physical() != 5003 {
		t.Errorf("physical after 3 wraps = %d, want 5003", prev.Physical())
	}
}

func TestClockUpdate(t *testing.T) {
	const wallMs = 10_000
	const maxOff = 500 * time.Millisecond
	tests := []struct {
		name     string
		last     Timestamp // clock state before Update (via Observe)
		remote   Timestamp
		want     Timestamp
		wantSkew bool
	}{
		{
			name:   "remote ahead within offset",
			remote: NewTimestamp(wallMs+200, 5),
			want:   NewTimestamp(wallMs+200, 6),
		},
		{
			name:   "remote ahead with max logical",
			remote: NewTimestamp(wallMs+200, math.MaxUint16),
			want:   NewTimestamp(wallMs+201, 0),
		},
		{
			name:   "remote exactly at the bound",
			remote: NewTimestamp(wallMs+500, 0),
			want:   NewTimestamp(wallMs+500, 1),
		},
		{
			name:   "remote exactly at the bound with max logical",
			remote: NewTimestamp(wallMs+500, math.MaxUint16),
			want:   NewTimestamp(wallMs+501, 0),
		},
		{
			name:     "remote one ms beyond the bound",
			remote:   NewTimestamp(wallMs+501, 0),
			wantSkew: true,
		},
		{
			name:     "remote far beyond the bound",
			remote:   NewTimestamp(wallMs+3_600_000, 0),
			wantSkew: true,
		},
		{
			name:   "remote behind the wall",
			remote: NewTimestamp(wallMs-300, 9),
			want:   NewTimestamp(wallMs, 0),
		},
		{
			name:   "remote behind the clock which is ahead of the wall",
			last:   NewTimestamp(wallMs+100, 3),
			remote: NewTimestamp(wallMs+50, 9),
			want:   NewTimestamp(wallMs+100, 4),
		},
		{
			name:   "remote equal to the clock",
			last:   NewTimestamp(wallMs+100, 3),
			remote: NewTimestamp(wallMs+100, 3),
			want:   NewTimestamp(wallMs+100, 4),
		},
		{
			name:   "remote same physical higher logical",
			last:   NewTimestamp(wallMs+100, 3),
			remote: NewTimestamp(wallMs+100, 40),
			want:   NewTimestamp(wallMs+100, 41),
		},
		{
			name:   "remote zero",
			remote: 0,
			want:   NewTimestamp(wallMs, 0),
		},
		{
			// The offset is measured against the wall clock, not the
			// clock's own last value.
			name:     "beyond wall bound though close to last",
			last:     NewTimestamp(wallMs+400, 0),
			remote:   NewTimestamp(wallMs+600, 0),
			wantSkew: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := testutil.NewFakeWall(wallMs)
			c := NewClock(w.Now, maxOff)
			c.Observe(tt.last)
			before := c.Last()

			got, err := c.Update(tt.remote)
			if tt.wantSkew {
				if !errors.Is(err, ErrClockSkew) {
					t.Fatalf("Update(%v) error = %v, want ErrClockSkew", tt.remote, err)
				}
				if got != 0 {
					t.Errorf("Update(%v) on error returned %v, want 0", tt.remote, got)
				}
				if after := c.Last(); after != before {
					t.Errorf("clock changed by refused Update: %v -> %v", before, after)
				}
				return
			}
			if err != nil {
				t.Fatalf("Update(%v) error = %v, want nil", tt.remote, err)
			}
			if got != tt.want {
				t.Errorf("Update(%v) = %v, want %v", tt.remote, got, tt.want)
			}
			if got <= tt.remote {
				t.Errorf("Update(%v) = %v, not greater than remote", tt.remote, got)
			}
			if got <= before {
				t.Errorf("Update(%v) = %v, not greater than previous clock %v", tt.remote, got, before)
			}
			if last := c.Last(); last != got {
				t.Errorf("Last() = %v, want %v", last, got)
			}
			if next := c.Now(); next <= got {
				t.Errorf("Now() after Update = %v, not greater than %v", next, got)
			}
		})
	}
}

func TestClockUpdateSkewErrorMessage(t *testing.T) {
	tests := []struct {
		maxOff    time.Duration
		ahead     int64
		wantAhead string
		wantLimit string
	}{
		{500 * time.Millisecond, 501, "501ms", "500ms"},
		{500 * time.Millisecond, 750, "750ms", "500ms"},
		{250 * time.Millisecond, 2000, "2s", "250ms"},
		{time.Second, 61_000, "1m1s", "1s"},
	}
	for _, tt := range tests {
		t.Run(tt.wantAhead+"/"+tt.wantLimit, func(t *testing.T) {
			const wallMs = 1_000_000
			c := NewClock(testutil.NewFakeWall(wallMs).Now, tt.maxOff)
			remote := NewTimestamp(wallMs+tt.ahead, 3)
			_, err := c.Update(remote)
			if !errors.Is(err, ErrClockSkew) {
				t.Fatalf("Update error = %v, want ErrClockSkew", err)
			}
			msg := err.Error()
			for _, want := range []string{
				ErrClockSkew.Error(),
				remote.String(),
				tt.wantAhead + " ahead",
				"limit is " + tt.wantLimit,
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			// Check returns the same refusal.
			if err2 := c.Check(remote); err2 == nil || err2.Error() != msg {
				t.Errorf("Check error = %v, want %q", err2, msg)
			}
		})
	}
}

func TestClockUpdateSubMillisecondMaxOffset(t *testing.T) {
	// A limit of 1.5ms accepts a remote 1ms ahead and refuses one 2ms ahead.
	w := testutil.NewFakeWall(1000)
	c := NewClock(w.Now, 1500*time.Microsecond)
	if err := c.Check(NewTimestamp(1001, 0)); err != nil {
		t.Errorf("Check 1ms ahead with 1.5ms limit: %v", err)
	}
	if err := c.Check(NewTimestamp(1002, 0)); !errors.Is(err, ErrClockSkew) {
		t.Errorf("Check 2ms ahead with 1.5ms limit = %v, want ErrClockSkew", err)
	}
}

func TestClockUpdateFollowsWall(t *testing.T) {
	// The bound is relative to the wall clock at the time of the call.
	w := testutil.NewFakeWall(1000)
	c := NewClock(w.Now, 100*time.Millisecond)
	remote := NewTimestamp(1200, 0)
	if _, err := c.Update(remote); !errors.Is(err, ErrClockSkew) {
		t.Fatalf("Update 200ms ahead = %v, want ErrClockSkew", err)
	}
	w.Set(1100)
	got, err := c.Update(remote)
	if err != nil {
		t.Fatalf("Update after wall advanced: %v", err)
	}
	if got != NewTimestamp(1200, 1) {
		t.Errorf("Update = %v, want %v", got, NewTimestamp(1200, 1))
	}
	// Wall goes backwards: the clock keeps increasing.
	w.Set(500)
	if ts := c.Now(); ts != NewTimestamp(1200, 2) {
		t.Errorf("Now after wall stepped back = %v, want %v", ts, NewTimestamp(1200, 2))
	}
	// And Update with an old remote still increases it.
	got, err = c.Update(NewTimestamp(400, 0))
	if err != nil || got != NewTimestamp(1200, 3) {
		t.Errorf("Update(old) = %v, %v; want %v, nil", got, err, NewTimestamp(1200, 3))
	}
}

func TestClockCheckHasNoSideEffects(t *testing.T) {
	w := &countingWall{}
	w.Set(10_000)
	c := NewClock(w.Now, 500*time.Millisecond)
	c.Observe(NewTimestamp(10_000, 7))
	before := c.Last()

	remotes := []struct {
		ts      Timestamp
		wantErr bool
	}{
		{NewTimestamp(9_000, 0), false},
		{NewTimestamp(10_000, 100), false},
		{NewTimestamp(10_500, math.MaxUint16), false},
		{NewTimestamp(10_501, 0), true},
		{Timestamp(math.MaxUint64), true},
	}
	for _, r := range remotes {
		for range 3 {
			err := c.Check(r.ts)
			if (err != nil) != r.wantErr {
				t.Errorf("Check(%v) = %v, wantErr %v", r.ts, err, r.wantErr)
			}
			if r.wantErr && !errors.Is(err, ErrClockSkew) {
				t.Errorf("Check(%v) = %v, want ErrClockSkew", r.ts, err)
			}
			if after := c.Last(); after != before {
				t.Fatalf("Check(%v) changed the clock: %v -> %v", r.ts, before, after)
			}
		}
	}
	if got := w.reads.Load(); got == 0 {
		t.Errorf("Check never read the wall clock")
	}
	// The next Now is exactly the successor of the state before the Checks.
	if got, want := c.Now(), NewTimestamp(10_000, 8); got != want {
		t.Errorf("Now after Checks = %v, want %v", got, want)
	}
}

func TestClockObserve(t *testing.T) {
	w := testutil.NewFakeWall(1000)
	c := NewClock(w.Now, 10*time.Millisecond)

	// Far beyond the max offset: Observe accepts it anyway.
	far := NewTimestamp(1000+3_600_000, 42)
	if err := c.Check(far); !errors.Is(err, ErrClockSkew) {
		t.Fatalf("precondition: Check(far) = %v, want ErrClockSkew", err)
	}
	c.Observe(far)
	if got := c.Last(); got != far {
		t.Errorf("Last after Observe(far) = %v, want %v", got, far)
	}
	// Observe does not tick: Last is exactly the observed value.
	c.Observe(far)
	if got := c.Last(); got != far {
		t.Errorf("Last after Observe(far) twice = %v, want %v", got, far)
	}
	// A lower value does not lower the clock.
	c.Observe(NewTimestamp(5, 0))
	if got := c.Last(); got != far {
		t.Errorf("Last after Observe(lower) = %v, want %v", got, far)
	}
	c.Observe(0)
	if got := c.Last(); got != far {
		t.Errorf("Last after Observe(0) = %v, want %v", got, far)
	}
	if got, want := c.Now(), far+1; got != want {
		t.Errorf("Now after Observe = %v, want %v", got, want)
	}
	// Overflowing logical via Observe then Now carries.
	c2 := NewClock(w.Now, 0)
	c2.Observe(NewTimestamp(2000, math.MaxUint16))
	if got, want := c2.Now(), NewTimestamp(2001, 0); got != want {
		t.Errorf("Now after Observe(max logical) = %v, want %v", got, want)
	}
}

func TestClockMixedOperationsMonotonic(t *testing.T) {
	// A deterministic walk over a wall clock that jumps around, with every
	// operation: everything returned or accepted must be strictly increasing.
	w := testutil.NewFakeWall(1000)
	c := NewClock(w.Now, 50*time.Millisecond)
	walls := []int64{1000, 1000, 990, 1020, 1020, 800, 1100, 1100, 1099, 2000, 1500, 1500}
	var prev Timestamp
	for i, ms := range walls {
		w.Set(ms)
		ts := c.Now()
		if ts <= prev {
			t.Fatalf("step %d Now = %v, not greater than %v", i, ts, prev)
		}
		prev = ts
		remote := NewTimestamp(ms+int64(i*7%60), uint16(i))
		got, err := c.Update(remote)
		if err != nil {
			if !errors.Is(err, ErrClockSkew) {
				t.Fatalf("step %d Update: unexpected error %v", i, err)
			}
			if c.Last() != prev {
				t.Fatalf("step %d refused Update changed the clock", i)
			}
			continue
		}
		if got <= prev || got <= remote {
			t.Fatalf("step %d Update(%v) = %v, not greater than %v and remote", i, remote, got, prev)
		}
		prev = got
	}
}

func TestClockConcurrentNowUnique(t *testing.T) {
	const (
		goroutines = 16
		perG       = 2000
	)
	w := testutil.NewFakeWall(1_000_000)
	c := NewClock(w.Now, 0)
	results := make([][]Timestamp, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]Timestamp, 0, perG)
			for i := range perG {
				// A few goroutines move the wall clock around,
				// forwards and backwards, while others read it.
				switch {
				case g == 0 && i%100 == 0:
					w.Add(1)
				case g == 1 && i%150 == 0:
					w.Add(-3)
				}
				if g == 2 && i%50 == 0 {
					if _, err := c.Update(NewTimestamp(w.Now(), uint16(i))); err != nil {
						t.Errorf("Update: %v", err)
					}
				}
				out = append(out, c.Now())
			}
			results[g] = out
		}()
	}
	wg.Wait()

	seen := make(map[Timestamp]int, goroutines*perG)
	for g, out := range results {
		for i, ts := range out {
			if i > 0 && ts <= out[i-1] {
				t.Fatalf("goroutine %d: Now #%d = %v not greater than #%d = %v", g, i, ts, i-1, out[i-1])
			}
			if other, dup := seen[ts]; dup {
				t.Fatalf("timestamp %v returned to goroutines %d and %d", ts, other, g)
			}
			seen[ts] = g
		}
	}
	if len(seen) != goroutines*perG {
		t.Errorf("got %d unique timestamps, want %d", len(seen), goroutines*perG)
	}
	if last := c.Last(); last < maxTS(seen) {
		t.Errorf("Last() = %v, less than the greatest Now %v", last, maxTS(seen))
	}
}

func maxTS(m map[Timestamp]int) Timestamp {
	var max Timestamp
	for ts := range m {
		if ts > max {
			max = ts
		}
	}
	return max
}

func TestTick(t *testing.T) {
	tests := []struct {
		last Timestamp
		wall int64
		want Timestamp
	}{
		{0, 0, 1},
		{0, 5, NewTimestamp(5, 0)},
		{NewTimestamp(5, 3), 5, NewTimestamp(5, 4)},
		{NewTimestamp(5, 3), 4, NewTimestamp(5, 4)},
		{NewTimestamp(5, 3), 6, NewTimestamp(6, 0)},
		{NewTimestamp(5, math.MaxUint16), 5, NewTimestamp(6, 0)},
		{NewTimestamp(5, math.MaxUint16), 6, NewTimestamp(6, 0)},
		{NewTimestamp(5, math.MaxUint16), 7, NewTimestamp(7, 0)},
	}
	for _, tt := range tests {
		if got := tick(tt.last, tt.wall); got != tt.want {
			t.Errorf("tick(%v, %d) = %v, want %v", tt.last, tt.wall, got, tt.want)
		}
	}
}

func TestOffsetWallClock(t *testing.T) {
	base := func() int64 { return 1_000_000 }
	tests := []struct {
		name   string
		offset time.Duration
		want   int64
	}{
		{"zero", 0, 1_000_000},
		{"ahead", 2 * time.Second, 1_002_000},
		{"behind", -1500 * time.Millisecond, 998_500},
		{"sub-millisecond rounds toward zero", 900 * time.Microsecond, 1_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OffsetWallClock(base, tt.offset)(); got != tt.want {
				t.Errorf("OffsetWallClock(%v)() = %d, want %d", tt.offset, got, tt.want)
			}
		})
	}
	// A clock built on the offset wall clock issues timestamps that far ahead.
	c := NewClock(OffsetWallClock(base, time.Second), 0)
	if got := c.Now().Physical(); got != 1_001_000 {
		t.Errorf("Now().Physical() = %d on a wall clock 1 s ahead, want 1001000", got)
	}
}
