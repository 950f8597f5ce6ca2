package netsim

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"github.com/marcopolo/simnet"
	"github.com/quic-go/quic-go"
	"go.uber.org/fx"
)

// LinkConfig is the behaviour of every link of the simulated network.
// Zero values mean the defaults.
type LinkConfig struct {
	// Latency is the one-way delay of a packet. Default 5 ms.
	Latency time.Duration
	// Jitter spreads the delay uniformly over Latency ± Jitter (packets may
	// then be reordered). Default 0; negative is invalid.
	Jitter time.Duration
	// Loss is the probability, 0 to 1, that a packet is dropped. Default 0.
	Loss float64
	// BitsPerSecond is each node's uplink and downlink bandwidth. Default
	// 100 Mbit/s.
	BitsPerSecond int
}

// WithDefaults returns c with every zero field set to its default.
func (c LinkConfig) WithDefaults() LinkConfig {
	if c.Latency == 0 {
		c.Latency = 5 * time.Millisecond
	}
	if c.BitsPerSecond == 0 {
		c.BitsPerSecond = 100_000_000
	}
	return c
}

// Validate reports every problem with c at once.
func (c LinkConfig) Validate() error {
	var errs []error
	if c.Latency < 0 || c.Jitter < 0 || c.Jitter > c.Latency {
		errs = append(errs, fmt.Errorf("netsim: latency %v ± jitter %v: want 0 ≤ jitter ≤ latency", c.Latency, c.Jitter))
	}
	if c.Loss < 0 || c.Loss >= 1 {
		errs = append(errs, fmt.Errorf("netsim: loss %v: want 0 ≤ loss < 1", c.Loss))
	}
	if c.BitsPerSecond < 0 {
		errs = append(errs, fmt.Errorf("netsim: bandwidth %d bit/s: must not be negative", c.BitsPerSecond))
	}
	return errors.Join(errs...)
}

// Network is a simnet network with faults on top: random loss, and
// partitions (a packet between nodes of different groups is dropped). The
// loss and the jitter draw from one seeded source. It is safe for
// concurrent use.
type Network struct {
	cfg LinkConfig
	sn  *simnet.Simnet

	mu struct {
		sync.Mutex
		rand *rand.Rand
		// group maps a node's IP (its 4 bytes as a string) to its partition
		// group; nil when the network is whole.
		group map[string]int
		// dropped and sent count packets (for the report).
		dropped, sent int64
	}
}

// NewNetwork returns a started simulated network. Close stops it.
func NewNetwork(cfg LinkConfig, seed uint64) (*Network, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Network{cfg: cfg}
	n.mu.rand = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	n.sn = &simnet.Simnet{
		LatencyFunc: n.latency,
		Logger:      slog.New(slog.DiscardHandler),
	}
	n.sn.Start()
	return n, nil
}

// Close stops the network's goroutines. Close the hosts first.
func (n *Network) Close() { n.sn.Close() }

func (n *Network) latency(*simnet.Packet) time.Duration {
	if n.cfg.Jitter == 0 {
		return n.cfg.Latency
	}
	n.mu.Lock()
	j := time.Duration(n.mu.rand.Int64N(int64(2*n.cfg.Jitter) + 1))
	n.mu.Unlock()
	return n.cfg.Latency - n.cfg.Jitter + j
}

// Partition splits the network: a packet between two nodes whose group
// differs is dropped. groups maps a node index to its group; a node not
// listed is in group 0.
func (n *Network) Partition(groups map[int]int) {
	g := make(map[string]int, len(groups))
	for i, grp := range groups {
		g[string(nodeIP(i).To4())] = grp
	}
	n.mu.Lock()
	n.mu.group = g
	n.mu.Unlock()
}

// Heal ends a partition.
func (n *Network) Heal() {
	n.mu.Lock()
	n.mu.group = nil
	n.mu.Unlock()
}

// PacketStats returns how many packets were sent and how many of them the
// faults dropped.
func (n *Network) PacketStats() (sent, dropped int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.sent, n.mu.dropped
}

