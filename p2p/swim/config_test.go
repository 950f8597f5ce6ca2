package swim

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Config)
		wants []string // substrings of the error, "" for none
	}{
		{"LAN", func(*Config) {}, nil},
		{"loopback", func(c *Config) { *c = LoopbackConfig(); c.Rand = seeded(1) }, nil},
		{"zero means default", func(c *Config) { *c = Config{Rand: seeded(1)} }, nil},
		{"no rand", func(c *Config) { c.Rand = nil }, []string{"Rand: required"}},
		{"negative interval", func(c *Config) { c.ProbeInterval = -1 }, []string{"ProbeInterval: must be positive"}},
		{"timeout not below interval", func(c *Config) { c.ProbeTimeout = time.Second }, []string{"ProbeTimeout: must be less than ProbeInterval"}},
		{"negative counts", func(c *Config) {
			c.IndirectChecks, c.SuspicionMult, c.SuspicionMaxTimeoutMult, c.AwarenessMaxMultiplier = -1, -1, -1, -1
		}, []string{"IndirectChecks:", "SuspicionMult:", "SuspicionMaxTimeoutMult:", "AwarenessMaxMultiplier:"}},
		{"retry max below min", func(c *Config) { c.DeadRetryMax = time.Second }, []string{"DeadRetryMax: must be at least DeadRetryMin"}},
		{"negative retry", func(c *Config) { c.DeadRetryMin = -1 }, []string{"DeadRetryMin: must be positive"}},
		{"reap before retry max", func(c *Config) { c.ReapAfter = time.Second }, []string{"ReapAfter: must be at least DeadRetryMax"}},
		{"all at once", func(c *Config) { c.Rand = nil; c.ProbeTimeout = -1; c.ReapAfter = -1 }, []string{"Rand:", "ProbeTimeout:", "ReapAfter:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := lan(1)
			c.edit(&cfg)
			err := cfg.Validate()
			if len(c.wants) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, nerr := New("self", cfg, t0); !errors.Is(nerr, ErrInvalidConfig) {
				t.Errorf("New accepted the config: %v", nerr)
			}
		})
	}
}

func TestNewEmptySelf(t *testing.T) {
	if _, err := New("", lan(1), t0); !errors.Is(err, ErrEmptyID) {
		t.Fatalf("err %v", err)
	}
}
