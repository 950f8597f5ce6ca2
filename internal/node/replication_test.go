package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p"
)

// startReplicaNodes starts n nodes on loopback, each bootstrapped from node
// 0, and waits until a probe write on every node has reached every node.
func startReplicaNodes(t *testing.T, n int) ([]*Node, []*client.Client) {
	t.Helper()
	return startReplicaNodesTB(t, n)
}

func startReplicaNodesTB(t testing.TB, n int) ([]*Node, []*client.Client) {
	t.Helper()
	nodes := make([]*Node, n)
	clients := make([]*client.Client, n)
	var bootstrap []string
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	for i := range n {
		nd, err := Start(Config{
			DataDir:      dirs[i],
			ListenClient: "127.0.0.1:0",
			Bootstrap:    bootstrap,
			Logger:       testutil.QuietLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nd.Close() })
		if i == 0 {
			bootstrap = nd.P2PAddrs()
			admit(t, nd, dirs[1:]...)
		}
		c, err := client.Dial(nd.ClientAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		nodes[i], clients[i] = nd, c
	}
	ctx := context.Background()
	round := 0
	testutil.Eventually(t, 30*time.Second, "probe writes reach every node", func() bool {
		if round%20 == 0 {
			for i, c := range clients {
				if _, err := c.Put(ctx, fmt.Sprintf("probe/%d", i), fmt.Appendf(nil, "%d", round)); err != nil {
					t.Fatal(err)
				}
			}
		}
		round++
		for _, c := range clients {
			for i := range clients {
				if _, err := c.Get(ctx, fmt.Sprintf("probe/%d", i)); err != nil {
					return false
				}
			}
		}
		return true
	})
	return nodes, clients
}

// admit puts the nodes whose data folders are dirs on founder's member
// list, creating their identities now, as an operator does with `chorus id`
// and `chorus member add` before starting them.
func admit(t testing.TB, founder *Node, dirs ...string) {
	t.Helper()
	ids := []peer.ID{founder.identity.ID}
	for _, dir := range dirs {
		id, err := p2p.LoadOrCreateIdentity(dir)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id.ID)
	}
	for _, id := range ids {
		if _, err := founder.writeMember(context.Background(), id, id.String()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReplicatedWatchSeesRemoteWrites(t *testing.T) {
	_, clients := startReplicaNodes(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := clients[2].Watch(ctx, "/remote/", client.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := clients[0].Put(ctx, "/remote/a", []byte("from-0")); err != nil {
		t.Fatal(err)
	}
	if _, err := clients[1].Delete(ctx, "/remote/a"); err != nil {
		t.Fatal(err)
	}
	// Node 2 sees node 0's put and then node 1's delete (or only the
	// delete's outcome if they arrive in the other order: the delete wins).
	var got []client.Event
	for len(got) == 0 || got[len(got)-1].Type != client.EventDelete {
		events, err := w.Next()
		if err != nil {
			t.Fatalf("watch on node 2: %v (after %+v)", err, got)
		}
		got = append(got, events...)
	}
	for _, ev := range got {
		if ev.KV.Key != "/remote/a" {
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	if _, err := clients[2].Get(ctx, "/remote/a"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("node 2 Get after the delete: %v", err)
	}
}

func TestMinReplicas(t *testing.T) {
	nodes, clients := startReplicaNodes(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := clients[0].Put(ctx, "/acked", []byte("v"), client.WithMinReplicas(2)); err != nil {
		t.Fatalf("Put with min_replicas 2 of 2 peers: %v", err)
	}
	// Acknowledged with 2 replicas: both peers have it now, durably.
	for i, nd := range nodes[1:] {
		kv, err := nd.Store().Get([]byte("/acked"))
		if err != nil || kv == nil {
			t.Fatalf("peer %d lacks the acknowledged write: %v", i+1, err)
		}
	}
	_, err := clients[0].Put(ctx, "/short", []byte("v"), client.WithMinReplicas(3))
	var cerr *client.Error
	if !errors.Is(err, client.ErrReplicasNotReached) || !errors.As(err, &cerr) || cerr.Acked != 2 || cerr.Wanted != 3 {
		t.Fatalf("Put with min_replicas 3 of 2 peers: %v", err)
	}
	// The write is durable on the node that took it.
	if _, err := clients[0].Get(ctx, "/short"); err != nil {
		t.Fatalf("the short-replicated write is not on its node: %v", err)
	}
	if _, err := clients[0].Put(ctx, "/k", []byte("v"), client.WithMinReplicas(1000)); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("min_replicas 1000: %v; want ErrBadRequest", err)
	}
	// Rejected before anything was written.
	if _, err := clients[0].Get(ctx, "/k"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("a Put rejected for its min_replicas was written: %v", err)
	}
}

func TestMembers(t *testing.T) {
	nodes, clients := startReplicaNodes(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cluster, members, err := clients[0].Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cluster != "default" || len(members) != 3 {
		t.Fatalf("Members = %q, %+v", cluster, members)
	}
	ids := map[string]bool{}
	for _, m := range members {
		ids[m.PeerID] = true
		if len(m.Addrs) == 0 {
			t.Fatalf("member %s has no address", m.PeerID)
		}
	}
	for _, nd := range nodes {
		if !ids[nd.ID()] {
			t.Fatalf("node %s missing from %+v", nd.ID(), members)
		}
	}
	if !members[0].Self || members[0].PeerID != nodes[0].ID() {
		t.Fatalf("first member is not self: %+v", members[0])
	}
}
