package p2p

import (
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/pnet"
)

func TestHostConfigWithDefaults(t *testing.T) {
	key := pnet.PSK(make([]byte, swarmKeyBytes))
	cases := []struct {
		name string
		cfg  HostConfig
		want []string
	}{
		{"no listen: TCP and QUIC on loopback", HostConfig{}, DefaultListenAddrs},
		{"no listen with a swarm key: TCP only", HostConfig{SwarmKey: key}, DefaultListenAddrs[:1]},
		{"listen given: kept", HostConfig{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}, []string{"/ip4/127.0.0.1/tcp/0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.cfg.WithDefaults()
			if !slices.Equal(got.Listen, c.want) {
				t.Errorf("Listen %v; want %v", got.Listen, c.want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("the defaults do not validate: %v", err)
			}
		})
	}
}

func TestHostConfigValidate(t *testing.T) {
	key := pnet.PSK(make([]byte, swarmKeyBytes))
	cases := []struct {
		name string
		cfg  HostConfig
		// problems are substrings of each problem reported, one each, in
		// order; none for a valid config.
		problems []string
	}{
		{"zero value", HostConfig{}, nil},
		{"TCP and QUIC", HostConfig{Listen: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}}, nil},
		{"swarm key over TCP", HostConfig{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, SwarmKey: key, MaxFDs: 64}, nil},
		{"not a multiaddr", HostConfig{Listen: []string{"127.0.0.1:7380"}}, []string{`"127.0.0.1:7380"`}},
		{"QUIC with a swarm key", HostConfig{Listen: []string{"/ip4/127.0.0.1/udp/0/quic-v1"}, SwarmKey: key}, []string{"QUIC cannot be used with a swarm key"}},
		{"short swarm key", HostConfig{SwarmKey: key[:16]}, []string{"swarm key of 16 bytes; want 32"}},
		{"negative MaxFDs", HostConfig{MaxFDs: -1}, []string{"MaxFDs is -1"}},
		{"every problem at once", HostConfig{
			Listen:   []string{"tcp/7380", "/ip4/127.0.0.1/udp/0/quic-v1"},
			SwarmKey: key[:31],
			MaxFDs:   -2,
		}, []string{`"tcp/7380"`, "QUIC cannot", "swarm key of 31 bytes", "MaxFDs is -2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
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
			got := joined.Unwrap()
			if len(got) != len(c.problems) {
				t.Fatalf("Validate reported %d problems: %v; want %d", len(got), err, len(c.problems))
			}
			for i, p := range c.problems {
				if !strings.Contains(got[i].Error(), p) {
					t.Errorf("problem %d is %q; want it to say %q", i, got[i], p)
				}
			}
			// NewHostWith refuses it before starting anything.
			id, ierr := LoadOrCreateIdentity(t.TempDir())
			if ierr != nil {
				t.Fatal(ierr)
			}
			if h, herr := NewHostWith(id, c.cfg); herr == nil {
				_ = h.Close()
				t.Errorf("NewHostWith started a host with an invalid config")
			}
		})
	}
}
