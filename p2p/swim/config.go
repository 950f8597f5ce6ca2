package swim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// ErrInvalidConfig is wrapped by the error Config.Validate (and New) return
// when a Config breaks a rule. Every broken rule is listed in that error.
var ErrInvalidConfig = errors.New("swim: invalid config")

// ErrEmptyID is returned by New when this node's own ID is empty.
var ErrEmptyID = errors.New("swim: empty member id")

// Config holds the timing of failure detection. A zero field means its
// default (the LANConfig value), except Rand, which is required.
type Config struct {
	// ProbeInterval is the time between two probes started by this node,
	// before the Lifeguard health multiplier. Default 1s. It is also the
	// unit of the suspicion timeout.
	ProbeInterval time.Duration

	// ProbeTimeout is how long the caller waits for a direct ack before it
	// asks IndirectChecks helpers, before the health multiplier. Default
	// 500ms. Must be less than ProbeInterval: indirect probes run in the
	// rest of the interval.
	ProbeTimeout time.Duration

	// IndirectChecks is how many other alive members DirectFailed picks to
	// probe the target for us. Default 3. Must not be negative; 0 means the
	// default (indirect probes cannot be turned off).
	IndirectChecks int

	// SuspicionMult scales the minimum suspicion timeout:
	// SuspicionMult * max(1, log10(N)) * ProbeInterval, N the number of
	// members known, self included. Default 4. It also sets how many
	// independent confirmations drive the timeout to that minimum:
	// SuspicionMult-2 (0 when N-2 is smaller).
	SuspicionMult int

	// SuspicionMaxTimeoutMult is the Lifeguard stretch of the suspicion
	// timeout: a suspicion starts at SuspicionMaxTimeoutMult times the
	// minimum and shrinks toward the minimum as independent confirmations
	// arrive. Default 6; 1 turns the stretch off.
	SuspicionMaxTimeoutMult int

	// AwarenessMaxMultiplier bounds the Lifeguard local health score to
	// 0..AwarenessMaxMultiplier-1. The probe interval and timeout are
	// multiplied by score+1. Default 8; 1 turns local health off.
	AwarenessMaxMultiplier int

	// DeadRetryMin is the wait before the first probe of a dead member, and
	// the first backoff step. Default 2s. Dead members are still probed so
	// that a healed partition or a restarted node is noticed.
	DeadRetryMin time.Duration

	// DeadRetryMax caps the exponential backoff between probes of a dead
	// member. Default 10s (a probe costs a few hundred bytes; a longer cap
	// left members of a healed partition marked dead for 20 s while their
	// data had converged). Must be at least DeadRetryMin.
	DeadRetryMax time.Duration

	// ReapAfter is how long a dead or left member is kept (and, if dead,
	// still probed) before it is forgotten. Default 24h, as Akka prunes
	// removed members: a partition shorter than that heals by itself, and
	// a dead member costs only one probe per DeadRetryMax. A reaped member
	// must be added again (Add) by the admission layer. Must be at least
	// DeadRetryMax.
	ReapAfter time.Duration

	// Rand is the only source of randomness (probe order, helper choice).
	// Required; seed it for deterministic tests. The Detector owns it after
	// New: do not share it with another goroutine.
	Rand *rand.Rand
}

// LANConfig returns memberlist's LAN defaults (interval 1s, timeout 500ms,
// 3 indirect checks, suspicion multiplier 4 stretched up to 6x, health
// multiplier up to 8) plus dead-member retries between 2s and 60s and
// reaping after 24h. Rand is left nil: the caller must set it.
func LANConfig() Config {
	return Config{
		ProbeInterval:           time.Second,
		ProbeTimeout:            500 * time.Millisecond,
		IndirectChecks:          3,
		SuspicionMult:           4,
		SuspicionMaxTimeoutMult: 6,
		AwarenessMaxMultiplier:  8,
		DeadRetryMin:            2 * time.Second,
		DeadRetryMax:            10 * time.Second,
		ReapAfter:               24 * time.Hour,
	}
}

