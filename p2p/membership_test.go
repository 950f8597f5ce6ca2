package p2p

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/internal/netsim"
	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p/swim"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// memberEvents records the OnUnreachable and OnRecovered calls of one
// membership, with their virtual times.
type memberEvents struct {
	mu          sync.Mutex
	unreachable map[peer.ID][]time.Time
	recovered   map[peer.ID][]time.Time
}

func (e *memberEvents) count(of map[peer.ID][]time.Time, p peer.ID) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(of[p])
}

// startSimMembers starts n nodes on sn, each with a replicator and a
// membership with open admission (its members are the peers it is
// connected to) and the detector's timing fd, connects every pair, and
// waits until every node holds every other alive. configure, when set,
// adjusts node i's configuration first.
func startSimMembers(t *testing.T, sn *simNet, n int, fd swim.Config, configure ...func(i int, c *MembershipConfig)) ([]*testNode, []*Membership, []*memberEvents) {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = startTestNodeOn(t, sn, "test")
	}
	for i := range nodes {
		for j := range i {
			connect(t, nodes[i].host, nodes[j].host)
		}
	}
	ms := make([]*Membership, n)
	evs := make([]*memberEvents, n)
	for i, nd := range nodes {
		ev := &memberEvents{unreachable: map[peer.ID][]time.Time{}, recovered: map[peer.ID][]time.Time{}}
		record := func(of map[peer.ID][]time.Time) func(peer.ID) {
			return func(p peer.ID) {
				ev.mu.Lock()
				of[p] = append(of[p], time.Now())
				ev.mu.Unlock()
			}
		}
		cfg := MembershipConfig{Cluster: "test", Host: nd.host, PubSub: nd.repl.PubSub(), Logger: testutil.QuietLogger(),
			Detector: fd, OnUnreachable: record(ev.unreachable), OnRecovered: record(ev.recovered)}
		for _, f := range configure {
			f(i, &cfg)
		}
		m, err := StartMembership(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		ms[i], evs[i] = m, ev
	}
	testutil.Eventually(t, 10*time.Second, "every node holds every other alive", func() bool {
		for i, m := range ms {
			for j, nd := range nodes {
				if i != j && memberState(m, nd.host.ID()) != swim.Alive {
					return false
				}
			}
		}
		return true
	})
	return nodes, ms, evs
}

// TestMembershipPartitionSuspectDeadRecovered runs three memberships on
// the simulated network, on virtual time, and cuts node 2 off: the others
// suspect it, then declare it dead no sooner than the minimum suspicion
// timeout and within the detector's bound, and call OnUnreachable once;
// the isolated node holds them dead in turn. After the heal every node
// holds every other alive again, OnRecovered is called for node 2, and
// the probe counters moved.
func TestMembershipPartitionSuspectDeadRecovered(t *testing.T) {
	netsim.Run(t, func(t *testing.T) {
		sn := startSimNet(t)
		fd := swim.LoopbackConfig()
		fd.ReapAfter = time.Hour
		nodes, ms, evs := startSimMembers(t, sn, 3, fd)
		victim := nodes[2].host.ID()

		cut := time.Now()
		sn.net.Isolate(2)
		// Bound: one round of probes to reach it (two members), then the
		// longest suspicion timeout (SuspicionMaxTimeoutMult × the
		// minimum, SuspicionMult × ProbeInterval for 3 members), with one
		// more interval for the probe itself. Virtual time: no slack for a
		// loaded machine is needed.
		minSuspicion := time.Duration(fd.SuspicionMult) * fd.ProbeInterval
		bound := 3*fd.ProbeInterval + 6*minSuspicion
		suspectAt, deadAt := waitSuspectThenDead(t, ms[0], victim, bound, "the isolated node")
		if d := deadAt.Sub(suspectAt); d < minSuspicion-5*time.Millisecond { // 5 ms: waitFor's polling step
			t.Errorf("dead %v after suspected; want at least the minimum suspicion timeout %v", d, minSuspicion)
		}
		t.Logf("isolated: suspected after %v, dead after %v (bound %v)", suspectAt.Sub(cut), deadAt.Sub(cut), bound)
		if n := evs[0].count(evs[0].unreachable, victim); n != 1 {
			t.Errorf("node 0 called OnUnreachable %d times for the isolated node; want 1", n)
		}
		testutil.Eventually(t, bound, "the isolated node holds the others dead", func() bool {
			return memberState(ms[2], nodes[0].host.ID()) == swim.Dead && memberState(ms[2], nodes[1].host.ID()) == swim.Dead
		})
		if st := ms[0].Stats(); st.Probes == 0 || st.ProbeFailures == 0 || st.Suspicions == 0 {
			t.Errorf("node 0's stats %+v: want probes, failed probes and a suspicion counted", st)
		}

		sn.net.Heal()
		healed := time.Now()
		// A dead member with an open connection is probed at every round
		// (reconnect.go); its refutation brings it back.
		testutil.Eventually(t, fd.DeadRetryMax+3*fd.ProbeInterval, "every node holds every other alive after the heal", func() bool {
			for i, m := range ms {
				for j, nd := range nodes {
					if i != j && memberState(m, nd.host.ID()) != swim.Alive {
						return false
					}
				}
			}
			return true
		})
		t.Logf("all alive %v after the heal", time.Since(healed))
		if n := evs[0].count(evs[0].recovered, victim); n < 1 {
			t.Errorf("node 0 did not call OnRecovered for the node back from the partition")
		}
		if n := evs[0].count(evs[0].recovered, nodes[1].host.ID()); n != 0 {
			t.Errorf("node 0 called OnRecovered %d times for a node it never lost", n)
		}
	})
}

