package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p"
)

func quietConfig(dir string, bootstrap []string) Config {
	return Config{
		DataDir:      dir,
		ListenClient: "127.0.0.1:0",
		Bootstrap:    bootstrap,
		Logger:       testutil.QuietLogger(),
		SyncInterval: 300 * time.Millisecond,
	}
}

func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func dialNode(t *testing.T, n *Node) *client.Client {
	t.Helper()
	c, err := client.Dial(n.ClientAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// connectErr tries to connect a to b once.
func connectErr(a, b *Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return a.Host().Connect(ctx, peer.AddrInfo{ID: b.Host().ID(), Addrs: b.Host().Addrs()})
}

func TestAdmission(t *testing.T) {
	ctx := context.Background()
	nodes, clients, _ := startMeshNodes(t, aeNodeOpts{groups: []int{0, 0, 0}})

	t.Run("a peer not admitted cannot connect", func(t *testing.T) {
		outsider := startNode(t, quietConfig(t.TempDir(), nodes[0].P2PAddrs()))
		if err := connectErr(outsider, nodes[1]); err == nil {
			t.Fatal("a non-member connected to a member")
		}
		if err := connectErr(nodes[1], outsider); err == nil {
			t.Fatal("a member dialled a non-member")
		}
		// Its bootstrap dials to node 0 are refused too: it never gets the data.
		if _, err := dialNode(t, outsider).Put(ctx, "outsider/k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, "node 0 refused the outsider's dials", func() bool {
			return nodes[0].Host().Network().Connectedness(outsider.Host().ID()) != network.Connected
		})
		if _, err := clients[0].Get(ctx, "outsider/k"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("the outsider's write reached a member: %v", err)
		}
	})

	t.Run("reserved prefix", func(t *testing.T) {
		_, err := clients[0].Put(ctx, p2p.MembersPrefix+"x", []byte("v"))
		if !errors.Is(err, client.ErrBadRequest) {
			t.Fatalf("put under the reserved prefix: %v; want ErrBadRequest", err)
		}
		if _, err := clients[0].Delete(ctx, p2p.MembersPrefix+nodes[1].ID()); !errors.Is(err, client.ErrBadRequest) {
			t.Fatalf("delete under the reserved prefix: %v; want ErrBadRequest", err)
		}
	})

	t.Run("a removed member is cut off", func(t *testing.T) {
		victim := nodes[2]
		if _, err := clients[2].Put(ctx, "before-removal", []byte("v")); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "the write before removal reached node 0", func() bool {
			_, err := clients[0].Get(ctx, "before-removal")
			return err == nil
		})
		if _, err := clients[0].RemoveMember(ctx, victim.ID()); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "members closed their connections to the removed node", func() bool {
			for _, n := range nodes[:2] {
				if n.admission.IsMember(victim.Host().ID()) || n.Host().Network().Connectedness(victim.Host().ID()) == network.Connected ||
					victim.Host().Network().Connectedness(n.Host().ID()) == network.Connected {
					return false
				}
			}
			return true
		})
		// The dialler may see its handshake finish before the member's gater
		// refuses the connection: the member is the side that must not let it in.
		_ = connectErr(victim, nodes[1])
		testutil.Eventually(t, 10*time.Second, "the removed node's new connection is closed", func() bool {
			return victim.Host().Network().Connectedness(nodes[1].Host().ID()) != network.Connected
		})
		if got := nodes[1].Host().Network().Connectedness(victim.Host().ID()); got == network.Connected {
			t.Fatalf("node 1 let the removed node connect again (%v)", got)
		}

		if _, err := clients[2].Put(ctx, "after-removal", []byte("v")); err != nil {
			t.Fatal(err)
		}
		// Give gossip and sync every chance: a probe write from node 1 reaches node 0.
		if _, err := clients[1].Put(ctx, "probe-after-removal", []byte("v")); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "node 1's write reached node 0", func() bool {
			_, err := clients[0].Get(ctx, "probe-after-removal")
			return err == nil
		})
		for i, c := range clients[:2] {
			if _, err := c.Get(ctx, "after-removal"); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("node %d has the removed node's later write (%v)", i, err)
			}
		}
	})

	t.Run("member commands validate", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			call func() error
			want error
		}{
			{"add a bad id", func() error { _, err := clients[0].AddMember(ctx, "nope", ""); return err }, client.ErrBadRequest},
			{"remove itself", func() error { _, err := clients[0].RemoveMember(ctx, nodes[0].ID()); return err }, client.ErrBadRequest},
			{"remove a non-member", func() error {
				_, err := clients[0].RemoveMember(ctx, "12D3KooWGRUVh8kfwzNr2jTJDXVU2mQ5BRwqNUWqGFfD2GsqR9mN")
				return err
			}, client.ErrBadRequest},
		} {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Errorf("%s: %v; want %v", tc.name, err, tc.want)
			}
		}
	})
}

func TestSwarmKey(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "swarm.key")
	key, err := p2p.GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(dir, swarm string) Config {
		cfg := quietConfig(dir, nil)
		cfg.OpenAdmission = true // only the swarm key decides here
		cfg.SwarmKeyFile = swarm
		return cfg
	}
	a := startNode(t, open(t.TempDir(), keyFile))
	b := startNode(t, open(t.TempDir(), keyFile))
	outsider := startNode(t, open(t.TempDir(), ""))
	for _, addr := range a.Host().Addrs() {
		if _, err := addr.ValueForProtocol(0x01cc); err == nil { // quic-v1
			t.Fatalf("a node with a swarm key listens on QUIC: %s", addr)
		}
	}
	if err := connectErr(b, a); err != nil {
		t.Fatalf("two nodes with the same swarm key: %v", err)
	}
	if err := connectErr(outsider, a); err == nil {
		t.Fatal("a node without the swarm key connected")
	}
	if err := connectErr(a, outsider); err == nil {
		t.Fatal("a node with the swarm key connected to one without")
	}
	bad := open(t.TempDir(), keyFile)
	bad.ListenP2P = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	if _, err := Start(bad); err == nil {
		t.Fatal("QUIC with a swarm key started")
	}
}
