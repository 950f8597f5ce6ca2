package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/netsim"
	"github.com/chorus-kv/chorus/p2p"
	"github.com/chorus-kv/chorus/p2p/swim"
)

// Config configures a simulated cluster. Zero values mean the defaults.
type Config struct {
	// N is how many nodes the cluster starts with. Required, at least 2.
	N int
	// Seed makes a run reproducible: node identities, the bootstrap
	// topology, the failure detectors' choices, packet loss and jitter, and
	// the scenario's choices (which node writes, which is killed, who is on
	// which side of a partition) all draw from it. Default 1.
	Seed uint64
	// Link is every link's latency, jitter, loss and bandwidth.
	Link LinkConfig
	// Cluster is the cluster name. Default "sim".
	Cluster string
	// Detector is the failure detector's timing. Default swim.LANConfig
	// (the agent's default).
	Detector swim.Config
	// SyncInterval is the anti-entropy period. Default
	// p2p.DefaultSyncInterval (5 s).
	SyncInterval time.Duration
	// FrontierInterval is how often a node announces the frontiers that
	// moved (p2p.ConvergenceConfig.Interval; every node verifies every
	// announcement, so the cluster's cost grows as N²: see the README).
	// Default p2p.DefaultFrontierInterval (100 ms, the agent's).
	FrontierInterval time.Duration
	// Bootstrap is how many earlier nodes each node is given as bootstrap
	// peers (node i picks min(i, Bootstrap) of nodes 0..i-1 at random), so
	// that the cluster is connected and each node has about 2×Bootstrap
	// peers. Default 5.
	Bootstrap int
	// WriteBufferBytes is each store's LevelDB memtable. Default 64 KiB
	// (the agent's 4 MiB is allocated up front by every store: 4 GB for a
	// thousand).
	WriteBufferBytes int
	// SubscriptionBuffer is the Replicator's (and GossipSub's per-peer
	// queue) buffer. Default p2p.DefaultSubscriptionBuffer.
	SubscriptionBuffer int
	// Logger receives every node's log. Default: discarded.
	Logger *slog.Logger
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Seed == 0 {
		c.Seed = 1
	}
	c.Link = c.Link.WithDefaults()
	if c.Cluster == "" {
		c.Cluster = "sim"
	}
	if c.Detector.ProbeInterval == 0 {
		c.Detector = swim.LANConfig()
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = p2p.DefaultSyncInterval
	}
	if c.Bootstrap == 0 {
		c.Bootstrap = 5
	}
	if c.WriteBufferBytes == 0 {
		c.WriteBufferBytes = 64 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.N < 2 {
		errs = append(errs, fmt.Errorf("sim: N is %d; want at least 2 nodes", c.N))
	}
	if c.Bootstrap < 1 {
		errs = append(errs, fmt.Errorf("sim: Bootstrap is %d; want at least 1", c.Bootstrap))
	}
	if err := c.Link.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Cluster is N simulated Chorus nodes on one simulated network. Create it
// inside a testing/synctest bubble (synctest.Test): every goroutine of the
// nodes and the network then runs on the bubble's virtual clock. Its
// methods are safe for concurrent use.
type Cluster struct {
	cfg   Config
	net   *netsim.Network
	rand  *rand.Rand // the scenario's choices; guarded by mu
	nodes []*Node

	mu struct {
		sync.Mutex
		dead   map[int]bool      // killed nodes
		writes map[string]*Write // by key
	}
	stats struct {
		syncBytes, syncSessions atomic.Int64
	}
}

// Write is what the cluster observed of one write made through Put.
type Write struct {
	Key    string
	Origin int
	Acked  time.Time // Put returned
	// Applied is how many nodes committed the key (the origin included);
	// Last is when the last of them did.
	Applied int
	Last    time.Time
}

// New starts a cluster of cfg.N nodes, each dialling its bootstrap peers.
// Call it inside a synctest bubble; Close it before the bubble ends.
func New(cfg Config) (_ *Cluster, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	nw, err := netsim.NewNetwork(cfg.Link, cfg.Seed)
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, net: nw, rand: rand.New(rand.NewPCG(cfg.Seed, 0x5eed))}
	c.mu.dead, c.mu.writes = map[int]bool{}, map[string]*Write{}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	for i := range cfg.N {
		var peers []peer.AddrInfo
		for _, j := range c.pick(i, min(i, cfg.Bootstrap)) {
			addr := ma.StringCast(netsim.ListenAddr(j))
			peers = append(peers, peer.AddrInfo{ID: c.nodes[j].ID, Addrs: []ma.Multiaddr{addr}})
		}
		n, err := c.startNode(i, peers)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

// pick returns k distinct random numbers below n.
func (c *Cluster) pick(n, k int) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rand.Perm(n)[:k]
}

// Rand returns a number in [0, n) from the cluster's seeded source.
func (c *Cluster) Rand(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rand.IntN(n)
}

// Config returns the cluster's configuration, defaults filled in.
func (c *Cluster) Config() Config { return c.cfg }

// Nodes returns every node, killed ones included (index = Node.Index).
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Live returns the indexes of the nodes not killed.
func (c *Cluster) Live() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i := range c.nodes {
		if !c.mu.dead[i] {
			out = append(out, i)
		}
	}
	return out
}

// IsLive reports whether node i was not killed.
func (c *Cluster) IsLive(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.mu.dead[i]
}

// Network returns the simulated network (partitions, packet counts).
func (c *Cluster) Network() *netsim.Network { return c.net }

// Put writes key on node i and records when it was acknowledged; the
// cluster then follows the key's arrival on every node (Writes).
func (c *Cluster) Put(ctx context.Context, i int, key string, value []byte) error {
	if !strings.HasPrefix(key, WritePrefix) {
		return fmt.Errorf("sim: key %q: Put keys start with %q", key, WritePrefix)
	}
	c.mu.Lock()
	w := c.mu.writes[key]
	if w == nil {
		w = &Write{Key: key, Origin: i}
		c.mu.writes[key] = w
	}
	c.mu.Unlock()
	if _, err := c.nodes[i].Store.Put(ctx, []byte(key), value); err != nil {
		return fmt.Errorf("sim: put %s on node %d: %w", key, i, err)
	}
	now := time.Now()
	c.mu.Lock()
	w.Acked = now
	c.mu.Unlock()
	return nil
}

// WritePrefix starts the keys Put accepts (and the cluster follows).
const WritePrefix = "w/"

// observe is every node's commit hook: it counts the nodes that hold each
// followed key.
func (c *Cluster) observe(_ int, changes []store.Change) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range changes {
		if w := c.mu.writes[string(changes[i].Record.Key)]; w != nil {
			w.Applied++
			w.Last = now
		}
	}
}

