package store

import (
	"errors"
	"fmt"
	"io"
	"testing"

	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/storage"

	"github.com/chorus-kv/chorus/internal/testutil"
)

// TestStoreOnAStorage checks Config.Storage: the store keeps its data on
// the storage across Close and Open (the store never closes it), and a
// second store cannot open it while the first has it (ErrInUse).
func TestStoreOnAStorage(t *testing.T) {
	stor := storage.NewMemStorage()
	cfg := Config{Storage: stor, NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall))}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", "v")
	if other, err := Open(cfg); !errors.Is(err, ErrInUse) {
		if err == nil {
			_ = other.Close()
		}
		t.Errorf("a second Open on the same storage = %v; want ErrInUse", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if r, err := s.Get([]byte("k")); err != nil || r == nil || string(r.Value) != "v" {
		t.Fatalf("after reopening on the storage Get(k) = %v, %v; want v", r, err)
	}
	if s.Revision() != 1 {
		t.Errorf("revision after reopening = %d; want 1", s.Revision())
	}
	// A fresh in-memory store (no Path, no Storage) starts empty.
	fresh := openStore(t, Config{})
	if r, err := fresh.Get([]byte("k")); err != nil || r != nil {
		t.Errorf("a fresh in-memory store has k: %v, %v", r, err)
	}
}

// BenchmarkEngineGet measures what the storage seam adds to a read: the
// same in-memory LevelDB read directly and through the engine interface.
func BenchmarkEngineGet(b *testing.B) {
	db, err := goleveldb.Open(storage.NewMemStorage(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	keys := make([][]byte, 1000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "/k/%08d", i)
		if err := db.Put(keys[i], []byte("value"), nil); err != nil {
			b.Fatal(err)
		}
	}
	var e engine = levelDB{db: db, close: db.Close}
	b.Run("direct", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := db.Get(keys[i%len(keys)], nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("engine", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := e.Get(keys[i%len(keys)], nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDamagedStorageIsRefusedThenRepaired flips a byte in the journal of a
// store on a memory storage (damage a test cannot cause otherwise): Open
// refuses it with ErrDamaged, and Open with Repair recovers it on the
// storage and marks the store as catching up.
func TestDamagedStorageIsRefusedThenRepaired(t *testing.T) {
	stor := storage.NewMemStorage()
	cfg := Config{Storage: stor, NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall))}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "a", "1")
	mustPut(t, s, "b", "2")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	journals, err := stor.List(storage.TypeJournal)
	if err != nil || len(journals) != 1 {
		t.Fatalf("journals: %v, %v; want one", journals, err)
	}
	r, err := stor.Open(journals[0])
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	_ = r.Close()
	if err != nil || len(data) < 16 {
		t.Fatalf("journal: %d bytes, %v", len(data), err)
	}
	data[len(data)-4] ^= 0xff // inside the last record: its checksum fails
	w, err := stor.Create(journals[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	if s, err := Open(cfg); !errors.Is(err, ErrDamaged) {
		if err == nil {
			_ = s.Close()
		}
		t.Fatalf("Open of a damaged storage = %v; want ErrDamaged", err)
	}
	cfg.Repair = true
	s = openStore(t, cfg)
	if !s.CatchingUp() {
		t.Error("a repaired store is not catching up")
	}
	if rec, err := s.Get([]byte("a")); err != nil || rec == nil {
		t.Errorf("Get(a), written before the damaged record, after repair = %v, %v", rec, err)
	}
}
