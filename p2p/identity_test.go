package p2p

import (
	"bytes"
	"errors"
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
	if _, err := LoadOrCreateIdentity(dir); !errors.Is(err, ErrDamagedIdentity) {
		t.Fatalf("a corrupt key file: %v; want ErrDamagedIdentity", err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "not a key" {
		t.Fatalf("the corrupt key file was replaced (err %v)", err)
	}
}

// TestIdentityDamagedKeyIsRefused flips one bit in each byte of a key file
// in turn: every damaged key is refused (none yields another peer id), and
// the file is left as it was, for the operator to restore.
func TestIdentityDamagedKeyIsRefused(t *testing.T) {
	dir := t.TempDir()
	id, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, IdentityFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x10
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := LoadOrCreateIdentity(dir)
		if err == nil {
			t.Errorf("byte %d of %d flipped: accepted, as peer id %s (the key's is %s)", i, len(good), got.ID, id.ID)
			continue
		}
		if b, _ := os.ReadFile(path); !bytes.Equal(b, bad) {
			t.Fatalf("byte %d flipped: the damaged key file was replaced", i)
		}
	}
}
