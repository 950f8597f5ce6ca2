package faultstorage

import (
	"errors"
	"io"
	"os"
	"testing"

	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"
)

var (
	journal1 = storage.FileDesc{Type: storage.TypeJournal, Num: 1}
	table2   = storage.FileDesc{Type: storage.TypeTable, Num: 2}
)

func write(t *testing.T, w storage.Writer, s string) {
	t.Helper()
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatalf("Write(%q): %v", s, err)
	}
}

func contents(t *testing.T, s *Storage, fd storage.FileDesc) (string, error) {
	t.Helper()
	r, err := s.Open(fd)
	if err != nil {
		return "", err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	return string(b), err
}

// TestCrashKeepsWhatWasSynced checks the durability model: a crash cuts each
// file to its last synced length and drops files never synced.
func TestCrashKeepsWhatWasSynced(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes func(t *testing.T, w storage.Writer)
		want   string // after the crash; "" with gone
		gone   bool
	}{
		{"never synced", func(t *testing.T, w storage.Writer) { write(t, w, "abc") }, "", true},
		{"synced", func(t *testing.T, w storage.Writer) {
			write(t, w, "abc")
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
		}, "abc", false},
		{"written after the sync", func(t *testing.T, w storage.Writer) {
			write(t, w, "abc")
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			write(t, w, "def")
		}, "abc", false},
		{"synced empty", func(t *testing.T, w storage.Writer) {
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			write(t, w, "abc")
		}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			w, err := s.Create(journal1)
			if err != nil {
				t.Fatal(err)
			}
			tc.writes(t, w)
			after := s.Crash()
			got, err := contents(t, after, journal1)
			if tc.gone {
				if !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("after the crash the file reads %q, %v; want it gone", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("after the crash the file reads %q, %v; want %q", got, err, tc.want)
			}
			// The crashed storage and its handles are dead.
			if _, err := w.Write([]byte("x")); !errors.Is(err, ErrCrashed) {
				t.Errorf("Write on the crashed storage = %v; want ErrCrashed", err)
			}
			if _, err := s.List(storage.TypeAll); !errors.Is(err, ErrCrashed) {
				t.Errorf("List on the crashed storage = %v; want ErrCrashed", err)
			}
			if s.BootID() == after.BootID() {
				t.Errorf("the boot id did not change with the crash: %q", s.BootID())
			}
		})
	}
}

// TestFaults checks that a fault hits only its operation on its file types,
// that a failed Write writes nothing and a failed Sync makes nothing
// durable, and that Heal ends the faults.
func TestFaults(t *testing.T) {
	s := New()
	j, err := s.Create(journal1)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := s.Create(table2)
	if err != nil {
		t.Fatal(err)
	}
	write(t, j, "a")
	s.Fail(Write, storage.TypeJournal)
	s.Fail(Sync, storage.TypeJournal)
	if _, err := j.Write([]byte("b")); !errors.Is(err, ErrInjected) {
		t.Errorf("journal Write = %v; want ErrInjected", err)
	}
	if err := j.Sync(); !errors.Is(err, ErrInjected) {
		t.Errorf("journal Sync = %v; want ErrInjected", err)
	}
	write(t, tb, "t") // other types are not hit
	if err := tb.Sync(); err != nil {
		t.Errorf("table Sync = %v; want no fault", err)
	}
	if got := s.Injected(); got != 2 { // before the short write
		t.Errorf("Injected() = %d; want 2", got)
	}
	if got, err := contents(t, s, journal1); err != nil || got != "a" {
		t.Errorf("journal reads %q, %v; want %q (the failed Write wrote nothing)", got, err, "a")
	}
	if synced, written, _ := s.Durable(journal1); synced != 0 || written != 1 {
		t.Errorf("journal durable %d of %d bytes; want 0 of 1 (the failed Sync made nothing durable)", synced, written)
	}
	s.Heal()
	s.Fail(ShortWrite, storage.TypeJournal)
	if n, err := j.Write([]byte("xyzw")); n != 2 || !errors.Is(err, ErrInjected) {
		t.Errorf("journal ShortWrite = %d, %v; want 2, ErrInjected", n, err)
	}
	if got, err := contents(t, s, journal1); err != nil || got != "axy" {
		t.Errorf("journal reads %q, %v; want %q (half the short write)", got, err, "axy")
	}
	s.Heal()
	write(t, j, "b")
	if err := j.Sync(); err != nil {
		t.Errorf("Sync after Heal = %v", err)
	}
	if synced, written, _ := s.Durable(journal1); synced != 4 || written != 4 {
		t.Errorf("journal durable %d of %d bytes after Heal; want 4 of 4", synced, written)
	}
}

// TestLevelDBSyncsItsJournalOnSyncedWrites checks what the store relies on
// in goleveldb: a write with WriteOptions.Sync calls Sync on the journal's
// storage writer (so it is durable when Write returns), and a write without
// it leaves the journal unsynced (lost in a crash).
func TestLevelDBSyncsItsJournalOnSyncedWrites(t *testing.T) {
	s := New()
	db, err := leveldb.Open(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	journal := func() storage.FileDesc {
		fds, err := s.List(storage.TypeJournal)
		if err != nil || len(fds) != 1 {
			t.Fatalf("journals: %v, %v; want one", fds, err)
		}
		return fds[0]
	}
	if err := db.Put([]byte("a"), []byte("1"), &opt.WriteOptions{Sync: true}); err != nil {
		t.Fatal(err)
	}
	if synced, written, _ := s.Durable(journal()); synced != written || written == 0 {
		t.Fatalf("after a synced Put the journal has %d of %d bytes durable; want all", synced, written)
	}
	if err := db.Put([]byte("b"), []byte("2"), &opt.WriteOptions{Sync: false}); err != nil {
		t.Fatal(err)
	}
	if synced, written, _ := s.Durable(journal()); synced == written {
		t.Fatalf("after an unsynced Put the journal has all %d bytes durable; want the Put's unsynced", written)
	}
	after := s.Crash()
	_ = db.Close() // on the crashed storage: it may fail, it must return
	db, err = leveldb.Open(after, nil)
	if err != nil {
		t.Fatalf("Open after the crash: %v", err)
	}
	defer db.Close()
	if v, err := db.Get([]byte("a"), nil); err != nil || string(v) != "1" {
		t.Errorf("the synced Put after the crash: %q, %v", v, err)
	}
	if v, err := db.Get([]byte("b"), nil); !errors.Is(err, leveldb.ErrNotFound) {
		t.Errorf("the unsynced Put after the crash: %q, %v; want it lost", v, err)
	}
}
