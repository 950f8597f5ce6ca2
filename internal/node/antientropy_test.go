package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p"
	"github.com/chorus-kv/chorus/p2p/swim"
)

// partition is a network partition between groups of nodes, enforced by a
// connection gater on each node: while it is up, a node neither dials nor
// accepts a peer of another group.
type partition struct {
	mu    sync.RWMutex
	group map[peer.ID]int
	up    bool
}

func (p *partition) allowed(a, b peer.ID) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return !p.up || p.group[a] == p.group[b]
}

func (p *partition) set(up bool) {
	p.mu.Lock()
	p.up = up
	p.mu.Unlock()
}

// gater is one node's view of the partition.
type gater struct {
	p    *partition
	self peer.ID
}

func (g *gater) InterceptPeerDial(p peer.ID) bool                 { return g.p.allowed(g.self, p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return g.p.allowed(g.self, p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.p.allowed(g.self, p)
}
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

type aeNodeOpts struct {
	groups     []int // the partition group of each node
	dropGossip []func() bool
	fd         swim.Config // the failure detector's timing (zero: LAN)
}

// startMeshNodes starts len(groups) nodes on loopback, each bootstrapped
// from every node before it (so a partition leaves each group connected),
// with fast anti-entropy, and waits until every node has a connection to
// every other.
func startMeshNodes(t *testing.T, o aeNodeOpts) ([]*Node, []*client.Client, *partition) {
	t.Helper()
	return startMeshNodesTB(t, o)
}

func startMeshNodesTB(t testing.TB, o aeNodeOpts) ([]*Node, []*client.Client, *partition) {
	t.Helper()
	part := &partition{group: map[peer.ID]int{}}
	n := len(o.groups)
	nodes := make([]*Node, n)
	clients := make([]*client.Client, n)
	var bootstrap []string
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	for i := range n {
		dir := dirs[i]
		id, err := p2p.LoadOrCreateIdentity(dir)
		if err != nil {
			t.Fatal(err)
		}
		part.group[id.ID] = o.groups[i]
		cfg := Config{
			DataDir:      dir,
			ListenClient: "127.0.0.1:0",
			Bootstrap:    bootstrap,
			Logger:       testutil.QuietLogger(),
			SyncInterval: 300 * time.Millisecond,
			Gater:        &gater{p: part, self: id.ID},
		}
		if o.dropGossip != nil {
			cfg.DropGossip = o.dropGossip[i]
		}
		cfg.FailureDetector = o.fd
		nd, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nd.Close() })
		bootstrap = append(bootstrap, nd.P2PAddrs()...)
		if i == 0 {
			admit(t, nd, dirs[1:]...)
		}
		c, err := client.Dial(nd.ClientAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		nodes[i], clients[i] = nd, c
	}
	waitMesh(t, nodes, func(a, b int) bool { return true })
	return nodes, clients, part
}

// waitMesh waits until every pair of nodes that should be is connected.
func waitMesh(t testing.TB, nodes []*Node, should func(a, b int) bool) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, "the nodes are connected", func() bool {
		for i, a := range nodes {
			for j, b := range nodes {
				if i != j && should(i, j) && a.Host().Network().Connectedness(b.Host().ID()) != network.Connected {
					return false
				}
			}
		}
		return true
	})
}

// converged reports whether every node has the same Merkle root.
func converged(nodes []*Node) bool {
	root := nodes[0].Store().MerkleRoot()
	for _, n := range nodes[1:] {
		if n.Store().MerkleRoot() != root {
			return false
		}
	}
	return true
}

// ackedWrite is a write a node acknowledged.
type ackedWrite struct {
	key, value string
	hlc        crdt.Timestamp
	origin     string
}

