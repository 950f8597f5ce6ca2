package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// chorus snapshot save, status and restore, as an operator runs them: the
// restored folder starts as a new node that serves the saved keys; a
// truncated or corrupted file is refused with a message that says so.
func TestSnapshotSaveStatusRestore(t *testing.T) {
	a := startAgent(t, t.TempDir())
	a.mustCLI(t, nil, "put", "/app/a", "alpha")
	a.mustCLI(t, nil, "put", "/app/b", "beta")
	a.mustCLI(t, nil, "put", "/app/gone", "x")
	a.mustCLI(t, nil, "del", "/app/gone")

	file := filepath.Join(t.TempDir(), "backup.snap")
	r := a.mustCLI(t, nil, "snapshot", "save", file)
	if !regexp.MustCompile(`^saved .*backup\.snap: 3 entries \(1 tombstones\), .*, revision \d+ of node ` + a.nodeID + `, sha256 [0-9a-f]{64}, in `).Match(r.stdout) {
		t.Errorf("save printed %q", r.stdout)
	}
	if strings.Contains(string(r.stderr), "\r") {
		t.Errorf("save drew a progress bar on a pipe: %q", r.stderr)
	}
	if left, _ := filepath.Glob(file + ".part-*"); len(left) != 0 {
		t.Errorf("save left %v behind", left)
	}

	st := runCLI(t, nil, nil, "snapshot", "status", file)
	if st.code != 0 {
		t.Fatalf("status: %v", st)
	}
	for _, want := range []string{"source node  " + a.nodeID, "entries      3 (2 live, 1 tombstones)", "checksum     sha256 ", " OK\n", "restorable until"} {
		if !strings.Contains(string(st.stdout), want) {
			t.Errorf("status output lacks %q:\n%s", want, st.stdout)
		}
	}

	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(t.TempDir(), "truncated.snap")
	corrupt := filepath.Join(t.TempDir(), "corrupt.snap")
	bad := []byte(strings.Replace(string(good), "alpha", "alphA", 1))
	if err := os.WriteFile(truncated, good[:len(good)-7], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(corrupt, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{{truncated, "snapshot: truncated"}, {corrupt, "snapshot: corrupt: checksum mismatch"}} {
		for _, args := range [][]string{{"snapshot", "status", tc.file}, {"snapshot", "restore", tc.file, "--data-dir", filepath.Join(t.TempDir(), "x")}} {
			r := runCLI(t, nil, nil, args...)
			if r.code != 1 || !strings.Contains(string(r.stderr), tc.want) {
				t.Errorf("want exit 1 and %q: %v", tc.want, r)
			}
		}
	}

	dir := filepath.Join(t.TempDir(), "restored")
	rr := runCLI(t, nil, nil, "snapshot", "restore", file, "--data-dir", dir)
	if rr.code != 0 || !strings.Contains(string(rr.stdout), "3 entries (1 tombstones), 3 kept, from node "+a.nodeID) {
		t.Fatalf("restore: %v", rr)
	}
	if again := runCLI(t, nil, nil, "snapshot", "restore", file, "--data-dir", dir); again.code != 1 || !strings.Contains(string(again.stderr), "not empty") {
		t.Errorf("restoring into a used folder: %v", again)
	}
	b := startAgent(t, dir)
	if b.nodeID == a.nodeID {
		t.Fatalf("the restored node kept the source's id %s", a.nodeID)
	}
	if r := b.mustCLI(t, nil, "get", "/app/a"); !strings.Contains(string(r.stdout), "alpha") {
		t.Errorf("get /app/a on the restored node: %q", r.stdout)
	}
	if r := b.mustCLI(t, nil, "ls", "/app/"); strings.Contains(string(r.stdout), "gone") || !strings.Contains(string(r.stdout), "/app/b") {
		t.Errorf("ls /app/ on the restored node: %q", r.stdout)
	}
}