// TestMembershipLeave: a member that leaves is held left by the others at
// once (its leave goes to each directly), not suspected, and OnUnreachable
// is not called for it.
func TestMembershipLeave(t *testing.T) {
	netsim.Run(t, func(t *testing.T) {
		sn := startSimNet(t)
		fd := swim.LoopbackConfig()
		nodes, ms, evs := startSimMembers(t, sn, 3, fd)
		leaver := nodes[1].host.ID()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ms[1].Leave(ctx)
		cancel()
		// The leave is delivered during Leave: no wait.
		for _, i := range []int{0, 2} {
			if st := memberState(ms[i], leaver); st != swim.Left {
				t.Errorf("node %d holds the leaver %v right after Leave; want %v", i, st, swim.Left)
			}
		}
		ms[1].Close()
		time.Sleep(10 * fd.ProbeInterval)
		for _, i := range []int{0, 2} {
			if st := memberState(ms[i], leaver); st != swim.Left {
				t.Errorf("node %d holds the leaver %v after 10 probe intervals; want %v", i, st, swim.Left)
			}
			if n := evs[i].count(evs[i].unreachable, leaver); n != 0 {
				t.Errorf("node %d called OnUnreachable %d times for a member that left", i, n)
			}
		}
	})
}

// TestMembershipCloseStopsEverything: Close returns with the probe handler
// removed, so a probe of a closed membership fails, and a second Close is
// harmless; the bubble's end checks that no goroutine outlived it.
func TestMembershipCloseStopsEverything(t *testing.T) {
	netsim.Run(t, func(t *testing.T) {
		sn := startSimNet(t)
		fd := swim.LoopbackConfig()
		nodes, ms, _ := startSimMembers(t, sn, 2, fd)
		ms[1].Close()
		ms[1].Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		ack, answered := ms[0].ping(ctx, nodes[1].host.ID(), &replicationv1.Probe{Kind: replicationv1.Probe_KIND_PING}, fd.ProbeTimeout)
		if ack || answered {
			t.Errorf("a closed membership answered a probe (ack %v, answered %v)", ack, answered)
		}
	})
}

// TestSlowNodeIsNotSuspected: a member that answers every ping after half
// the probe timeout (slow, but in time) is never suspected. On virtual
// time the delay is exact, so a loaded machine cannot stretch it past the
// timeout (on real time this test failed under load).
func TestSlowNodeIsNotSuspected(t *testing.T) {
	netsim.Run(t, func(t *testing.T) {
		sn := startSimNet(t)
		fd := swim.LoopbackConfig()
		slow := func() time.Duration { return fd.ProbeTimeout / 2 }
		nodes, ms, _ := startSimMembers(t, sn, 4, fd, func(i int, c *MembershipConfig) {
			if i == 3 {
				c.ProbeDelay = slow
			}
		})
		// Over 20 probe intervals (every node probes it several times), no
		// node ever suspects it.
		deadline := time.Now().Add(20 * fd.ProbeInterval)
		probesBefore := ms[0].Stats().Probes
		for time.Now().Before(deadline) {
			for i, m := range ms[:3] {
				if s := memberState(m, nodes[3].host.ID()); s != swim.Alive {
					t.Fatalf("node %d holds the slow node %v", i, s)
				}
			}
			time.Sleep(5 * time.Millisecond) // polling step (virtual time)
		}
		if ms[0].Stats().Probes == probesBefore {
			t.Fatal("node 0 sent no probe while watching: the test proved nothing")
		}
	})
}

