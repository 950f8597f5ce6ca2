package node

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p"
	"github.com/chorus-kv/chorus/p2p/swim"
)

// TestCopiedDataFolderIsRefused: a node started from a copy of a running
// member's data folder (same identity.key) is told by the other member that
// its identity is live elsewhere and stops (Refused, with an error that says
// to start the copy with a new identity); the original goes on replicating.
func TestCopiedDataFolderIsRefused(t *testing.T) {
	nodes, clients, _ := startMeshNodes(t, aeNodeOpts{groups: []int{0, 0}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := clients[0].Put(ctx, "before", []byte("v")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "node 1 has the key", func() bool { return nodes[1].Store().Keys() >= 1 })

	// Copy node 0's folder while it runs.
	copyDir := t.TempDir()
	if err := os.CopyFS(copyDir, os.DirFS(nodes[0].cfg.DataDir)); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	twin, err := Start(Config{DataDir: copyDir, ListenClient: "127.0.0.1:0", Bootstrap: nodes[1].P2PAddrs(),
		Logger: testutil.QuietLogger(), SyncInterval: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = twin.Close() })
	if twin.ID() != nodes[0].ID() {
		t.Fatalf("the copy has id %s; want %s", twin.ID(), nodes[0].ID())
	}
	select {
	case <-twin.Refused():
		t.Logf("the copy was refused %v after its start", time.Since(started).Round(time.Millisecond))
	case <-ctx.Done():
		t.Fatal("the copy was not refused within a minute")
	}
	err = twin.RefusedErr()
	var dup *p2p.DuplicateIdentityError
	if !errors.Is(err, p2p.ErrDuplicateIdentity) || !errors.As(err, &dup) || !strings.Contains(err.Error(), "--new-identity") {
		t.Fatalf("RefusedErr() = %v; want a DuplicateIdentityError saying --new-identity", err)
	}
	if dup.ReportedBy != nodes[1].ID() || dup.ID != nodes[0].ID() {
		t.Errorf("reported by %s about %s; want by %s about %s", dup.ReportedBy, dup.ID, nodes[1].ID(), nodes[0].ID())
	}
	if err := twin.Close(); err != nil {
		t.Fatal(err)
	}
	// The original is not refused and goes on: its writes reach the peer,
	// and the peer holds it alive.
	if nodes[0].RefusedErr() != nil {
		t.Fatalf("the original was refused too: %v", nodes[0].RefusedErr())
	}
	if _, err := clients[0].Put(ctx, "after", []byte("v")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "the peer has the original's write after the copy stopped", func() bool {
		_, err := clients[1].Get(ctx, "after")
		return err == nil
	})
	testutil.Eventually(t, 30*time.Second, "the peer holds the original alive", func() bool {
		for _, m := range nodes[1].members.Members() {
			if m.ID == nodes[0].ID() {
				return m.State == swim.Alive
			}
		}
		return false
	})
}
