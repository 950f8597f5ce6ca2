package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goleveldb "github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/storage"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// testWall is the fake wall clock's default reading (2023-11-14T22:13:20Z),
// in milliseconds since the Unix epoch.
const testWall = 1_700_000_000_000

// testMaxOffset is the clock offset bound used with fake wall clocks.
const testMaxOffset = 500 * time.Millisecond

// hangTimeout bounds every wait for something that must not hang. It is long
// because the race detector and a loaded machine slow everything down; a
// healthy run never comes close.
const hangTimeout = 20 * time.Second

var localNode = []byte("node-a")

// wallClock returns a clock reading w, with testMaxOffset.
func wallClock(w *testutil.FakeWall) *crdt.Clock { return crdt.NewClock(w.Now, testMaxOffset) }

// openStore opens a store with cfg, filling in NodeID (localNode) and a clock
// on a fake wall clock at testWall when they are unset, and closes it when the
// test ends.
func openStore(tb testing.TB, cfg Config) *Store {
	tb.Helper()
	if cfg.NodeID == nil {
		cfg.NodeID = localNode
	}
	if cfg.Clock == nil {
		cfg.Clock = wallClock(testutil.NewFakeWall(testWall))
	}
	s, err := Open(cfg)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustPut(tb testing.TB, s *Store, key, value string) *Change {
	tb.Helper()
	c, err := s.Put(context.Background(), []byte(key), []byte(value))
	if err != nil {
		tb.Fatalf("Put(%q): %v", key, err)
	}
	return c
}

func mustDelete(tb testing.TB, s *Store, key string) *Change {
	tb.Helper()
	c, err := s.Delete(context.Background(), []byte(key))
	if err != nil {
		tb.Fatalf("Delete(%q): %v", key, err)
	}
	return c
}

func mustGetEntry(tb testing.TB, s *Store, key []byte) *Record {
	tb.Helper()
	r, err := s.GetEntry(key)
	if err != nil {
		tb.Fatalf("GetEntry(%q): %v", key, err)
	}
	return r
}

// entryEqual compares the replicated part of two entries (nil and empty
// byte slices are equal: the encoding does not tell them apart).
func entryEqual(a, b *crdt.Entry) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.HLC == b.HLC &&
		bytes.Equal(a.Origin, b.Origin) && a.Tombstone == b.Tombstone
}

func recordEqual(a, b *Record) bool {
	if a == nil || b == nil {
		return a == b
	}
	return entryEqual(&a.Entry, &b.Entry) && a.CreateRevision == b.CreateRevision &&
		a.ModRevision == b.ModRevision && a.Version == b.Version
}

func fmtEntry(e *crdt.Entry) string {
	if e == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{key %q value %q hlc %s origin %q tombstone %v}", e.Key, e.Value, e.HLC, e.Origin, e.Tombstone)
}

func fmtRecord(r *Record) string {
	if r == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{%s create %d mod %d version %d}", fmtEntry(&r.Entry), r.CreateRevision, r.ModRevision, r.Version)
}

// within runs fn and fails the test if it does not return within hangTimeout.
func within(tb testing.TB, what string, fn func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(hangTimeout):
		tb.Fatalf("%s did not return within %v", what, hangTimeout)
	}
}

