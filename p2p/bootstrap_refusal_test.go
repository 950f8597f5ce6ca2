package p2p

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/netsim"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// logBuffer is a log destination that tests read while hosts write to it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// memberHost starts a host whose gater is a member list holding only
// itself, so that it refuses every other peer; it returns the host's id,
// its addresses and its log. It is on the simulated network sn, or on
// loopback when sn is nil.
func memberHost(t *testing.T, sn *simNet) (peer.ID, []ma.Multiaddr, *logBuffer) {
	t.Helper()
	id, err := LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Config{NodeID: []byte(id.ID)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Put(t.Context(), MemberKey(id.ID), memberRecord(t, "a")); err != nil {
		t.Fatal(err)
	}
	log := &logBuffer{}
	adm, err := NewAdmission(id.ID, nil, false, st, log.logger())
	if err != nil {
		t.Fatal(err)
	}
	if sn != nil {
		h := sn.newHost(t, id, HostConfig{Gater: adm})
		return id.ID, h.Addrs(), log
	}
	h, err := NewHostWith(id, HostConfig{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Gater: adm})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return id.ID, h.Addrs(), log
}

// TestBootstrapperBacksOffAfterRefusal: a bootstrap peer that refuses this
// node closes each connection right after the handshake. The bootstrapper
// counts those as refusals and redials with a growing backoff (it used to
// redial every 250 ms); the refusing side names the peer once, with the
// command that admits it; the refused node's admission concludes it is not
// admitted. On the simulated network, on virtual time: the backoffs are
// exact.
func TestBootstrapperBacksOffAfterRefusal(t *testing.T) {
	netsim.Run(t, func(t *testing.T) {
		sn := startSimNet(t)
		aID, aAddrs, aLog := memberHost(t, sn)

		b := startTestNodeOn(t, sn, "test")
		bAdm, err := NewAdmission(b.host.ID(), []peer.AddrInfo{{ID: aID}}, false, b.store, testutil.QuietLogger())
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var refusals []time.Time
		boot := StartBootstrapperWith(BootstrapConfig{
			Host:   b.host,
			Peers:  []peer.AddrInfo{{ID: aID, Addrs: aAddrs}},
			Logger: testutil.QuietLogger(),
			OnRefused: func(p peer.ID) {
				if p != aID {
					t.Errorf("refusal reported for %s, want %s", p, aID)
				}
				bAdm.BootstrapRefused(p)
				mu.Lock()
				refusals = append(refusals, time.Now())
				mu.Unlock()
			},
		})
		defer boot.Close()
		const want = 5
		testutil.Eventually(t, 30*time.Second, "5 refused connections", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(refusals) >= want
		})
		boot.Close()
		mu.Lock()
		span := refusals[want-1].Sub(refusals[0])
		mu.Unlock()
		// Backoffs of 250 ms, 500 ms, 1 s and 2 s (each -20 % at worst) between
		// the five, less one polling interval of slack: at least 2.75 s. Without
		// backoff after a refusal they came every 250 ms or so.
		if min := 2750 * time.Millisecond; span < min {
			t.Errorf("5 refusals within %v; want at least %v (the backoff)", span, min)
		}
		if lines := aLog.lines("refused a peer that is not on the member list"); len(lines) != 1 ||
			!strings.Contains(lines[0], "peer="+b.host.ID().String()) || !strings.Contains(lines[0], "chorus member add "+b.host.ID().String()) {
			t.Errorf("the refusing host's info lines: %q; want one, naming the peer and the command that admits it", lines)
		}
		f := bAdm.JoinFacts()
		f.Bootstrap = true
		if state, detail := DecideJoinState(f); state != JoinNotAdmitted {
			t.Errorf("join state after %d refusals: %s (%s); want %s", f.Refusals, state, detail, JoinNotAdmitted)
		}
	})
}

// TestBootstrapperWarnsOnceWithReason: a bootstrap address whose /p2p/ id is
// not the one its host presents fails every handshake. The first failure
// is logged at warn with the reason and what to fix; the same failure again
// only at debug.
func TestBootstrapperWarnsOnceWithReason(t *testing.T) {
	aID, aAddrs, _ := memberHost(t, nil)
	wrong := testPeerIDs(t, 1)[0]
	b := startTestNode(t, "test")
	log := &logBuffer{}
	boot := StartBootstrapperWith(BootstrapConfig{Host: b.host, Peers: []peer.AddrInfo{{ID: wrong, Addrs: aAddrs}}, Logger: log.logger()})
	defer boot.Close()
	testutil.Eventually(t, 30*time.Second, "three failed dials", func() bool {
		return len(log.lines("bootstrap peer unreachable")) >= 3
	})
	boot.Close()
	warns := log.lines("level=WARN")
	if len(warns) != 1 || !strings.Contains(warns[0], "bootstrap peer unreachable") ||
		!strings.Contains(warns[0], "is served by peer "+aID.String()+", not "+wrong.String()) {
		t.Errorf("warn lines: %q; want one, naming the peer id the address serves", warns)
	}
}

// TestRefusalLoggedOncePerInterval: a refused inbound peer is named at
// info once per refusalLogEvery, whatever it does in between.
func TestRefusalLoggedOncePerInterval(t *testing.T) {
	ids := testPeerIDs(t, 3)
	st, err := store.Open(store.Config{NodeID: []byte(ids[0])})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := NewAdmission(ids[0], nil, false, st, testutil.QuietLogger())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	a.now = func() time.Time { return now }
	for _, step := range []struct {
		peer    peer.ID
		advance time.Duration
		want    bool
	}{
		{ids[1], 0, true},
		{ids[1], time.Second, false},
		{ids[2], 0, true}, // another peer: its own interval
		{ids[1], refusalLogEvery - 2*time.Second, false},
		{ids[1], time.Second, true}, // refusalLogEvery after its first
		{ids[2], 0, false},          // a second short of its own
		{ids[2], time.Second, true},
		{ids[1], time.Second, false},
	} {
		now = now.Add(step.advance)
		if got := a.shouldLogRefusal(step.peer); got != step.want {
			t.Errorf("at %v, peer %s: log %v, want %v", now, step.peer, got, step.want)
		}
	}
}
