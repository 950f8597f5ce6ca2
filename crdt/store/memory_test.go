package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/syndtr/goleveldb/leveldb"

	"github.com/chorus-kv/chorus/crdt"
)

// TestLevelDBMemoryStaysBounded writes, over a bounded key space, three
// times the memory the memtable may take, and checks LevelDB's two
// in-memory structures:
//
//   - the memtable (mirrored by the current journal file) was flushed at its
//     budget rather than growing with the writes. The 32 MiB write buffer
//     that made a node's memory grow for the first 20 to 40 minutes of a
//     steady write load fails it: its journal holds every write of the
//     test, and nothing is flushed;
//   - the block cache holds no more than the live tables: blocks of tables
//     that compaction removed are evicted (without BlockCacheEvictRemoved
//     they stay until the cache is full, and this test's cache ends above
//     its tables' size).
func TestLevelDBMemoryStaysBounded(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Path: dir, RetainRevisions: 1000})
	const (
		budget   = 4 << 20 // the most the memtable may hold
		keys     = 20000
		perBatch = 500
		value    = 200
	)
	// Three budgets' worth of changes: each takes some 300 bytes of
	// journal and memtable with this value size.
	const total = 3 * budget / (value + 100)
	// Incompressible values, so that a table's blocks take about as much
	// memory cached as on disk.
	rnd := rand.NewChaCha8([32]byte{1})
	for i := 0; i < total; i += perBatch {
		batch := make([]crdt.Entry, 0, perBatch)
		for j := i; j < i+perBatch; j++ {
			batch = append(batch, crdt.Entry{
				Key:    fmt.Appendf(nil, "key-%04d", j%keys),
				Value:  randomBytes(rnd, value),
				HLC:    ts(-time.Hour+time.Duration(j)*time.Millisecond, 0),
				Origin: []byte("node-b"),
			})
		}
		if _, err := s.Apply(context.Background(), batch); err != nil {
			t.Fatalf("Apply batch at %d: %v", i, err)
		}
	}
	var st leveldb.DBStats
	if err := s.ldb().Stats(&st); err != nil {
		t.Fatalf("leveldb stats: %v", err)
	}
	if st.MemComp < 2 {
		t.Errorf("%d changes flushed the memtable %d times; want at least 2 (the budget is %d bytes)", total, st.MemComp, budget)
	}
	var live int64
	for _, n := range st.LevelSizes {
		live += n
	}
	t.Logf("%d changes: %d memtable flushes, %d table bytes, %d bytes of cached blocks", total, st.MemComp, live, st.BlockCacheSize)
	if int64(st.BlockCacheSize) > live {
		t.Errorf("the block cache holds %d bytes, more than the %d bytes of live tables: blocks of removed tables stay cached", st.BlockCacheSize, live)
	}
	journals, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(journals) == 0 {
		t.Fatalf("no journal file in the store's folder (%v)", err)
	}
	// The newest journal is the live memtable's; one batch may overshoot
	// the bound.
	newest := journals[len(journals)-1]
	fi, err := os.Stat(newest)
	if err != nil {
		t.Fatal(err)
	}
	if limit := int64(budget + perBatch*(value+200)); fi.Size() > limit {
		t.Errorf("the live journal (the memtable's contents) is %d bytes after %d changes; want at most %d", fi.Size(), total, limit)
	}
}

func randomBytes(r *rand.ChaCha8, n int) []byte {
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

// BenchmarkIdleInMemoryStores opens b.N in-memory stores (each on its own
// goleveldb memory storage) holding keys entries each, and reports the heap
// and the goroutine stacks they hold while idle, per store: what a
// simulation of many nodes in one process pays. Run with -benchtime 1000x
// for 1,000 stores. It compares the production defaults with the light
// LevelDB settings a simulation uses.
func BenchmarkIdleInMemoryStores(b *testing.B) {
	for _, tc := range []struct {
		name                 string
		writeBuffer, bcBytes int
		queue                int
		keys                 int
	}{
		{"defaults/keys=1", 0, 0, 0, 1},
		{"light/keys=1", 64 << 10, 64 << 10, 64, 1},
		{"light/keys=1000", 64 << 10, 64 << 10, 64, 1000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			goroutines := runtime.NumGoroutine()
			stores := make([]*Store, 0, b.N)
			defer func() {
				for _, s := range stores {
					_ = s.Close()
				}
			}()
			entries := make([]crdt.Entry, tc.keys)
			for i := range entries {
				entries[i] = crdt.Entry{
					Key:    fmt.Appendf(nil, "key-%06d", i),
					Value:  make([]byte, 100),
					HLC:    crdt.NewTimestamp(time.Now().UnixMilli()-1000, 0),
					Origin: []byte("node-b"),
				}
			}
			for i := 0; i < b.N; i++ {
				s, err := Open(Config{
					NodeID:           fmt.Appendf(nil, "node-%d", i),
					WriteBufferBytes: tc.writeBuffer,
					BlockCacheBytes:  tc.bcBytes,
					QueueDepth:       tc.queue,
				})
				if err != nil {
					b.Fatal(err)
				}
				stores = append(stores, s)
				if _, err := s.Apply(context.Background(), entries); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&after)
			n := float64(b.N)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/store")
			b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stack-B/store")
			b.ReportMetric(float64(runtime.NumGoroutine()-goroutines)/n, "goroutines/store")
		})
	}
}
