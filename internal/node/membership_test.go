package node

import (
	"context"
	"testing"
	"time"

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
	eventually(t, d, "every node sees every other alive", func() bool {
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

func TestKilledNodeSuspectedThenDead(t *testing.T) {
	fd := swim.LoopbackConfig()
	nodes, _, _ := startMeshNodes(t, aeNodeOpts{groups: []int{0, 0, 0, 0}, fd: fd})
	victim := nodes[3]
	waitAllAlive(t, nodes)
	killed := time.Now()
	crash(t, victim)
	var suspectAt, deadAt time.Time
	// The bound: one probe round to reach it (3 members), the probe and
	// indirect probes, and the longest suspicion timeout, with slack for
	// a loaded machine.
	bound := 3*fd.ProbeInterval + fd.ProbeInterval + 6*2*fd.ProbeInterval + 3*time.Second
	eventually(t, bound, "node 0 declares the killed node dead", func() bool {
		switch memberState(nodes[0], victim) {
		case swim.Suspect:
			if suspectAt.IsZero() {
				suspectAt = time.Now()
			}
		case swim.Dead:
			deadAt = time.Now()
			return true
		}
		return false
	})
	if suspectAt.IsZero() {
		t.Fatal("the killed node went to dead without being suspected first")
	}
	// Node 0 saw it suspect, so counted a suspicion; some node's probe of
	// it failed first.
	if st := nodes[0].members.Stats(); st.Suspicions < 1 {
		t.Errorf("node 0's membership stats %+v; want the suspicion counted", st)
	}
	var failures int64
	for _, n := range nodes[:3] {
		failures += n.members.Stats().ProbeFailures
	}
	if failures < 1 {
		t.Error("no failed probe counted on any live node")
	}
	t.Logf("suspected after %v, dead after %v", suspectAt.Sub(killed).Round(time.Millisecond), deadAt.Sub(killed).Round(time.Millisecond))
	eventually(t, bound, "every live node declares it dead", func() bool {
		for _, n := range nodes[:3] {
			if memberState(n, victim) != swim.Dead {
				return false
			}
		}
		return true
	})

	// Restarted, it comes back alive: it refutes the death it hears of.
	restarted := startNode(t, Config{
		DataDir: victim.cfg.DataDir, ListenClient: "127.0.0.1:0", Bootstrap: nodes[0].P2PAddrs(),
		Logger: victim.cfg.Logger, FailureDetector: fd, SyncInterval: 300 * time.Millisecond,
	})
	if restarted.ID() != victim.ID() {
		t.Fatal("the restarted node has another id")
	}
	// Every node, not only its bootstrap peer, sees it alive again, though
	// it came back on new ports: its announcements carry its addresses.
	eventually(t, 30*time.Second, "every node sees the restarted node alive, and it sees them", func() bool {
		for _, n := range nodes[:3] {
			if memberState(n, restarted) != swim.Alive || memberState(restarted, n) != swim.Alive {
				return false
			}
		}
		return true
	})
}

func TestSlowNodeIsNotSuspected(t *testing.T) {
	fd := swim.LoopbackConfig()
	slow := func() time.Duration { return fd.ProbeTimeout / 2 } // slow, but within the timeout
	nodes, _, _ := startMeshNodes(t, aeNodeOpts{groups: []int{0, 0, 0, 0}, fd: fd,
		probeDelay: []func() time.Duration{nil, nil, nil, slow}})
	eventually(t, 20*time.Second, "every node sees the slow node alive", func() bool {
		for _, n := range nodes[:3] {
			if memberState(n, nodes[3]) != swim.Alive {
				return false
			}
		}
		return true
	})
	// Over 20 probe intervals (every node probes it several times), no node
	// ever suspects it.
	watch := 20 * fd.ProbeInterval
	deadline := time.Now().Add(watch)
	probesBefore := nodes[0].members.Stats().Probes
	for time.Now().Before(deadline) {
		for i, n := range nodes[:3] {
			if s := memberState(n, nodes[3]); s != swim.Alive {
				t.Fatalf("node %d sees the slow node %v", i, s)
			}
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
	if nodes[0].members.Stats().Probes == probesBefore {
		t.Fatal("node 0 sent no probe while watching: the test proved nothing")
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
	eventually(t, fd.ProbeInterval+2*time.Second, "node 0 marks node 2 left", func() bool {
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
	eventually(t, 30*time.Second, "node 0 sees the restarted node alive", func() bool {
		return memberState(nodes[0], restarted) == swim.Alive
	})
}
