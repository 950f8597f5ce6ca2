package p2p

import (
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/pnet"
)

// TestHostConfig: WithDefaults fills Listen, Validate reports every
// problem of the result at once, and NewHostWith refuses an invalid config
// before starting anything.
func TestHostConfig(t *testing.T) {
	key := pnet.PSK(make([]byte, swarmKeyBytes))
	tcp, quic := "/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"
	cases := []struct {
		name   string
		cfg    HostConfig
		listen []string // after WithDefaults
		// problems are substrings of each problem Validate reports, one
		// each, in order; none for a valid config.
		problems []string
	}{
		{"zero value: TCP and QUIC on loopback", HostConfig{}, DefaultListenAddrs, nil},
		{"a swarm key and no listen: TCP only", HostConfig{SwarmKey: key, MaxFDs: 64}, DefaultListenAddrs[:1], nil},
		{"listen given: kept", HostConfig{Listen: []string{tcp, quic}}, []string{tcp, quic}, nil},
		{"not a multiaddr", HostConfig{Listen: []string{"127.0.0.1:7380"}}, []string{"127.0.0.1:7380"}, []string{`"127.0.0.1:7380"`}},
		{"QUIC with a swarm key", HostConfig{Listen: []string{quic}, SwarmKey: key}, []string{quic}, []string{"QUIC cannot be used with a swarm key"}},
		{"short swarm key", HostConfig{SwarmKey: key[:16]}, DefaultListenAddrs[:1], []string{"swarm key of 16 bytes; want 32"}},
		{"negative MaxFDs", HostConfig{MaxFDs: -1}, DefaultListenAddrs, []string{"MaxFDs is -1"}},
		{"every problem at once", HostConfig{Listen: []string{"tcp/7380", quic}, SwarmKey: key[:31], MaxFDs: -2}, []string{"tcp/7380", quic},
			[]string{`"tcp/7380"`, "QUIC cannot", "swarm key of 31 bytes", "MaxFDs is -2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg.WithDefaults()
			if !slices.Equal(cfg.Listen, c.listen) {
				t.Errorf("Listen after WithDefaults %v; want %v", cfg.Listen, c.listen)
			}
			err := cfg.Validate()
			if len(c.problems) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v; want nil", err)
				}
				return
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("Validate: %v; want %d problems joined", err, len(c.problems))
			}
			if got := joined.Unwrap(); len(got) != len(c.problems) {
				t.Errorf("Validate reported %d problems: %v; want %d", len(got), err, len(c.problems))
			} else {
				for i, p := range c.problems {
					if !strings.Contains(got[i].Error(), p) {
						t.Errorf("problem %d is %q; want it to say %q", i, got[i], p)
					}
				}
			}
			id, err := LoadOrCreateIdentity(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if h, err := NewHostWith(id, c.cfg); err == nil {
				_ = h.Close()
				t.Errorf("NewHostWith started a host with an invalid config")
			}
		})
	}
}
