package etcdapi

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/grpcstop"
	"github.com/chorus-kv/chorus/watch"
)

// Limits etcd enforces, kept here with etcd's values.
const (
	// MaxRequestBytes is the largest request etcd accepts (1.5 MiB).
	MaxRequestBytes = 3 << 19
	// MaxTxnOps is the most compares or operations in one branch of a Txn.
	MaxTxnOps = 128
	// grpcOverheadBytes is the room gRPC gets above MaxRequestBytes, so that
	// an oversized request gets etcd's error rather than gRPC's.
	grpcOverheadBytes = 512 << 10
)

// Defaults for Config.
const (
	DefaultProgressNotifyInterval = 10 * time.Minute // etcd's
	DefaultLeaseCheckInterval     = 250 * time.Millisecond
	DefaultShutdownTimeout        = 5 * time.Second
	// APIVersion is the etcd version reported by Maintenance.Status: the API
	// level served (kube-apiserver enables watch progress requests from it).
	APIVersion = "3.6.0"
)

// Config configures a Server. Store, Hub and NodeID are required; the zero
// value of every other field means its default.
type Config struct {
	// Listen is the host:port of the etcd API. Port 0 picks a free port.
	Listen string
	// Store and Hub are the node's store and watch hub.
	Store *store.Store
	Hub   *watch.Hub
	// NodeID is the node's peer id (its text form): the etcd member name,
	// and the source of the member id.
	NodeID string
	// Cluster is the cluster name: the source of the etcd cluster id.
	Cluster string
	// Members is the cluster's membership as the node knows it: MemberList
	// lists each member it returns (see Membership). Default: none, so
	// MemberList lists this node alone.
	Members Membership
	// CheckWrite, when set, vets the key of every client write (Put,
	// DeleteRange, a Txn's writes): an error refuses the whole call with
	// InvalidArgument and the error's text. The node refuses the keys
	// reserved for the cluster's own state. Default: every key may be
	// written.
	CheckWrite func(key []byte) error
	// StorePath is the folder of the node's store: Status reports the size
	// of the files under it (1 when empty: etcdctl divides by it).
	StorePath string
	// LeaseFile is the file the leases are saved to and loaded from (see
	// lessor). Default: none, and leases do not survive a restart.
	LeaseFile string
	// ProgressNotifyInterval is how often a watch created with
	// progress_notify gets a progress notification when it had no events
	// (etcd's --watch-progress-notify-interval). Default 10 minutes (etcd's).
	ProgressNotifyInterval time.Duration
	// LeaseCheckInterval is how often expired leases are looked for; a lease
	// ends at most this long after its TTL. Default 250 ms.
	LeaseCheckInterval time.Duration
	// ShutdownTimeout bounds how long Close waits for in-flight calls.
	// Default 5 s.
	ShutdownTimeout time.Duration
	// ServerOptions are more options for the gRPC server (the node's
	// tuning, shared with its native API).
	ServerOptions []grpc.ServerOption
	// Logger receives the server's log. Default slog.Default().
	Logger *slog.Logger
	// WrapListener, when set, wraps the listener before the server serves
	// it (the node caps its connections with it).
	WrapListener func(net.Listener) net.Listener
	// MaxRangeResponseBytes bounds the key and value bytes one Range, or
	// the Ranges of one Txn, holds: past it the call fails with
	// ResourceExhausted and a message that says to read in pages.
	// RangeStream, which sends chunks, is not bounded by it. Default 16 MiB.
	MaxRangeResponseBytes int
	// MaxConcurrentRangeReads is how many expensive reads (Ranges and Txns
	// that may hold many keys: see expensiveRange) run at once; the others
	// wait for a slot as long as their context lasts. Default 4.
	MaxConcurrentRangeReads int
	// MaxWatchesPerStream bounds the watches open on one Watch stream: one
	// more is canceled at creation with the limit in its reason. The hub
	// bounds the watches of the node (watch.Config.MaxWatchers). Default
	// 1,000.
	MaxWatchesPerStream int
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Members == nil {
		c.Members = noMembers{}
	}
	if c.ProgressNotifyInterval == 0 {
		c.ProgressNotifyInterval = DefaultProgressNotifyInterval
	}
	if c.LeaseCheckInterval == 0 {
		c.LeaseCheckInterval = DefaultLeaseCheckInterval
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxRangeResponseBytes == 0 {
		c.MaxRangeResponseBytes = DefaultMaxRangeResponseBytes
	}
	if c.MaxConcurrentRangeReads == 0 {
		c.MaxConcurrentRangeReads = DefaultMaxConcurrentRangeReads
	}
	if c.MaxWatchesPerStream == 0 {
		c.MaxWatchesPerStream = DefaultMaxWatchesPerStream
	}
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("etcdapi: listen address %q is not host:port: %w", c.Listen, err))
	}
	if c.Store == nil || c.Hub == nil {
		errs = append(errs, errors.New("etcdapi: Store and Hub are required"))
	}
	if c.NodeID == "" {
		errs = append(errs, errors.New("etcdapi: NodeID is required"))
	}
	if c.ProgressNotifyInterval < 0 || c.LeaseCheckInterval < 0 || c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("etcdapi: intervals must not be negative (progress notify %v, lease check %v, shutdown %v; 0 means the default)",
			c.ProgressNotifyInterval, c.LeaseCheckInterval, c.ShutdownTimeout))
	}
	if c.MaxRangeResponseBytes < 0 || c.MaxConcurrentRangeReads < 0 || c.MaxWatchesPerStream < 0 {
		errs = append(errs, fmt.Errorf("etcdapi: bounds must not be negative (range response bytes %d, concurrent range reads %d, watches per stream %d; 0 means the default)",
			c.MaxRangeResponseBytes, c.MaxConcurrentRangeReads, c.MaxWatchesPerStream))
	}
	return errors.Join(errs...)
}

