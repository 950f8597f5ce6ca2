package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/crdtpb"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/snapshot"
	"github.com/chorus-kv/chorus/p2p"
	maintenancev1 "github.com/chorus-kv/chorus/proto/chorus/maintenance/v1"
)

// ErrSnapshotTooOld is returned by RestoreSnapshot for a snapshot older
// than the tombstone grace period, unless forced: see its doc.
var ErrSnapshotTooOld = errors.New("node: the snapshot is older than the tombstone grace period")

// ErrDataDirNotEmpty is returned by RestoreSnapshot when the data folder
// already holds something.
var ErrDataDirNotEmpty = errors.New("node: the data folder to restore into is not empty")

// RestoreConfig configures RestoreSnapshot.
type RestoreConfig struct {
	// DataDir is the new node's data folder. It must not exist or be empty.
	// Required.
	DataDir string
	// TombstoneGrace is the cluster's grace period. Default: the one the
	// source node had (in the snapshot's header), else 24 h.
	TombstoneGrace time.Duration
	// Force restores a snapshot older than TombstoneGrace (see
	// ErrSnapshotTooOld).
	Force bool
	// Now is the wall clock. Default time.Now.
	Now func() time.Time
	// Progress, if set, is called with the entries read so far, now and then.
	Progress func(entries int64)
}

// RestoreResult says what RestoreSnapshot built.
type RestoreResult struct {
	// NodeID is the new node's peer id: the other members must admit it
	// (chorus member add) unless the cluster runs with open admission.
	NodeID string
	// Header is the snapshot's header.
	Header *maintenancev1.SnapshotHeader
	// Entries and Tombstones are what the file held; Restored how many
	// entries the new store took (tombstones already past the grace period
	// are dropped).
	Entries, Tombstones, Restored int64
	// LastContact is the new store's last contact: the snapshot's time, or
	// the source's last sync if older.
	LastContact crdt.Timestamp
}

// restoreBatch is how many entries share one write while restoring.
const restoreBatch = 4096

// RestoreSnapshot builds a new node's data folder from a snapshot file read
// from r: a new identity, and every entry with its HLC and origin, so that
// the node serves them alone and converges with the cluster through
// anti-entropy (newer writes and deletes made since the snapshot win there
// by their HLC). The folder is built next to DataDir and renamed into place
// only once the whole file was read and its checksum matched: a truncated or
// corrupted file leaves nothing behind.
//
// Tombstones are kept only for the grace period; after it, a peer purges
// them, and a snapshot taken before a delete but restored after its
// tombstone was purged would bring the deleted key back. So a snapshot
// older than the grace period is refused (ErrSnapshotTooOld) unless forced;
// and the new store's last contact is the snapshot's time (or the source's
// last sync, if older), so that peers which purged tombstones since then
// refuse to sync with it (STALE_NODE) rather than take the keys back.
func RestoreSnapshot(ctx context.Context, r io.Reader, cfg RestoreConfig) (_ RestoreResult, err error) {
	if cfg.DataDir == "" {
		return RestoreResult{}, errors.New("node: restore: the data folder is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TombstoneGrace < 0 {
		return RestoreResult{}, fmt.Errorf("node: restore: the tombstone grace period is %v; it must not be negative", cfg.TombstoneGrace)
	}
	sr, err := snapshot.NewReader(r)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("node: restore: %w", err)
	}
	h := sr.Header()
	res := RestoreResult{Header: h}
	grace := cfg.TombstoneGrace
	if grace == 0 {
		grace = time.Duration(h.GetTombstoneGraceMs()) * time.Millisecond
	}
	if grace <= 0 {
		grace = store.DefaultTombstoneGrace
	}
	takenAt := crdt.Timestamp(h.GetTakenAt())
	if err := checkSnapshotAge(takenAt.Time(), cfg.Now(), grace, cfg.Force); err != nil {
		return res, err
	}
	if err := checkEmptyDir(cfg.DataDir); err != nil {
		return res, err
	}
	parent := filepath.Dir(filepath.Clean(cfg.DataDir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return res, fmt.Errorf("node: restore: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(cfg.DataDir)+".restoring-")
	if err != nil {
		return res, fmt.Errorf("node: restore: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	id, err := p2p.LoadOrCreateIdentity(tmp)
	if err != nil {
		return res, fmt.Errorf("node: restore: %w", err)
	}
	res.NodeID = id.ID.String()
	limits := crdt.Limits{
		MaxKeyBytes:   max(int(h.GetMaxKeyBytes()), crdt.DefaultMaxKeyBytes),
		MaxValueBytes: max(int(h.GetMaxValueBytes()), crdt.DefaultMaxValueBytes),
	}
	st, err := store.Open(store.Config{
		Path:           filepath.Join(tmp, StoreDir),
		NodeID:         []byte(id.ID),
		Limits:         limits,
		TombstoneGrace: grace,
	})
	if err != nil {
		return res, fmt.Errorf("node: restore: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("node: restore: %w", cerr)
		}
	}()
	batch := make([]crdt.Entry, 0, restoreBatch)
	flush := func() error {
		changes, err := st.ApplyBuffered(ctx, batch)
		if err != nil {
			return fmt.Errorf("node: restore: %w", err)
		}
		res.Restored += int64(len(changes))
		batch = batch[:0]
		if cfg.Progress != nil {
			cfg.Progress(res.Entries)
		}
		return nil
	}
	for {
		e, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("node: restore: %w (nothing was restored)", err)
		}
		res.Entries++
		if e.GetTombstone() {
			res.Tombstones++
		}
		batch = append(batch, crdtpb.ToEntry(e))
		if len(batch) == restoreBatch {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	res.LastContact = takenAt
	if lc := crdt.Timestamp(h.GetLastContact()); lc != 0 && lc < res.LastContact {
		res.LastContact = lc
	}
	if err := st.RestoreContact(res.LastContact); err != nil {
		return res, fmt.Errorf("node: restore: %w", err)
	}
	if err := st.Close(); err != nil {
		return res, fmt.Errorf("node: restore: %w", err)
	}
	// An empty DataDir was checked above; os.Remove removes only an empty one.
	if err := os.Remove(cfg.DataDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("node: restore: %w", err)
	}
	if err := os.Rename(tmp, cfg.DataDir); err != nil {
		return res, fmt.Errorf("node: restore: move the restored folder into place: %w", err)
	}
	return res, nil
}

// checkSnapshotAge refuses a snapshot taken more than grace before now,
// unless forced.
func checkSnapshotAge(takenAt, now time.Time, grace time.Duration, force bool) error {
	age := now.Sub(takenAt)
	if age <= grace || force {
		return nil
	}
	return fmt.Errorf("%w: it was taken at %s, %s ago, and the grace period is %v. "+
		"Peers purge tombstones after the grace period, so keys deleted since the snapshot could come back; "+
		"the restored node's peers that purged tombstones since then will also refuse to sync with it (STALE_NODE). "+
		"Take a newer snapshot, or, to serve this one's keys anyway, pass --force",
		ErrSnapshotTooOld, takenAt.UTC().Format(time.RFC3339), age.Round(time.Second), grace)
}

// checkEmptyDir accepts a folder that does not exist or is empty.
func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: restore: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("%w: %s holds %d files; restore into a new folder", ErrDataDirNotEmpty, dir, len(entries))
	}
	return nil
}
