package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p"
)

func writeSecret(t *testing.T, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "join-secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tcpAddr is n's TCP listen address without /p2p/: what an operator writes
// from a DNS name and a port.
func tcpAddr(t *testing.T, n *Node) string {
	t.Helper()
	for _, a := range n.Host().Addrs() {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			return a.String()
		}
	}
	t.Fatalf("no TCP address: %v", n.Host().Addrs())
	return ""
}

func secretConfig(dir, secret string, bootstrap ...string) Config {
	cfg := quietConfig(dir, bootstrap)
	cfg.JoinSecretFile = secret
	return cfg
}

func connected(a, b *Node) bool {
	return a.Host().Network().Connectedness(b.Host().ID()) == network.Connected
}

// TestJoinSecret forms a cluster from addresses alone and one shared secret,
// with real libp2p hosts: no peer id is copied and no member add is run.
func TestJoinSecret(t *testing.T) {
	ctx := context.Background()
	secret := writeSecret(t, "lab-secret-0123456789abcdef")
	a := startNode(t, secretConfig(t.TempDir(), secret))
	testutil.Eventually(t, 10*time.Second, "a node alone with the secret founds the list", a.admission.Joined)

	b := startNode(t, secretConfig(t.TempDir(), secret, tcpAddr(t, a)))
	// The explicit /p2p/ form keeps working next to the id-less one.
	cDir := t.TempDir()
	c := startNode(t, secretConfig(cDir, secret, a.P2PAddrs()[0], tcpAddr(t, b)))
	nodes := []*Node{a, b, c}
	testutil.Eventually(t, 30*time.Second, "every node is on every node's member list", func() bool {
		for _, n := range nodes {
			for _, m := range nodes {
				if !n.admission.IsMember(m.Host().ID()) {
					return false
				}
			}
		}
		return true
	})
	if rec := a.admission.Members()[c.Host().ID()]; rec.GetAddedBy() != c.ID() || rec.GetName() != c.cfg.Name {
		t.Fatalf("c's member record = %v; want it added by c under its name", rec)
	}
	ca, cc := dialNode(t, a), dialNode(t, c)
	if _, err := cc.Put(ctx, "/from-c", []byte("1")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "c's write reached a", func() bool {
		_, err := ca.Get(ctx, "/from-c")
		return err == nil
	})

	t.Run("a host without the secret cannot connect, publish or be admitted", func(t *testing.T) {
		for name, cfg := range map[string]Config{
			"no secret":      quietConfig(t.TempDir(), []string{tcpAddr(t, a)}),
			"another secret": secretConfig(t.TempDir(), writeSecret(t, "another-secret-0123456789"), tcpAddr(t, a)),
		} {
			out := startNode(t, cfg)
			if err := connectErr(out, a); err == nil {
				t.Fatalf("%s: connected to a member", name)
			}
			if err := connectErr(a, out); err == nil {
				t.Fatalf("%s: a member connected to it", name)
			}
			if _, err := dialNode(t, out).Put(ctx, "/outsider", []byte("v")); err != nil {
				t.Fatal(err)
			}
			if out.firstSync.Load() || connected(a, out) || a.admission.IsMember(out.Host().ID()) {
				t.Fatalf("%s: synced, connected or admitted", name)
			}
		}
		// A write made after the outsiders' reaches everyone: they had their chance.
		if _, err := ca.Put(ctx, "/after-outsiders", []byte("1")); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "a's probe write reached c", func() bool {
			_, err := cc.Get(ctx, "/after-outsiders")
			return err == nil
		})
		if _, err := cc.Get(ctx, "/outsider"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("an outsider's write reached a member: %v", err)
		}
		if got := len(a.admission.Members()); got != 3 {
			t.Fatalf("a lists %d members; want 3", got)
		}
	})

	t.Run("a removed member cannot rejoin with the secret until re-added", func(t *testing.T) {
		cID := c.Host().ID()
		if _, err := ca.RemoveMember(ctx, c.ID()); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "a and b cut c off", func() bool {
			return !connected(a, c) && !connected(b, c) && !b.admission.IsMember(cID) && b.admission.IsRemoved(cID)
		})
		// Restarted with the same identity and the secret, it stays out.
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		c2 := startNode(t, secretConfig(cDir, secret, tcpAddr(t, a), tcpAddr(t, b)))
		if err := connectErr(c2, a); err == nil {
			// The dialler may see its handshake finish before a's gater refuses.
			testutil.Eventually(t, 10*time.Second, "a refused the removed node", func() bool { return !connected(a, c2) })
		}
		if _, err := ca.Put(ctx, "/after-removal-probe", []byte("1")); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "a's probe write reached b", func() bool {
			_, err := dialNode(t, b).Get(ctx, "/after-removal-probe")
			return err == nil
		})
		if a.admission.IsMember(cID) || b.admission.IsMember(cID) || connected(a, c2) || connected(b, c2) {
			t.Fatal("the removed node rejoined with the secret")
		}
		// An operator re-admits it.
		if _, err := ca.AddMember(ctx, c.ID(), "c"); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "the re-added node connects again", func() bool {
			return (connected(c2, a) || connected(c2, b)) && !b.admission.IsRemoved(cID) && b.admission.IsMember(cID)
		})
	})
}

