//go:build heavy

package node

// Heavy tests: minutes of CPU, so not in `go test ./...`. `.ci/run` runs
// them in a step of their own:
//
//	go test -race -tags heavy -run Heavy ./internal/node/

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// TestHeavyNewNodeCatchesUpWith100kKeys: a node that joins a member holding
// 100,000 keys gets every one of them by anti-entropy.
func TestHeavyNewNodeCatchesUpWith100kKeys(t *testing.T) {
	const keys = 100_000
	nodes, _, _ := startMeshNodes(t, aeNodeOpts{groups: []int{0}})
	ctx := context.Background()
	origin := []byte(nodes[0].Host().ID())
	now := crdt.NewTimestamp(time.Now().UnixMilli(), 0)
	var batch []crdt.Entry
	for i := range keys {
		batch = append(batch, crdt.Entry{Key: fmt.Appendf(nil, "/registry/pods/ns-%d/pod-%d", i%100, i), Value: make([]byte, 256), HLC: now, Origin: origin})
		if len(batch) == 4096 || i == keys-1 {
			if _, err := nodes[0].Store().Apply(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	joinerDir := t.TempDir()
	admit(t, nodes[0], joinerDir)
	start := time.Now()
	joiner, err := Start(Config{
		DataDir:      joinerDir,
		ListenClient: "127.0.0.1:0",
		Bootstrap:    nodes[0].P2PAddrs(),
		Logger:       testutil.TestLogger(t, slog.LevelWarn),
		SyncInterval: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = joiner.Close() })
	testutil.Eventually(t, 300*time.Second, "the new node has all 100,000 keys", func() bool {
		return joiner.Store().MerkleRoot() == nodes[0].Store().MerkleRoot()
	})
	if got, want := joiner.Store().Keys(), nodes[0].Store().Keys(); got != want || got < keys {
		t.Fatalf("the new node holds %d keys; want %d (%d and the member list)", got, want, keys)
	}
	t.Logf("a new node caught up with %d keys in %v", keys, time.Since(start).Round(time.Millisecond))
}