func TestPutGetDeleteRoundTrip(t *testing.T) {
	s := openStore(t, Config{})
	type step struct {
		del          bool
		key, value   string
		wantRev      int64 // the change's revision, also Revision() after it
		wantCreate   int64
		wantVersion  int64
		wantPrevRev  int64 // PrevModRevision; 0 means Prev must be nil
		wantPrevTomb bool  // Prev is a tombstone
		wantVisible  bool
	}
	steps := []step{
		{key: "a", value: "v1", wantRev: 1, wantCreate: 1, wantVersion: 1, wantVisible: true},
		{key: "a", value: "v2", wantRev: 2, wantCreate: 1, wantVersion: 2, wantPrevRev: 1, wantVisible: true},
		{key: "b", value: "x", wantRev: 3, wantCreate: 3, wantVersion: 1, wantVisible: true},
		{key: "a", value: "v3", wantRev: 4, wantCreate: 1, wantVersion: 3, wantPrevRev: 2, wantVisible: true},
		{del: true, key: "a", wantRev: 5, wantPrevRev: 4, wantVisible: true},
		// Deleting a deleted key still writes a new tombstone.
		{del: true, key: "a", wantRev: 6, wantPrevRev: 5, wantPrevTomb: true},
		// A put after a delete re-creates the key at version 1.
		{key: "a", value: "v4", wantRev: 7, wantCreate: 7, wantVersion: 1, wantPrevRev: 6, wantPrevTomb: true, wantVisible: true},
		{key: "a", value: "v5", wantRev: 8, wantCreate: 7, wantVersion: 2, wantPrevRev: 7, wantVisible: true},
		// Deleting an unknown key writes a tombstone with no Prev.
		{del: true, key: "never-written", wantRev: 9},
		{key: "never-written", value: "now", wantRev: 10, wantCreate: 10, wantVersion: 1, wantPrevRev: 9, wantPrevTomb: true, wantVisible: true},
		// An empty value is a live value, not a delete.
		{key: "empty", value: "", wantRev: 11, wantCreate: 11, wantVersion: 1, wantVisible: true},
		{key: "b", value: "y", wantRev: 12, wantCreate: 3, wantVersion: 2, wantPrevRev: 3, wantVisible: true},
	}
	var lastHLC crdt.Timestamp
	for i, st := range steps {
		name := fmt.Sprintf("%d:put(%s)", i, st.key)
		if st.del {
			name = fmt.Sprintf("%d:delete(%s)", i, st.key)
		}
		t.Run(name, func(t *testing.T) {
			before := mustGetEntry(t, s, []byte(st.key))
			var c *Change
			if st.del {
				c = mustDelete(t, s, st.key)
			} else {
				c = mustPut(t, s, st.key, st.value)
			}
			r := &c.Record
			if r.ModRevision != st.wantRev || s.Revision() != st.wantRev {
				t.Fatalf("ModRevision %d, Revision() %d; want both %d", r.ModRevision, s.Revision(), st.wantRev)
			}
			if r.CreateRevision != st.wantCreate || r.Version != st.wantVersion {
				t.Errorf("CreateRevision %d Version %d; want %d %d", r.CreateRevision, r.Version, st.wantCreate, st.wantVersion)
			}
			if r.Tombstone != st.del || !bytes.Equal(r.Key, []byte(st.key)) || !bytes.Equal(r.Value, []byte(st.value)) {
				t.Errorf("record %s; want key %q value %q tombstone %v", fmtRecord(r), st.key, st.value, st.del)
			}
			if !bytes.Equal(r.Origin, localNode) {
				t.Errorf("Origin %q; want %q", r.Origin, localNode)
			}
			if r.HLC <= lastHLC {
				t.Errorf("HLC %s is not above the previous write's %s", r.HLC, lastHLC)
			}
			lastHLC = r.HLC
			if c.PrevModRevision != st.wantPrevRev {
				t.Errorf("PrevModRevision %d; want %d", c.PrevModRevision, st.wantPrevRev)
			}
			switch {
			case st.wantPrevRev == 0 && c.Prev != nil:
				t.Errorf("Prev %s; want nil", fmtRecord(c.Prev))
			case st.wantPrevRev != 0 && c.Prev == nil:
				t.Errorf("Prev nil; want the record at revision %d", st.wantPrevRev)
			case c.Prev != nil:
				if !recordEqual(c.Prev, before) {
					t.Errorf("Prev %s; want the record before the write %s", fmtRecord(c.Prev), fmtRecord(before))
				}
				if c.Prev.Tombstone != st.wantPrevTomb {
					t.Errorf("Prev.Tombstone %v; want %v", c.Prev.Tombstone, st.wantPrevTomb)
				}
			}
			if c.Visible() != st.wantVisible {
				t.Errorf("Visible() %v; want %v", c.Visible(), st.wantVisible)
			}

			got, err := s.Get([]byte(st.key))
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if st.del {
				if got != nil {
					t.Errorf("Get after delete = %s; want nil", fmtRecord(got))
				}
			} else if !recordEqual(got, r) {
				t.Errorf("Get = %s; want %s", fmtRecord(got), fmtRecord(r))
			}
			entry := mustGetEntry(t, s, []byte(st.key))
			if !recordEqual(entry, r) {
				t.Errorf("GetEntry = %s; want %s", fmtRecord(entry), fmtRecord(r))
			}
		})
	}

	t.Run("unknown key", func(t *testing.T) {
		if r, err := s.Get([]byte("nope")); r != nil || err != nil {
			t.Errorf("Get(unknown) = %s, %v; want nil, nil", fmtRecord(r), err)
		}
		if r, err := s.GetEntry([]byte("nope")); r != nil || err != nil {
			t.Errorf("GetEntry(unknown) = %s, %v; want nil, nil", fmtRecord(r), err)
		}
	})
	t.Run("empty value reads back live", func(t *testing.T) {
		r, err := s.Get([]byte("empty"))
		if err != nil || r == nil || len(r.Value) != 0 || r.Tombstone {
			t.Errorf("Get(empty) = %s, %v; want a live record with an empty value", fmtRecord(r), err)
		}
	})
}

