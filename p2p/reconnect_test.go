package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/p2p/swim"
)

// TestMembershipClosesDeadConnectionsAndRedials runs a membership on one
// real host whose only member is another real host that stops answering
// probes (its membership is closed; the host stays up and keeps its
// connection). The member becomes suspect, then dead; its next failed probe
// finds the connection still open and closes it; and, the member being
// dead and not connected, the membership dials it again (it is reachable)
// rather than waiting for the detector's backed-off probes.
func TestMembershipClosesDeadConnectionsAndRedials(t *testing.T) {
	a, b := startTestNode(t, "test"), startTestNode(t, "test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.host.Connect(ctx, peer.AddrInfo{ID: b.host.ID(), Addrs: b.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	fd := swim.LoopbackConfig()
	// Dead members probed at 200 ms, then never more often than every 20 s:
	// the redials, not these probes, must reconnect.
	fd.DeadRetryMin, fd.DeadRetryMax, fd.ReapAfter = 200*time.Millisecond, 20*time.Second, time.Hour
	start := func(n *testNode, other peer.ID) *Membership {
		m, err := StartMembership(MembershipConfig{Cluster: "test", Host: n.host, PubSub: n.repl.PubSub(), Logger: quiet,
			Detector: fd, Members: func() []peer.ID { return []peer.ID{n.host.ID(), other} }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	ma := start(a, b.host.ID())
	mb := start(b, a.host.ID())
	state := func() swim.State {
		for _, m := range ma.Members() {
			if m.ID == b.host.ID().String() {
				return m.State
			}
		}
		return -1
	}
	waitFor(t, 10*time.Second, "a holds b alive", func() bool { return state() == swim.Alive })
	mb.Close() // b's host stays up, connected, and no longer answers probes

	waitFor(t, 20*time.Second, "a holds b dead and closed its connection after a further failed probe", func() bool {
		return state() == swim.Dead && ma.Stats().StalledClosed > 0
	})
	waitFor(t, 10*time.Second, "a dialled b again", func() bool {
		return ma.Stats().Redialed > 0 && a.host.Network().Connectedness(b.host.ID()) == network.Connected
	})
	if st := state(); st != swim.Dead {
		t.Errorf("b is %v after the redial; a connection alone must not bring it back (only its refutation)", st)
	}
}
