package p2p

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/internal/netsim"
	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p/swim"
)

// TestMembershipRedialsUnreachableMembers runs, on the simulated network
// and virtual time, a membership on one host whose only member is another
// host that stops answering probes (its membership is closed) and then
// drops its connection, as a process restarted or a partition that
// outlasted the connection would: the member becomes dead, and the
// membership dials it again (its host is reachable) within a few probe
// timeouts, rather than at the detector's next probe of a dead member
// (20 s here) or never.
func TestMembershipRedialsUnreachableMembers(t *testing.T) {
	netsim.Run(t, func(t *testing.T) {
		sn := startSimNet(t)
		a, b := startTestNodeOn(t, sn, "test"), startTestNodeOn(t, sn, "test")
		connect(t, a.host, b.host)
		fd := swim.LoopbackConfig()
		fd.DeadRetryMin, fd.DeadRetryMax, fd.ReapAfter = 20*time.Second, 20*time.Second, time.Hour
		ma := startPairMembership(t, a, b.host.ID(), fd)
		mb := startPairMembership(t, b, a.host.ID(), fd)
		state := func() swim.State { return memberState(ma, b.host.ID()) }
		testutil.Eventually(t, 10*time.Second, "a holds b alive", func() bool { return state() == swim.Alive })
		mb.Close() // b's host stays up and no longer answers probes
		testutil.Eventually(t, 20*time.Second, "a holds b dead", func() bool { return state() == swim.Dead })
		redialed := ma.Stats().Redialed
		_ = b.host.Network().ClosePeer(a.host.ID())
		// A redial every probe timeout (100 ms, stretched at most 8 times
		// by a poor health score): well within the 20 s dead backoff.
		testutil.Eventually(t, 2*time.Second, "a dialled b again", func() bool {
			return ma.Stats().Redialed > redialed && a.host.Network().Connectedness(b.host.ID()) == network.Connected
		})
		if st := state(); st != swim.Dead {
			t.Errorf("b is %v after the redial; a connection alone must not bring it back (only its refutation)", st)
		}
	})
}

// TestSyncerAbandonsSessionWithUnreachablePeer starts a session with a peer
// whose sync handler reads the hello and never answers: a stand-in for a
// connection that a partition stopped delivering on (the fault itself needs
// packets dropped between hosts, which a test on loopback cannot cause).
// The session waits; Abandon ends it at once, as the failure detector's
// suspicion of the peer does in a node, instead of its 30 s deadline.
func TestSyncerAbandonsSessionWithUnreachablePeer(t *testing.T) {
	a, b := startTestNode(t, "test"), startTestNode(t, "test")
	hangSyncSessions(t, b.host)
	connect(t, a.host, b.host)
	s, err := StartSyncer(SyncConfig{Cluster: "test", Host: a.host, Store: a.store, Logger: testutil.QuietLogger(), Interval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	done := make(chan error, 1)
	go func() {
		_, err := s.SyncWith(context.Background(), b.host.ID())
		done <- err
	}()
	// Abandon until the session has registered and ends: it may not have
	// started yet at the first call.
	deadline := time.After(10 * time.Second)
	for {
		s.Abandon(b.host.ID())
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("the abandoned session succeeded")
			}
			return
		case <-deadline:
			t.Fatal("the session did not end within 10 s of Abandon (its deadline is 30 s)")
		case <-time.After(20 * time.Millisecond): // polling interval, not synchronization
		}
	}
}

// TestStuckSessionHoldsUpNoOtherPeer: a session this node started with a
// peer that never answers (a stand-in for a connection across a partition
// that nobody has noticed yet: a real partition cannot be made on
// loopback here) waits for its 60 s deadline, and meanwhile a session with
// another peer runs and repairs at once, instead of queueing behind it.
func TestStuckSessionHoldsUpNoOtherPeer(t *testing.T) {
	a := startSyncNode(t, syncNodeOpts{})
	b := startSyncNode(t, syncNodeOpts{})
	c := startSyncNode(t, syncNodeOpts{})
	hangSyncSessions(t, b.host)
	if _, err := c.store.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	connect(t, a.host, b.host) // a dials: a starts a session with b, which hangs
	testutil.Eventually(t, 10*time.Second, "a's session with b to start", func() bool {
		a.sync.mu.Lock()
		defer a.sync.mu.Unlock()
		return len(a.sync.mu.started[b.host.ID()]) > 0
	})
	connect(t, a.host, c.host) // and one with c
	testutil.Eventually(t, 20*time.Second, "a to get c's key while its session with b hangs", func() bool {
		e, err := a.store.GetEntry([]byte("k"))
		return err == nil && e != nil
	})
	a.sync.mu.Lock()
	stuck := len(a.sync.mu.started[b.host.ID()])
	a.sync.mu.Unlock()
	if stuck == 0 {
		t.Fatal("a's session with b ended: the test did not hold it")
	}
}

