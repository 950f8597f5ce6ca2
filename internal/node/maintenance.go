package node

import (
	"context"

	"github.com/chorus-kv/chorus/crdt/crdtpb"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/snapshot"
	maintenancev1 "github.com/chorus-kv/chorus/proto/chorus/maintenance/v1"
)

// maintenanceServer serves maintenancev1.MaintenanceServiceServer.
type maintenanceServer struct {
	maintenancev1.UnimplementedMaintenanceServiceServer
	node *Node
}

// snapshotChunkBytes bounds one SnapshotResponse chunk, well under gRPC's
// default 4 MiB receive limit.
const snapshotChunkBytes = 1 << 20

// Snapshot streams the node's entries from one LevelDB snapshot in the
// snapshot file format. Writes go on meanwhile; a slow client holds the
// LevelDB snapshot (not the writes) until it is done or gone.
func (s *maintenanceServer) Snapshot(_ *maintenancev1.SnapshotRequest, stream maintenancev1.MaintenanceService_SnapshotServer) error {
	ctx := stream.Context()
	st := s.node.store
	out := &chunkSender{stream: stream}
	var w *snapshot.Writer
	err := st.ReadSnapshot(ctx, func(info store.SnapshotInfo) error {
		out.expected = info.Keys
		var err error
		w, err = snapshot.NewWriter(out, &maintenancev1.SnapshotHeader{
			NodeId:           s.node.ID(),
			Cluster:          s.node.cfg.Cluster,
			Revision:         info.Revision,
			TakenAt:          uint64(info.TakenAt),
			LastContact:      uint64(info.LastContact),
			PurgedThrough:    uint64(info.PurgedThrough),
			TombstoneGraceMs: info.TombstoneGraceMillis,
			MaxKeyBytes:      int64(st.Limits().MaxKeyBytes),
			MaxValueBytes:    int64(st.Limits().MaxValueBytes),
			ExpectedEntries:  info.Keys,
			Version:          Version,
		})
		out.w = w
		return err
	}, func(r *store.Record) error {
		return w.Add(crdtpb.FromEntry(&r.Entry))
	})
	if err == nil {
		_, err = w.Close()
	}
	if err != nil {
		if ctx.Err() != nil {
			return toStatus(context.Cause(ctx))
		}
		return toStatus(err)
	}
	return nil
}

// chunkSender is the io.Writer under a snapshot.Writer: each write goes to
// the client as chunks of at most snapshotChunkBytes.
type chunkSender struct {
	stream   maintenancev1.MaintenanceService_SnapshotServer
	w        *snapshot.Writer
	expected int64
}

func (c *chunkSender) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), snapshotChunkBytes)
		var entries int64
		if c.w != nil {
			entries = c.w.Entries()
		}
		if err := c.stream.Send(&maintenancev1.SnapshotResponse{Chunk: p[:n], Entries: entries, ExpectedEntries: c.expected}); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}
