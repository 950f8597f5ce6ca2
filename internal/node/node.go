package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/connlimit"
	"github.com/chorus-kv/chorus/internal/etcdapi"
	"github.com/chorus-kv/chorus/internal/grpcstop"
	"github.com/chorus-kv/chorus/p2p"
	clusterv1 "github.com/chorus-kv/chorus/proto/chorus/cluster/v1"
	kvv1 "github.com/chorus-kv/chorus/proto/chorus/kv/v1"
	maintenancev1 "github.com/chorus-kv/chorus/proto/chorus/maintenance/v1"
	"github.com/chorus-kv/chorus/watch"
)

// Node is one running Chorus node.
type Node struct {
	cfg      Config
	identity p2p.Identity
	store    *store.Store
	hub      *watch.Hub
	// peering is the cluster-facing components (peering.go); host, sync,
	// admission, members and boot are its, named here for brevity.
	peering   Peering
	host      host.Host
	sync      *p2p.Syncer
	admission *p2p.Admission
	members   *p2p.Membership
	skipLeave bool        // tests: stop as if crashed, without announcing a leave
	repairing atomic.Bool // the store was repaired and has not caught up (logged once)
	// refused is closed when a member reports this node's identity live in
	// an older process; refusedErr says so (see Refused).
	refused    chan struct{}
	refusedErr error
	removed    chan peer.ID // members removed, for enforceAdmission
	boot       *p2p.Bootstrapper
	mdns       *p2p.MDNS
	grpc       *grpc.Server
	listener   net.Listener
	etcd       *etcdapi.Server // nil unless Config.ListenEtcd is set
	httpLis    net.Listener    // nil when Config.ListenHTTP is off
	httpMux    *http.ServeMux
	httpSrv    *http.Server
	httpDone   chan struct{}
	metrics    *metrics      // nil when the HTTP listener is off
	firstSync  atomic.Bool   // an anti-entropy session with a peer completed (readiness)
	catchUp    catchUp       // catch-up progress (catchup.go)
	syncedCh   chan struct{} // a sync completed: enforceAdmission checks self-admission

	// The JSON API on the HTTP listener (gateway.go), and the cancel that
	// ends the listener's requests (watch streams) at shutdown.
	jsonAPI    *jsonGateway
	httpCancel context.CancelFunc

	// removedLogged: selfAdmit said once that this node was removed (owned
	// by enforceAdmission's goroutine).
	removedLogged bool
	// seen holds the peers this node had a connection to since it started
	// (peer.ID -> true; watchSeen).
	seen sync.Map

	closing   chan struct{} // closed when Close begins: ends member watches
	stopAdmit chan struct{}
	admitDone chan struct{}
	stopGC    chan struct{}
	gcDone    chan struct{}
	serveDone chan struct{}
	serveErr  error
	closeOnce sync.Once
	closeErr  error

	caps connCaps // the listeners' connection caps (planConns)
}

// StoreDir is the folder of the node's LevelDB store inside its data folder.
const StoreDir = "db"

// ErrIdentityMissing reports a data folder that holds a store but no
// identity key.
var ErrIdentityMissing = errors.New("node: the data folder holds data but no identity key")

// LoadIdentity reads the identity key of the data folder dir, or creates one
// in a new folder. A folder that holds a store but no key is refused unless
// newIdentity is set: the key was lost or left behind when the folder was
// copied, and a new key would silently make the data a new member's.
func LoadIdentity(dir string, newIdentity bool) (p2p.Identity, error) {
	exists, err := p2p.IdentityExists(dir)
	if err != nil {
		return p2p.Identity{}, err
	}
	if !exists && !newIdentity {
		entries, err := os.ReadDir(filepath.Join(dir, StoreDir))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return p2p.Identity{}, fmt.Errorf("node: read the store folder: %w", err)
		}
		if len(entries) > 0 {
			return p2p.Identity{}, fmt.Errorf("%w: %s exists but %s does not; restore the key from a backup, or start with --new-identity to give this data a new peer id (the other members must then admit it: chorus member add)",
				ErrIdentityMissing, filepath.Join(dir, StoreDir), filepath.Join(dir, p2p.IdentityFile))
		}
	}
	return p2p.LoadOrCreateIdentity(dir)
}

