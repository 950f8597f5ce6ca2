package p2p

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/netsim"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// TestBootstrapperReconnects: a connection to a bootstrap peer that
// closes is dialled again, three times over. On the simulated network, on
// virtual time.
func TestBootstrapperReconnects(t *testing.T) {
	netsim.Run(t, func(t *testing.T) {
		sn := startSimNet(t)
		a := startTestNodeOn(t, sn, "test")
		b := startTestNodeOn(t, sn, "test")
		boot := StartBootstrapper(b.host, []peer.AddrInfo{{ID: a.host.ID(), Addrs: a.host.Addrs()}}, testutil.QuietLogger())
		defer boot.Close()
		connected := func() bool { return b.host.Network().Connectedness(a.host.ID()) == network.Connected }
		testutil.Eventually(t, 10*time.Second, "b connects to its bootstrap peer", connected)
		for round := range 3 {
			// Both ends must know the connection before a closes it.
			testutil.Eventually(t, 10*time.Second, "a sees the connection", func() bool {
				return a.host.Network().Connectedness(b.host.ID()) == network.Connected
			})
			old := map[string]bool{}
			for _, c := range b.host.Network().ConnsToPeer(a.host.ID()) {
				old[c.ID()] = true
			}
			if err := a.host.Network().ClosePeer(b.host.ID()); err != nil {
				t.Fatal(err)
			}
			// b dials again: a connection that was not there before appears.
			testutil.Eventually(t, 10*time.Second, fmt.Sprintf("b reconnects on a new connection (round %d)", round), func() bool {
				for _, c := range b.host.Network().ConnsToPeer(a.host.ID()) {
					if !old[c.ID()] {
						return true
					}
				}
				return false
			})
		}
	})
}

