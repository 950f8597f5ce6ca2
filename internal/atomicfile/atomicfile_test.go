package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name    string
		old     []byte // nil: no file before
		data    []byte
		perm    os.FileMode
		missing bool // the folder does not exist
	}{
		{name: "new file", data: []byte("key"), perm: 0o600},
		{name: "replaces", old: []byte("an older, longer content"), data: []byte("new"), perm: 0o644},
		{name: "empty", old: []byte("x"), data: nil, perm: 0o600},
		{name: "no folder", data: []byte("x"), perm: 0o600, missing: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.missing {
				dir = filepath.Join(dir, "missing")
			}
			path := filepath.Join(dir, "file")
			if tt.old != nil {
				if err := os.WriteFile(path, tt.old, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := Write(path, tt.data, tt.perm)
			if tt.missing {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("Write in a missing folder: %v, want fs.ErrNotExist", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("content %q, want %q", got, tt.data)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.perm {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tt.perm)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("the folder holds %d files, want only the written one (no temporary left)", len(entries))
			}
		})
	}
}

// A failed write leaves the old content in place and no temporary file.
func TestWriteFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	// path is a non-empty folder: the rename over it fails.
	path := filepath.Join(dir, "busy")
	if err := os.MkdirAll(filepath.Join(path, "child"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new"), 0o600); err == nil {
		t.Fatal("Write over a non-empty folder succeeded")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "busy" || !entries[0].IsDir() {
		t.Errorf("folder after a failed write: %v, want only the untouched busy/", entries)
	}
}
