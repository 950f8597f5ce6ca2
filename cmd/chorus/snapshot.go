package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/internal/snapshot"
	maintenancev1 "github.com/chorus-kv/chorus/proto/chorus/maintenance/v1"
)

// newSnapshotCmd is `chorus snapshot save|restore|status`: back a node up,
// build a new node's data folder from a backup, describe a backup.
func newSnapshotCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot save FILE | restore FILE --data-dir DIR | status FILE",
		Short: "back a node up, build a new node from a backup",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("%w: want save FILE, restore FILE --data-dir DIR, or status FILE", errUsage)
		},
	}
	cmd.AddCommand(newSnapshotSaveCmd(cio), newSnapshotRestoreCmd(cio), newSnapshotStatusCmd(cio))
	return cmd
}

func newSnapshotSaveCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "stream a consistent point-in-time copy of a running node's entries to FILE",
		Args:  argsBetween(1, 1, "snapshot save FILE"),
	}
	cf := addClientFlags(cmd)
	// A snapshot of a large store takes longer than one request: no limit
	// unless asked.
	timeout := cmd.Flags().Lookup("timeout")
	_ = timeout.Value.Set("0s")
	timeout.DefValue, timeout.Usage = "0s", "how long the whole snapshot may take (0: no limit)"
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		if cf.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, cf.timeout)
			defer cancel()
		}
		c, err := cf.dial()
		if err != nil {
			return err
		}
		defer c.Close()
		return describeErr(saveSnapshot(ctx, c, args[0], cio.stdout, cio.stderr), cf.endpoint)
	}
	return cmd
}

func saveSnapshot(ctx context.Context, c *client.Client, path string, stdout, stderr io.Writer) error {
	// Written next to FILE and renamed over it once complete and checked, so
	// that FILE is never a partial snapshot.
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".part-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // after the rename, nothing is left to remove
	start := time.Now()
	bar := newProgressBar(stderr, "saving", "entries")
	err = c.Snapshot(ctx, f, func(p client.SnapshotProgress) { bar.update(p.Entries, p.ExpectedEntries, p.Bytes) })
	bar.done()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("save %s: %w (nothing was saved)", path, err)
	}
	elapsed := time.Since(start)
	sum, err := checkSnapshotFile(tmp)
	if err != nil {
		return fmt.Errorf("save %s: the node sent a snapshot that does not check out: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "saved %s: %d entries (%d tombstones), %s, revision %d of node %s, sha256 %x, in %v\n",
		path, sum.entries, sum.tombstones, humanBytes(sum.size), sum.header.GetRevision(), sum.header.GetNodeId(),
		sum.sha256, elapsed.Round(time.Millisecond))
	return err
}

func newSnapshotRestoreCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR",
		Short: "build a new node's data folder (with a new identity) from a snapshot",
		Args:  argsBetween(1, 1, "snapshot restore FILE --data-dir DIR"),
	}
	dataDir := cmd.Flags().String("data-dir", "", "the new node's data folder: must not exist or be empty (required)")
	grace := cmd.Flags().Duration("tombstone-grace", 0, "the cluster's tombstone grace period (default: the source node's, recorded in the snapshot)")
	force := cmd.Flags().Bool("force", false, "restore a snapshot older than the tombstone grace period (keys deleted since may come back; see README)")
	_ = cmd.MarkFlagDirname("data-dir")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *dataDir == "" {
			return fmt.Errorf("%w: --data-dir is required", errUsage)
		}
		file := args[0]
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		bar := newProgressBar(cio.stderr, "restoring", "entries")
		var expected int64
		if sr, err := snapshot.NewReader(f); err == nil {
			expected = sr.Header().GetExpectedEntries()
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		res, err := node.RestoreSnapshot(cmd.Context(), f, node.RestoreConfig{
			DataDir:        *dataDir,
			TombstoneGrace: *grace,
			Force:          *force,
			Progress:       func(n int64) { bar.update(n, expected, 0) },
		})
		bar.done()
		if err != nil {
			return err
		}
		fmt.Fprintf(cio.stdout, "restored %s into %s: %d entries (%d tombstones), %d kept, from node %s at revision %d, taken at %s\n",
			file, *dataDir, res.Entries, res.Tombstones, res.Restored, res.Header.GetNodeId(), res.Header.GetRevision(),
			crdt.Timestamp(res.Header.GetTakenAt()).Time().Format(time.RFC3339))
		_, err = fmt.Fprintf(cio.stdout, "new node id %s: admit it (chorus member add %s) unless the cluster runs with --admission open, then start it with chorus agent --data-dir %s\n",
			res.NodeID, res.NodeID, *dataDir)
		return err
	}
	return cmd
}

