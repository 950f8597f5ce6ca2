package p2p

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/chorus-kv/chorus/internal/testutil"
)

func startTestHost(t *testing.T, psk pnet.PSK, listen ...string) host.Host {
	t.Helper()
	id, err := LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHostWith(id, HostConfig{Listen: listen, SwarmKey: psk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func addrOf(t *testing.T, h host.Host, proto int) ma.Multiaddr {
	t.Helper()
	for _, a := range h.Addrs() {
		if _, err := a.ValueForProtocol(proto); err == nil {
			return a
		}
	}
	t.Fatalf("host has no address with protocol %d: %v", proto, h.Addrs())
	return nil
}

// TestLearnPeerID dials real hosts by address alone and learns their ids
// from the security handshake, over TCP, QUIC and a private network; a host
// with another key, or nothing listening, reveals nothing.
func TestLearnPeerID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := JoinSecretKey([]byte("0123456789abcdef-secret"), "lab")
	other := JoinSecretKey([]byte("0123456789abcdef-other"), "lab")

	plainA := startTestHost(t, nil, "/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1")
	plainB := startTestHost(t, nil, "/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1")
	privA := startTestHost(t, key, "/ip4/127.0.0.1/tcp/0")
	privB := startTestHost(t, key, "/ip4/127.0.0.1/tcp/0")
	privOther := startTestHost(t, other, "/ip4/127.0.0.1/tcp/0")

	for _, tc := range []struct {
		name    string
		from    host.Host
		addr    ma.Multiaddr
		want    host.Host // nil: an error is wanted
		wantErr bool
	}{
		{"tcp", plainA, addrOf(t, plainB, ma.P_TCP), plainB, false},
		{"quic", plainA, addrOf(t, plainB, ma.P_QUIC_V1), plainB, false},
		{"private network, same key", privA, addrOf(t, privB, ma.P_TCP), privB, false},
		{"private network, another key", privOther, addrOf(t, privB, ma.P_TCP), nil, true},
		{"no private network against one", plainA, addrOf(t, privB, ma.P_TCP), nil, true},
		{"nothing listening", plainA, ma.StringCast("/ip4/127.0.0.1/tcp/1"), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var allowed int
			id, err := LearnPeerID(ctx, tc.from, tc.addr, func(peer.ID) { allowed++ }, nil)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("learned %s; want an error", id)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id != tc.want.ID() {
				t.Fatalf("learned %s; want %s", id, tc.want.ID())
			}
			if allowed != 1 {
				t.Fatalf("allow called %d times", allowed)
			}
			if got := tc.from.Network().Connectedness(id); got == network.Connected {
				t.Fatalf("learning connected to the peer (%v)", got)
			}
		})
	}
}

func TestLoadJoinSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "  0123456789abcdef0123\n")
	same := write("same", "0123456789abcdef0123")
	short := write("short", "tooshort\n")
	k1, err := LoadJoinSecret(good, "a")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadJoinSecret(same, "a")
	if err != nil {
		t.Fatal(err)
	}
	if string(k1) != string(k2) {
		t.Fatal("surrounding white space changed the key")
	}
	k3, _ := LoadJoinSecret(good, "b")
	if string(k1) == string(k3) {
		t.Fatal("two clusters with one secret share a key")
	}
	if _, err := LoadJoinSecret(short, "a"); err == nil {
		t.Fatal("a secret under the minimum was accepted")
	}
	if _, err := LoadJoinSecret(filepath.Join(dir, "missing"), "a"); err == nil {
		t.Fatal("a missing file was accepted")
	}
	gen, err := GenerateJoinSecret()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadJoinSecret(write("gen", string(gen)), "a"); err != nil {
		t.Fatalf("a generated secret: %v", err)
	}
}

// TestBootstrapperLearnsIDsAndSkipsSelf: given addresses alone, its own
// among them, a bootstrapper connects to the other host, reports the id it
// learned, and never treats its own address as a peer.
func TestBootstrapperLearnsIDsAndSkipsSelf(t *testing.T) {
	a := startTestHost(t, nil, "/ip4/127.0.0.1/tcp/0")
	b := startTestHost(t, nil, "/ip4/127.0.0.1/tcp/0")
	peers, err := ParseBootstrap([]string{addrOf(t, b, ma.P_TCP).String(), addrOf(t, a, ma.P_TCP).String()}, a.ID())
	if err != nil {
		t.Fatal(err)
	}
	learned := make(chan peer.ID, 16)
	boot := StartBootstrapperWith(BootstrapConfig{Host: a, Peers: peers, Logger: testutil.QuietLogger(),
		OnLearn: func(p peer.ID) { learned <- p }})
	defer boot.Close()
	testutil.Eventually(t, 10*time.Second, "a connects to b by its address alone", func() bool {
		return a.Network().Connectedness(b.ID()) == network.Connected
	})
	boot.Close()
	close(learned)
	for p := range learned {
		if p != b.ID() {
			t.Fatalf("learned %s; want only b (%s)", p, b.ID())
		}
	}
	if got := a.Network().Connectedness(a.ID()); got == network.Connected {
		t.Fatal("connected to itself")
	}
}
