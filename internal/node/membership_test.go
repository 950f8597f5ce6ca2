package node

import (
	"context"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p/swim"
)

// stateOf returns what observer's failure detector says of target.
func memberState(observer, target *Node) swim.State {
	for _, m := range observer.members.Members() {
		if m.ID == target.ID() {
			return m.State
		}
	}
	return -1
}

// waitAllAlive waits until every node's detector has every node alive.
func waitAllAlive(t *testing.T, nodes []*Node) {
	t.Helper()
	waitAllAliveTB(t, nodes, 20*time.Second)
}

func waitAllAliveTB(t testing.TB, nodes []*Node, d time.Duration) {
	t.Helper()
	testutil.Eventually(t, d, "every node sees every other alive", func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if memberState(a, b) != swim.Alive {
					return false
				}
			}
		}
		return true
	})
}

// crash stops n as a crash would: no leave is announced.
func crash(t *testing.T, n *Node) {
	t.Helper()
	n.skipLeave = true
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestLeavingNodeIsMarkedLeft(t *testing.T) {
	fd := swim.LoopbackConfig()
	nodes, clients, _ := startMeshNodes(t, aeNodeOpts{groups: []int{0, 0, 0}, fd: fd})
	waitAllAlive(t, nodes)
	w, err := clients[0].WatchMembers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first, err := w.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Members) != 3 {
		t.Fatalf("the watch's first response has %d members; want all 3", len(first.Members))
	}
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	// At once: well before a suspicion could even start.
	testutil.Eventually(t, fd.ProbeInterval+2*time.Second, "node 0 marks node 2 left", func() bool {
		return memberState(nodes[0], nodes[2]) == swim.Left
	})
	if s := memberState(nodes[1], nodes[2]); s != swim.Left && s != swim.Alive {
		t.Fatalf("node 1 sees the leaving node %v", s)
	}
	// The watch reports it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for reported := false; !reported; {
		resp, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("watch ended before reporting the leave: %v", err)
		}
		for _, m := range resp.Members {
			reported = reported || m.PeerID == nodes[2].ID() && m.State == "left"
		}
	}
	// Started again, it is alive again: a higher incarnation outranks its
	// leave.
	restarted := startNode(t, Config{
		DataDir: nodes[2].cfg.DataDir, ListenClient: "127.0.0.1:0", Bootstrap: nodes[0].P2PAddrs(),
		Logger: nodes[2].cfg.Logger, FailureDetector: fd, SyncInterval: 300 * time.Millisecond,
	})
	testutil.Eventually(t, 30*time.Second, "node 0 sees the restarted node alive", func() bool {
		return memberState(nodes[0], restarted) == swim.Alive
	})
}
