package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/netsim"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// testNode is a real libp2p host on loopback with a real store and replicator.
type testNode struct {
	id    Identity
	host  host.Host
	store *store.Store
	repl  *Replicator
	// admit, when set, is the replicator's admission check.
	admit atomic.Pointer[func(peer.ID) error]
}

func startTestNode(t testing.TB, cluster string) *testNode {
	t.Helper()
	return startTestNodeOn(t, nil, cluster)
}

// startTestNodeOn starts a test node on the simulated network sn (inside
// netsim.Run), or on loopback when sn is nil.
func startTestNodeOn(t testing.TB, sn *simNet, cluster string) *testNode {
	t.Helper()
	id, err := LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return startTestNodeAs(t, sn, cluster, id)
}

// startTestNodeAs starts a test node with identity id (a restart).
func startTestNodeAs(t testing.TB, sn *simNet, cluster string, id Identity) *testNode {
	t.Helper()
	var err error
	h := hostMaker(sn)(t, id)
	n := &testNode{id: id, host: h}
	var repl *Replicator
	var mu sync.Mutex
	n.store, err = store.Open(store.Config{
		Path:   t.TempDir(),
		NodeID: []byte(id.ID),
		OnCommit: func(c []store.Change) {
			mu.Lock()
			r := repl
			mu.Unlock()
			if r != nil {
				r.Enqueue(c)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := StartReplicator(ReplicatorConfig{Cluster: cluster, Host: h, Store: n.store, Logger: testutil.QuietLogger(),
		Admit: func(p peer.ID) error {
			if f := n.admit.Load(); f != nil {
				return (*f)(p)
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	repl = r
	mu.Unlock()
	n.repl = r
	t.Cleanup(func() {
		n.repl.Close()
		_ = n.host.Close()
		_ = n.store.Close()
	})
	return n
}

// startCluster starts n nodes, connects every node to node 0 and to its
// predecessor, and waits until every node has a gossip peer on the topic.
func startCluster(t testing.TB, n int) []*testNode {
	t.Helper()
	return startClusterOn(t, nil, n)
}

// startClusterOn is startCluster on the simulated network sn (inside
// netsim.Run), or on loopback when sn is nil.
func startClusterOn(t testing.TB, sn *simNet, n int) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = startTestNodeOn(t, sn, "test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 1; i < n; i++ {
		for _, j := range []int{0, i - 1} {
			if err := nodes[i].host.Connect(ctx, peer.AddrInfo{ID: nodes[j].host.ID(), Addrs: nodes[j].host.Addrs()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.Eventually(t, 20*time.Second, "every node has gossip peers", func() bool {
		for _, nd := range nodes {
			if len(nd.repl.TopicPeers()) == 0 {
				return false
			}
		}
		return true
	})
	waitGossipReady(t, nodes)
	return nodes
}

// waitGossipReady waits until a write on each node has reached every other
// node by gossip. GossipSub can learn that a peer subscribed before its own
// stream to that peer is open, and drops what it publishes meanwhile (lost
// gossip is anti-entropy's to repair); tests that count on gossip alone wait
// for this first.
func waitGossipReady(t testing.TB, nodes []*testNode) {
	t.Helper()
	ctx := context.Background()
	var keys []string
	for i := range nodes {
		keys = append(keys, fmt.Sprintf("ready/%d", i))
	}
	round := 0
	testutil.Eventually(t, 30*time.Second, "a probe write from each node reached every node", func() bool {
		if round%20 == 0 { // re-publish every ~100 ms: a new version is a new message
			for i, nd := range nodes {
				if _, err := nd.store.Put(ctx, []byte(keys[i]), fmt.Appendf(nil, "%d", round)); err != nil {
					t.Fatal(err)
				}
			}
		}
		round++
		for _, nd := range nodes {
			for _, k := range keys {
				if kv, _ := nd.store.Get([]byte(k)); kv == nil {
					return false
				}
			}
		}
		return true
	})
}

// sameState reports whether every node holds the same entry for every key.
func sameState(nodes []*testNode, keys []string) (bool, string) {
	for _, k := range keys {
		ref, err := nodes[0].store.GetEntry([]byte(k))
		if err != nil || ref == nil {
			return false, fmt.Sprintf("node 0 lacks %q (%v)", k, err)
		}
		for i, n := range nodes[1:] {
			e, err := n.store.GetEntry([]byte(k))
			if err != nil || e == nil {
				return false, fmt.Sprintf("node %d lacks %q (%v)", i+1, k, err)
			}
			if crdt.Compare(&ref.Entry, &e.Entry) != 0 {
				return false, fmt.Sprintf("node %d differs on %q", i+1, k)
			}
		}
	}
	return true, ""
}

// TestConvergence: every node writes its own key and conflicting shared
// keys, deletes among them; all converge to the same state by gossip (and
// anti-entropy for what gossip lost). On the simulated network, on virtual
// time.
func TestConvergence(t *testing.T) {
	for _, n := range []int{3, 10} {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			netsim.Run(t, func(t *testing.T) {
				nodes := startClusterOn(t, startSimNet(t), n)
				ctx := context.Background()
				var shared, keys []string
				for i := range 5 {
					shared = append(shared, fmt.Sprintf("shared/%d", i)) // written by every node: conflicts
				}
				keys = append(keys, shared...)
				for i := range nodes {
					keys = append(keys, fmt.Sprintf("own/%d", i))
				}
				var wg sync.WaitGroup
				for i, nd := range nodes {
					own := fmt.Sprintf("own/%d", i)
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := range 20 {
							if _, err := nd.store.Put(ctx, []byte(own), fmt.Appendf(nil, "v%d", j)); err != nil {
								t.Error(err)
								return
							}
							k := shared[j%5]
							if j%7 == 6 {
								_, err := nd.store.Delete(ctx, []byte(k))
								if err != nil {
									t.Error(err)
								}
								continue
							}
							if _, err := nd.store.Put(ctx, []byte(k), fmt.Appendf(nil, "node%d-%d", i, j)); err != nil {
								t.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				testutil.Eventually(t, 30*time.Second, "all nodes converge", func() bool {
					ok, _ := sameState(nodes, keys)
					return ok
				})
				// Every node's own key holds its last write.
				for i, nd := range nodes {
					for _, other := range nodes {
						kv, err := other.store.Get(fmt.Appendf(nil, "own/%d", i))
						if err != nil || kv == nil || string(kv.Value) != "v19" || peer.ID(kv.Origin) != nd.id.ID {
							t.Fatalf("own/%d on another node: %+v, %v", i, kv, err)
						}
					}
				}
			})
		})
	}
}

func TestRemoteApplyEmitsEachChangeOnce(t *testing.T) {
	nodes := startCluster(t, 2)
	var mu sync.Mutex
	var seen []int64
	ctx := context.Background()
	for i := range 50 {
		if _, err := nodes[0].store.Put(ctx, fmt.Appendf(nil, "k%d", i%10), fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 20*time.Second, "node 1 has node 0's last writes", func() bool {
		ok, why := sameState(nodes, []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"})
		if !ok {
			t.Logf("%s; stats 0 %+v; 1 %+v", why, nodes[0].repl.Stats(), nodes[1].repl.Stats())
		}
		return ok
	})
	// Node 1's revisions are contiguous and each is a real change: no
	// duplicate apply made a revision.
	if _, err := nodes[1].store.ReadLog(1, false, func(c *store.Change) error {
		mu.Lock()
		defer mu.Unlock()
		if !bytes.HasPrefix(c.Record.Key, []byte("k")) {
			return nil // readiness probes
		}
		seen = append(seen, c.Record.ModRevision)
		if c.Prev != nil && crdt.Compare(&c.Prev.Entry, &c.Record.Entry) == 0 {
			t.Errorf("revision %d re-applied an entry it had", c.Record.ModRevision)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 || len(seen) > 50 {
		t.Fatalf("node 1 made %d revisions from 50 writes", len(seen))
	}
	if got := nodes[1].repl.Stats(); got.ApplyErrors != 0 {
		t.Fatalf("apply errors: %+v", got)
	}
}

func TestPushMinReplicas(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := context.Background()
	c, err := nodes[0].store.Put(ctx, []byte("pushed"), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	acked, err := nodes[0].repl.Push(ctx, []crdt.Entry{c.Record.Entry}, 2)
	if err != nil || acked != 2 {
		t.Fatalf("Push(k=2) = %d, %v", acked, err)
	}
	// Both peers have it durably now, without waiting for gossip.
	for _, n := range nodes[1:] {
		kv, err := n.store.Get([]byte("pushed"))
		if err != nil || kv == nil || string(kv.Value) != "v" {
			t.Fatalf("peer lacks pushed write right after Push: %+v, %v", kv, err)
		}
	}
	// More replicas than peers: the error says how many did.
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	acked, err = nodes[0].repl.Push(tctx, []crdt.Entry{c.Record.Entry}, 5)
	var re *ReplicasError
	if !errors.Is(err, ErrNotEnoughReplicas) || !errors.As(err, &re) || re.Acked != 2 || re.Wanted != 5 || acked != 2 {
		t.Fatalf("Push(k=5) with 2 peers = %d, %v", acked, err)
	}
	// A push of another node's write is refused: only origins push their own.
	foreign := c.Record.Entry
	foreign.Origin = []byte(nodes[2].id.ID)
	foreign.HLC++
	acked, err = nodes[0].repl.Push(tctx, []crdt.Entry{foreign}, 1)
	if err == nil || acked != 0 {
		t.Fatalf("Push of a foreign entry = %d, %v; want refused", acked, err)
	}
}

func TestValidatorRejections(t *testing.T) {
	clock := crdt.NewClock(func() int64 { return 1_000_000 }, 500*time.Millisecond)
	v := &Validator{Limits: crdt.Limits{}.WithDefaults(), Clock: clock, MaxMessageBytes: MaxMessageBytes(crdt.Limits{}.WithDefaults())}
	self := peer.ID("signer")
	good := crdt.Entry{Key: []byte("k"), Value: []byte("v"), HLC: crdt.NewTimestamp(1_000_000, 0), Origin: []byte(self)}
	enc := func(es ...crdt.Entry) []byte {
		b, err := EncodeBatch(es)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	with := func(f func(*crdt.Entry)) crdt.Entry { e := good; f(&e); return e }
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"good", enc(good), nil},
		{"undecodable", []byte{0xff, 0xff, 0xff}, ErrUndecodable},
		{"empty batch", enc(), ErrEmptyBatch},
		{"too large", make([]byte, v.MaxMessageBytes+1), ErrTooLarge},
		{"empty key", enc(with(func(e *crdt.Entry) { e.Key = nil })), ErrBadEntry},
		{"key too large", enc(with(func(e *crdt.Entry) { e.Key = bytes.Repeat([]byte("k"), 4097) })), crdt.ErrKeyTooLarge},
		{"value too large", enc(with(func(e *crdt.Entry) { e.Value = make([]byte, 1<<20+1) })), crdt.ErrValueTooLarge},
		{"tombstone with value", enc(with(func(e *crdt.Entry) { e.Tombstone = true })), crdt.ErrTombstoneData},
		{"clock ahead", enc(with(func(e *crdt.Entry) { e.HLC = crdt.NewTimestamp(1_000_501, 0) })), ErrClockAhead},
		{"clock at the bound", enc(with(func(e *crdt.Entry) { e.HLC = crdt.NewTimestamp(1_000_500, 0) })), nil},
		{"foreign origin", enc(good, with(func(e *crdt.Entry) { e.Origin = []byte("someone-else") })), ErrForeignEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.DecodeBatch(tt.data, self, true)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v; want %v", err, tt.want)
			}
			var r Rejections
			r.count(err)
			if r.Snapshot() == (RejectionCounts{}) {
				t.Fatal("rejection not counted")
			}
		})
	}
}

func TestClustersStayApart(t *testing.T) {
	a := startTestNode(t, "alpha")
	b := startTestNode(t, "beta")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.host.Connect(ctx, peer.AddrInfo{ID: a.host.ID(), Addrs: a.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.Put(ctx, []byte("k"), []byte("alpha")); err != nil {
		t.Fatal(err)
	}
	// Push uses the cluster's protocol: beta does not speak alpha's.
	c, _ := a.store.GetEntry([]byte("k"))
	if n, err := a.repl.Push(ctx, []crdt.Entry{c.Entry}, 1); err == nil || n != 0 {
		t.Fatalf("push across clusters = %d, %v; want refused", n, err)
	}
	if slices.Contains(a.repl.TopicPeers(), b.host.ID()) {
		t.Fatal("a node of another cluster is a gossip peer")
	}
	if kv, _ := b.store.Get([]byte("k")); kv != nil {
		t.Fatal("a write crossed clusters")
	}
}

func TestParseBootstrap(t *testing.T) {
	self := peer.ID("self")
	id1, _ := LoadOrCreateIdentity(t.TempDir())
	tests := []struct {
		name    string
		addrs   []string
		wantN   int
		wantErr bool
	}{
		{"none", nil, 0, false},
		{"ip4", []string{"/ip4/127.0.0.1/tcp/7380/p2p/" + id1.ID.String()}, 1, false},
		{"dns4 and quic of one peer merge", []string{"/dns4/localhost/tcp/7380/p2p/" + id1.ID.String(), "/ip4/127.0.0.1/udp/7380/quic-v1/p2p/" + id1.ID.String()}, 1, false},
		{"no peer id: learned at dial", []string{"/ip4/127.0.0.1/tcp/7380", "/dns4/chorus-0.chorus/tcp/7380"}, 2, false},
		{"with and without id", []string{"/ip4/127.0.0.1/tcp/7380", "/ip4/127.0.0.1/tcp/7380/p2p/" + id1.ID.String()}, 2, false},
		{"garbage", []string{"not-a-multiaddr"}, 0, true},
		{"no transport and no id", []string{"/dns4/chorus-0.chorus"}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBootstrap(tt.addrs, self)
			if (err != nil) != tt.wantErr || len(got) != tt.wantN {
				t.Fatalf("ParseBootstrap = %v, %v", got, err)
			}
		})
	}
}

func TestNextBackoff(t *testing.T) {
	tests := []struct {
		cur          time.Duration
		jitter       float64
		wantMin, max time.Duration
	}{
		{0, 0.5, MinBackoff, MinBackoff},
		{time.Second, 0.5, 2 * time.Second, 2 * time.Second},
		{time.Minute, 0.5, MaxBackoff, MaxBackoff},
		{time.Second, 0, 1600 * time.Millisecond, 1600 * time.Millisecond},
		{time.Second, 1, 2400 * time.Millisecond, 2400 * time.Millisecond},
	}
	for _, tt := range tests {
		got := nextBackoff(tt.cur, tt.jitter)
		if got < tt.wantMin || got > tt.max {
			t.Errorf("nextBackoff(%v, %v) = %v; want in [%v, %v]", tt.cur, tt.jitter, got, tt.wantMin, tt.max)
		}
	}
	_ = rand.Float64
}

func TestValidateCluster(t *testing.T) {
	for name, ok := range map[string]bool{"default": true, "lab-1.eu_west": true, "": false, "-x": false, "a/b": false, string(bytes.Repeat([]byte("a"), 64)): false} {
		if err := ValidateCluster(name); (err == nil) != ok {
			t.Errorf("ValidateCluster(%q) = %v", name, err)
		}
	}
}

// TestGossipBatchesUnderLoad: concurrent writes share gossip messages, and
// every one of them is published and reaches the peer.
func TestGossipBatchesUnderLoad(t *testing.T) {
	nodes := startCluster(t, 2)
	before := nodes[0].repl.Stats()
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for j := range 20 {
				if _, err := nodes[0].store.Put(ctx, fmt.Appendf(nil, "load/%d/%d", w, j), []byte("v")); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	var keys []string
	for w := range 64 {
		for j := range 20 {
			keys = append(keys, fmt.Sprintf("load/%d/%d", w, j))
		}
	}
	testutil.Eventually(t, 30*time.Second, "the peer has every write", func() bool {
		ok, _ := sameState(nodes, keys)
		return ok
	})
	after := nodes[0].repl.Stats()
	msgs, entries := after.Published-before.Published, after.PublishedEntries-before.PublishedEntries
	if entries != 64*20 {
		t.Fatalf("published %d entries for %d writes", entries, 64*20)
	}
	if msgs >= entries {
		t.Fatalf("%d writes from 64 concurrent writers went out in %d messages: no batching", entries, msgs)
	}
	t.Logf("%d writes in %d gossip messages", entries, msgs)
}

// TestLoneNodeGossipsToNoOne checks that a node connected to no peer
// publishes nothing (no signing, no message: nobody would receive it), and
// that once a peer connects, writes are gossiped to it again.
func TestLoneNodeGossipsToNoOne(t *testing.T) {
	a := startTestNode(t, "alone")
	ctx := context.Background()
	for i := range 20 {
		if _, err := a.store.Put(ctx, fmt.Appendf(nil, "alone/%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if st := a.repl.Stats(); st.Published != 0 || st.SkippedAlone != 20 {
		t.Fatalf("a lone node's replicator: %d messages published, %d entries skipped; want 0 and 20", st.Published, st.SkippedAlone)
	}

	b := startTestNode(t, "alone")
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := b.host.Connect(cctx, peer.AddrInfo{ID: a.host.ID(), Addrs: a.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "a sees b on the topic", func() bool { return len(a.repl.TopicPeers()) > 0 })
	waitGossipReady(t, []*testNode{a, b})
	if _, err := a.store.Put(ctx, []byte("together"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "b receives a's write by gossip", func() bool {
		r, _ := b.store.Get([]byte("together"))
		return r != nil
	})
	if st := a.repl.Stats(); st.Published == 0 || st.SkippedAlone != 20 {
		t.Errorf("with a peer: %d messages published, %d entries skipped; want some and still 20", st.Published, st.SkippedAlone)
	}
}