// Writes returns a copy of what was observed of the given keys (all
// followed keys when none are given).
func (c *Cluster) Writes(keys ...string) []Write {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Write
	if len(keys) == 0 {
		for _, w := range c.mu.writes {
			out = append(out, *w)
		}
		return out
	}
	for _, k := range keys {
		if w := c.mu.writes[k]; w != nil {
			out = append(out, *w)
		}
	}
	return out
}

// Converged reports whether every given key is on every live node. It
// counts commits, so it holds while no node that held a key was killed.
func (c *Cluster) Converged(keys []string) bool {
	live := len(c.Live())
	for _, w := range c.Writes(keys...) {
		if w.Applied < live {
			return false
		}
	}
	return true
}

// Kill stops node i as a crash would (no leave announced).
func (c *Cluster) Kill(i int) error {
	c.mu.Lock()
	if c.mu.dead[i] {
		c.mu.Unlock()
		return nil
	}
	c.mu.dead[i] = true
	c.mu.Unlock()
	return c.nodes[i].close()
}

// Partition splits the network into the given groups of node indexes;
// nodes not listed form one more group.
func (c *Cluster) Partition(groups ...[]int) {
	g := map[int]int{}
	for k, grp := range groups {
		for _, i := range grp {
			g[i] = k + 1
		}
	}
	c.net.Partition(g)
}

// Heal ends a partition.
func (c *Cluster) Heal() { c.net.Heal() }

// SyncBytes returns the bytes sent in anti-entropy sessions, by both
// sides, and the number of sessions, since the cluster started.
func (c *Cluster) SyncBytes() (bytes, sessions int64) {
	return c.stats.syncBytes.Load(), c.stats.syncSessions.Load()
}

// Gossip returns what the live nodes sent on GossipSub since they started:
// data messages of the writes topic and their bytes, and every RPC's bytes.
func (c *Cluster) Gossip() (msgs, bytes, rpcBytes int64) {
	for _, i := range c.Live() {
		m, b, r := c.nodes[i].gossip.snapshot()
		msgs, bytes, rpcBytes = msgs+m, bytes+b, rpcBytes+r
	}
	return msgs, bytes, rpcBytes
}

// View returns node i's failure detector view of node j (ok false when j
// is not among its members).
func (c *Cluster) View(i, j int) (swim.Member, bool) {
	id := c.nodes[j].ID.String()
	for _, m := range c.nodes[i].Members.Members() {
		if m.ID == id {
			return m, true
		}
	}
	return swim.Member{}, false
}

// Close stops every live node, all at once (one by one, the nodes still
// running would keep the bubble's clock and the CPU busy for every close),
// then the network.
func (c *Cluster) Close() error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, n := range c.nodes {
		c.mu.Lock()
		dead := c.mu.dead[i]
		c.mu.dead[i] = true
		c.mu.Unlock()
		if !dead {
			wg.Go(func() { errs[i] = n.close() })
		}
	}
	wg.Wait()
	c.net.Close()
	return errors.Join(errs...)
}

// LinkConfig is the behaviour of every link of the simulated network
// (netsim.LinkConfig).
type LinkConfig = netsim.LinkConfig