func TestLimits(t *testing.T) {
	ctx := context.Background()
	big := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }
	type tc struct {
		name    string
		limits  crdt.Limits
		op      string // put, delete, get, getentry
		key     []byte
		value   []byte
		wantErr error    // nil: must succeed
		wantMsg []string // substrings of the error
		size    int      // LimitError.Size and Limit, when wantErr is a LimitError
		limit   int
	}
	cases := []tc{
		{name: "empty key put", op: "put", key: []byte{}, value: []byte("v"), wantErr: crdt.ErrKeyEmpty},
		{name: "nil key put", op: "put", key: nil, value: []byte("v"), wantErr: crdt.ErrKeyEmpty},
		{name: "empty key delete", op: "delete", key: nil, wantErr: crdt.ErrKeyEmpty},
		{name: "empty key get", op: "get", key: nil, wantErr: crdt.ErrKeyEmpty},
		{name: "empty key getentry", op: "getentry", key: []byte{}, wantErr: crdt.ErrKeyEmpty},
		{name: "key 4096", op: "put", key: big(4096), value: []byte("v")},
		{name: "key 4097 put", op: "put", key: big(4097), value: []byte("v"), wantErr: crdt.ErrKeyTooLarge,
			wantMsg: []string{"4097", "4096"}, size: 4097, limit: 4096},
		{name: "key 4097 delete", op: "delete", key: big(4097), wantErr: crdt.ErrKeyTooLarge,
			wantMsg: []string{"4097", "4096"}, size: 4097, limit: 4096},
		{name: "key 4097 get", op: "get", key: big(4097), wantErr: crdt.ErrKeyTooLarge, size: 4097, limit: 4096},
		{name: "key 4097 getentry", op: "getentry", key: big(4097), wantErr: crdt.ErrKeyTooLarge, size: 4097, limit: 4096},
		{name: "value 1MiB", op: "put", key: []byte("k"), value: big(1 << 20)},
		{name: "value 1MiB+1", op: "put", key: []byte("k"), value: big(1<<20 + 1), wantErr: crdt.ErrValueTooLarge,
			wantMsg: []string{"1048577", "1048576"}, size: 1<<20 + 1, limit: 1 << 20},
		{name: "custom key at limit", limits: crdt.Limits{MaxKeyBytes: 8, MaxValueBytes: 16}, op: "put", key: big(8), value: big(16)},
		{name: "custom key over", limits: crdt.Limits{MaxKeyBytes: 8, MaxValueBytes: 16}, op: "put", key: big(9), value: big(1),
			wantErr: crdt.ErrKeyTooLarge, wantMsg: []string{"9 bytes", "limit is 8"}, size: 9, limit: 8},
		{name: "custom value over", limits: crdt.Limits{MaxKeyBytes: 8, MaxValueBytes: 16}, op: "put", key: big(1), value: big(17),
			wantErr: crdt.ErrValueTooLarge, wantMsg: []string{"17 bytes", "limit is 16"}, size: 17, limit: 16},
		{name: "custom key limit only", limits: crdt.Limits{MaxKeyBytes: 8}, op: "put", key: big(8), value: big(1 << 20)},
		{name: "custom get over", limits: crdt.Limits{MaxKeyBytes: 8}, op: "get", key: big(9), wantErr: crdt.ErrKeyTooLarge, size: 9, limit: 8},
		{name: "custom larger key", limits: crdt.Limits{MaxKeyBytes: 10 << 10}, op: "put", key: big(10 << 10), value: big(1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openStore(t, Config{Limits: c.limits})
			var err error
			switch c.op {
			case "put":
				_, err = s.Put(ctx, c.key, c.value)
			case "delete":
				_, err = s.Delete(ctx, c.key)
			case "get":
				_, err = s.Get(c.key)
			case "getentry":
				_, err = s.GetEntry(c.key)
			}
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("%s: %v; want success", c.op, err)
				}
				if c.op == "put" {
					r, err := s.Get(c.key)
					if err != nil || r == nil || !bytes.Equal(r.Value, c.value) {
						t.Fatalf("Get after Put: %v (record nil: %v); want the value back", err, r == nil)
					}
				}
				return
			}
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("%s: err %v; want errors.Is %v", c.op, err, c.wantErr)
			}
			for _, m := range c.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if c.size != 0 {
				var le *crdt.LimitError
				if !errors.As(err, &le) || le.Size != c.size || le.Limit != c.limit {
					t.Errorf("error %v: want a *crdt.LimitError with Size %d Limit %d", err, c.size, c.limit)
				}
			}
			if s.Revision() != 0 {
				t.Errorf("Revision() = %d after a refused write; want 0", s.Revision())
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{name: "zero config", cfg: Config{}, want: []string{"NodeID is required"}},
		{name: "node id only", cfg: Config{NodeID: []byte("n")}},
		{name: "node id and defaults", cfg: Config{NodeID: []byte("n")}.WithDefaults()},
		{name: "everything wrong", cfg: Config{
			Limits:          crdt.Limits{MaxKeyBytes: -6, MaxValueBytes: -7},
			MaxBatchOps:     -1,
			MaxBatchBytes:   -2,
			QueueDepth:      -3,
			RetainRevisions: -4,
			MaxPageBytes:    -5,
		}, want: []string{
			"NodeID is required",
			"MaxKeyBytes is -6", "MaxValueBytes is -7",
			"MaxBatchOps is -1", "MaxBatchBytes is -2", "QueueDepth is -3",
			"RetainRevisions is -4", "MaxPageBytes is -5",
		}},
		{name: "one negative", cfg: Config{NodeID: []byte("n"), QueueDepth: -1}, want: []string{"QueueDepth is -1"}},
		{name: "storage", cfg: Config{NodeID: []byte("n"), Storage: storage.NewMemStorage(), WriteBufferBytes: 64 << 10, BlockCacheBytes: 64 << 10}},
		{name: "path and storage", cfg: Config{NodeID: []byte("n"), Path: "db", Storage: storage.NewMemStorage()}, want: []string{"both Path"}},
		{name: "negative LevelDB sizes", cfg: Config{NodeID: []byte("n"), WriteBufferBytes: -1, BlockCacheBytes: -2}, want: []string{"WriteBufferBytes is -1", "BlockCacheBytes is -2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil; want an error mentioning %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate error %q does not mention %q", err, w)
				}
			}
			// The same problems make Open fail, before it touches the disk.
			path := filepath.Join(t.TempDir(), "db")
			cfg := c.cfg
			cfg.Path = path
			s, oerr := Open(cfg)
			if oerr == nil {
				s.Close()
				t.Fatalf("Open succeeded; want %v", err)
			}
			if s != nil {
				t.Errorf("Open returned a store with its error")
			}
			for _, w := range c.want {
				if !strings.Contains(oerr.Error(), w) {
					t.Errorf("Open error %q does not mention %q", oerr, w)
				}
			}
			if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("Open with a bad config created %s (stat: %v)", path, serr)
			}
		})
	}

	t.Run("path is a file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(path, []byte("not a leveldb"), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Config{Path: path, NodeID: localNode})
		if err == nil {
			s.Close()
			t.Fatal("Open on a regular file succeeded")
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("Open error %q does not name the path %q", err, path)
		}
	})
}

