package p2p

import (
	"os"
	"path/filepath"
	"testing"
)

func TestIdentityPersistsAcrossRestarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != second.ID {
		t.Fatalf("peer id changed across restarts: %s then %s", first.ID, second.ID)
	}
	st, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Fatalf("key file mode = %o; want 600", perm)
	}
	other, err := LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == first.ID {
		t.Fatal("two data folders got the same identity")
	}
}

func TestIdentityCorruptKeyIsAnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, IdentityFile)
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateIdentity(dir); err == nil {
		t.Fatal("a corrupt key file was accepted")
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "not a key" {
		t.Fatalf("the corrupt key file was replaced (err %v)", err)
	}
}