// TestDeadMemberWithConnectionIsProbedSoon: a member held dead that has a
// connection (as across a partition that drops packets) is probed again at
// its next turn, not after its dead backoff (20 s here),
// so that a heal is noticed within a round of probes. b runs no membership:
// its host takes the probes and answers none (it resets each stream).
// On the simulated network and virtual time.
func TestDeadMemberWithConnectionIsProbedSoon(t *testing.T) {
	netsim.Run(t, func(t *testing.T) {
		var probes atomic.Int32
		a, b, _, first := startMutedPair(t, startSimNet(t), deadLongConfig(), swim.Dead, func() { probes.Add(1) })
		// a closes the connection once (TestDeadMemberWithConnectionIsDialledAfresh)
		// and dials again: the new one stays open while b is dead.
		testutil.Eventually(t, 10*time.Second, "a connected to b afresh", func() bool { return reconnected(a.host, b.host.ID(), first) })
		before := probes.Load()
		// Three probes: three rounds of one member, at most 8 × 200 ms
		// each with a poor health score; far below the 20 s backoff.
		testutil.Eventually(t, 10*time.Second, "a probes the dead b again, well before its 20 s dead backoff", func() bool {
			return probes.Load() >= before+3
		})
	})
}

// TestDeadMemberWithConnectionIsDialledAfresh: when a holds b suspect or
// dead while a connection to b stays open (a partition
// that drops packets leaves it so, and after the heal it stays silent until
// TCP's next retransmission, seconds later), a closes it, once until b is
// alive again, and dials b afresh. b's host takes
// the probes and answers none (it resets each stream).
func TestDeadMemberWithConnectionIsDialledAfresh(t *testing.T) {
	a, b, ma, first := startMutedPair(t, nil, deadLongConfig(), swim.Dead, nil)
	// The redial loop, or the next probe, dials afresh.
	testutil.Eventually(t, 10*time.Second, "a closed its connection to b and dialled b afresh", func() bool { return reconnected(a.host, b.host.ID(), first) })
	// Once until b is alive again: the new connection stays.
	conns := a.host.Network().ConnsToPeer(b.host.ID())
	if len(conns) == 0 {
		t.Fatal("no connection to b")
	}
	second := conns[0]
	for i := range 10 { // turns of the redial loop, each a second apart
		ma.redialUnreachable(t.Context(), time.Now().Add(time.Duration(i+1)*time.Second))
	}
	if second.IsClosed() {
		t.Error("a closed the new connection to b too: once until b is alive again")
	}
}

// TestSuspectMemberWithConnectionIsDialledAfresh: a partition of 8 s in the
// nemesis suite ended with every member suspect, none dead yet, and every
// connection across it silent until TCP's next retransmission (4.6 s after
// the heal). So a suspect member gets its connection closed and dialled
// afresh, as a dead one does. b stays suspect here (a
// long suspicion timeout) and answers no probe.
func TestSuspectMemberWithConnectionIsDialledAfresh(t *testing.T) {
	fd := swim.LoopbackConfig()
	fd.SuspicionMult, fd.SuspicionMaxTimeoutMult = 1000, 1 // 200 s: b stays suspect
	a, b, ma, first := startMutedPair(t, nil, fd, swim.Suspect, nil)
	testutil.Eventually(t, 10*time.Second, "a closed its connection to b and dialled b afresh", func() bool { return reconnected(a.host, b.host.ID(), first) })
	if st := memberState(ma, b.host.ID()); st != swim.Suspect {
		t.Errorf("b is %v; the test needs it suspect", st)
	}
}

