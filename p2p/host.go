package p2p

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
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
	if len(listen) == 0 {
		listen = DefaultListenAddrs
	}
	var errs []error
	for _, a := range listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			errs = append(errs, fmt.Errorf("p2p: listen address %q: %w", a, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	opts := []libp2p.Option{
		libp2p.Identity(id.Key),
		libp2p.ListenAddrStrings(listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.DisableMetrics(),
		libp2p.DisableRelay(),
	}
	h, err := libp2p.New(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("p2p: start host on %v: %w", listen, err)
	}
	return h, nil
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
