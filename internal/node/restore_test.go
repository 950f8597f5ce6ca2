package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/snapshot"
	"github.com/chorus-kv/chorus/internal/testutil"
	maintenancev1 "github.com/chorus-kv/chorus/proto/chorus/maintenance/v1"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// readSnapshot decodes a whole snapshot file.
func readSnapshot(t testing.TB, b []byte) (*maintenancev1.SnapshotHeader, []*replicationv1.Entry) {
	t.Helper()
	r, err := snapshot.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out []*replicationv1.Entry
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r.Header(), out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
}

// A snapshot saved while a client writes, restored into a new data folder:
// the restored node alone serves every key of the snapshot with its value,
// HLC and origin and none of its deleted keys; it then joins the source's
// cluster and converges with it, writes made after the snapshot included.
func TestSnapshotRestoreJoinConverge(t *testing.T) {
	nodes, clients, _ := startMeshNodes(t, aeNodeOpts{groups: []int{0}})
	src, c := nodes[0], clients[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range 300 {
		if _, err := c.Put(ctx, fmt.Sprintf("/base/%03d", i), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 300; i += 10 {
		if _, err := c.Delete(ctx, fmt.Sprintf("/base/%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// A writer puts /load/N in order, each acknowledged before the next.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var acked []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := fmt.Sprintf("/load/%06d", i)
			if _, err := c.Put(ctx, k, []byte("x")); err != nil {
				t.Errorf("Put(%s): %v", k, err)
				return
			}
			acked = append(acked, k)
		}
	}()
	testutil.Eventually(t, 30*time.Second, "the writer is under way", func() bool { return src.Store().Revision() > 350 })
	var file bytes.Buffer
	err := c.Snapshot(ctx, &file, nil)
	testutil.Eventually(t, 30*time.Second, "writes after the snapshot", func() bool { return src.Store().Revision() > 420 })
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	h, entries := readSnapshot(t, file.Bytes())
	if h.GetNodeId() != src.ID() || h.GetRevision() < 350 {
		t.Fatalf("header %v; want node %s at revision ≥ 350", h, src.ID())
	}
	// Point in time: the /load/ keys in the snapshot are the first ones the
	// writer wrote, without a hole.
	var load []string
	for _, e := range entries {
		if bytes.HasPrefix(e.GetKey(), []byte("/load/")) {
			load = append(load, string(e.GetKey()))
		}
	}
	if len(load) == 0 || len(load) >= len(acked) {
		t.Fatalf("the snapshot has %d of %d /load/ keys; want some, not all", len(load), len(acked))
	}
	for i, k := range load {
		if k != acked[i] {
			t.Fatalf("the snapshot's /load/ key %d is %s; want %s", i, k, acked[i])
		}
	}

	dir := filepath.Join(t.TempDir(), "restored")
	res, err := RestoreSnapshot(ctx, bytes.NewReader(file.Bytes()), RestoreConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != int64(len(entries)) || res.Tombstones != 30 || res.Restored != res.Entries || res.NodeID == src.ID() {
		t.Fatalf("restore %+v; want %d entries, 30 tombstones, all kept, a new node id", res, len(entries))
	}
	if res.LastContact != crdt.Timestamp(h.GetTakenAt()) && res.LastContact != crdt.Timestamp(h.GetLastContact()) {
		t.Errorf("last contact %v; want the snapshot's time or the source's last sync", res.LastContact)
	}

	// Alone, the restored node serves every key of the snapshot.
	alone, err := Start(Config{DataDir: dir, ListenClient: "127.0.0.1:0", Logger: testutil.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := client.Dial(alone.ClientAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		kv, err := ac.Get(ctx, string(e.GetKey()))
		if e.GetTombstone() {
			if !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("deleted key %s: %v, %v; want not found", e.GetKey(), kv, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Get(%s) on the restored node: %v", e.GetKey(), err)
		}
		if !bytes.Equal(kv.Value, e.GetValue()) || kv.HLC != e.GetHlc() || kv.Origin != src.ID() {
			t.Fatalf("restored %s = %q (hlc %d, origin %s); want %q (hlc %d, origin %s)", e.GetKey(), kv.Value, kv.HLC, kv.Origin, e.GetValue(), e.GetHlc(), src.ID())
		}
	}
	if got := alone.Store().LastContact(); got != res.LastContact {
		t.Errorf("the restored node's last contact is %v; want %v", got, res.LastContact)
	}
	_ = ac.Close()
	if err := alone.Close(); err != nil {
		t.Fatal(err)
	}

	// Admitted and bootstrapped from the source, it converges with it.
	admit(t, src, dir)
	if _, err := c.Put(ctx, "/after/restore", []byte("new")); err != nil {
		t.Fatal(err)
	}
	joined, err := Start(Config{DataDir: dir, ListenClient: "127.0.0.1:0", Bootstrap: src.P2PAddrs(),
		SyncInterval: 300 * time.Millisecond, Logger: testutil.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = joined.Close() })
	testutil.Eventually(t, time.Minute, "the restored node converges with the source", func() bool {
		return converged([]*Node{src, joined})
	})
	if got, want := joined.Store().Keys(), src.Store().Keys(); got != want {
		t.Fatalf("the restored node holds %d keys; the source %d", got, want)
	}
	r, err := joined.Store().Get([]byte("/after/restore"))
	if err != nil || r == nil || string(r.Value) != "new" {
		t.Fatalf("a write made after the snapshot: %v, %v; want it on the restored node", r, err)
	}
}

// snapshotFile writes a snapshot of entries with header h.
func snapshotFile(t testing.TB, h *maintenancev1.SnapshotHeader, entries []*replicationv1.Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := w.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRestoreRefusals(t *testing.T) {
	now := time.Now()
	hlc := func(ago time.Duration) uint64 { return uint64(crdt.NewTimestamp(now.Add(-ago).UnixMilli(), 0)) }
	entries := []*replicationv1.Entry{
		{Key: []byte("/a"), Value: []byte("1"), Hlc: hlc(3 * time.Hour), Origin: []byte("src")},
		{Key: []byte("/b"), Hlc: hlc(2 * time.Hour), Origin: []byte("src"), Tombstone: true},
	}
	fresh := snapshotFile(t, &maintenancev1.SnapshotHeader{NodeId: "src", TakenAt: hlc(time.Hour), TombstoneGraceMs: (24 * time.Hour).Milliseconds()}, entries)
	old := snapshotFile(t, &maintenancev1.SnapshotHeader{NodeId: "src", TakenAt: hlc(25 * time.Hour), TombstoneGraceMs: (24 * time.Hour).Milliseconds()}, entries)
	flipped := bytes.Clone(fresh)
	flipped[bytes.Index(flipped, []byte("/a"))+1] = 'A' // a valid entry, but not the one summed
	cases := []struct {
		name  string
		file  []byte
		cfg   RestoreConfig
		want  error
		empty bool // the data folder exists, empty, before
	}{
		{name: "truncated", file: fresh[:len(fresh)-5], want: snapshot.ErrTruncated},
		{name: "corrupt", file: flipped, want: snapshot.ErrCorrupt},
		{name: "not a snapshot", file: []byte("{}"), want: snapshot.ErrNotSnapshot},
		{name: "older than the grace period", file: old, want: ErrSnapshotTooOld},
		{name: "older than a shorter grace period", file: fresh, cfg: RestoreConfig{TombstoneGrace: 30 * time.Minute}, want: ErrSnapshotTooOld},
		{name: "truncated into an empty folder", file: fresh[:len(fresh)/2], want: snapshot.ErrTruncated, empty: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "data")
			if tc.empty {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			tc.cfg.DataDir = dir
			_, err := RestoreSnapshot(context.Background(), bytes.NewReader(tc.file), tc.cfg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("%v; want %v", err, tc.want)
			}
			left, _ := os.ReadDir(parent)
			if want := map[bool]int{false: 0, true: 1}[tc.empty]; len(left) != want {
				t.Fatalf("the restore left %d files in the parent folder; want %d", len(left), want)
			}
		})
	}
	t.Run("not empty", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := RestoreSnapshot(context.Background(), bytes.NewReader(fresh), RestoreConfig{DataDir: dir}); !errors.Is(err, ErrDataDirNotEmpty) {
			t.Fatalf("%v; want ErrDataDirNotEmpty", err)
		}
	})
	t.Run("forced", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		res, err := RestoreSnapshot(context.Background(), bytes.NewReader(old), RestoreConfig{DataDir: dir, Force: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Entries != 2 || res.Tombstones != 1 || res.Restored != 2 {
			t.Fatalf("%+v; want 2 entries, 1 tombstone, both kept", res)
		}
		if res.LastContact != crdt.Timestamp(hlc(25*time.Hour)) {
			t.Fatalf("last contact %v; want the snapshot's time", res.LastContact)
		}
	})
}

func TestCheckSnapshotAge(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		age   time.Duration
		grace time.Duration
		force bool
		ok    bool
	}{
		{time.Hour, 24 * time.Hour, false, true},
		{24 * time.Hour, 24 * time.Hour, false, true},
		{24*time.Hour + time.Second, 24 * time.Hour, false, false},
		{48 * time.Hour, 24 * time.Hour, true, true},
		{-time.Minute, time.Hour, false, true}, // a clock behind the source's
	} {
		err := checkSnapshotAge(now.Add(-tc.age), now, tc.grace, tc.force)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrSnapshotTooOld)) {
			t.Errorf("age %v, grace %v, force %v: %v; want ok=%v", tc.age, tc.grace, tc.force, err, tc.ok)
		}
	}
}
