package node

import (
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/p2p"
	kvv1 "github.com/chorus-kv/chorus/proto/chorus/kv/v1"
	"github.com/chorus-kv/chorus/watch"
)

// Node is one running Chorus node.
type Node struct {
	cfg      Config
	identity p2p.Identity
	store    *store.Store
	hub      *watch.Hub
	grpc     *grpc.Server
	listener net.Listener

	serveDone chan struct{}
	serveErr  error
	closeOnce sync.Once
	closeErr  error
}

// Start opens the node's state and serves its client API.
func Start(cfg Config) (_ *Node, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	id, err := p2p.LoadOrCreateIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, identity: id, serveDone: make(chan struct{})}

	// The hub needs the store as its source and the store needs the hub as
	// its commit callback: the callback is bound before any write can happen.
	st, err := store.Open(store.Config{
		Path:            filepath.Join(cfg.DataDir, "db"),
		NodeID:          []byte(id.ID),
		Limits:          cfg.Limits,
		Clock:           crdt.NewClock(cfg.WallClock, cfg.MaxClockOffset),
		RetainRevisions: cfg.RetainRevisions,
		OnCommit:        func(changes []store.Change) { n.hub.Publish(changes) },
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.store = st
	defer func() {
		if err != nil {
			_ = st.Close()
		}
	}()
	if n.hub, err = watch.NewHub(st, watch.Config{BufferSize: cfg.WatchBuffer}); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}

	lis, err := net.Listen("tcp", cfg.ListenClient)
	if err != nil {
		return nil, fmt.Errorf("node: listen for clients on %s: %w", cfg.ListenClient, err)
	}
	n.listener = lis
	n.grpc = grpc.NewServer(
		// Room for the largest value and key, so that an oversized value gets
		// this node's own error (with the limit) rather than gRPC's.
		grpc.MaxRecvMsgSize(cfg.Limits.MaxValueBytes+cfg.Limits.MaxKeyBytes+1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	kvv1.RegisterKVServiceServer(n.grpc, &kvServer{node: n})
	go func() {
		defer close(n.serveDone)
		n.serveErr = n.grpc.Serve(lis)
	}()
	cfg.Logger.Info("chorus node started",
		"node_id", id.ID.String(),
		"client_api", lis.Addr().String(),
		"data_dir", cfg.DataDir,
		"revision", st.Revision())
	return n, nil
}

// ID returns the node's peer id.
func (n *Node) ID() string { return n.identity.ID.String() }

// ClientAddr returns the address the client API listens on.
func (n *Node) ClientAddr() net.Addr { return n.listener.Addr() }

// Store returns the node's store.
func (n *Node) Store() *store.Store { return n.store }

// Close stops the node: watches end, in-flight calls get up to
// ShutdownTimeout to finish, then the server stops and the store closes once
// its queued writes are durable. It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.hub.Close() // ends watch streams, which GracefulStop would wait for
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			n.grpc.GracefulStop()
		}()
		timer := time.NewTimer(n.cfg.ShutdownTimeout)
		select {
		case <-stopped:
		case <-timer.C:
			n.grpc.Stop()
			<-stopped
		}
		timer.Stop()
		<-n.serveDone
		n.closeErr = n.store.Close()
		n.cfg.Logger.Info("chorus node stopped", "node_id", n.ID(), "revision", n.store.Revision())
	})
	return n.closeErr
}
