package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// TestDamagedJournalRefusedThenRepaired: a member whose journal was damaged
// while it was down refuses to start, saying to start with --repair; started
// so, it refuses client reads (Unavailable) until a sync with a peer, and then
// holds every key again.
func TestDamagedJournalRefusedThenRepaired(t *testing.T) {
	nodes, clients, _ := startMeshNodes(t, aeNodeOpts{groups: []int{0, 0}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 300
	for i := range n {
		if _, err := clients[0].Put(ctx, fmt.Sprintf("k%03d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 30*time.Second, "node 1 has every key", func() bool { return nodes[1].Store().Keys() >= n })
	dir := nodes[1].cfg.DataDir
	bootstrap := nodes[0].P2PAddrs()
	if err := nodes[1].Close(); err != nil {
		t.Fatal(err)
	}
	logs, err := filepath.Glob(filepath.Join(dir, StoreDir, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no journal in the store: %v", err)
	}
	fi, err := os.Stat(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(logs[0], fi.Size()/2); err != nil {
		t.Fatal(err)
	}

	cfg := Config{DataDir: dir, ListenClient: "127.0.0.1:0", Logger: testutil.QuietLogger(),
		SyncInterval: 300 * time.Millisecond}
	if nd, err := Start(cfg); err == nil {
		nd.Close()
		t.Fatal("a node with a damaged journal started")
	} else if !errors.Is(err, store.ErrDamaged) || !strings.Contains(err.Error(), "--repair") || !strings.Contains(err.Error(), ".log") {
		t.Fatalf("Start: %v; want ErrDamaged naming the journal and --repair", err)
	}

	// Alone, repaired: reads wait for a sync that cannot happen.
	cfg.Repair = true
	nd, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(nd.ClientAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "k000"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Get on a repaired node before a sync: %v; want ErrUnavailable", err)
	}
	if _, err := c.Range(ctx, client.RangeRequest{}); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Range on a repaired node before a sync: %v; want ErrUnavailable", err)
	}
	// Writes are taken meanwhile.
	if _, err := c.Put(ctx, "during", []byte("v")); err != nil {
		t.Errorf("Put on a repaired node: %v", err)
	}
	c.Close()
	if err := nd.Close(); err != nil {
		t.Fatal(err)
	}

	// Restarted without --repair (the mark is on disk), with a peer: it
	// catches up and serves every key.
	cfg.Repair = false
	cfg.Bootstrap = bootstrap
	nd, err = Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nd.Close() })
	c, err = client.Dial(nd.ClientAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.Eventually(t, 30*time.Second, "the repaired node serves reads", func() bool {
		_, err := c.Get(ctx, "k000")
		return err == nil
	})
	for i := range n {
		if _, err := c.Get(ctx, fmt.Sprintf("k%03d", i)); err != nil {
			t.Fatalf("Get(k%03d) after the catch-up: %v", i, err)
		}
	}
}