func TestDurabilityAcrossRestart(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir()
	wall := testutil.NewFakeWall(10_000_000)
	const writers, perWriter = 16, 16
	cfg := Config{Path: path, NodeID: localNode, Clock: wallClock(wall), RetainRevisions: 100}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	last := map[string]*Record{} // every key's latest acknowledged record
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				key := fmt.Sprintf("w%02d/k%02d", w, i)
				c, err := s.Put(ctx, []byte(key), []byte(fmt.Sprintf("value %d %d", w, i)))
				if err != nil {
					errc <- err
					return
				}
				if i%4 == 3 { // delete every fourth key again
					if c, err = s.Delete(ctx, []byte(key)); err != nil {
						errc <- err
						return
					}
				}
				mu.Lock()
				last[key] = &c.Record
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("write: %v", err)
	}
	// Finally an entry from another node, 400 ms ahead of our wall clock: the
	// clock persisted at Close must be above it.
	remote := crdt.Entry{Key: []byte("remote"), Value: []byte("r"), HLC: crdt.NewTimestamp(wall.Now()+400, 7), Origin: []byte("node-b")}
	changes, err := s.Apply(ctx, []crdt.Entry{remote})
	if err != nil || len(changes) != 1 {
		t.Fatalf("Apply = %d changes, %v; want 1", len(changes), err)
	}
	last["remote"] = &changes[0].Record

	wantRev, wantOldest := s.Revision(), s.OldestRevision()
	if want := int64(writers*perWriter + writers*perWriter/4 + 1); wantRev != want {
		t.Fatalf("Revision() = %d; want %d", wantRev, want)
	}
	if wantOldest != wantRev-cfg.RetainRevisions+1 {
		t.Fatalf("OldestRevision() = %d; want %d", wantOldest, wantRev-cfg.RetainRevisions+1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen with a fresh clock whose wall clock is now behind the first run's.
	wall2 := testutil.NewFakeWall(5_000_000)
	cfg.Clock = wallClock(wall2)
	s2 := openStore(t, cfg)
	if s2.Revision() != wantRev || s2.OldestRevision() != wantOldest {
		t.Fatalf("after reopen Revision %d OldestRevision %d; want %d %d", s2.Revision(), s2.OldestRevision(), wantRev, wantOldest)
	}
	var maxHLC crdt.Timestamp
	for key, want := range last {
		got := mustGetEntry(t, s2, []byte(key))
		if !recordEqual(got, want) {
			t.Errorf("after reopen %q = %s; want %s", key, fmtRecord(got), fmtRecord(want))
		}
		maxHLC = max(maxHLC, want.HLC)
	}
	if maxHLC != remote.HLC {
		t.Fatalf("test setup: the remote entry should hold the greatest HLC")
	}
	if s2.Clock().Last() < maxHLC {
		t.Errorf("restored clock %s is below the greatest stored HLC %s", s2.Clock().Last(), maxHLC)
	}
	var n int64
	if _, err := s2.ReadLog(wantOldest, false, func(*Change) error { n++; return nil }); err != nil || n != cfg.RetainRevisions {
		t.Errorf("ReadLog(oldest) after reopen read %d changes, %v; want %d", n, err, cfg.RetainRevisions)
	}

	// New writes get an HLC above everything stored, though the wall clock is
	// behind, and win over the remote entry.
	for _, key := range []string{"remote", "w00/k00", "fresh"} {
		c := mustPut(t, s2, key, "after restart")
		if c.Record.HLC <= maxHLC {
			t.Errorf("Put(%q) after restart got HLC %s; want above %s", key, c.Record.HLC, maxHLC)
		}
		maxHLC = c.Record.HLC
		if got, _ := s2.Get([]byte(key)); got == nil || string(got.Value) != "after restart" {
			t.Errorf("Get(%q) after the new Put = %s", key, fmtRecord(got))
		}
	}
	if s2.Revision() != wantRev+3 {
		t.Errorf("Revision() = %d after 3 new writes; want %d", s2.Revision(), wantRev+3)
	}
}

func TestCloseIdempotentAndRefusesWrites(t *testing.T) {
	ctx := context.Background()
	s, err := Open(Config{NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall))})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", "v")
	for i := range 3 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if _, err := s.Put(ctx, []byte("k"), []byte("v2")); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v; want ErrClosed", err)
	}
	if _, err := s.Delete(ctx, []byte("k")); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Close: %v; want ErrClosed", err)
	}
	e := crdt.Entry{Key: []byte("k"), Value: []byte("r"), HLC: crdt.NewTimestamp(testWall, 0), Origin: []byte("node-b")}
	if _, err := s.Apply(ctx, []crdt.Entry{e}); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close: %v; want ErrClosed", err)
	}
	if s.Revision() != 1 {
		t.Errorf("Revision() = %d; want 1", s.Revision())
	}
}