func newSnapshotStatusCmd(cio *cmdIO) *cobra.Command {
	return &cobra.Command{
		Use:   "status FILE",
		Short: "print what a snapshot holds, after checking it",
		Args:  argsBetween(1, 1, "snapshot status FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return snapshotStatus(args[0], cio.stdout)
		},
	}
}

func snapshotStatus(file string, stdout io.Writer) error {
	sum, err := checkSnapshotFile(file)
	if err != nil {
		return err
	}
	h := sum.header
	taken := crdt.Timestamp(h.GetTakenAt()).Time()
	grace := time.Duration(h.GetTombstoneGraceMs()) * time.Millisecond
	w := &strings.Builder{}
	fmt.Fprintf(w, "file         %s (%s, format %d)\n", file, humanBytes(sum.size), snapshot.Version)
	fmt.Fprintf(w, "source node  %s (cluster %q, chorus %s)\n", h.GetNodeId(), h.GetCluster(), h.GetVersion())
	fmt.Fprintf(w, "taken at     %s (%s ago)\n", taken.Format(time.RFC3339), time.Since(taken).Round(time.Second))
	fmt.Fprintf(w, "revision     %d\n", h.GetRevision())
	fmt.Fprintf(w, "entries      %d (%d live, %d tombstones)\n", sum.entries, sum.entries-sum.tombstones, sum.tombstones)
	if lc := h.GetLastContact(); lc != 0 {
		fmt.Fprintf(w, "last sync    %s\n", crdt.Timestamp(lc).Time().Format(time.RFC3339))
	}
	if grace > 0 {
		until := taken.Add(grace)
		state := "restorable"
		if time.Now().After(until) {
			state = "older than the grace period: restore refuses it without --force"
		}
		fmt.Fprintf(w, "grace        %v: %s until %s\n", grace, state, until.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "checksum     sha256 %x OK\n", sum.sha256)
	_, err = io.WriteString(stdout, w.String())
	return err
}

// snapshotSummary is what checkSnapshotFile found.
type snapshotSummary struct {
	header              *maintenancev1.SnapshotHeader
	entries, tombstones int64
	size                int64
	sha256              []byte
}

// checkSnapshotFile reads a whole snapshot file and checks its framing,
// order, counts and checksum.
func checkSnapshotFile(path string) (snapshotSummary, error) {
	f, err := os.Open(path)
	if err != nil {
		return snapshotSummary{}, err
	}
	defer f.Close()
	sr, err := snapshot.NewReader(f)
	if err != nil {
		return snapshotSummary{}, fmt.Errorf("%s: %w", path, err)
	}
	for {
		_, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return snapshotSummary{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	t := sr.Trailer()
	return snapshotSummary{header: sr.Header(), entries: t.GetEntries(), tombstones: t.GetTombstones(), size: sr.Offset(), sha256: t.GetSha256()}, nil
}

// progressBar draws progress on a terminal, at most ten times a second, and
// nothing when the output is not a terminal.
type progressBar struct {
	w           io.Writer
	label, unit string
	on          bool
	last        time.Time
	drawn       bool
}

// newProgressBar returns a bar that shows label and counts unit ("entries",
// "keys").
func newProgressBar(w io.Writer, label, unit string) *progressBar {
	return &progressBar{w: w, label: label, unit: unit, on: isTerminal(w)}
}

func (b *progressBar) update(n, total, bytes int64) {
	if !b.on || time.Since(b.last) < 100*time.Millisecond {
		return
	}
	b.last = time.Now()
	b.drawn = true
	fmt.Fprintf(b.w, "\r\033[K%s", progressLine(b.label, b.unit, n, total, bytes, 30))
}

func (b *progressBar) done() {
	if b.drawn {
		fmt.Fprint(b.w, "\r\033[K")
	}
}

// progressLine renders one line of a progress bar of width cells; with
// total unknown (0), the count alone.
func progressLine(label, unit string, n, total, bytes int64, width int) string {
	if total <= 0 {
		line := fmt.Sprintf("%s: %d %s", label, n, unit)
		if bytes > 0 {
			line += ", " + humanBytes(bytes)
		}
		return line
	}
	frac := 0.0
	if total > 0 {
		frac = min(float64(n)/float64(total), 1)
	}
	full := int(frac * float64(width))
	line := fmt.Sprintf("%s [%s%s] %3.0f%% %d/%d %s", label, strings.Repeat("#", full), strings.Repeat(".", width-full), frac*100, n, total, unit)
	if bytes > 0 {
		line += ", " + humanBytes(bytes)
	}
	return line
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