// TestIDLessBootstrapWithMemberAdmission: an address without /p2p/ works
// with today's per-node admission too (member add, then start).
func TestIDLessBootstrapWithMemberAdmission(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, quietConfig(t.TempDir(), nil))
	bDir := t.TempDir()
	bID, err := loadID(bDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialNode(t, a).AddMember(ctx, bID.String(), "b"); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, quietConfig(bDir, []string{tcpAddr(t, a)}))
	testutil.Eventually(t, 30*time.Second, "b joined through an id-less address", func() bool {
		return b.admission.Joined() && connected(a, b) && b.Readiness().Ready
	})
}

// TestHealthEndpoints serves /healthz and /readyz: a node with a bootstrap
// peer is not ready until its first sync, one alone is ready at once.
func TestHealthEndpoints(t *testing.T) {
	get := func(n *Node, path string) (int, Readiness) {
		t.Helper()
		resp, err := http.Get("http://" + n.HTTPAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r Readiness
		_ = json.NewDecoder(resp.Body).Decode(&r)
		return resp.StatusCode, r
	}
	alone := startNode(t, quietConfig(t.TempDir(), nil))
	if code, _ := get(alone, HealthzPath); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	if code, r := get(alone, ReadyzPath); code != http.StatusOK || !r.Alone {
		t.Fatalf("/readyz alone: %d %+v", code, r)
	}
	// Its bootstrap peer is not there yet: not ready, and it says why.
	lonely := startNode(t, secretConfig(t.TempDir(), writeSecret(t, "health-secret-0123456789"), "/ip4/127.0.0.1/tcp/1"))
	if code, r := get(lonely, ReadyzPath); code != http.StatusServiceUnavailable || r.Ready || !strings.Contains(r.Reason, "anti-entropy") {
		t.Fatalf("/readyz before any sync: %d %+v", code, r)
	}
	if code, _ := get(lonely, HealthzPath); code != http.StatusOK {
		t.Fatalf("/healthz of a node not ready: %d", code)
	}
	secret := writeSecret(t, "health-secret-abcdefghijk")
	a := startNode(t, secretConfig(t.TempDir(), secret))
	b := startNode(t, secretConfig(t.TempDir(), secret, tcpAddr(t, a)))
	testutil.Eventually(t, 30*time.Second, "b's /readyz turns 200 after its first sync", func() bool {
		code, r := get(b, ReadyzPath)
		return code == http.StatusOK && r.Synced
	})
	if code, _ := get(b, "/nope"); code != http.StatusNotFound {
		t.Fatalf("unknown path: %d", code)
	}
	off := quietConfig(t.TempDir(), nil)
	off.ListenHTTP = ListenHTTPOff
	if n := startNode(t, off); n.HTTPAddr() != nil || n.HTTPMux() != nil {
		t.Fatal("the HTTP listener is on with --listen-http off")
	}
}

func TestDefaultListenHTTP(t *testing.T) {
	for _, tc := range []struct{ client, want string }{
		{DefaultListenClient, DefaultListenHTTP},
		{"127.0.0.1:7389", "127.0.0.1:7391"},
		{"0.0.0.0:7379", "0.0.0.0:7381"},
		{"127.0.0.1:0", "127.0.0.1:0"},
		{"[::1]:7379", "[::1]:7381"},
		{"127.0.0.1:65535", DefaultListenHTTP},
	} {
		if got := (Config{ListenClient: tc.client}).WithDefaults().ListenHTTP; got != tc.want {
			t.Errorf("client %s: http %s; want %s", tc.client, got, tc.want)
		}
	}
	bad := Config{ListenHTTP: "nope", JoinSecretFile: "x", SwarmKeyFile: "y"}.WithDefaults()
	err := bad.Validate()
	for _, want := range []string{"listen-http", "exclude each other"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v; want it to mention %q", err, want)
		}
	}
}

func loadID(dir string) (peer.ID, error) {
	id, err := p2p.LoadOrCreateIdentity(dir)
	return id.ID, err
}
