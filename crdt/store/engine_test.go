package store

import (
	"errors"
	"testing"

	"github.com/syndtr/goleveldb/leveldb/storage"
)

// TestStoreOnAStorage checks Config.Storage: the store keeps its data on
// the storage across Close and Open (the store never closes it), and a
// second store cannot open it while the first has it (ErrInUse).
func TestStoreOnAStorage(t *testing.T) {
	stor := storage.NewMemStorage()
	cfg := Config{Storage: stor, NodeID: localNode, Clock: newFakeWall(testWall).clock()}
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
