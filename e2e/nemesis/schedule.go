package nemesis

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind int

// The faults a schedule draws from.
const (
	// Kill sends SIGKILL to a node; its heal restarts the node on the same
	// data folder.
	Kill Kind = iota + 1
	// Stop sends SIGSTOP to a node; its heal sends SIGCONT.
	Stop
	// Partition cuts the cluster in two sides (1|4 or 2|3 of five): packets
	// between the sides are dropped. Its heal removes the rules.
	Partition
	// Skew restarts a node with its HLC's wall clock offset (the agent's
	// test-only CHORUS_TEST_CLOCK_OFFSET); its heal restarts it without.
	Skew
)

func (k Kind) String() string {
	switch k {
	case Kill:
		return "kill"
	case Stop:
		return "stop"
	case Partition:
		return "partition"
	case Skew:
		return "skew"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Fault is one fault of a step.
type Fault struct {
	Kind Kind
	// Nodes are the targets: the node killed, stopped or skewed, or one side
	// of a partition (the other side is every other node).
	Nodes []int
	// Offset is a Skew's clock offset.
	Offset time.Duration
}

func (f Fault) String() string {
	switch f.Kind {
	case Partition:
		return fmt.Sprintf("partition %v|rest", f.Nodes)
	case Skew:
		return fmt.Sprintf("skew n%d %+v", f.Nodes[0], f.Offset)
	}
	return fmt.Sprintf("%v n%d", f.Kind, f.Nodes[0])
}

// Step is a set of faults applied together, held for Hold, then healed,
// followed by Pause without faults.
type Step struct {
	Faults []Fault
	Hold   time.Duration
	Pause  time.Duration
}

func (s Step) String() string {
	parts := make([]string, len(s.Faults))
	for i, f := range s.Faults {
		parts[i] = f.String()
	}
	return fmt.Sprintf("%s for %v, then %v healed", strings.Join(parts, " + "), s.Hold, s.Pause)
}

// Round is a sequence of steps; after its last step the whole cluster is
// healed, writes pause, and the time to converge is measured.
type Round struct {
	Steps []Step
}

// Duration is the round's planned time: its holds and pauses.
func (r Round) Duration() time.Duration {
	var d time.Duration
	for _, s := range r.Steps {
		d += s.Hold + s.Pause
	}
	return d
}

// Schedule is a run's plan, drawn from its seed.
type Schedule struct {
	Seed   uint64
	Rounds []Round
}

// Faults counts the schedule's faults by kind.
func (s Schedule) Faults() map[Kind]int {
	n := map[Kind]int{}
	for _, r := range s.Rounds {
		for _, st := range r.Steps {
			for _, f := range st.Faults {
				n[f.Kind]++
			}
		}
	}
	return n
}

// ScheduleConfig says what a schedule may contain. Zero fields take the
// defaults in their comments.
type ScheduleConfig struct {
	// Nodes is the cluster's size. Default 5.
	Nodes int
	// Duration is the planned time of all rounds together (holds and pauses;
	// heals and convergence waits come on top). Default 2 minutes.
	Duration time.Duration
	// RoundLength is the planned time of one round. Default 30 s; a schedule
	// has at least one round.
	RoundLength time.Duration
	// HoldMin and HoldMax bound a step's hold. Default 1 s and 8 s.
	HoldMin, HoldMax time.Duration
	// PauseMin and PauseMax bound the calm after a step. Default 500 ms and 3 s.
	PauseMin, PauseMax time.Duration
	// Protected nodes are never killed or skewed (both restart the process),
	// only stopped and partitioned: the soak keeps their processes for the
	// whole run to judge their memory and descriptor curves.
	Protected []int
	// Offsets are the clock offsets a Skew draws from. Default ±300 ms (within
	// the agent's default --max-clock-offset of 500 ms), ±1 s and ±2 s
	// (beyond it: the other nodes refuse the skewed node's writes until the
	// heal).
	Offsets []time.Duration
}

func (c *ScheduleConfig) defaults() {
	if c.Nodes == 0 {
		c.Nodes = 5
	}
	if c.Duration == 0 {
		c.Duration = 2 * time.Minute
	}
	if c.RoundLength == 0 {
		c.RoundLength = 30 * time.Second
	}
	if c.HoldMin == 0 {
		c.HoldMin = time.Second
	}
	if c.HoldMax == 0 {
		c.HoldMax = 8 * time.Second
	}
	if c.PauseMin == 0 {
		c.PauseMin = 500 * time.Millisecond
	}
	if c.PauseMax == 0 {
		c.PauseMax = 3 * time.Second
	}
	if len(c.Offsets) == 0 {
		c.Offsets = []time.Duration{-2 * time.Second, -time.Second, -300 * time.Millisecond,
			300 * time.Millisecond, time.Second, 2 * time.Second}
	}
}

// NewSchedule draws a schedule from seed: the same seed and config give the
// same schedule. A step holds one fault (60%) or two (40%) of distinct kinds
// and on distinct nodes, so a node may be killed inside a partition, or
// stopped while another is skewed.
func NewSchedule(seed uint64, cfg ScheduleConfig) Schedule {
	cfg.defaults()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		// Whole 100 ms steps keep printed schedules readable.
		n := int64((hi - lo) / (100 * time.Millisecond))
		return lo + time.Duration(rng.Int64N(n+1))*100*time.Millisecond
	}
	rounds := max(1, int(cfg.Duration/cfg.RoundLength))
	s := Schedule{Seed: seed}
	for range rounds {
		var r Round
		for r.Duration() < cfg.RoundLength {
			st := Step{Hold: between(cfg.HoldMin, cfg.HoldMax), Pause: between(cfg.PauseMin, cfg.PauseMax)}
			n := 1
			if rng.IntN(10) < 4 {
				n = 2
			}
			kinds := []Kind{Kill, Stop, Partition, Skew}
			rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
			used := map[int]bool{}
			for _, k := range kinds {
				if len(st.Faults) == n {
					break
				}
				if f, ok := drawFault(rng, k, cfg, used); ok {
					st.Faults = append(st.Faults, f)
				}
			}
			r.Steps = append(r.Steps, st)
		}
		s.Rounds = append(s.Rounds, r)
	}
	return s
}

// drawFault draws a fault of kind k on nodes not in used (and, for a kill or
// a skew, not protected); ok is false when no node qualifies.
func drawFault(rng *rand.Rand, k Kind, cfg ScheduleConfig, used map[int]bool) (Fault, bool) {
	if k == Partition {
		side := 1 + rng.IntN(2) // 1|4 or 2|3
		nodes := rng.Perm(cfg.Nodes)[:side]
		slices.Sort(nodes)
		return Fault{Kind: Partition, Nodes: nodes}, true
	}
	var free []int
	for i := range cfg.Nodes {
		if used[i] || (k != Stop && slices.Contains(cfg.Protected, i)) {
			continue
		}
		free = append(free, i)
	}
	if len(free) == 0 {
		return Fault{}, false
	}
	node := free[rng.IntN(len(free))]
	used[node] = true
	f := Fault{Kind: k, Nodes: []int{node}}
	if k == Skew {
		f.Offset = cfg.Offsets[rng.IntN(len(cfg.Offsets))]
	}
	return f, true
}