// Start opens the node's state, joins the cluster and serves the client API.
func Start(cfg Config) (_ *Node, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	id, err := LoadIdentity(cfg.DataDir, cfg.NewIdentity)
	if err != nil {
		return nil, err
	}
	bootstrap, err := p2p.ParseBootstrap(cfg.Bootstrap, id.ID)
	if err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = defaultName(id.ID)
	}
	var swarmKey pnet.PSK
	if cfg.SwarmKeyFile != "" {
		if swarmKey, err = p2p.LoadSwarmKey(cfg.SwarmKeyFile); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	if cfg.JoinSecretFile != "" {
		if swarmKey, err = p2p.LoadJoinSecret(cfg.JoinSecretFile, cfg.Cluster); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	n := &Node{cfg: cfg, identity: id, serveDone: make(chan struct{}), removed: make(chan peer.ID, 256), closing: make(chan struct{}),
		syncedCh: make(chan struct{}, 1), refused: make(chan struct{})}
	n.planDescriptors()
	if cfg.ListenHTTP != ListenHTTPOff {
		n.metrics = newMetrics() // served on the HTTP listener (see metrics.go)
	}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	// The hub needs the store as its source and the store needs the hub as
	// its commit callback: the callback is bound before any write can happen.
	st, err := store.Open(store.Config{
		Path:            filepath.Join(cfg.DataDir, StoreDir),
		NodeID:          []byte(id.ID),
		Limits:          cfg.Limits,
		Clock:           crdt.NewClock(cfg.WallClock, cfg.MaxClockOffset),
		RetainRevisions: cfg.RetainRevisions,
		TombstoneGrace:  cfg.TombstoneGrace,
		OnCommit:        n.onCommit,
		OnWrite:         n.metrics.storeHook(),
		Repair:          cfg.Repair,
	})
	if errors.Is(err, store.ErrDamaged) {
		return nil, fmt.Errorf("node: %w (start with --repair to keep what is readable and catch up from the other members before serving reads)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.store = st
	n.repairing.Store(st.CatchingUp())
	cleanup = append(cleanup, func() { _ = st.Close() })
	if skipped := st.Stats().SkippedRevisions; skipped > 0 {
		cfg.Logger.Warn("the store was not closed cleanly and the machine may have restarted since: skipped the revisions that gossip applied without an fsync may have used (anti-entropy brings back what was lost)",
			"skipped", skipped, "revision", st.Revision())
	}
	if st.CatchingUp() {
		cfg.Logger.Warn("the store was repaired after damage: client reads fail with Unavailable until a complete anti-entropy session with another member",
			"revision", st.Revision(), "skipped", st.Stats().SkippedRevisions)
	}
	if n.hub, err = watch.NewHub(st, watch.Config{BufferSize: cfg.WatchBuffer, MaxWatchers: cfg.MaxWatches}); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	cleanup = append(cleanup, n.hub.Close)

	metricsHook := n.metrics.sessionHook()
	if err := n.peering.Start(PeeringConfig{
		Cluster:       cfg.Cluster,
		Identity:      id,
		Store:         st,
		Logger:        cfg.Logger,
		Bootstrap:     bootstrap,
		OpenAdmission: cfg.OpenAdmission,
		OnAdmission: func(a *p2p.Admission) {
			n.admission = a
			if cfg.JoinSecretFile != "" {
				a.UseJoinSecret()
			}
			n.logAdmission(len(bootstrap))
			n.startCatchUp()
		},
		OnRemoved: func(p peer.ID) {
			select {
			case n.removed <- p:
			default: // enforceAdmission's sweep closes it within a second
			}
		},
		Gater: cfg.Gater,
		Host:  p2p.HostConfig{Listen: cfg.ListenP2P, SwarmKey: swarmKey, MaxFDs: n.caps.P2P},
		OnHost: func(h host.Host) {
			n.host = h
			n.watchSeen()
		},
		Replicator: p2p.ReplicatorConfig{
			DropGossip: cfg.DropGossip,
			OnApply:    n.metrics.applyHook(),
		},
		Syncer: p2p.SyncConfig{
			Interval: cfg.SyncInterval,
			Timeout:  cfg.SyncTimeout,
			OnComplete: func(p peer.ID) {
				if n.repairing.CompareAndSwap(true, false) {
					cfg.Logger.Warn("caught up after the repair: serving reads again", "peer", p)
				}
				n.firstSync.Store(true)
				select {
				case n.syncedCh <- struct{}{}:
				default:
				}
			},
			OnSession: func(st p2p.SyncStats, err error) {
				n.sessionEnded(st, err)
				if metricsHook != nil {
					metricsHook(st, err)
				}
			},
		},
		Membership: p2p.MembershipConfig{
			Detector:   cfg.FailureDetector,
			ProbeDelay: cfg.ProbeDelay,
			OnDuplicateIdentity: func(err error) { // called once
				n.refusedErr = err
				close(n.refused)
			},
		},
		Convergence: p2p.ConvergenceConfig{Interval: cfg.FrontierInterval},
	}); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.sync, n.members = n.peering.Syncer, n.peering.Members
	cleanup = append(cleanup, func() { _ = n.peering.Close() })
	n.stopAdmit, n.admitDone = make(chan struct{}), make(chan struct{})
	go n.enforceAdmission()
	cleanup = append(cleanup, func() { close(n.stopAdmit); <-n.admitDone })
	n.stopGC, n.gcDone = make(chan struct{}), make(chan struct{})
	go n.collectTombstones()
	cleanup = append(cleanup, func() { close(n.stopGC); <-n.gcDone })

	lis, err := net.Listen("tcp", cfg.ListenClient)
	if err != nil {
		return nil, fmt.Errorf("node: listen for clients on %s: %w", cfg.ListenClient, err)
	}
	n.listener = connlimit.New(lis, n.caps.Client, "client", cfg.Logger)
	n.grpc = grpc.NewServer(append([]grpc.ServerOption{
		// Room for the largest value and key, so that an oversized value gets
		// this node's own error (with the limit) rather than gRPC's.
		grpc.MaxRecvMsgSize(cfg.Limits.MaxValueBytes + cfg.Limits.MaxKeyBytes + 1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}, append(append(serverTuning(cfg.ShutdownTimeout), idleOptions(cfg.ClientIdleTimeout)...), n.metrics.grpcOptions()...)...)...)
	kvv1.RegisterKVServiceServer(n.grpc, &kvServer{node: n})
	clusterv1.RegisterClusterServiceServer(n.grpc, &clusterServer{node: n})
	maintenancev1.RegisterMaintenanceServiceServer(n.grpc, &maintenanceServer{node: n})
	go func() {
		defer close(n.serveDone)
		n.serveErr = n.grpc.Serve(n.listener)
	}()
	cleanup = append(cleanup, func() { n.grpc.Stop(); <-n.serveDone })

	if cfg.ListenEtcd != "" {
		if err := n.startEtcd(); err != nil {
			return nil, err
		}
		cleanup = append(cleanup, n.etcd.Close)
	}
	if err := n.startHTTP(); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { n.stopHTTP(time.Second) })

	n.boot = n.peering.StartBootstrapper()
	if cfg.MDNS {
		if n.mdns, err = p2p.StartMDNS(n.host, cfg.Cluster, cfg.Logger); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	cfg.Logger.Info("chorus node started",
		"node_id", id.ID.String(),
		"client_api", lis.Addr().String(),
		"cluster", cfg.Cluster,
		"data_dir", cfg.DataDir,
		"http", httpAddr(n.HTTPAddr()),
		"revision", st.Revision())
	for _, a := range p2p.FullAddrs(n.host) {
		cfg.Logger.Info("bootstrap from", "addr", a)
	}
	return n, nil
}

// handlerWorkers is how many goroutines run the gRPC handlers of each of
// the node's servers (the native API and the etcd API). A handler waits for
// its write's fsync, so about one worker per call in flight: a call that
// finds every worker busy runs on a new goroutine, as without a pool.
const handlerWorkers = 128

// maxHandshakeTimeout bounds how long a client connection may take to
// complete its HTTP/2 handshake (gRPC's default is 120 s).
const maxHandshakeTimeout = 5 * time.Second

// handshakeTimeout is the handshake deadline of the node's gRPC servers:
// maxHandshakeTimeout, or the shutdown timeout when shorter (at least 1 s).
// A connection stuck before its handshake holds a shutdown until this
// deadline (gRPC's Stop does not close such connections), so shutdown
// honours --shutdown-timeout.
func handshakeTimeout(shutdown time.Duration) time.Duration {
	return min(maxHandshakeTimeout, max(shutdown, time.Second))
}

// serverTuning returns the gRPC server options of the node's servers.
// Handlers run on a pool of goroutines whose stacks have already grown,
// instead of a new goroutine per call: in a profile of a lone node under 64
// clients, growing fresh handler stacks took about 6 % of the CPU. A
// connection that does not complete its handshake in time is closed (see
// handshakeTimeout).
func serverTuning(shutdown time.Duration) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(handlerWorkers),
		grpc.ConnectionTimeout(handshakeTimeout(shutdown)),
	}
}

// Keepalive of the node's gRPC servers: a connection with no call in
// flight for the idle timeout is closed (a GOAWAY; clients reconnect at
// their next call); the server pings a connection silent for
// keepaliveTime and closes it when the ping is not answered within
// keepaliveTimeout, so a client that vanished does not hold its watches.
const (
	keepaliveTime    = 2 * time.Minute
	keepaliveTimeout = 20 * time.Second
)

// idleOptions returns the keepalive options of the node's gRPC servers.
func idleOptions(idle time.Duration) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{
		MaxConnectionIdle: idle,
		Time:              keepaliveTime,
		Timeout:           keepaliveTimeout,
	})}
}