// reconnected reports whether h's connection first to p is closed and
// another is open.
func reconnected(h host.Host, p peer.ID, first network.Conn) bool {
	if !first.IsClosed() {
		return false
	}
	for _, c := range h.Network().ConnsToPeer(p) {
		if c != first && !c.IsClosed() {
			return true
		}
	}
	return false
}

// TestRedialPeriodIgnoresHealth: the redial loop's period is the probe
// timeout as configured, however poor the health score: the node cut off
// by a partition has the worst score (every probe failed), and it is the
// one that must find the heal soonest.
func TestRedialPeriodIgnoresHealth(t *testing.T) {
	a := startTestNode(t, "test")
	other, err := peer.Decode("12D3KooWLHZb2aj8iEV1CNE64CHfCp6QXj6ekpiJTYjidQqCDkJK") // nobody listens
	if err != nil {
		t.Fatal(err)
	}
	fd := swim.LoopbackConfig()
	ma := startPairMembership(t, a, other, fd)
	testutil.Eventually(t, 20*time.Second, "a's health score to worsen (its probes of the absent member fail)", func() bool {
		ma.mu.Lock()
		defer ma.mu.Unlock()
		return ma.det.Health() >= 2
	})
	ma.mu.Lock()
	every, stretched := ma.redialEvery(), ma.det.ProbeTimeout()
	ma.mu.Unlock()
	if every != fd.ProbeTimeout {
		t.Errorf("redial period %v with a poor health score (probe timeout stretched to %v); want the configured %v", every, stretched, fd.ProbeTimeout)
	}
}

// startPairMembership starts a membership on n whose member list is n and
// other, stopped at the test's end.
func startPairMembership(t *testing.T, n *testNode, other peer.ID, fd swim.Config) *Membership {
	t.Helper()
	m, err := StartMembership(MembershipConfig{Cluster: "test", Host: n.host, PubSub: n.repl.PubSub(), Logger: testutil.QuietLogger(),
		Detector: fd, Members: func() []peer.ID { return []peer.ID{n.host.ID(), other} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// memberState returns the state m holds id in, -1 when it holds none.
func memberState(m *Membership, id peer.ID) swim.State {
	for _, mem := range m.Members() {
		if mem.ID == id.String() {
			return mem.State
		}
	}
	return -1
}

// hangSyncSessions makes h's sync handler read a session's first bytes and
// never answer, until the test ends: a stand-in for a connection that a
// partition stopped delivering on.
func hangSyncSessions(t *testing.T, h host.Host) {
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	h.SetStreamHandler(SyncProtocol("test"), func(st network.Stream) {
		defer st.Reset()
		buf := make([]byte, 1)
		_, _ = st.Read(buf)
		<-hold
	})
}

// startMutedPair starts a and b on sn (loopback when nil), connected, with
// a running membership under fd and b's host resetting every probe (onProbe,
// when set, counts them), and waits until a holds b in state. first is a's
// connection to b from before.
func startMutedPair(t *testing.T, sn *simNet, fd swim.Config, state swim.State, onProbe func()) (a, b *testNode, ma *Membership, first network.Conn) {
	t.Helper()
	a, b = startTestNodeOn(t, sn, "test"), startTestNodeOn(t, sn, "test")
	connect(t, a.host, b.host)
	b.host.SetStreamHandler(ProbeProtocol("test"), func(st network.Stream) {
		if onProbe != nil {
			onProbe()
		}
		_ = st.Reset()
	})
	first = a.host.Network().ConnsToPeer(b.host.ID())[0]
	ma = startPairMembership(t, a, b.host.ID(), fd)
	testutil.Eventually(t, 20*time.Second, "a holds b "+state.String(), func() bool { return memberState(ma, b.host.ID()) == state })
	return a, b, ma, first
}

// deadLongConfig is a loopback detector whose dead members wait 20 s
// between probes and are never reaped.
func deadLongConfig() swim.Config {
	fd := swim.LoopbackConfig()
	fd.DeadRetryMin, fd.DeadRetryMax, fd.ReapAfter = 20*time.Second, 20*time.Second, time.Hour
	return fd
}
