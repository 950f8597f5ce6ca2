package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/internal/snapshot"
	maintenancev1 "github.com/chorus-kv/chorus/proto/chorus/maintenance/v1"
)

func runSnapshot(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: want save FILE, restore FILE --data-dir DIR, or status FILE", errUsage)
	}
	switch args[0] {
	case "save":
		return runSnapshotSave(ctx, args[1:], stdout, stderr)
	case "restore":
		return runSnapshotRestore(ctx, args[1:], stdout, stderr)
	case "status":
		return runSnapshotStatus(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stderr, "Usage: chorus snapshot save FILE | restore FILE --data-dir DIR | status FILE")
		return flag.ErrHelp
	}
	return fmt.Errorf("%w: unknown snapshot command %q: want save, restore or status", errUsage, args[0])
}

func runSnapshotSave(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("snapshot save", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoint := os.Getenv("CHORUS_ENDPOINT")
	if endpoint == "" {
		endpoint = "127.0.0.1:7379"
	}
	fs.StringVar(&endpoint, "endpoint", endpoint, "host:port of a node's client API (default from $CHORUS_ENDPOINT)")
	timeout := fs.Duration("timeout", 0, "how long the whole snapshot may take (0: no limit)")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: want exactly one FILE", errUsage)
	}
	path := rest[0]
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	c, err := client.Dial(endpoint)
	if err != nil {
		return err
	}
	defer c.Close()
	// Written next to FILE and renamed over it once complete and checked, so
	// that FILE is never a partial snapshot.
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".part-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // after the rename, nothing is left to remove
	start := time.Now()
	bar := newProgressBar(stderr, "saving")
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
	fmt.Fprintf(stdout, "saved %s: %d entries (%d tombstones), %s, revision %d of node %s, sha256 %x, in %v\n",
		path, sum.entries, sum.tombstones, humanBytes(sum.size), sum.header.GetRevision(), sum.header.GetNodeId(),
		sum.sha256, elapsed.Round(time.Millisecond))
	return nil
}

func runSnapshotRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("snapshot restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "the new node's data folder: must not exist or be empty (required)")
	grace := fs.Duration("tombstone-grace", 0, "the cluster's tombstone grace period (default: the source node's, recorded in the snapshot)")
	force := fs.Bool("force", false, "restore a snapshot older than the tombstone grace period (keys deleted since may come back; see README)")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: want exactly one FILE", errUsage)
	}
	if *dataDir == "" {
		return fmt.Errorf("%w: --data-dir is required", errUsage)
	}
	f, err := os.Open(rest[0])
	if err != nil {
		return err
	}
	defer f.Close()
	bar := newProgressBar(stderr, "restoring")
	var expected int64
	if sr, err := snapshot.NewReader(f); err == nil {
		expected = sr.Header().GetExpectedEntries()
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	res, err := node.RestoreSnapshot(ctx, f, node.RestoreConfig{
		DataDir:        *dataDir,
		TombstoneGrace: *grace,
		Force:          *force,
		Progress:       func(n int64) { bar.update(n, expected, 0) },
	})
	bar.done()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s into %s: %d entries (%d tombstones), %d kept, from node %s at revision %d, taken at %s\n",
		rest[0], *dataDir, res.Entries, res.Tombstones, res.Restored, res.Header.GetNodeId(), res.Header.GetRevision(),
		crdt.Timestamp(res.Header.GetTakenAt()).Time().Format(time.RFC3339))
	fmt.Fprintf(stdout, "new node id %s: admit it (chorus member add %s) unless the cluster runs with --open-admission, then start it with chorus agent --data-dir %s\n",
		res.NodeID, res.NodeID, *dataDir)
	return nil
}

func runSnapshotStatus(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("snapshot status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: want exactly one FILE", errUsage)
	}
	sum, err := checkSnapshotFile(rest[0])
	if err != nil {
		return err
	}
	h := sum.header
	taken := crdt.Timestamp(h.GetTakenAt()).Time()
	grace := time.Duration(h.GetTombstoneGraceMs()) * time.Millisecond
	w := &strings.Builder{}
	fmt.Fprintf(w, "file         %s (%s, format %d)\n", rest[0], humanBytes(sum.size), snapshot.Version)
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
	w     io.Writer
	label string
	on    bool
	last  time.Time
	drawn bool
}

func newProgressBar(w io.Writer, label string) *progressBar {
	return &progressBar{w: w, label: label, on: isTerminal(w)}
}

func (b *progressBar) update(n, total, bytes int64) {
	if !b.on || time.Since(b.last) < 100*time.Millisecond {
		return
	}
	b.last = time.Now()
	b.drawn = true
	fmt.Fprintf(b.w, "\r%s", progressLine(b.label, n, total, bytes, 30))
}

func (b *progressBar) done() {
	if b.drawn {
		fmt.Fprint(b.w, "\r\033[K")
	}
}

// progressLine renders one line of a progress bar of width cells.
func progressLine(label string, n, total, bytes int64, width int) string {
	frac := 0.0
	if total > 0 {
		frac = min(float64(n)/float64(total), 1)
	}
	full := int(frac * float64(width))
	line := fmt.Sprintf("%s [%s%s] %3.0f%% %d/%d entries", label, strings.Repeat("#", full), strings.Repeat(".", width-full), frac*100, n, total)
	if bytes > 0 {
		line += ", " + humanBytes(bytes)
	}
	return line
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
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
