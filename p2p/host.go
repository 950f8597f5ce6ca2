package p2p

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// DefaultListenAddrs are where a node listens for peers by default: TCP and
// QUIC on loopback port 7380, so a laptop's node is not reachable from
// elsewhere until asked (labs pass --listen-p2p /ip4/0.0.0.0/tcp/7380,...).
var DefaultListenAddrs = []string{"/ip4/127.0.0.1/tcp/7380", "/ip4/127.0.0.1/udp/7380/quic-v1"}

// DefaultCluster is the cluster name when none is given.
const DefaultCluster = "default"

var clusterName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)

// ValidateCluster checks a cluster name: 1 to 63 letters, digits, '.', '_'
// or '-', starting with a letter or digit (it becomes part of topic and
// protocol names).
func ValidateCluster(name string) error {
	if !clusterName.MatchString(name) {
		return fmt.Errorf("p2p: cluster name %q: want 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Topic is the GossipSub topic of a cluster's writes.
func Topic(cluster string) string { return "/chorus/" + cluster + "/writes/1" }

// PushProtocol is the stream protocol for writes pushed to a peer directly.
func PushProtocol(cluster string) protocol.ID { return protocol.ID("/chorus/" + cluster + "/push/1") }

// NewHost starts a libp2p host with the node's identity, listening on TCP
// and QUIC at listen (DefaultListenAddrs when empty), secured with Noise or
// TLS (libp2p's defaults). Extra options (a connection gater, say) are
// appended to Chorus's own.
func NewHost(id Identity, listen []string, extra ...libp2p.Option) (host.Host, error) {
	return NewHostWith(id, HostConfig{Listen: listen}, extra...)
}

// HostConfig configures NewHostWith.
type HostConfig struct {
	// Listen are the multiaddrs to listen on; DefaultListenAddrs when empty
	// (their TCP ones only, with a SwarmKey).
	Listen []string
	// SwarmKey, when set, makes the host part of a libp2p private network:
	// a peer without the same key cannot complete a handshake. go-libp2p
	// refuses a private network with QUIC, so the host then uses TCP only.
	SwarmKey pnet.PSK
	// Gater, when set, vets every connection.
	Gater connmgr.ConnectionGater
	// MaxFDs, when positive, is how many file descriptors libp2p may hold
	// (its resource manager's system limit): connections past it are
	// refused. The resource manager's other limits are libp2p's defaults
	// scaled to ResourceMemory. Zero leaves libp2p's own scaling (half the
	// process's descriptor limit, an eighth of the machine's memory).
	MaxFDs int
}

// ResourceMemory is the memory libp2p's resource manager scales its
// connection and stream limits to when HostConfig.MaxFDs is set: 512 MiB
// allows 96 inbound and 192 connections in all (libp2p's defaults, scaled).
const ResourceMemory = 512 << 20

// resourceManager returns a resource manager with libp2p's default limits
// scaled to ResourceMemory and maxFDs descriptors.
func resourceManager(maxFDs int) (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.Scale(ResourceMemory, maxFDs)))
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	return rm, nil
}

// swarmKeyBytes is the length of a private network's key (go-libp2p's pnet
// refuses any other at every connection).
const swarmKeyBytes = 32

// WithDefaults returns c with Listen set to DefaultListenAddrs when empty
// (their TCP ones only, with a SwarmKey).
func (c HostConfig) WithDefaults() HostConfig {
	if len(c.Listen) == 0 {
		c.Listen = DefaultListenAddrs
		if c.SwarmKey != nil {
			c.Listen = []string{DefaultListenAddrs[0]}
		}
	}
	return c
}

// Validate reports every problem with c at once: a listen address that is
// not a multiaddr, a QUIC one with a SwarmKey, a SwarmKey that is not 32
// bytes, a negative MaxFDs.
func (c HostConfig) Validate() error {
	var errs []error
	for _, a := range c.Listen {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("p2p: listen address %q: %w", a, err))
			continue
		}
		if c.SwarmKey != nil {
			if _, err := m.ValueForProtocol(ma.P_QUIC_V1); err == nil {
				errs = append(errs, fmt.Errorf("p2p: listen address %q: QUIC cannot be used with a swarm key (go-libp2p refuses a private network over QUIC); listen on TCP only", a))
			}
		}
	}
	if c.SwarmKey != nil && len(c.SwarmKey) != swarmKeyBytes {
		errs = append(errs, fmt.Errorf("p2p: swarm key of %d bytes; want %d", len(c.SwarmKey), swarmKeyBytes))
	}
	if c.MaxFDs < 0 {
		errs = append(errs, fmt.Errorf("p2p: MaxFDs is %d; it must not be negative (0 leaves libp2p's own scaling)", c.MaxFDs))
	}
	return errors.Join(errs...)
}

// NewHostWith starts a libp2p host as NewHost does, with a swarm key and a
// connection gater when cfg has them. cfg takes its defaults first and must
// then be valid (HostConfig.Validate).
func NewHostWith(id Identity, cfg HostConfig, extra ...libp2p.Option) (host.Host, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []libp2p.Option{
		libp2p.Identity(id.Key),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableMetrics(),
		libp2p.DisableRelay(),
	}
	if cfg.SwarmKey != nil {
		opts = append(opts, libp2p.PrivateNetwork(cfg.SwarmKey))
	} else {
		opts = append(opts, libp2p.Transport(quic.NewTransport))
	}
	if cfg.Gater != nil {
		opts = append(opts, libp2p.ConnectionGater(cfg.Gater))
	}
	if cfg.MaxFDs > 0 {
		rm, err := resourceManager(cfg.MaxFDs)
		if err != nil {
			return nil, err
		}
		opts = append(opts, libp2p.ResourceManager(rm))
	}
	h, err := libp2p.New(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("p2p: start host on %v: %w", cfg.Listen, err)
	}
	return h, nil
}

// LoadSwarmKey reads a swarm key file in go-libp2p's format
// (/key/swarm/psk/1.0.0/, /base16/, 64 hex digits), as GenerateSwarmKey
// writes it.
func LoadSwarmKey(path string) (pnet.PSK, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("p2p: swarm key: %w", err)
	}
	defer f.Close()
	psk, err := pnet.DecodeV1PSK(f)
	if err != nil {
		return nil, fmt.Errorf("p2p: swarm key %s: %w (want the format `chorus swarm-key` writes)", path, err)
	}
	return psk, nil
}

// GenerateSwarmKey returns a new random swarm key file's contents.
func GenerateSwarmKey() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("p2p: generate swarm key: %w", err)
	}
	return []byte("/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(key) + "\n"), nil
}

// FullAddrs returns the multiaddrs another node can bootstrap from, each
// ending in /p2p/<peer id>.
func FullAddrs(h host.Host) []string {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if err != nil {
		return nil
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}