// LoopbackConfig returns a fast preset for clusters on one machine (tests):
// interval 200ms, timeout 100ms, suspicion multiplier 2, dead retries
// between 200ms and 2s, reaping after 10s. Rand is left nil.
func LoopbackConfig() Config {
	c := LANConfig()
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SuspicionMult = 2
	c.DeadRetryMin = 200 * time.Millisecond
	c.DeadRetryMax = 2 * time.Second
	c.ReapAfter = 10 * time.Second
	return c
}

// withDefaults returns c with every zero field set to its LANConfig value.
func (c Config) withDefaults() Config {
	d := LANConfig()
	if c.ProbeInterval == 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = d.ProbeTimeout
	}
	if c.IndirectChecks == 0 {
		c.IndirectChecks = d.IndirectChecks
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = d.SuspicionMult
	}
	if c.SuspicionMaxTimeoutMult == 0 {
		c.SuspicionMaxTimeoutMult = d.SuspicionMaxTimeoutMult
	}
	if c.AwarenessMaxMultiplier == 0 {
		c.AwarenessMaxMultiplier = d.AwarenessMaxMultiplier
	}
	if c.DeadRetryMin == 0 {
		c.DeadRetryMin = d.DeadRetryMin
	}
	if c.DeadRetryMax == 0 {
		c.DeadRetryMax = d.DeadRetryMax
	}
	if c.ReapAfter == 0 {
		c.ReapAfter = d.ReapAfter
	}
	return c
}

// Validate reports every rule c breaks, after zero fields take their
// defaults. The error wraps ErrInvalidConfig and names each field.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if c.ProbeInterval < 0 {
		bad("ProbeInterval: must be positive, got %v", c.ProbeInterval)
	}
	if c.ProbeTimeout < 0 {
		bad("ProbeTimeout: must be positive, got %v", c.ProbeTimeout)
	} else if c.ProbeInterval > 0 && c.ProbeTimeout >= c.ProbeInterval {
		bad("ProbeTimeout: must be less than ProbeInterval (%v), got %v", c.ProbeInterval, c.ProbeTimeout)
	}
	if c.IndirectChecks < 0 {
		bad("IndirectChecks: must not be negative, got %d", c.IndirectChecks)
	}
	if c.SuspicionMult < 0 {
		bad("SuspicionMult: must be at least 1, got %d", c.SuspicionMult)
	}
	if c.SuspicionMaxTimeoutMult < 0 {
		bad("SuspicionMaxTimeoutMult: must be at least 1, got %d", c.SuspicionMaxTimeoutMult)
	}
	if c.AwarenessMaxMultiplier < 0 {
		bad("AwarenessMaxMultiplier: must be at least 1, got %d", c.AwarenessMaxMultiplier)
	}
	if c.DeadRetryMin < 0 {
		bad("DeadRetryMin: must be positive, got %v", c.DeadRetryMin)
	}
	if c.DeadRetryMax < 0 {
		bad("DeadRetryMax: must be positive, got %v", c.DeadRetryMax)
	} else if c.DeadRetryMin > 0 && c.DeadRetryMax < c.DeadRetryMin {
		bad("DeadRetryMax: must be at least DeadRetryMin (%v), got %v", c.DeadRetryMin, c.DeadRetryMax)
	}
	if c.ReapAfter < 0 {
		bad("ReapAfter: must be positive, got %v", c.ReapAfter)
	} else if c.DeadRetryMax > 0 && c.ReapAfter < c.DeadRetryMax {
		bad("ReapAfter: must be at least DeadRetryMax (%v), got %v", c.DeadRetryMax, c.ReapAfter)
	}
	if c.Rand == nil {
		bad("Rand: required (inject a seeded *rand.Rand)")
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}
