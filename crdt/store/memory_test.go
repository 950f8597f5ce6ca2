package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syndtr/goleveldb/leveldb"

	"github.com/chorus-kv/chorus/crdt"
)

// TestMemtableStaysBounded writes, over a bounded key space, three times
// the memory the memtable may take and checks that LevelDB's memtable
// (mirrored by the current journal file) was flushed at that bound rather
// than growing with the writes. The 32 MiB write buffer that made a node's
// memory grow for the first 40 minutes of a soak fails it: its journal
// holds every write of the test, and nothing is flushed.
func TestMemtableStaysBounded(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Path: dir})
	const (
		budget   = 4 << 20 // the most the memtable may hold
		keys     = 1000
		perBatch = 500
		value    = 200
	)
	// Three budgets' worth of changes: each takes some 300 bytes of
	// journal and memtable with this value size.
	const total = 3 * budget / (value + 100)
	val := []byte(strings.Repeat("v", value))
	for i := 0; i < total; i += perBatch {
		batch := make([]crdt.Entry, 0, perBatch)
		for j := i; j < i+perBatch; j++ {
			batch = append(batch, crdt.Entry{
				Key:    fmt.Appendf(nil, "key-%04d", j%keys),
				Value:  val,
				HLC:    ts(-time.Hour+time.Duration(j)*time.Millisecond, 0),
				Origin: []byte("node-b"),
			})
		}
		if _, err := s.Apply(context.Background(), batch); err != nil {
			t.Fatalf("Apply batch at %d: %v", i, err)
		}
	}
	var st leveldb.DBStats
	if err := s.ds.DB.Stats(&st); err != nil {
		t.Fatalf("leveldb stats: %v", err)
	}
	if st.MemComp < 2 {
		t.Errorf("%d changes flushed the memtable %d times; want at least 2 (the budget is %d bytes)", total, st.MemComp, budget)
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
