package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	maintenancev1 "github.com/chorus-kv/chorus/proto/chorus/maintenance/v1"
)

// SnapshotProgress is reported while a snapshot streams.
type SnapshotProgress struct {
	// Bytes received so far.
	Bytes int64
	// Entries received so far, and about how many the snapshot holds.
	Entries, ExpectedEntries int64
}

// Snapshot streams a consistent point-in-time copy of the node's entries, in
// the snapshot file format, to w. progress, if not nil, is called after each
// chunk. The node keeps taking writes meanwhile. The caller should check the
// file (chorus snapshot status) before relying on it: Snapshot copies bytes
// and does not decode them.
func (c *Client) Snapshot(ctx context.Context, w io.Writer, progress func(SnapshotProgress)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := maintenancev1.NewMaintenanceServiceClient(c.conn).Snapshot(ctx, &maintenancev1.SnapshotRequest{})
	if err != nil {
		return fromStatus("snapshot", err)
	}
	var p SnapshotProgress
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fromStatus("snapshot", err)
		}
		if _, err := w.Write(resp.GetChunk()); err != nil {
			return fmt.Errorf("chorus: snapshot: write: %w", err)
		}
		p.Bytes += int64(len(resp.GetChunk()))
		p.Entries, p.ExpectedEntries = resp.GetEntries(), resp.GetExpectedEntries()
		if progress != nil {
			progress(p)
		}
	}
}