// TestBootstrapperRetriesUnreachablePeer: a bootstrap peer that is not up
// yet: the bootstrapper's dials fail (it logs the peer unreachable), it
// keeps trying with backoff and connects once the peer is up. On the
// simulated network, on virtual time (its dials time out, which costs
// nothing there).
func TestBootstrapperRetriesUnreachablePeer(t *testing.T) {
	netsim.Run(t, func(t *testing.T) {
		sn := startSimNet(t)
		id, err := LoadOrCreateIdentity(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		at := sn.reserve() // its address, nothing listening there yet
		addr := ma.StringCast(netsim.ListenAddr(at))
		b := startTestNodeOn(t, sn, "test")
		log := &logBuffer{}
		boot := StartBootstrapperWith(BootstrapConfig{Host: b.host, Peers: []peer.AddrInfo{{ID: id.ID, Addrs: []ma.Multiaddr{addr}}}, Logger: log.logger()})
		defer boot.Close()
		testutil.Eventually(t, 60*time.Second, "a dial of the peer that is down fails", func() bool {
			return len(log.lines("bootstrap peer unreachable")) >= 2
		})
		if b.host.Network().Connectedness(id.ID) == network.Connected {
			t.Fatal("connected to a peer that is not up")
		}
		sn.newHostAt(t, at, id, HostConfig{}) // the peer comes up at its address
		testutil.Eventually(t, 2*MaxBackoff, "b connects once the peer is up", func() bool {
			return b.host.Network().Connectedness(id.ID) == network.Connected
		})
	})
}

// TestValidatorRejectsOnTheWire publishes bad messages from a rogue peer on
// the cluster's topic, one per reason, and checks that the receiving node
// rejects and counts each, and applies none.
func TestValidatorRejectsOnTheWire(t *testing.T) {
	victim := startTestNode(t, "test")
	rogueID, err := LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := NewHost(rogueID, []string{"/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps, err := pubsub.NewGossipSub(ctx, rogue)
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(Topic("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	if err := rogue.Connect(ctx, peer.AddrInfo{ID: victim.host.ID(), Addrs: victim.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the rogue sees the victim on the topic", func() bool { return len(topic.ListPeers()) > 0 })

	now := crdt.NewTimestamp(time.Now().UnixMilli(), 0)
	entry := func(f func(*crdt.Entry)) []byte {
		e := crdt.Entry{Key: []byte("rogue"), Value: []byte("v"), HLC: now, Origin: []byte(rogueID.ID)}
		f(&e)
		b, err := EncodeBatch([]crdt.Entry{e})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name  string
		data  func() []byte
		count func(RejectionCounts) int64
	}{
		{"undecodable", func() []byte { return []byte{0xff, 0xff, 0xff} }, func(c RejectionCounts) int64 { return c.Undecodable }},
		{"empty", func() []byte { b, _ := EncodeBatch(nil); return b }, func(c RejectionCounts) int64 { return c.Empty }},
		{"bad entry", func() []byte { return entry(func(e *crdt.Entry) { e.Key = nil }) }, func(c RejectionCounts) int64 { return c.BadEntry }},
		{"clock ahead", func() []byte {
			return entry(func(e *crdt.Entry) { e.HLC = crdt.NewTimestamp(time.Now().Add(time.Hour).UnixMilli(), 0) })
		}, func(c RejectionCounts) int64 { return c.ClockAhead }},
		{"foreign origin", func() []byte { return entry(func(e *crdt.Entry) { e.Origin = []byte(victim.id.ID) }) }, func(c RejectionCounts) int64 { return c.Foreign }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.count(victim.repl.Stats().Rejected)
			// Publish until the victim has counted one: GossipSub may drop
			// the first messages to a peer whose stream is not open yet.
			testutil.Eventually(t, 20*time.Second, "the victim rejects and counts it", func() bool {
				if err := topic.Publish(ctx, tt.data()); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(100 * time.Millisecond)
				for time.Now().Before(deadline) {
					if tt.count(victim.repl.Stats().Rejected) > before {
						return true
					}
					time.Sleep(5 * time.Millisecond) // polling interval
				}
				return false
			})
		})
	}
	if kv, _ := victim.store.GetEntry([]byte("rogue")); kv != nil {
		t.Fatalf("a rejected entry was applied: %+v", kv)
	}
	if st := victim.repl.Stats(); st.ReceivedEntries != 0 {
		t.Fatalf("the victim accepted rogue entries: %+v", st)
	}
}

// inMDNSNamespace runs the test named by t in a network namespace of its
// own (re-executing the test binary under `unshare -n`), with multicast
// routed on its loopback interface only: mDNS multicasts, and a test's
// traffic must not leave addresses it made itself. It returns true in the
// namespace, where the test goes on; outside, it runs the test there,
// reports its result and returns false. The test is skipped where namespaces
// cannot be made (not root, no unshare or ip).
func inMDNSNamespace(t *testing.T) bool {
	t.Helper()
	if os.Getenv("CHORUS_MDNS_NETNS") == "1" {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s to make a network namespace", tool)
		}
	}
	script := "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo && exec \"$0\" -test.run \"^$1\"'$' -test.v"
	cmd := exec.Command("unshare", "-n", "sh", "-c", script, os.Args[0], t.Name())
	cmd.Env = append(os.Environ(), "CHORUS_MDNS_NETNS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in a network namespace: %v\n%s", t.Name(), err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s in a network namespace did not pass:\n%s", t.Name(), out)
	}
	return false
}

func TestMDNSFindsPeers(t *testing.T) {
	if !inMDNSNamespace(t) {
		return
	}
	a := startTestNode(t, "mdns-test")
	b := startTestNode(t, "mdns-test")
	ma, err := StartMDNS(a.host, "mdns-test", testutil.TestLogger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := StartMDNS(b.host, "mdns-test", testutil.TestLogger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	testutil.Eventually(t, 60*time.Second, "the two nodes find each other by mDNS", func() bool {
		return a.host.Network().Connectedness(b.host.ID()) == network.Connected
	})
}

// refuseAll is a connection gater that refuses every connection while
// closed is set: a peer found by mDNS cannot be dialled until it is cleared.
type refuseAll struct{ closed atomic.Bool }

func (g *refuseAll) InterceptPeerDial(peer.ID) bool               { return !g.closed.Load() }
func (g *refuseAll) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return !g.closed.Load() }
func (g *refuseAll) InterceptAccept(network.ConnMultiaddrs) bool  { return !g.closed.Load() }
func (g *refuseAll) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return !g.closed.Load()
}
func (g *refuseAll) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return !g.closed.Load(), 0
}

// TestMDNSFindsPeersAgainAfterFailedDials: go-libp2p's mDNS service stops
// querying after its first answer, so two nodes that found each other while
// they could not connect (here: gaters that refuse everything, dialled once)
// would never find each other again. MDNS restarts discovery, so they
// connect once the gaters open.
func TestMDNSFindsPeersAgainAfterFailedDials(t *testing.T) {
	if !inMDNSNamespace(t) {
		return
	}
	var gaters [2]*refuseAll
	var hosts [2]host.Host
	cfg := MDNSConfig{FirstRebrowse: 200 * time.Millisecond, MaxRebrowse: 400 * time.Millisecond, DialAttempts: 1}
	var found atomic.Int32
	for i := range hosts {
		id, err := LoadOrCreateIdentity(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		gaters[i] = &refuseAll{}
		gaters[i].closed.Store(true)
		hosts[i], err = NewHostWith(id, HostConfig{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Gater: gaters[i]})
		if err != nil {
			t.Fatal(err)
		}
		defer hosts[i].Close()
		log := slog.New(countingHandler{testutil.TestLogger(t, slog.LevelDebug).Handler(), "mDNS peer unreachable", &found})
		m, err := StartMDNSWithConfig(hosts[i], "mdns-retry", cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
	}
	// Both have found the other and failed to dial it at least once.
	testutil.Eventually(t, 60*time.Second, "a failed dial of a peer found", func() bool { return found.Load() >= 2 })
	for _, g := range gaters {
		g.closed.Store(false)
	}
	testutil.Eventually(t, 60*time.Second, "the two nodes connect once they may", func() bool {
		return hosts[0].Network().Connectedness(hosts[1].ID()) == network.Connected
	})
}

// countingHandler counts the log records whose message starts with prefix.
type countingHandler struct {
	slog.Handler
	prefix string
	n      *atomic.Int32
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.prefix, h.n}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(name), h.prefix, h.n}
}

// TestQUICAndDNSBootstrap: a node listening on QUIC only is reached through
// a /dns4/localhost bootstrap address, and gossip and push work over it.
func TestQUICAndDNSBootstrap(t *testing.T) {
	a := startTestNode(t, "test")
	idB, err := LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	quicHost, err := NewHost(idB, []string{"/ip4/127.0.0.1/udp/0/quic-v1"})
	if err != nil {
		t.Fatal(err)
	}
	defer quicHost.Close()
	var port string
	for _, addr := range quicHost.Addrs() {
		if p, err := addr.ValueForProtocol(ma.P_UDP); err == nil {
			port = p
		}
	}
	if port == "" {
		t.Fatalf("no UDP address in %v", quicHost.Addrs())
	}
	infos, err := ParseBootstrap([]string{"/dns4/localhost/udp/" + port + "/quic-v1/p2p/" + idB.ID.String()}, a.host.ID())
	if err != nil {
		t.Fatal(err)
	}
	boot := StartBootstrapper(a.host, infos, testutil.QuietLogger())
	defer boot.Close()
	testutil.Eventually(t, 10*time.Second, "a connects over QUIC through a /dns4 address", func() bool {
		return a.host.Network().Connectedness(idB.ID) == network.Connected
	})
	for _, c := range a.host.Network().ConnsToPeer(idB.ID) {
		if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_QUIC_V1); err != nil {
			t.Fatalf("connection is not QUIC: %s", c.RemoteMultiaddr())
		}
	}
}
