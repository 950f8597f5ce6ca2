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
	"github.com/chorus-kv/chorus/crdt/frontier"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/netsim"
	"github.com/chorus-kv/chorus/p2p"
)

// Node is one simulated Chorus node: the real store (in memory), admission,
// Replicator, Syncer, Membership, Convergence and Bootstrapper, wired as
// the agent wires them (internal/node), on a host of the simulated network.
// What the agent adds around them (gRPC and HTTP servers, the watch hub,
// tombstone collection) is left out: it serves clients, not the cluster.
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
	boot      *p2p.Bootstrapper

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
	log := c.cfg.Logger
	clock := crdt.NewClock(crdt.SystemWallClock, crdt.DefaultMaxOffset) // time.Now: the bubble's virtual clock
	var repl *p2p.Replicator
	var conv *p2p.Convergence
	st, err := store.Open(store.Config{
		NodeID:           []byte(id),
		Clock:            clock,
		WriteBufferBytes: c.cfg.WriteBufferBytes,
		// Small, as store.Config advises for many stores in one process.
		BlockCacheBytes: 64 << 10,
		QueueDepth:      64,
		OnCommit: func(changes []store.Change) {
			c.observe(i, changes)
			if n.Admission != nil {
				n.Admission.Observe(changes)
			}
			if repl != nil {
				repl.Enqueue(changes)
			}
			if conv != nil {
				conv.LocalCommit(changes)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("sim: node %d store: %w", i, err)
	}
	n.Store = st
	cleanup = append(cleanup, func() { _ = st.Close() })
	if n.Admission, err = p2p.NewAdmission(id, peers, true, st, log); err != nil {
		return nil, fmt.Errorf("sim: node %d: %w", i, err)
	}
	if n.Host, err = p2p.NewHostWith(p2p.Identity{Key: sk, ID: id}, p2p.HostConfig{
		Listen: []string{netsim.ListenAddr(i)},
		Gater:  n.Admission,
	}, c.net.HostOptions()...); err != nil {
		return nil, fmt.Errorf("sim: node %d: %w", i, err)
	}
	cleanup = append(cleanup, func() { _ = n.Host.Close() })
	epoch := clock.Now()
	n.gossip.topic = p2p.Topic(c.cfg.Cluster)
	repl, err = p2p.StartReplicator(p2p.ReplicatorConfig{
		Cluster:            c.cfg.Cluster,
		Host:               n.Host,
		Store:              st,
		Logger:             log,
		Admit:              n.Admission.Check,
		ChainStart:         epoch,
		SubscriptionBuffer: c.cfg.SubscriptionBuffer,
		OnBatch: func(origin peer.ID, prev, first, last crdt.Timestamp) {
			if conv != nil {
				conv.ObserveBatch(origin, prev, first, last)
			}
		},
		PubSubOptions: []pubsub.Option{pubsub.WithRawTracer(&n.gossip)},
	})
	if err != nil {
		return nil, fmt.Errorf("sim: node %d: %w", i, err)
	}
	n.Repl = repl
	cleanup = append(cleanup, repl.Close)
	if n.Sync, err = p2p.StartSyncer(p2p.SyncConfig{
		Cluster:  c.cfg.Cluster,
		Host:     n.Host,
		Store:    st,
		Logger:   log,
		Interval: c.cfg.SyncInterval,
		Admit:    n.Admission.Check,
		LocalFrontier: func() frontier.Vector {
			if conv != nil {
				return conv.LocalFrontier()
			}
			return nil
		},
		OnMerge: func(p peer.ID, v frontier.Vector) {
			if conv != nil {
				conv.Merge(p, v)
			}
		},
		OnComplete: func(peer.ID) { n.Admission.Synced() },
		OnSession: func(s p2p.SyncStats, _ error) {
			c.stats.syncBytes.Add(s.BytesSent)
			c.stats.syncSessions.Add(1)
		},
	}); err != nil {
		return nil, fmt.Errorf("sim: node %d: %w", i, err)
	}
	cleanup = append(cleanup, func() { _ = n.Sync.Close() })
	det := c.cfg.Detector
	det.Rand = rand.New(rand.NewPCG(c.cfg.Seed, uint64(i)+1))
	if n.Members, err = p2p.StartMembership(p2p.MembershipConfig{
		Cluster:     c.cfg.Cluster,
		Host:        n.Host,
		PubSub:      repl.PubSub(),
		Logger:      log,
		Detector:    det,
		Admit:       n.Admission.Check,
		OnRecovered: n.Sync.Kick,
	}); err != nil {
		return nil, fmt.Errorf("sim: node %d: %w", i, err)
	}
	cleanup = append(cleanup, n.Members.Close)
	if conv, err = p2p.StartConvergence(p2p.ConvergenceConfig{
		Cluster:    c.cfg.Cluster,
		Self:       id,
		PubSub:     repl.PubSub(),
		Clock:      clock,
		Epoch:      epoch,
		Logger:     log,
		Membership: n.Members,
		Admit:      n.Admission.Check,
		Interval:   c.cfg.FrontierInterval,
		// The full announcement is never more frequent than the deltas.
		FullInterval: max(p2p.DefaultFrontierFullInterval, c.cfg.FrontierInterval),
	}); err != nil {
		return nil, fmt.Errorf("sim: node %d: %w", i, err)
	}
	n.Conv = conv
	cleanup = append(cleanup, conv.Close)
	n.boot = p2p.StartBootstrapperWith(p2p.BootstrapConfig{
		Host:       n.Host,
		Peers:      peers,
		Logger:     log,
		AllowProbe: n.Admission.AllowBootstrap,
		DoneProbe:  n.Admission.ForgetBootstrap,
		OnLearn:    n.Admission.AllowBootstrap,
		OnRefused:  n.Admission.BootstrapRefused,
	})
	return n, nil
}

// close stops the node as a crash would: no leave is announced, and what
// the store holds is dropped with it (in memory).
func (n *Node) close() error {
	var err error
	n.closeOnce.Do(func() {
		n.boot.Close()
		n.Conv.Close()
		n.Members.Close()
		err = n.Sync.Close()
		n.Repl.Close()
		err = errors.Join(err, n.Host.Close(), n.Store.Close())
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