// TestKilledMemberSuspectedThenDeadThenBack: a member killed (no leave) is
// suspected first, then declared dead by every live member within the
// detector's bound, with the failed probes counted. Restarted with its
// identity on a new address and connected to one member only, it is alive
// again for every member, and holds every member alive: its refutation
// outranks its death, and its announcements carry its new addresses. On
// virtual time (it was an internal/node test on loopback).
func TestKilledMemberSuspectedThenDeadThenBack(t *testing.T) {
	netsim.Run(t, func(t *testing.T) {
		sn := startSimNet(t)
		fd := swim.LoopbackConfig()
		fd.ReapAfter = time.Hour
		// A member list, as admission gives one: the restarted node
		// probes every member, not only the one it is connected to.
		var mu sync.Mutex
		var ids []peer.ID
		members := func() []peer.ID {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(ids)
		}
		nodes, ms, _ := startSimMembers(t, sn, 4, fd, func(_ int, c *MembershipConfig) {
			mu.Lock()
			ids = append(ids, c.Host.ID())
			mu.Unlock()
			c.Members = members
		})
		victim := nodes[3]
		killed := time.Now()
		ms[3].Close() // a crash: no leave announced
		victim.repl.Close()
		_ = victim.host.Close()
		// One probe round to reach it (3 members), the probe and indirect
		// probes, and the longest suspicion timeout: no slack for a loaded
		// machine, on virtual time.
		bound := 3*fd.ProbeInterval + fd.ProbeInterval + 6*time.Duration(fd.SuspicionMult)*fd.ProbeInterval
		suspectAt, deadAt := waitSuspectThenDead(t, ms[0], victim.host.ID(), bound, "the killed node")
		t.Logf("suspected after %v, dead after %v", suspectAt.Sub(killed), deadAt.Sub(killed))
		if st := ms[0].Stats(); st.Suspicions < 1 {
			t.Errorf("node 0's membership stats %+v; want the suspicion counted", st)
		}
		var failures int64
		for _, m := range ms[:3] {
			failures += m.Stats().ProbeFailures
		}
		if failures < 1 {
			t.Error("no failed probe counted on any live node")
		}
		testutil.Eventually(t, bound, "every live node declares it dead", func() bool {
			for _, m := range ms[:3] {
				if memberState(m, victim.host.ID()) != swim.Dead {
					return false
				}
			}
			return true
		})

		restarted := startTestNodeAs(t, sn, "test", victim.id) // a new address
		connect(t, restarted.host, nodes[0].host)
		mr, err := StartMembership(MembershipConfig{Cluster: "test", Host: restarted.host, PubSub: restarted.repl.PubSub(), Logger: testutil.QuietLogger(), Detector: fd, Members: members})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(mr.Close)
		ok := false
		for deadline := time.Now().Add(10 * time.Second); !ok && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			ok = true
			for i, m := range ms[:3] {
				if memberState(m, restarted.host.ID()) != swim.Alive || memberState(mr, nodes[i].host.ID()) != swim.Alive {
					ok = false
				}
			}
		}
		if !ok {
			for i, m := range ms[:3] {
				t.Errorf("node %d holds the restarted node %v, and it holds node %d %v", i, memberState(m, restarted.host.ID()), i, memberState(mr, nodes[i].host.ID()))
			}
		}
	})
}

// waitSuspectThenDead waits up to bound for m to declare id dead, and
// returns when m first held it suspect and when dead; it fails the test if
// id went to dead without being suspected first.
func waitSuspectThenDead(t *testing.T, m *Membership, id peer.ID, bound time.Duration, what string) (suspectAt, deadAt time.Time) {
	t.Helper()
	testutil.Eventually(t, bound, "node 0 declares "+what+" dead", func() bool {
		switch memberState(m, id) {
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
		t.Fatal(what + " went to dead without being suspected first")
	}
	return suspectAt, deadAt
}