// drop decides the fate of one packet from src to dst.
func (n *Network) drop(src, dst net.IP) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.sent++
	if n.mu.group != nil && n.mu.group[string(src.To4())] != n.mu.group[string(dst.To4())] {
		n.mu.dropped++
		return true
	}
	if n.cfg.Loss > 0 && n.mu.rand.Float64() < n.cfg.Loss {
		n.mu.dropped++
		return true
	}
	return false
}

// nodeIP is node i's address on the simulated network.
func nodeIP(i int) net.IP { return simnet.IntToPublicIPv4(i) }

// ListenAddr is node i's libp2p listen address on the simulated network
// (QUIC: simnet carries UDP only).
func ListenAddr(i int) string { return fmt.Sprintf("/ip4/%s/udp/8000/quic-v1", nodeIP(i)) }

// HostOptions are the libp2p options that put a host on the network: its
// QUIC transport sends through simnet, identify's address discovery is off
// (it stalls synctest, as simlibp2p notes), and the resource manager is
// the null one (its limits are about the machine, not the simulation).
// Pass them to p2p.NewHostWith with ListenAddr(i) as the host's only listen
// address.
func (n *Network) HostOptions() []libp2p.Option {
	return []libp2p.Option{
		n.quicOption(),
		libp2p.DisableIdentifyAddressDiscovery(),
		libp2p.ResourceManager(&network.NullResourceManager{}),
	}
}

// faultConn is a node's endpoint on the simnet with the network's faults
// applied to what it sends. The faults are ours (simnet has none): loss
// and partitions cannot be caused otherwise on a simulated link.
type faultConn struct {
	*simnet.SimConn
	net  *Network
	self net.IP
}

func (c *faultConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok && c.net.drop(c.self, ua.IP) {
		return len(p), nil // lost on the way, as UDP would
	}
	return c.SimConn.WriteTo(p, addr)
}

// quicOption makes a libp2p host's QUIC transport send through the
// simulated network (as simlibp2p.QUICSimnet does, with faultConn around
// the endpoint).
func (n *Network) quicOption() libp2p.Option {
	sel := &sourceIP{}
	bw := n.cfg.BitsPerSecond
	link := simnet.NodeBiDiLinkSettings{
		Downlink: simnet.LinkSettings{BitsPerSecond: bw},
		Uplink:   simnet.LinkSettings{BitsPerSecond: bw},
	}
	opts := []quicreuse.Option{
		quicreuse.OverrideSourceIPSelector(func() (quicreuse.SourceIPSelector, error) { return sel, nil }),
		quicreuse.OverrideListenUDP(func(_ string, addr *net.UDPAddr) (net.PacketConn, error) {
			sel.set(addr.IP)
			return &faultConn{SimConn: n.sn.NewEndpoint(addr, link), net: n, self: addr.IP}, nil
		}),
	}
	return libp2p.QUICReuse(
		func(l fx.Lifecycle, reset quic.StatelessResetKey, token quic.TokenGeneratorKey, o ...quicreuse.Option) (*quicreuse.ConnManager, error) {
			cm, err := quicreuse.NewConnManager(reset, token, o...)
			if err != nil {
				return nil, err
			}
			// A conn manager passed in is not closed by the host (as in
			// simlibp2p.QUICSimnet).
			l.Append(fx.StopHook(cm.Close))
			return cm, nil
		}, opts...)
}

// sourceIP answers quic-go's source address question with the node's own IP.
type sourceIP struct {
	mu sync.Mutex
	ip net.IP
}

func (s *sourceIP) set(ip net.IP) {
	s.mu.Lock()
	s.ip = ip
	s.mu.Unlock()
}

func (s *sourceIP) PreferredSourceIPForDestination(*net.UDPAddr) (net.IP, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ip, nil
}

// Isolate cuts the given nodes off from the rest (and from each other's
// complement: they stay connected among themselves), as Partition with
// those nodes in group 1.
func (n *Network) Isolate(nodes ...int) {
	g := make(map[int]int, len(nodes))
	for _, i := range nodes {
		g[i] = 1
	}
	n.Partition(g)
}
