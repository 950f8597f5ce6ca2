package node

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/etcdapi"
	"github.com/chorus-kv/chorus/p2p"
	"github.com/chorus-kv/chorus/p2p/swim"
)

// Version is the software version reported by Status.
const Version = "0.1.0-dev"

// Defaults for Config.
const (
	DefaultDataDir      = "chorus.data"
	DefaultListenClient = "127.0.0.1:7379"
	// DefaultListenHTTP is where /healthz and /readyz are served by default
	// (with the default client address; see Config.ListenHTTP).
	DefaultListenHTTP = "127.0.0.1:7381"
	// ListenHTTPOff turns the HTTP listener off.
	ListenHTTPOff          = "off"
	DefaultShutdownTimeout = 5 * time.Second
	// Connection caps and timeouts (see Config.MaxClientConns).
	DefaultMaxClientConns    = 4096
	DefaultMaxHTTPConns      = 256
	DefaultClientIdleTimeout = 5 * time.Minute
)

// Config configures a node. The zero value of every field means its default.
type Config struct {
	// DataDir holds the node's identity key and its LevelDB folder (db/).
	// Default "chorus.data" in the working directory.
	DataDir string
	// ListenClient is the host:port of the gRPC client API. Port 0 picks a
	// free port. Default 127.0.0.1:7379 (etcd's 2379/2380 stay free).
	ListenClient string
	// Limits bounds keys and values. Default: 4 KiB keys, 1 MiB values.
	Limits crdt.Limits
	// MaxClockOffset is how far ahead of this node's wall clock a timestamp
	// from another node may be. Default 500 ms.
	MaxClockOffset time.Duration
	// RetainRevisions is how many change-log records are kept for watches
	// resuming from a revision. Default 100,000.
	RetainRevisions int64
	// WatchBuffer is how many events may wait for a watcher before it is
	// cancelled as too slow. Default 4096.
	WatchBuffer int
	// ShutdownTimeout bounds how long Close waits for in-flight calls.
	// Default 5 s.
	ShutdownTimeout time.Duration
	// Logger receives the node's log. Default slog.Default().
	Logger *slog.Logger
	// Cluster names the cluster; it scopes the gossip topic and protocols so
	// that two clusters on one network stay apart. Default "default".
	Cluster string
	// ListenP2P are the libp2p multiaddrs to listen on (TCP and QUIC).
	// Default /ip4/127.0.0.1/tcp/7380 and /ip4/127.0.0.1/udp/7380/quic-v1,
	// or port 0 on both when ListenClient's port is 0.
	ListenP2P []string
	// Bootstrap are peer multiaddrs, ending in /p2p/<peer id> or not (the id
	// is then learned at each dial: p2p.LearnPeerID); the node keeps dialling
	// them, with backoff, and redials when a link drops.
	Bootstrap []string
	// MDNS finds peers of the same cluster on the local network. Default off.
	MDNS bool
	// SyncInterval is how often the node runs anti-entropy with a random
	// connected peer (±20% jitter); it also syncs with every peer it dials.
	// Default 5 s; negative turns the periodic sessions off.
	SyncInterval time.Duration
	// SyncTimeout bounds one anti-entropy session. Default 30 s.
	SyncTimeout time.Duration
	// FrontierInterval is the least time between two announcements of this
	// node's frontiers (converged watches and puts that wait for
	// convergence): it bounds how much later than plain gossip a converged
	// event comes. Default 100 ms (p2p.DefaultFrontierInterval).
	FrontierInterval time.Duration
	// TombstoneGrace is how long deletes are remembered: older tombstones
	// are purged. A node out of contact for longer must be reset before it
	// syncs again. Default 24 h.
	TombstoneGrace time.Duration
	// Name is this node's human-readable name in the member list. Default
	// the host name and the end of the peer id.
	Name string
	// OpenAdmission lets any peer that reaches the node connect, gossip and
	// sync (labs and tests). By default only members on the replicated
	// member list may; a node that founds a cluster admits itself.
	OpenAdmission bool
	// SwarmKeyFile, when set, is a libp2p private-network key: peers without
	// it cannot complete a handshake. The node then listens on TCP only
	// (go-libp2p refuses a private network over QUIC).
	SwarmKeyFile string
	// NewIdentity lets the node start with a new identity key when its data
	// folder holds a store but no key (see LoadIdentity). Without it, such a
	// folder is refused: a lost key must not silently make a new member.
	NewIdentity bool
	// Repair starts a node whose store is damaged (a journal or table that
	// fails its checksum; without it the node refuses to start): what is
	// readable is kept, and client reads fail with Unavailable until a
	// complete anti-entropy session with a peer has brought back the rest.
	// Default false.
	Repair bool
	// JoinSecretFile, when set, is a file holding the cluster's join secret
	// (at least 16 bytes): the libp2p private-network key is derived from it
	// and the cluster name, so a host without it cannot complete a
	// handshake, and every node holding it that was not removed is admitted
	// and adds itself to the member list (after its first sync with a peer,
	// or at once when it has no bootstrap peers). TCP only, as with
	// SwarmKeyFile; the two exclude each other.
	JoinSecretFile string
	// ListenHTTP is the host:port of the HTTP listener serving /healthz,
	// /readyz and /metrics (see Node.HTTPMux); off, metrics cost nothing. Default: ListenClient's host with its port
	// + 2 (127.0.0.1:7381 with the default client address), port 0 when
	// ListenClient's port is 0; "off" turns it off.
	ListenHTTP string
	// Gater, when set, also vets every libp2p connection, besides admission
	// (tests cut partitions with it).
	Gater connmgr.ConnectionGater
	// FailureDetector is the SWIM timing; zero fields take swim.LANConfig's
	// values (probe every 1 s, 500 ms timeout, 3 indirect probes).
	// swim.LoopbackConfig is a faster preset for nodes on one machine.
	FailureDetector swim.Config
	// ProbeDelay injects a fault for tests: a delay before this node answers
	// a probe, as a slow node would.
	ProbeDelay func() time.Duration
	// DropGossip injects a fault for tests: when it returns true, gossip
	// received from peers is dropped as if lost.
	DropGossip func() bool
	// ListenEtcd is the host:port of the etcd v3 API (internal/etcdapi).
	// Empty (the default) leaves it off: its semantics differ from etcd's
	// (see README), so a node serves it only when asked, and etcd's own
	// 2379 stays free for an etcd on the same host. Port 0 picks a port.
	ListenEtcd string
	// WatchProgressNotifyInterval is how often the etcd API sends a progress
	// notification to a watch created with progress_notify that had no
	// events (etcd's --watch-progress-notify-interval). Default 10 minutes,
	// etcd's.
	WatchProgressNotifyInterval time.Duration
	// WallClock is the wall clock the node's HLC reads. Default the system
	// clock; tests inject one.
	WallClock crdt.WallClock

	// MaxClientConns caps the client connections each gRPC listener (the
	// client API, and the etcd API when on) holds at once: one more is
	// closed as soon as it is accepted. The caps, MaxHTTPConns and libp2p's
	// descriptors are lowered together, with a warning, when the process's
	// descriptor limit cannot hold them next to the store's reserve (see
	// planConns). Default 4096.
	MaxClientConns int
	// MaxHTTPConns caps the HTTP listener's connections likewise. Default
	// 256.
	MaxHTTPConns int
	// ClientIdleTimeout closes a client connection with no call in flight
	// (no unary call, no stream: a watch keeps its connection) for this
	// long: gRPC's MaxConnectionIdle, a GOAWAY that clients answer by
	// reconnecting at their next call. HTTP keep-alive connections close
	// after 30 s idle, or this when shorter. Default 5 minutes.
	ClientIdleTimeout time.Duration
	// MaxWatches bounds the watches open on the node, through either API
	// (watch.Config.MaxWatchers): one more fails with ResourceExhausted.
	// Default 10,000.
	MaxWatches int
	// MaxWatchesPerStream, MaxRangeResponseBytes and
	// MaxConcurrentRangeReads are the etcd API's bounds (see
	// etcdapi.Config). Defaults 1,000 watches, 16 MiB, 4 reads.
	MaxWatchesPerStream     int
	MaxRangeResponseBytes   int
	MaxConcurrentRangeReads int
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.ListenClient == "" {
		c.ListenClient = DefaultListenClient
	}
	c.Limits = c.Limits.WithDefaults()
	if c.MaxClockOffset == 0 {
		c.MaxClockOffset = crdt.DefaultMaxOffset
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Cluster == "" {
		c.Cluster = p2p.DefaultCluster
	}
	if len(c.ListenP2P) == 0 {
		c.ListenP2P = p2p.DefaultListenAddrs
		if _, port, err := net.SplitHostPort(c.ListenClient); err == nil && port == "0" {
			// A node asked to pick its client port (tests, scripts starting
			// several nodes) picks its peer ports too.
			c.ListenP2P = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
		}
	}
	if c.ListenHTTP == "" {
		c.ListenHTTP = defaultListenHTTP(c.ListenClient)
	}
	if c.WallClock == nil {
		c.WallClock = crdt.SystemWallClock
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = p2p.DefaultSyncInterval
	}
	if c.SyncTimeout == 0 {
		c.SyncTimeout = p2p.DefaultSyncTimeout
	}
	if c.TombstoneGrace == 0 {
		c.TombstoneGrace = store.DefaultTombstoneGrace
	}
	if c.MaxClientConns == 0 {
		c.MaxClientConns = DefaultMaxClientConns
	}
	if c.MaxHTTPConns == 0 {
		c.MaxHTTPConns = DefaultMaxHTTPConns
	}
	if c.ClientIdleTimeout == 0 {
		c.ClientIdleTimeout = DefaultClientIdleTimeout
	}
	psk := c.SwarmKeyFile != "" || c.JoinSecretFile != ""
	if psk && len(c.ListenP2P) == 2 && c.ListenP2P[1] == p2p.DefaultListenAddrs[1] {
		c.ListenP2P = c.ListenP2P[:1] // TCP only with a private-network key
	}
	if psk && len(c.ListenP2P) == 2 && c.ListenP2P[1] == "/ip4/127.0.0.1/udp/0/quic-v1" {
		c.ListenP2P = c.ListenP2P[:1]
	}
	return c
}

// defaultListenHTTP is the HTTP address that goes with a client address:
// the same host, the port + 2 (0 stays 0), so that several nodes on one
// host given distinct client ports get distinct HTTP ports too.
func defaultListenHTTP(client string) string {
	host, port, err := net.SplitHostPort(client)
	if err != nil {
		return DefaultListenHTTP
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p+2 > 65535 {
		return DefaultListenHTTP
	}
	if p == 0 {
		return net.JoinHostPort(host, "0")
	}
	return net.JoinHostPort(host, strconv.Itoa(p+2))
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.ListenClient); err != nil {
		errs = append(errs, fmt.Errorf("node: listen-client %q is not host:port: %w", c.ListenClient, err))
	}
	if c.ListenEtcd != "" {
		if _, _, err := net.SplitHostPort(c.ListenEtcd); err != nil {
			errs = append(errs, fmt.Errorf("node: listen-etcd %q is not host:port: %w", c.ListenEtcd, err))
		}
	}
	if c.ListenHTTP != ListenHTTPOff {
		if _, _, err := net.SplitHostPort(c.ListenHTTP); err != nil {
			errs = append(errs, fmt.Errorf("node: listen-http %q is not host:port (or %q): %w", c.ListenHTTP, ListenHTTPOff, err))
		}
	}
	if c.JoinSecretFile != "" && c.SwarmKeyFile != "" {
		errs = append(errs, errors.New("node: a join secret and a swarm key exclude each other: the join secret already makes the cluster a private network"))
	}
	if c.JoinSecretFile != "" && c.OpenAdmission {
		errs = append(errs, errors.New("node: a join secret and open admission exclude each other: the join secret decides who joins"))
	}
	if err := p2p.ValidateCluster(c.Cluster); err != nil {
		errs = append(errs, err)
	}
	if _, err := p2p.ParseBootstrap(c.Bootstrap, ""); err != nil {
		errs = append(errs, err)
	}
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxClockOffset < 0 {
		errs = append(errs, fmt.Errorf("node: max clock offset is %v; it must not be negative (0 means the default)", c.MaxClockOffset))
	}
	if c.WatchProgressNotifyInterval < 0 {
		errs = append(errs, fmt.Errorf("node: watch progress-notify interval is %v; it must not be negative (0 means the default, %v)", c.WatchProgressNotifyInterval, etcdapi.DefaultProgressNotifyInterval))
	}
	if c.RetainRevisions < 0 {
		errs = append(errs, fmt.Errorf("node: retained revisions is %d; it must not be negative (0 means the default)", c.RetainRevisions))
	}
	if c.WatchBuffer < 0 {
		errs = append(errs, fmt.Errorf("node: watch buffer is %d; it must not be negative (0 means the default)", c.WatchBuffer))
	}
	if len(c.Name) > 253 {
		errs = append(errs, fmt.Errorf("node: name is %d bytes; the limit is 253", len(c.Name)))
	}
	fd := c.FailureDetector
	if fd.Rand == nil {
		fd.Rand = rand.New(rand.NewPCG(1, 2)) // the node seeds its own; only the timing is checked here
	}
	if err := fd.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("node: failure detector: %w", err))
	}
	if c.SyncTimeout < 0 {
		errs = append(errs, fmt.Errorf("node: sync timeout is %v; it must not be negative (0 means the default)", c.SyncTimeout))
	}
	if c.TombstoneGrace < 0 {
		errs = append(errs, fmt.Errorf("node: tombstone grace is %v; it must not be negative (0 means the default %v)", c.TombstoneGrace, store.DefaultTombstoneGrace))
	}
	if c.MaxWatches < 0 || c.MaxWatchesPerStream < 0 || c.MaxRangeResponseBytes < 0 || c.MaxConcurrentRangeReads < 0 {
		errs = append(errs, fmt.Errorf("node: watch and read bounds must not be negative (watches %d, per stream %d, range response bytes %d, concurrent range reads %d; 0 means the default)",
			c.MaxWatches, c.MaxWatchesPerStream, c.MaxRangeResponseBytes, c.MaxConcurrentRangeReads))
	}
	if c.MaxClientConns < 0 || c.MaxHTTPConns < 0 {
		errs = append(errs, fmt.Errorf("node: connection caps are %d (client) and %d (HTTP); they must not be negative (0 means the default)", c.MaxClientConns, c.MaxHTTPConns))
	}
	if c.ClientIdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("node: client idle timeout is %v; it must not be negative (0 means the default, %v)", c.ClientIdleTimeout, DefaultClientIdleTimeout))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("node: shutdown timeout is %v; it must not be negative (0 means the default)", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}
