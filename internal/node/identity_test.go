package node

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/chorus-kv/chorus/p2p"
)

// TestMissingIdentityBesideDataIsRefused: a data folder whose store exists
// but whose identity key is gone is refused with ErrIdentityMissing (a new
// key would silently make the data a new member's), unless NewIdentity is
// set; then the node starts with a new peer id and keeps its data.
func TestMissingIdentityBesideDataIsRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := quietConfig(dir, nil)
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	oldID := n.ID()
	if _, err := n.Store().Put(t.Context(), []byte("kept"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, p2p.IdentityFile)); err != nil {
		t.Fatal(err)
	}

	if n, err := Start(cfg); !errors.Is(err, ErrIdentityMissing) {
		if err == nil {
			_ = n.Close()
		}
		t.Fatalf("Start on data without its key: %v; want ErrIdentityMissing", err)
	}
	if ok, _ := p2p.IdentityExists(dir); ok {
		t.Fatal("the refused start wrote a new identity key")
	}
	if _, err := LoadIdentity(dir, false); !errors.Is(err, ErrIdentityMissing) {
		t.Fatalf("LoadIdentity (chorus id): %v; want ErrIdentityMissing", err)
	}

	cfg.NewIdentity = true
	n = startNode(t, cfg)
	if n.ID() == oldID {
		t.Fatalf("--new-identity kept the old peer id %s", oldID)
	}
	if r, err := n.Store().Get([]byte("kept")); err != nil || r == nil {
		t.Fatalf("the data did not survive the new identity: %v, %v", r, err)
	}

	// A fresh folder needs no flag.
	startNode(t, quietConfig(filepath.Join(t.TempDir(), "new"), nil))
}
