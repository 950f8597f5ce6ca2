package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/netsim"
	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/p2p"
)

// Node is one simulated Chorus node: the real store (in memory), admission,
// Replicator, Syncer, Membership, Convergence and Bootstrapper, started by
// the agent's own wiring (node.Peering), on a host of the simulated
// network. What the agent adds around them (gRPC and HTTP servers, the
// watch hub, tombstone collection) is left out: it serves clients, not the
// cluster.
type Node struct {
	Index     int
	ID        peer.ID
	Host      host.Host
	Store     *store.Store
	Admission *p2p.Admission
	Repl      *p2p.Replicator
	Sync      *p2p.Syncer
	Members   *p2p.Membership
	Conv      *p2p.Convergence
	// peering runs the components above; Host to Conv are its, named here
	// for the scenarios.
	peering node.Peering

	gossip gossipCounter

	closeOnce sync.Once
}

// nodeKey derives node i's identity from the cluster's seed, so that peer
// ids (and everything ordered by them) repeat from run to run.
func nodeKey(seed uint64, i int) (crypto.PrivKey, error) {
	r := rand.NewChaCha8(seedBytes(seed, uint64(i)))
	sk, _, err := crypto.GenerateEd25519Key(readerOf(r))
	return sk, err
}

func seedBytes(a, b uint64) (s [32]byte) {
	for k := range 8 {
		s[k] = byte(a >> (8 * k))
		s[8+k] = byte(b >> (8 * k))
	}
	s[16] = 0xc5 // anything: tells node keys from other streams
	return s
}

type chachaReader struct{ r *rand.ChaCha8 }

func (c chachaReader) Read(p []byte) (int, error) { return c.r.Read(p) }

func readerOf(r *rand.ChaCha8) chachaReader { return chachaReader{r} }

// startNode starts node i of c. peers are the bootstrap peers it dials.
func (c *Cluster) startNode(i int, peers []peer.AddrInfo) (_ *Node, err error) {
	sk, err := nodeKey(c.cfg.Seed, i)
	if err != nil {
		return nil, fmt.Errorf("sim: node %d key: %w", i, err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		return nil, fmt.Errorf("sim: node %d id: %w", i, err)
	}
	n := &Node{Index: i, ID: id}
	var cleanup []func()
	defer func() {
		if err != nil {
			for k := len(cleanup) - 1; k >= 0; k-- {
				cleanup[k]()
			}
		}
	}()
	clock := crdt.NewClock(crdt.SystemWallClock, crdt.DefaultMaxOffset) // time.Now: the bubble's virtual clock
	st, err := store.Open(store.Config{
		NodeID:           []byte(id),
		Clock:            clock,
		WriteBufferBytes: c.cfg.WriteBufferBytes,
		// Small, as store.Config advises for many stores in one process.
		BlockCacheBytes: 64 << 10,
		QueueDepth:      64,
		OnCommit: func(changes []store.Change) {
			c.observe(i, changes)
			n.peering.OnCommit(changes)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("sim: node %d store: %w", i, err)
	}
	n.Store = st
	cleanup = append(cleanup, func() { _ = st.Close() })
	n.gossip.topic = p2p.Topic(c.cfg.Cluster)
	det := c.cfg.Detector
	det.Rand = rand.New(rand.NewPCG(c.cfg.Seed, uint64(i)+1))
	if err := n.peering.Start(node.PeeringConfig{
		Cluster:       c.cfg.Cluster,
		Identity:      p2p.Identity{Key: sk, ID: id},
		Store:         st,
		Logger:        c.cfg.Logger,
		Bootstrap:     peers,
		OpenAdmission: true,
		Host:          p2p.HostConfig{Listen: []string{netsim.ListenAddr(i)}},
		HostOptions:   c.net.HostOptions(),
		Replicator: p2p.ReplicatorConfig{
			SubscriptionBuffer: c.cfg.SubscriptionBuffer,
			PubSubOptions:      []pubsub.Option{pubsub.WithRawTracer(&n.gossip)},
		},
		Syncer: p2p.SyncConfig{
			Interval: c.cfg.SyncInterval,
			OnSession: func(s p2p.SyncStats, _ error) {
				c.stats.syncBytes.Add(s.BytesSent)
				c.stats.syncSessions.Add(1)
			},
		},
		Membership: p2p.MembershipConfig{Detector: det},
		Convergence: p2p.ConvergenceConfig{
			Interval: c.cfg.FrontierInterval,
			// The full announcement is never more frequent than the deltas.
			FullInterval: max(p2p.DefaultFrontierFullInterval, c.cfg.FrontierInterval),
		},
	}); err != nil {
		return nil, fmt.Errorf("sim: node %d: %w", i, err)
	}
	p := &n.peering
	n.Host, n.Admission, n.Sync, n.Members = p.Host, p.Admission, p.Syncer, p.Members
	n.Repl, n.Conv = p.Replicator(), p.Convergence()
	p.StartBootstrapper()
	return n, nil
}

// close stops the node as a crash would: no leave is announced, and what
// the store holds is dropped with it (in memory).
func (n *Node) close() error {
	var err error
	n.closeOnce.Do(func() {
		err = errors.Join(n.peering.Close(), n.Store.Close())
	})
	return err
}

// gossipCounter is a GossipSub tracer that counts what a node sends: the
// data messages of the writes topic (its own and those it forwards), their
// bytes, and the bytes of every RPC (all topics, control included).
type gossipCounter struct {
	topic string
	mu    sync.Mutex
	msgs  int64
	bytes int64 // data messages of the writes topic
	rpc   int64 // every RPC sent, all topics and control
}

func (g *gossipCounter) SendRPC(rpc *pubsub.RPC, _ peer.ID) {
	var msgs, bytes int64
	for _, m := range rpc.Publish {
		if m.GetTopic() == g.topic {
			msgs++
			bytes += int64(proto.Size(m))
		}
	}
	size := int64(proto.Size(&rpc.RPC))
	g.mu.Lock()
	g.msgs += msgs
	g.bytes += bytes
	g.rpc += size
	g.mu.Unlock()
}

func (g *gossipCounter) snapshot() (msgs, bytes, rpc int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.msgs, g.bytes, g.rpc
}

func (*gossipCounter) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (*gossipCounter) OnClosedOutboundStream(peer.ID)                       {}
func (*gossipCounter) Join(string)                                          {}
func (*gossipCounter) Leave(string)                                         {}
func (*gossipCounter) Graft(peer.ID, string)                                {}
func (*gossipCounter) Prune(peer.ID, string)                                {}
func (*gossipCounter) ValidateMessage(*pubsub.Message)                      {}
func (*gossipCounter) DeliverMessage(*pubsub.Message)                       {}
func (*gossipCounter) RejectMessage(*pubsub.Message, string)                {}
func (*gossipCounter) DuplicateMessage(*pubsub.Message)                     {}
func (*gossipCounter) ThrottlePeer(peer.ID)                                 {}
func (*gossipCounter) RecvRPC(*pubsub.RPC)                                  {}
func (*gossipCounter) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (*gossipCounter) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (*gossipCounter) UndeliverableMessage(*pubsub.Message)                 {}

var _ pubsub.RawTracer = (*gossipCounter)(nil)