func TestPartitionHealsToLWWWinners(t *testing.T) {
	groups := []int{0, 0, 1, 1, 1}
	nodes, clients, part := startMeshNodes(t, aeNodeOpts{groups: groups})
	ctx := context.Background()

	// Cut the cluster into {0, 1} and {2, 3, 4}.
	part.set(true)
	for i, a := range nodes {
		for j, b := range nodes {
			if groups[i] != groups[j] {
				_ = a.Host().Network().ClosePeer(b.Host().ID())
			}
		}
	}
	waitMesh(t, nodes, func(a, b int) bool { return groups[a] == groups[b] })

	var mu sync.Mutex
	var acked []ackedWrite
	put := func(i int, key, value string) {
		kv, err := clients[i].Put(ctx, key, []byte(value))
		if err != nil {
			t.Errorf("put %s on node %d: %v", key, i, err)
			return
		}
		mu.Lock()
		origin, err := peer.Decode(kv.KV.Origin)
		if err != nil {
			t.Error(err)
		}
		acked = append(acked, ackedWrite{key, value, crdt.Timestamp(kv.KV.HLC), string(origin)}) // raw id bytes: the tie-break order
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			for k := range 40 {
				put(i, fmt.Sprintf("own/%d/%d", i, k), "v")          // only this side has it
				put(i, fmt.Sprintf("conflict/%d", k), fmt.Sprint(i)) // both sides write it
			}
			if _, err := clients[i].Delete(ctx, fmt.Sprintf("own/%d/0", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// The partition held: group 1 has none of group 0's own keys.
	if _, err := clients[2].Get(ctx, "own/0/5"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("node 2 sees node 0's write across the partition (%v): the partition is not up", err)
	}

	healed := time.Now()
	part.set(false)
	testutil.Eventually(t, 90*time.Second, "every node has the same Merkle root", func() bool { return converged(nodes) })
	t.Logf("converged %v after the partition healed", time.Since(healed).Round(time.Millisecond))

	// Every key holds its LWW winner on every node, and every acknowledged
	// write that was not overwritten is there.
	winners := map[string]ackedWrite{}
	for _, w := range acked {
		cur, ok := winners[w.key]
		if !ok || w.hlc > cur.hlc || (w.hlc == cur.hlc && w.origin > cur.origin) {
			winners[w.key] = w
		}
	}
	for i, c := range clients {
		for key, w := range winners {
			if isDeletedOwnKey(key) {
				continue // checked below
			}
			kv, err := c.Get(ctx, key)
			if err != nil {
				t.Errorf("node %d: %s: %v", i, key, err)
				continue
			}
			if string(kv.Value) != w.value || crdt.Timestamp(kv.HLC) != w.hlc {
				t.Errorf("node %d: %s = %q at %v; the LWW winner is %q at %v", i, key, kv.Value, crdt.Timestamp(kv.HLC), w.value, w.hlc)
			}
		}
		for g := range nodes {
			if _, err := c.Get(ctx, fmt.Sprintf("own/%d/0", g)); !errors.Is(err, client.ErrNotFound) {
				t.Errorf("node %d: the delete of own/%d/0 did not reach it (%v)", i, g, err)
			}
		}
	}
	// Members shows convergence at a glance, once the links are back.
	waitMesh(t, nodes, func(a, b int) bool { return true })
	_, members, err := clients[0].Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if !m.Converged || m.MerkleRoot != nodes[0].Store().MerkleRoot() {
			t.Errorf("members: %+v; want converged with root %x", m, nodes[0].Store().MerkleRoot())
		}
	}
	if len(members) != len(nodes) {
		t.Errorf("members lists %d nodes; want %d", len(members), len(nodes))
	}
}

func isDeletedOwnKey(key string) bool {
	var g int
	_, err := fmt.Sscanf(key, "own/%d/0", &g)
	return err == nil
}

func TestNodeWithDroppedGossipCatchesUp(t *testing.T) {
	var dropping atomic.Bool
	dropping.Store(true)
	drop := func() bool { return dropping.Load() }
	nodes, clients, _ := startMeshNodes(t, aeNodeOpts{groups: []int{0, 0, 0}, dropGossip: []func() bool{nil, nil, drop}})
	ctx := context.Background()
	for k := range 200 {
		if _, err := clients[k%2].Put(ctx, fmt.Sprintf("k/%d", k), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	// Node 2 got none of it by gossip, and still catches up.
	if got := nodes[2].Replicator().Stats().ReceivedEntries; got != 0 {
		t.Fatalf("node 2 accepted %d gossiped entries; the fault should drop them all", got)
	}
	testutil.Eventually(t, 60*time.Second, "node 2 has every write", func() bool { return converged(nodes) })
	for k := range 200 {
		if _, err := clients[2].Get(ctx, fmt.Sprintf("k/%d", k)); err != nil {
			t.Fatalf("node 2: k/%d: %v", k, err)
		}
	}
}

func TestSyncAPI(t *testing.T) {
	nodes, clients, _ := startMeshNodes(t, aeNodeOpts{groups: []int{0, 0}})
	ctx := context.Background()
	res, err := clients[0].Sync(ctx, nodes[1].ID())
	if err != nil {
		t.Fatal(err)
	}
	if res.PeerID != nodes[1].ID() || res.LocalRoot != nodes[0].Store().MerkleRoot() || res.RoundTrips < 1 {
		t.Fatalf("sync result %+v", res)
	}
	st, err := clients[0].Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.MerkleRoot != nodes[0].Store().MerkleRoot() || st.Keys != nodes[0].Store().Keys() {
		t.Fatalf("status %+v; want the store's root and key count", st)
	}
	cases := []struct {
		name string
		peer string
		want error
		msg  string
	}{
		{"not a peer id", "nonsense", client.ErrBadRequest, "is not a libp2p peer id"},
		{"itself", nodes[0].ID(), client.ErrBadRequest, "own id"},
		{"not connected", "12D3KooWGRUVh8kfwzNr2jTJDXVU2mQ5BRwqNUWqGFfD2GsqR9mN", client.ErrPeerNotConnected, "not connected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := clients[0].Sync(ctx, tc.peer)
			var ce *client.Error
			if !errors.Is(err, tc.want) || !errors.As(err, &ce) || !strings.Contains(ce.Message, tc.msg) {
				t.Fatalf("err = %v; want %v saying %q", err, tc.want, tc.msg)
			}
		})
	}
}
