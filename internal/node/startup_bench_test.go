package node

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p"
)

var startupKeys = flag.Int("startup.keys", 1_000_000, "keys in the store of BenchmarkStartup")

// BenchmarkStartup measures how long a node holding -startup.keys keys
// (32-byte keys, 256-byte values) takes from Start until its client API
// answers: opening LevelDB and rebuilding the Merkle tree from every entry
// dominate. It also reports the heap the open store holds per key.
//
//	go test -run '^$' -bench BenchmarkStartup -benchtime 3x -timeout 30m ./internal/node/
func BenchmarkStartup(b *testing.B) {
	dir := b.TempDir()
	id, err := p2p.LoadOrCreateIdentity(dir)
	if err != nil {
		b.Fatal(err)
	}
	fill := time.Now()
	st, err := store.Open(store.Config{Path: filepath.Join(dir, "db"), NodeID: []byte(id.ID)})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	hlc := crdt.NewTimestamp(time.Now().Add(-time.Hour).UnixMilli(), 0)
	batch := make([]crdt.Entry, 0, 4096)
	for i := range *startupKeys {
		batch = append(batch, crdt.Entry{Key: fmt.Appendf(nil, "/registry/pods/%017d", i), Value: make([]byte, 256), HLC: hlc, Origin: []byte(id.ID)})
		if len(batch) == cap(batch) || i == *startupKeys-1 {
			if _, err := st.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := st.CompactDisk(); err != nil {
		b.Fatal(err)
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("wrote %d keys in %v", *startupKeys, time.Since(fill).Round(time.Second))

	// The heap an open store holds (the Merkle tree, LevelDB's caches): the
	// live heap with it open, less the live heap once it is closed.
	st, err = store.Open(store.Config{Path: filepath.Join(dir, "db"), NodeID: []byte(id.ID)})
	if err != nil {
		b.Fatal(err)
	}
	var open, closed runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&open)
	keys := st.Keys()
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	st = nil
	runtime.GC()
	runtime.ReadMemStats(&closed)
	if keys != int64(*startupKeys) {
		b.Fatalf("store holds %d keys; want %d", keys, *startupKeys)
	}
	heapPerKey := float64(int64(open.HeapAlloc)-int64(closed.HeapAlloc)) / float64(keys)

	var total time.Duration
	for b.Loop() {
		start := time.Now()
		n, err := Start(Config{DataDir: dir, ListenClient: "127.0.0.1:0", Logger: testutil.QuietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		c, err := client.Dial(n.ClientAddr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := c.Status(ctx)
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		if s.Keys != keys {
			b.Fatalf("status says %d keys; want %d", s.Keys, keys)
		}
		_ = c.Close()
		if err := n.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-serve")
	b.ReportMetric(heapPerKey, "heap-B/key")
	b.Logf("%d keys: serving %v after Start; the open store holds %.1f heap bytes per key", keys, (total / time.Duration(b.N)).Round(time.Millisecond), heapPerKey)
}
