package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// TestWaitConvergedAcrossGossipGaps: node 2 loses half of the gossip it
// receives, so its frontiers for the others' writes stop at the first gap;
// anti-entropy repairs the data and the frontier, and puts that wait for
// convergence still return, as does a converged watch on node 1.
func TestWaitConvergedAcrossGossipGaps(t *testing.T) {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	drop := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return rng.IntN(2) == 0
	}
	nodes, clients, _ := startMeshNodes(t, aeNodeOpts{groups: []int{0, 0, 0}, dropGossip: []func() bool{nil, nil, drop}})
	testutil.Eventually(t, 60*time.Second, "every node knows every member's frontier", func() bool {
		for _, n := range nodes {
			known := 0
			for _, l := range n.Convergence().Lag() {
				if l.Known {
					known++
				}
			}
			if known != 3 {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w, err := clients[1].Watch(ctx, "k/", client.WithPrefix(), client.WithConverged())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const writes = 40
	for k := range writes {
		if _, err := clients[0].Put(ctx, fmt.Sprintf("k/%d", k), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	// The last write waits until node 2 holds everything: every write of
	// node 0 below it too (its frontier moves only over what connects).
	if _, err := clients[0].Put(ctx, "k/last", []byte("v"), client.WithWaitConverged()); err != nil {
		t.Fatalf("put waiting for convergence: %v", err)
	}
	for k := range writes {
		if _, err := clients[2].Get(ctx, fmt.Sprintf("k/%d", k)); err != nil {
			t.Fatalf("a write converged but node 2 lacks k/%d: %v", k, err)
		}
	}
	seen := map[string]bool{}
	for len(seen) < writes+1 {
		evs, err := w.Next()
		if err != nil {
			t.Fatalf("converged watch after %d events: %v", len(seen), err)
		}
		for _, ev := range evs {
			if ev.ConvergedHLC == 0 {
				t.Fatalf("event %s without its convergence time", ev.KV.Key)
			}
			seen[ev.KV.Key] = true
		}
	}
	if got := nodes[2].Replicator().Stats().ReceivedEntries; got >= writes+1 {
		t.Fatalf("node 2 received %d of %d writes by gossip: the fault dropped nothing", got, writes+1)
	}
}

// TestWaitConvergedNamesTheMissingMember: a member cut off by a partition
// is named when a put that waits for it times out.
func TestWaitConvergedNamesTheMissingMember(t *testing.T) {
	nodes, clients, part := startMeshNodes(t, aeNodeOpts{groups: []int{0, 0, 1}})
	testutil.Eventually(t, 60*time.Second, "node 0 knows every member's frontier", func() bool {
		n := 0
		for _, l := range nodes[0].Convergence().Lag() {
			if l.Known {
				n++
			}
		}
		return n == 3
	})
	part.set(true)
	for _, a := range nodes[:2] {
		_ = a.Host().Network().ClosePeer(nodes[2].Host().ID())
		_ = nodes[2].Host().Network().ClosePeer(a.Host().ID())
	}
	waitMesh(t, nodes, func(a, b int) bool { return (a == 2) == (b == 2) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := clients[0].Put(ctx, "cut", []byte("v"), client.WithWaitConverged())
	var ce *client.Error
	if !errors.As(err, &ce) || !errors.Is(err, client.ErrNotConverged) {
		t.Fatalf("put across a partition: %v; want ErrNotConverged", err)
	}
	if len(ce.Missing) != 1 || ce.Missing[0] != nodes[2].ID() {
		t.Fatalf("missing %v; want [%s]", ce.Missing, nodes[2].ID())
	}
}
