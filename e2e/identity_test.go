package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestAgentRefusesDamagedOrMissingIdentity runs the agent on a data folder
// whose identity key was damaged, then removed: it refuses to start, says
// what is wrong and how to fix it, and keeps the folder as it was; with
// --new-identity it starts with a new peer id and the data it held.
func TestAgentRefusesDamagedOrMissingIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	a := startAgent(t, dir)
	a.mustCLI(t, nil, "put", "kept", "v")
	oldID := a.nodeID
	a.stopGraceful(t)

	keyPath := filepath.Join(dir, "identity.key")
	key, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(key)
	damaged[len(damaged)-1] ^= 0x01 // in the public half
	if err := os.WriteFile(keyPath, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, nil, "agent", "--data-dir", dir, "--listen-client", "127.0.0.1:0")
	if r.code == 0 || !bytes.Contains(r.stderr, []byte("damaged identity key")) || !bytes.Contains(r.stderr, []byte("restore it from a backup")) {
		t.Fatalf("agent on a damaged key: want a non-zero exit that names the damaged key and the fix: %v", r)
	}

	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, nil, nil, "agent", "--data-dir", dir, "--listen-client", "127.0.0.1:0")
	if r.code == 0 || !bytes.Contains(r.stderr, []byte("holds data but no identity key")) || !bytes.Contains(r.stderr, []byte("--new-identity")) {
		t.Fatalf("agent on data without its key: want a non-zero exit that says so and names --new-identity: %v", r)
	}
	if r := runCLI(t, nil, nil, "id", "--data-dir", dir); r.code == 0 {
		t.Fatalf("chorus id on data without its key: want a non-zero exit: %v", r)
	}
	if _, err := os.Stat(keyPath); !os.IsNotExist(err) {
		t.Fatalf("a refused start left an identity key behind (%v)", err)
	}

	b := startAgent(t, dir, "--new-identity")
	if b.nodeID == oldID {
		t.Fatalf("--new-identity kept the old peer id %s", oldID)
	}
	if got := b.mustCLI(t, nil, "get", "kept"); !bytes.Contains(got.stdout, []byte("v")) {
		t.Fatalf("the data did not survive the new identity: %v", got)
	}
}