// Server serves the etcd v3 API over a node's store.
type Server struct {
	cfg       Config
	store     *store.Store
	hub       *watch.Hub
	memberID  uint64
	clusterID uint64
	locks     *keyLocks
	leases    *lessor
	grpc      *grpc.Server
	health    *health.Server
	listener  net.Listener
	reads     chan struct{}  // the expensive-read semaphore (acquireRead)
	split     *splitListener // gRPC and HTTP/1.x JSON on one port
	gateway   *gateway

	// done is closed by Close: stream handlers and the lease loop end.
	done chan struct{}
	// wg counts the goroutines the server owns besides gRPC's: the lease
	// loop, stream receivers, watch senders. Close waits for them.
	wg        sync.WaitGroup
	serveDone chan struct{}
	closeOnce sync.Once
}

// Start listens on cfg.Listen and serves the etcd API until Close.
func Start(cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		store:     cfg.Store,
		hub:       cfg.Hub,
		memberID:  hashID([]byte(cfg.NodeID)),
		clusterID: hashID([]byte("chorus/" + cfg.Cluster)),
		locks:     newKeyLocks(),
		done:      make(chan struct{}),
		serveDone: make(chan struct{}),
		reads:     make(chan struct{}, cfg.MaxConcurrentRangeReads),
	}
	var err error
	if s.leases, err = newLessor(s); err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("etcdapi: listen on %s: %w", cfg.Listen, err)
	}
	if cfg.WrapListener != nil {
		lis = cfg.WrapListener(lis)
	}
	s.listener = lis
	s.grpc = grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRequestBytes + grpcOverheadBytes),
		grpc.ForceServerCodecV2(newServerCodec()), // Txn decodes itself: see decodeTxn
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}, cfg.ServerOptions...)...)
	s.grpc.RegisterService(kvServiceDesc(), &kvServer{s: s})
	pb.RegisterWatchServer(s.grpc, &watchServer{s: s})
	pb.RegisterLeaseServer(s.grpc, &leaseServer{s: s})
	pb.RegisterClusterServer(s.grpc, &clusterServer{s: s})
	pb.RegisterMaintenanceServer(s.grpc, &maintenanceServer{s: s})
	pb.RegisterAuthServer(s.grpc, pb.UnimplementedAuthServer{})
	// gRPC's health service, as etcd serves it (probes use it).
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.leases.run()
	}()
	s.split = newSplitListener(lis)
	if s.gateway, err = startGateway(s.split.http, lis.Addr(), cfg.Logger.Warn); err != nil {
		s.split.Close()
		close(s.done)
		s.wg.Wait()
		return nil, err
	}
	go func() {
		defer close(s.serveDone)
		_ = s.grpc.Serve(s.split.grpc)
	}()
	cfg.Logger.Info("etcd API started", "addr", lis.Addr().String())
	return s, nil
}

// Addr returns the address the etcd API listens on.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// ClientURL is the URL etcd clients dial for this server.
func (s *Server) ClientURL() string { return "http://" + s.listener.Addr().String() }

// Close ends watch and keep-alive streams and the lease loop, gives unary
// calls up to ShutdownTimeout to finish, and stops the server. It is safe to
// call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.health.Shutdown() // NOT_SERVING to every health check from now on
		close(s.done)
		s.gateway.close(s.cfg.ShutdownTimeout) // its streams end with the server's
		grpcstop.Graceful(s.grpc, s.cfg.ShutdownTimeout)
		<-s.serveDone
		s.split.Close()
		s.wg.Wait()
	})
}

// header is a response header at store revision rev (etcd's rev+1).
func (s *Server) header(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: s.clusterID, MemberId: s.memberID, Revision: etcdRev(rev), RaftTerm: 1}
}

// etcdRev is the etcd revision of store revision r: one more, so that an
// empty store is at etcd's first revision, 1, and its first change at 2, as
// in etcd (see the package doc, "Revisions").
func etcdRev(r int64) int64 { return r + 1 }

// storeRev is the store revision of etcd revision r (r ≥ 1).
func storeRev(r int64) int64 { return r - 1 }

// compactRevision is etcd's compact revision: the oldest revision a Range
// may read and a watch may start from, 0 when the change log was never
// trimmed. The store keeps the log from OldestRevision O on, so a watch can
// start at store revision O (etcd O+1), and a Range at store revision O-1
// could still be rebuilt; the boundary is the watch's, for both, as in etcd.
func (s *Server) compactRevision() int64 {
	o := s.store.OldestRevision()
	if o <= 1 {
		return 0
	}
	return etcdRev(o)
}

// hashID derives a non-zero etcd id (member, cluster) from b.
func hashID(b []byte) uint64 {
	sum := sha256.Sum256(b)
	id := binary.BigEndian.Uint64(sum[:8])
	if id == 0 {
		id = 1
	}
	return id
}