// TestPutRacingClose checks that a write racing Close either succeeds durably
// or returns ErrClosed, and that nothing hangs.
func TestPutRacingClose(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir()
	started := make(chan struct{})
	var startOnce sync.Once
	var committed atomic.Int64
	cfg := Config{Path: path, NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall)),
		OnCommit: func(cs []Change) {
			if committed.Add(int64(len(cs))) >= 50 {
				startOnce.Do(func() { close(started) })
			}
		}}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const writers = 32
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]int64{} // key -> revision
	var refused atomic.Int64
	errc := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("w%02d-%06d", w, i)
				c, err := s.Put(ctx, []byte(key), []byte("v"))
				if errors.Is(err, ErrClosed) {
					refused.Add(1)
					return
				}
				if err != nil {
					errc <- fmt.Errorf("Put(%q) racing Close: %v; want success or ErrClosed", key, err)
					return
				}
				mu.Lock()
				acked[key] = c.Record.ModRevision
				mu.Unlock()
			}
		})
	}
	within(t, "writers warming up", func() { <-started })
	within(t, "Close racing writers", func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	within(t, "writers after Close", wg.Wait)
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if refused.Load() != writers {
		t.Errorf("%d writers saw ErrClosed; want all %d", refused.Load(), writers)
	}
	t.Logf("%d writes acknowledged before Close", len(acked))

	cfg.OnCommit = nil
	s2 := openStore(t, cfg)
	if s2.Revision() != int64(len(acked)) {
		t.Errorf("Revision() after reopen = %d; want %d (the acknowledged writes)", s2.Revision(), len(acked))
	}
	for key, rev := range acked {
		r, err := s2.Get([]byte(key))
		if err != nil || r == nil || r.ModRevision != rev {
			t.Errorf("acknowledged %q (revision %d) after reopen: %s, %v", key, rev, fmtRecord(r), err)
		}
	}
	if n := len(rangeAll(t, s2, RangeOptions{KeysOnly: true})); n != len(acked) {
		t.Errorf("%d keys stored; want exactly the %d acknowledged", n, len(acked))
	}
}

