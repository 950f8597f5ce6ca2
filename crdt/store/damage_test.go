package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"
	ltable "github.com/syndtr/goleveldb/leveldb/table"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/chorus-kv/chorus/internal/testutil"
)

// damagedStore writes n keys (one fsynced batch each) to a store at a new
// folder, closes it and returns its config.
func damagedStore(t *testing.T, n int, compact bool) Config {
	t.Helper()
	cfg := Config{Path: t.TempDir(), NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall))}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		// Values that snappy cannot shrink much, so the log's blocks are many.
		mustPut(t, s, fmt.Sprintf("key%05d", i), fmt.Sprintf("%x", []byte(fmt.Sprintf("value of %05d, a little longer than the key", i))))
	}
	if compact {
		if err := s.CompactDisk(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// files returns the folder's files whose names end in ext.
func files(t *testing.T, dir, ext string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil || len(m) == 0 {
		t.Fatalf("no %s file in %s: %v", ext, dir, err)
	}
	return m
}

func flipByte(t *testing.T, file string, off int64) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func size(t *testing.T, file string) int64 {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// readsRange reports whether LevelDB, opened as go-ds-leveldb opens it (a
// damaged journal recovered silently), reads the keys of r without error.
func readsRange(t *testing.T, dir string, r *util.Range) bool {
	t.Helper()
	db, err := goleveldb.OpenFile(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it := db.NewIterator(r, nil)
	for it.Next() {
	}
	it.Release()
	return it.Error() == nil
}

// TestDamagedFilesRefuseOpen damages a store's LevelDB files as a disk or an
// operator might and checks that Open refuses the store, naming the file and
// the repair, instead of starting without acknowledged writes; and that Open
// with Repair starts it, recording the revisions that may be lost, refusing
// CatchingUp until a complete sync (SetLastContact).
func TestDamagedFilesRefuseOpen(t *testing.T) {
	const n = 1000
	tests := []struct {
		name    string
		compact bool // the keys in tables, not the journal
		damage  func(t *testing.T, dir string)
		file    string // the damaged file's extension, named by the error
	}{
		{"journal byte flipped", false, func(t *testing.T, dir string) {
			log := files(t, dir, ".log")[0]
			flipByte(t, log, size(t, log)/3)
		}, ".log"},
		{"journal cut in half", false, func(t *testing.T, dir string) {
			log := files(t, dir, ".log")[0]
			if err := os.Truncate(log, size(t, log)/2); err != nil {
				t.Fatal(err)
			}
		}, ".log"},
		{"table of change-log records", true, func(t *testing.T, dir string) {
			// Flip a byte inside the data block that holds a change-log
			// record from the middle of the log, and check that the entries
			// still read: Open read only those before.
			tables := files(t, dir, ".ldb")
			table := tables[len(tables)-1]
			f, err := os.Open(table)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ltable.NewReader(f, size(t, table), storage.FileDesc{}, nil, nil, &opt.Options{})
			if err != nil {
				t.Fatal(err)
			}
			// An internal key: the user key, then sequence and type (the
			// highest sequence, as LevelDB seeks).
			ikey := binary.LittleEndian.AppendUint64(logKey(n/2), (1<<56-1)<<8|1)
			off, err := r.OffsetOf(ikey)
			r.Release()
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			flipByte(t, table, off+20)
			entries := &util.Range{Start: []byte(entryPrefix), Limit: entryKeyEnd()}
			logs := &util.Range{Start: []byte(logPrefix), Limit: logKeyEnd()}
			if !readsRange(t, dir, entries) || readsRange(t, dir, logs) {
				t.Fatal("the flipped byte did not damage the change log alone")
			}
		}, ".ldb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := damagedStore(t, n, tc.compact)
			tc.damage(t, cfg.Path)

			s, err := Open(cfg)
			if err == nil {
				var missing int
				for i := range n {
					if r, _ := s.Get(fmt.Appendf(nil, "key%05d", i)); r == nil {
						missing++
					}
				}
				s.Close()
				t.Fatalf("Open of a damaged store succeeded (%d of %d keys missing)", missing, n)
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), tc.file) || !strings.Contains(err.Error(), "repair") {
				t.Fatalf("Open: %v; want ErrDamaged naming the %s file and the repair", err, tc.file)
			}
			// Refused again: nothing was changed.
			if _, err := Open(cfg); !errors.Is(err, ErrDamaged) {
				t.Fatalf("second Open: %v; want ErrDamaged", err)
			}

			cfg.Repair = true
			s = openStore(t, cfg)
			if !s.CatchingUp() {
				t.Fatal("CatchingUp() is false after a repair")
			}
			// The change log reads, holes recorded as gaps.
			if _, err := s.ReadLog(s.OldestRevision(), false, func(*Change) error { return nil }); err != nil {
				t.Errorf("ReadLog after a repair: %v", err)
			}
			// Writes go on, at a revision after every one given before.
			c := mustPut(t, s, "after", "v")
			if c.Record.ModRevision <= n {
				t.Errorf("first write after the repair got revision %d; want > %d", c.Record.ModRevision, n)
			}
			// The mark survives a restart.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openStore(t, cfg)
			if !s.CatchingUp() {
				t.Fatal("CatchingUp() is false after a restart of a repaired store")
			}
			if err := s.SetLastContact(s.Clock().Now()); err != nil {
				t.Fatal(err)
			}
			if s.CatchingUp() {
				t.Fatal("CatchingUp() is still true after a complete sync")
			}
			if r, err := s.Get([]byte("after")); err != nil || r == nil {
				t.Fatalf("Get after the catch-up = %v, %v", r, err)
			}
			// The key-hash index was rewritten from the surviving entries.
			count := func(prefix string) (n int64) {
				it := s.ldb().NewIterator(util.BytesPrefix([]byte(prefix)), nil)
				for it.Next() {
					n++
				}
				it.Release()
				return n
			}
			if e, h := count(entryPrefix), count(hashPrefix); e != h || e != s.Keys() {
				t.Errorf("after the repair: %d entries, %d key-hash index keys, Keys() = %d; want all equal", e, h, s.Keys())
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			cfg.Repair = false
			s = openStore(t, cfg)
			if s.CatchingUp() {
				t.Error("CatchingUp() came back after a restart")
			}
			if r, err := s.Get([]byte("after")); err != nil || r == nil {
				t.Fatalf("Get after a restart = %v, %v", r, err)
			}
		})
	}
}

// TestRepairOnUndamagedStore: Repair on a store that is not damaged changes
// nothing.
func TestRepairOnUndamagedStore(t *testing.T) {
	cfg := damagedStore(t, 10, false)
	cfg.Repair = true
	s := openStore(t, cfg)
	if s.CatchingUp() {
		t.Error("CatchingUp() after Repair of an undamaged store")
	}
	if s.Revision() != 10 {
		t.Errorf("Revision() = %d; want 10", s.Revision())
	}
	if r, err := s.Get([]byte("key00009")); err != nil || r == nil {
		t.Errorf("Get = %v, %v", r, err)
	}
}