func httpAddr(a net.Addr) string {
	if a == nil {
		return ListenHTTPOff
	}
	return a.String()
}

// onCommit is the store's commit hook: every written batch (fsynced, or
// buffered gossip: see store.ApplyBuffered) goes to the watch hub and this
// node's own writes to gossip. It never blocks.
func (n *Node) onCommit(changes []store.Change) {
	n.hub.Publish(changes)
	n.peering.OnCommit(changes)
}

// collectTombstones purges tombstones older than the grace period, every
// tenth of it (at least every second, at most every 10 minutes).
func (n *Node) collectTombstones() {
	defer close(n.gcDone)
	every := min(max(n.cfg.TombstoneGrace/10, time.Second), 10*time.Minute)
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-n.stopGC:
			return
		case <-ticker.C:
			purged, err := n.store.PurgeTombstones(context.Background(), 0)
			if err != nil {
				n.cfg.Logger.Warn("tombstone garbage collection failed", "err", err)
			} else if purged > 0 {
				n.cfg.Logger.Info("purged tombstones past the grace period", "count", purged, "grace", n.cfg.TombstoneGrace)
			}
		}
	}
}

// Convergence returns the node's convergence tracker: which writes every
// live member holds, and each member's lag (Convergence.Lag, which a
// metric can read).
func (n *Node) Convergence() *p2p.Convergence { return n.peering.Convergence() }