// waitGoroutines polls until at most n goroutines run, for up to 2 s.
func waitGoroutines(n int) (int, bool) {
	deadline := time.Now().Add(2 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		got := runtime.NumGoroutine()
		if got <= n {
			return got, true
		}
		if time.Now().After(deadline) {
			return got, false
		}
		<-tick.C
	}
}

func TestCloseLeavesNoGoroutine(t *testing.T) {
	for _, name := range []string{"memory", "disk"} {
		t.Run(name, func(t *testing.T) {
			path := ""
			if name == "disk" {
				path = t.TempDir()
			}
			before := runtime.NumGoroutine()
			s, err := Open(Config{Path: path, NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall))})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := range 20 {
						if _, err := s.Put(context.Background(), fmt.Appendf(nil, "%d/%d", w, i), []byte("v")); err != nil {
							t.Errorf("Put: %v", err)
							return
						}
					}
				})
			}
			wg.Wait()
			if _, err := s.Range(RangeOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got, ok := waitGoroutines(before); !ok {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("%d goroutines 2 s after Close; %d before Open\n%s", got, before, buf)
			}
		})
	}
}

func TestContext(t *testing.T) {
	t.Run("already cancelled", func(t *testing.T) {
		s := openStore(t, Config{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for i := range 100 {
			key := fmt.Appendf(nil, "k%03d", i)
			var c *Change
			var err error
			within(t, "Put with a cancelled context", func() { c, err = s.Put(ctx, key, []byte("v")) })
			switch {
			case errors.Is(err, context.Canceled):
			case err != nil:
				t.Fatalf("Put with a cancelled context: %v; want context.Canceled or success", err)
			case c == nil || c.Record.ModRevision == 0:
				t.Fatalf("Put succeeded with change %+v", c)
			}
		}
	})

	// With the committer held inside OnCommit and the queue full, a write
	// with a cancelled context returns at once; one already queued returns
	// when its context ends but still becomes durable.
	t.Run("queue full", func(t *testing.T) {
		entered := make(chan struct{}, 1)
		release := make(chan struct{})
		var once, releaseOnce sync.Once
		doRelease := func() { releaseOnce.Do(func() { close(release) }) }
		defer doRelease() // never leave the committer blocked
		// MaxBatchOps 1: while the writer is held in OnCommit, the committer
		// takes one request into its open batch and holds one more over the
		// cap; the queue (depth 1) is full after that.
		s := openStore(t, Config{QueueDepth: 1, MaxBatchOps: 1, OnCommit: func([]Change) {
			once.Do(func() {
				entered <- struct{}{}
				<-release
			})
		}})
		first := make(chan error, 1)
		go func() {
			_, err := s.Put(context.Background(), []byte("first"), []byte("1"))
			first <- err
		}()
		within(t, "committer entering OnCommit", func() { <-entered })

		ctx2, cancel2 := context.WithCancel(context.Background())
		second := make(chan error, 1)
		go func() {
			_, err := s.Put(ctx2, []byte("second"), []byte("2"))
			second <- err
		}()
		testutil.Eventually(t, hangTimeout, "the second write is taken", func() bool { return s.taken.Load() == 2 })
		fillers := make(chan error, 2)
		for _, k := range []string{"filler1", "filler2"} {
			go func() {
				_, err := s.Put(context.Background(), []byte(k), []byte("f"))
				fillers <- err
			}()
			// White box: the committer holds filler1 over the batch cap, and
			// filler2 sits in the queue, which is then full.
			if k == "filler1" {
				testutil.Eventually(t, hangTimeout, "filler1 is taken", func() bool { return s.taken.Load() == 3 })
			}
		}
		testutil.Eventually(t, hangTimeout, "the queue is full", func() bool { return len(s.queue) == 1 })

		cancelled, cancel3 := context.WithCancel(context.Background())
		cancel3()
		within(t, "Put on a full queue with a cancelled context", func() {
			if _, err := s.Put(cancelled, []byte("third"), []byte("3")); !errors.Is(err, context.Canceled) {
				t.Errorf("Put on a full queue with a cancelled context: %v; want context.Canceled", err)
			}
		})
		deadline, cancel4 := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel4()
		within(t, "Put on a full queue with a deadline", func() {
			if _, err := s.Put(deadline, []byte("fourth"), []byte("4")); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Put on a full queue past its deadline: %v; want context.DeadlineExceeded", err)
			}
		})
		cancel2()
		within(t, "queued Put after its context is cancelled", func() {
			if err := <-second; !errors.Is(err, context.Canceled) {
				t.Errorf("queued Put after cancel: %v; want context.Canceled", err)
			}
		})
		doRelease()
		within(t, "first Put", func() {
			if err := <-first; err != nil {
				t.Errorf("first Put: %v", err)
			}
		})
		for range 2 {
			within(t, "fillers", func() {
				if err := <-fillers; err != nil {
					t.Errorf("filler Put: %v", err)
				}
			})
		}
		// The cancelled but queued write still commits; Close drains the queue.
		within(t, "Close", func() { s.Close() })
		if s.Revision() != 4 {
			t.Errorf("Revision() = %d; want 4 (first, the queued second, two fillers)", s.Revision())
		}
	})
}

// TestCorruptState checks that undecodable stored data is reported as
// ErrCorrupt rather than read as something else.
func TestCorruptState(t *testing.T) {
	t.Run("entry", func(t *testing.T) {
		s := openStore(t, Config{})
		mustPut(t, s, "good", "v")
		if err := s.ldb().Put(entryKey([]byte("bad")), []byte{0xff, 0xff, 0xff}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get([]byte("bad")); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Get of a corrupt entry: %v; want ErrCorrupt", err)
		}
		if _, err := s.Range(RangeOptions{}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Range over a corrupt entry: %v; want ErrCorrupt", err)
		}
		if _, err := s.Put(context.Background(), []byte("bad"), []byte("v")); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Put over a corrupt entry: %v; want ErrCorrupt", err)
		}
		if s.Revision() != 1 {
			t.Errorf("Revision() = %d after a failed batch; want 1", s.Revision())
		}
		// The store still works for other keys.
		if c := mustPut(t, s, "good", "v2"); c.Record.ModRevision != 2 {
			t.Errorf("next Put got revision %d; want 2", c.Record.ModRevision)
		}
	})
	t.Run("log gap", func(t *testing.T) {
		s := openStore(t, Config{})
		for i := range 5 {
			mustPut(t, s, fmt.Sprint(i), "v")
		}
		if err := s.ldb().Delete(logKey(3), nil); err != nil {
			t.Fatal(err)
		}
		last, err := s.ReadLog(1, false, func(*Change) error { return nil })
		if !errors.Is(err, ErrCorrupt) || last != 2 {
			t.Errorf("ReadLog over a gap = %d, %v; want 2, ErrCorrupt", last, err)
		}
	})
	for _, key := range []string{metaRev, metaOldest, metaHLC} {
		t.Run("meta "+key, func(t *testing.T) {
			path := t.TempDir()
			cfg := Config{Path: path, NodeID: localNode, Clock: wallClock(testutil.NewFakeWall(testWall))}
			s, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			mustPut(t, s, "k", "v")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := goleveldb.OpenFile(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Put([]byte(key), []byte{1, 2, 3}, nil); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = Open(cfg)
			if err == nil {
				s.Close()
				t.Fatalf("Open with a 3-byte %s succeeded", key)
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), key) {
				t.Errorf("Open: %v; want ErrCorrupt naming %s", err, key)
			}
			// Open closed LevelDB on failure: it can be opened again.
			db, err = goleveldb.OpenFile(path, nil)
			if err != nil {
				t.Fatalf("LevelDB still locked after a failed Open: %v", err)
			}
			db.Close()
		})
	}
}

// ldb is the store's LevelDB, for tests that read or edit it behind the
// store's back.
func (s *Store) ldb() *goleveldb.DB { return s.db.(levelDB).db }
