package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/snapshot"
	maintenancev1 "github.com/chorus-kv/chorus/proto/chorus/maintenance/v1"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// BenchmarkSnapshot1M saves a snapshot of a node holding 1,000,000 keys
// (32-byte keys, 256-byte values) over the gRPC API to a file, then restores
// it into a new data folder, and reports the file's size and both times:
//
//	go test -run '^$' -bench BenchmarkSnapshot1M -benchtime 1x ./internal/node/
func BenchmarkSnapshot1M(b *testing.B) {
	const keys = 1_000_000
	nodes, clients, _ := startMeshNodesTB(b, aeNodeOpts{groups: []int{0}})
	src, c := nodes[0], clients[0]
	ctx := context.Background()
	origin := []byte(src.Host().ID())
	now := crdt.NewTimestamp(time.Now().UnixMilli(), 0)
	value := make([]byte, 256)
	var batch []crdt.Entry
	for i := range keys {
		batch = append(batch, crdt.Entry{Key: fmt.Appendf(nil, "/registry/pods/ns-%02d/pod-%07d", i%100, i), Value: value, HLC: now, Origin: origin})
		if len(batch) == 4096 || i == keys-1 {
			if _, err := src.Store().Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := src.Store().CompactDisk(); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	var size int64
	var save, restore time.Duration
	for i := 0; b.Loop(); i++ {
		path := filepath.Join(dir, fmt.Sprintf("snap-%d", i))
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := c.Snapshot(ctx, f, func(client.SnapshotProgress) {}); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		save += time.Since(start)
		st, err := f.Stat()
		if err != nil {
			b.Fatal(err)
		}
		size = st.Size()
		if _, err := f.Seek(0, 0); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		res, err := RestoreSnapshot(ctx, f, RestoreConfig{DataDir: filepath.Join(dir, fmt.Sprintf("restored-%d", i))})
		if err != nil {
			b.Fatal(err)
		}
		restore += time.Since(start)
		_ = f.Close()
		if res.Restored < keys {
			b.Fatalf("restored %d entries; want at least %d", res.Restored, keys)
		}
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB/snapshot")
	b.ReportMetric(save.Seconds()/float64(b.N), "s-save/op")
	b.ReportMetric(restore.Seconds()/float64(b.N), "s-restore/op")
}

// BenchmarkRestore1M restores a snapshot file of 1,000,000 keys (as
// BenchmarkSnapshot1M's, written directly, without a node to load first):
//
//	go test -run '^$' -bench BenchmarkRestore1M -benchtime 1x ./internal/node/
func BenchmarkRestore1M(b *testing.B) {
	const keys = 1_000_000
	dir := b.TempDir()
	path := filepath.Join(dir, "snap")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	now := uint64(crdt.NewTimestamp(time.Now().UnixMilli(), 0))
	w, err := snapshot.NewWriter(f, &maintenancev1.SnapshotHeader{NodeId: "bench", TakenAt: now, ExpectedEntries: keys})
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 256)
	origin := []byte("12D3KooWBenchmarkOriginPeerIdOf38Bytes")
	for i := range keys {
		// Key order: the index is the most significant part.
		if err := w.Add(&replicationv1.Entry{Key: fmt.Appendf(nil, "/registry/pods/pod-%07d/ns-%02d", i, i%100), Value: value, Hlc: now, Origin: origin}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		res, err := RestoreSnapshot(context.Background(), f, RestoreConfig{DataDir: filepath.Join(dir, fmt.Sprintf("restored-%d", i))})
		_ = f.Close()
		if err != nil {
			b.Fatal(err)
		}
		if res.Restored != keys {
			b.Fatalf("restored %d entries; want %d", res.Restored, keys)
		}
	}
}