// Syncer returns the node's anti-entropy syncer.
func (n *Node) Syncer() *p2p.Syncer { return n.sync }

// Failed is closed when the node can no longer take writes (its store hit a
// disk error); Err says why. The agent exits then, so a supervisor restarts it.
func (n *Node) Failed() <-chan struct{} { return n.store.Failed() }

// Refused is closed when a member reports that this node's identity is live
// in another process started before it (its data folder was copied from a
// running node); RefusedErr says so, and how to give the copy an identity of
// its own. The agent exits then; Close does not announce a leave, which
// would mark the other process left.
func (n *Node) Refused() <-chan struct{} { return n.refused }

// RefusedErr returns the *p2p.DuplicateIdentityError once Refused is closed,
// nil before.
func (n *Node) RefusedErr() error {
	select {
	case <-n.refused:
		return n.refusedErr
	default:
		return nil
	}
}

// Err returns why the node failed, or nil.
func (n *Node) Err() error { return n.store.Err() }

// ID returns the node's peer id.
func (n *Node) ID() string { return n.identity.ID.String() }

// ClientAddr returns the address the client API listens on.
func (n *Node) ClientAddr() net.Addr { return n.listener.Addr() }

// P2PAddrs returns the multiaddrs other nodes can bootstrap from.
func (n *Node) P2PAddrs() []string { return p2p.FullAddrs(n.host) }

// Host returns the node's libp2p host.
func (n *Node) Host() host.Host { return n.host }

// Replicator returns the node's gossip replicator.
func (n *Node) Replicator() *p2p.Replicator { return n.peering.Replicator() }

// Store returns the node's store.
func (n *Node) Store() *store.Store { return n.store }

// Close stops the node: peer discovery stops, watches end, in-flight calls
// get up to ShutdownTimeout to finish, then the server, gossip and the
// libp2p host stop, and the store closes once its queued writes are
// durable. It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if !n.skipLeave && n.RefusedErr() == nil {
			// Announce the leave while the links are up, so members mark this
			// node left at once instead of suspecting it.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			n.members.Leave(ctx)
			cancel()
		}
		n.boot.Close()
		if n.mdns != nil {
			n.mdns.Close()
		}
		if n.etcd != nil {
			n.etcd.Close()
		}
		n.metrics.close() // a scrape under way stops asking peers
		n.stopHTTP(time.Second)
		n.hub.Close() // ends watch streams, which GracefulStop would wait for
		close(n.closing)
		grpcstop.Graceful(n.grpc, n.cfg.ShutdownTimeout)
		<-n.serveDone
		close(n.stopGC)
		<-n.gcDone
		close(n.stopAdmit)
		<-n.admitDone
		cs, rs := n.peering.Convergence().Stats(), n.peering.Replicator().Stats()
		n.cfg.Logger.Info("convergence bookkeeping", "announcements", cs.Announcements, "announced_bytes", cs.AnnouncedBytes,
			"received", cs.Received, "received_bytes", cs.ReceivedBytes, "hello_frontier_bytes", cs.HelloBytes,
			"gossip_batches", rs.Published, "gossip_entries", rs.PublishedEntries)
		hostErr := n.peering.Close()
		n.closeErr = n.store.Close()
		if n.closeErr == nil && hostErr != nil {
			n.closeErr = fmt.Errorf("node: close libp2p host: %w", hostErr)
		}
		n.cfg.Logger.Info("chorus node stopped", "node_id", n.ID(), "revision", n.store.Revision())
	})
	return n.closeErr
}
