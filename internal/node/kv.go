package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/grpc/codes"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/apierr"
	kvv1 "github.com/chorus-kv/chorus/proto/chorus/kv/v1"
	"github.com/chorus-kv/chorus/watch"
)

// kvServer serves kvv1.KVServiceServer from the node's store and hub.
type kvServer struct {
	kvv1.UnimplementedKVServiceServer
	node *Node
}

func (s *kvServer) header() *kvv1.Header {
	return &kvv1.Header{Revision: s.node.store.Revision(), NodeId: s.node.ID()}
}

func (s *kvServer) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	if err := checkMinReplicas(req.GetMinReplicas()); err != nil {
		return nil, err
	}
	if err := CheckWritable(req.GetKey()); err != nil {
		return nil, err
	}
	c, err := s.node.store.Put(ctx, req.GetKey(), req.GetValue())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.replicate(ctx, c, req.GetMinReplicas()); err != nil {
		return nil, err
	}
	if err := s.waitConverged(ctx, c, req.GetWaitConverged()); err != nil {
		return nil, err
	}
	resp := &kvv1.PutResponse{Header: s.header(), Kv: keyValue(&c.Record)}
	if req.GetPrevKv() && c.Prev.Live() {
		resp.PrevKv = keyValue(c.Prev)
	}
	return resp, nil
}

// maxMinReplicas bounds min_replicas: more would only time out.
const maxMinReplicas = 64

// checkMinReplicas rejects a min_replicas over the limit before anything is
// written.
func checkMinReplicas(k uint32) error {
	if k > maxMinReplicas {
		return apierr.New(codes.InvalidArgument, apierr.ReasonBadRequest,
			fmt.Sprintf("min_replicas is %d; the limit is %d (nothing was written)", k, maxMinReplicas), nil)
	}
	return nil
}

// replicate pushes a durable local change to k peers when the client asked
// for min_replicas, and fails with how many confirmed when fewer than k did.
func (s *kvServer) replicate(ctx context.Context, c *store.Change, k uint32) error {
	if k == 0 {
		return nil
	}
	_, err := s.node.Replicator().Push(ctx, []crdt.Entry{c.Record.Entry}, int(k))
	return toStatus(err)
}

// waitConverged waits, when asked, until every live member holds the
// durable local change c, and fails on ctx's deadline naming the members
// that did not confirm it.
func (s *kvServer) waitConverged(ctx context.Context, c *store.Change, wait bool) error {
	if !wait {
		return nil
	}
	// Stop waiting a little before the call's deadline, so that the answer
	// naming the missing members reaches the client before it gives up.
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-min(time.Until(d)/4, 500*time.Millisecond)))
		defer cancel()
	}
	return toStatus(s.node.Convergence().WaitConverged(ctx, c.Record.Origin, c.Record.HLC))
}

func (s *kvServer) Get(ctx context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	hdr := s.header() // before the read: the value is at least this fresh
	if s.node.store.CatchingUp() {
		return nil, toStatus(store.ErrCatchingUp)
	}
	r, err := s.node.store.Get(req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvv1.GetResponse{Header: hdr}
	if r != nil {
		resp.Kv = keyValue(r)
	}
	return resp, nil
}

func (s *kvServer) Delete(ctx context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	if err := checkMinReplicas(req.GetMinReplicas()); err != nil {
		return nil, err
	}
	if err := CheckWritable(req.GetKey()); err != nil {
		return nil, err
	}
	c, err := s.node.store.Delete(ctx, req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.replicate(ctx, c, req.GetMinReplicas()); err != nil {
		return nil, err
	}
	if err := s.waitConverged(ctx, c, req.GetWaitConverged()); err != nil {
		return nil, err
	}
	resp := &kvv1.DeleteResponse{Header: s.header(), Deleted: c.Prev.Live()}
	if req.GetPrevKv() && c.Prev.Live() {
		resp.PrevKv = keyValue(c.Prev)
	}
	return resp, nil
}

func (s *kvServer) Range(ctx context.Context, req *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	opts := store.RangeOptions{Start: req.GetStart(), End: req.GetEnd(), After: req.GetAfter(), KeysOnly: req.GetKeysOnly()}
	if len(req.GetPrefix()) > 0 {
		if len(req.GetStart()) > 0 || len(req.GetEnd()) > 0 {
			return nil, apierr.New(codes.InvalidArgument, apierr.ReasonBadRange,
				"range: give either prefix or start/end, not both", nil)
		}
		// PrefixEnd is nil for a prefix of only 0xff bytes: no upper bound.
		opts.Start, opts.End = req.GetPrefix(), store.PrefixEnd(req.GetPrefix())
	} else if len(opts.End) == 0 {
		opts.End = nil
	}
	if err := checkRangeKeys(s.node.store.Limits(), req); err != nil {
		return nil, toStatus(err)
	}
	if s.node.store.CatchingUp() {
		return nil, toStatus(store.ErrCatchingUp)
	}
	if req.GetLimit() < 0 {
		return nil, apierr.New(codes.InvalidArgument, apierr.ReasonBadRange,
			fmt.Sprintf("range: limit is %d; it must be 0 (the node's page size, %d) or positive (a page holds at most %d keys: a larger limit is lowered to it, and more and next_key lead to the rest)",
				req.GetLimit(), store.DefaultPageLimit, store.MaxPageLimit), nil)
	}
	// A page is bounded in keys and bytes whatever the limit: a larger
	// limit is lowered to MaxPageLimit, as the byte bound may return fewer
	// keys than asked. A client follows more and next_key either way.
	opts.Limit = int(min(req.GetLimit(), store.MaxPageLimit))
	res, err := s.node.store.Range(opts)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvv1.RangeResponse{
		Header:  &kvv1.Header{Revision: res.Revision, NodeId: s.node.ID()},
		Kvs:     make([]*kvv1.KeyValue, len(res.Records)),
		More:    res.More,
		NextKey: res.NextKey,
	}
	for i := range res.Records {
		resp.Kvs[i] = keyValue(&res.Records[i])
	}
	return resp, nil
}

func (s *kvServer) Watch(req *kvv1.WatchRequest, stream kvv1.KVService_WatchServer) error {
	if req.GetStartRevision() < 0 {
		return apierr.New(codes.InvalidArgument, apierr.ReasonBadRequest,
			fmt.Sprintf("watch: start_revision is %d; it must be 0 (from now) or a revision", req.GetStartRevision()), nil)
	}
	if err := s.node.store.Limits().CheckKey(req.GetKey()); err != nil && !errors.Is(err, crdt.ErrKeyEmpty) {
		return toStatus(fmt.Errorf("watch: %w", err))
	}
	opts := watch.Options{
		Key:           req.GetKey(),
		Prefix:        req.GetPrefix(),
		StartRevision: req.GetStartRevision(),
		PrevKV:        req.GetPrevKv(),
	}
	if req.GetConverged() {
		// Events once every live member holds them (watch.ConvergedWatcher).
		w, err := s.node.hub.WatchConverged(opts, s.node.Convergence(), 0)
		if err != nil {
			return s.endWatch(stream, err)
		}
		return s.serveWatch(stream, w, w.ConvergedRevision)
	}
	w, err := s.node.hub.Watch(opts)
	if err != nil {
		return s.endWatch(stream, err)
	}
	return s.serveWatch(stream, w, nil)
}

// eventSource is what a Watch call serves: a plain or a converged watcher.
type eventSource interface {
	StartedAfter() int64
	Next(context.Context) ([]watch.Event, error)
	Close()
}

// serveWatch sends w's events on stream until either ends, then closes w.
// converged, for a converged watch, gives the resume point each response
// carries (nil for a plain watch).
func (s *kvServer) serveWatch(stream kvv1.KVService_WatchServer, w eventSource, converged func() int64) error {
	defer w.Close()
	convergedRev := func() int64 {
		if converged == nil {
			return 0
		}
		return converged()
	}
	if err := stream.Send(&kvv1.WatchResponse{
		Header:            &kvv1.Header{Revision: w.StartedAfter(), NodeId: s.node.ID()},
		Created:           true,
		ConvergedRevision: convergedRev(),
	}); err != nil {
		return err
	}
	ctx := stream.Context()
	for {
		events, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return toStatus(ctx.Err())
			}
			return s.endWatch(stream, err)
		}
		resp := &kvv1.WatchResponse{Header: s.header(), Events: make([]*kvv1.Event, len(events)), ConvergedRevision: convergedRev()}
		for i := range events {
			resp.Events[i] = event(&events[i])
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// endWatch tells the client why its watch ends, in a last response (as etcd
// does, with compact_revision for a compacted start) and in the status.
func (s *kvServer) endWatch(stream kvv1.KVService_WatchServer, err error) error {
	resp := &kvv1.WatchResponse{Header: s.header(), Canceled: true, CancelReason: err.Error()}
	var compacted *store.CompactedError
	if errors.As(err, &compacted) {
		resp.CompactRevision = compacted.Oldest
	}
	_ = stream.Send(resp) // the status below says it all if this fails
	return toStatus(err)
}

func (s *kvServer) Status(ctx context.Context, _ *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	lim := s.node.store.Limits()
	state, detail := s.node.JoinState()
	cu := s.node.CatchUp(ctx, true)
	return &kvv1.StatusResponse{
		Header:          s.header(),
		Version:         Version,
		OldestRevision:  s.node.store.OldestRevision(),
		MaxKeyBytes:     int64(lim.MaxKeyBytes),
		MaxValueBytes:   int64(lim.MaxValueBytes),
		MerkleRoot:      s.node.store.MerkleRoot(),
		Keys:            s.node.store.Keys(),
		Tombstones:      s.node.store.Tombstones(),
		JoinState:       string(state),
		JoinDetail:      detail,
		CatchUpState:    string(cu.State),
		CatchUpDetail:   cu.Detail,
		CatchUpReceived: cu.Received,
		CatchUpTotal:    cu.Total,
	}, nil
}

func keyValue(r *store.Record) *kvv1.KeyValue {
	return &kvv1.KeyValue{
		Key:            r.Key,
		Value:          r.Value,
		CreateRevision: r.CreateRevision,
		ModRevision:    r.ModRevision,
		Version:        r.Version,
		Hlc:            uint64(r.HLC),
		Origin:         peer.ID(r.Origin).String(),
	}
}

func event(ev *watch.Event) *kvv1.Event {
	out := &kvv1.Event{Type: kvv1.Event_TYPE_PUT, Kv: keyValue(&ev.Record)}
	if ev.Type == watch.Delete {
		out.Type = kvv1.Event_TYPE_DELETE
	}
	if ev.Prev != nil {
		out.PrevKv = keyValue(ev.Prev)
	}
	out.ConvergedHlc = uint64(ev.Converged)
	return out
}

// checkRangeKeys bounds the keys of a Range by the node's key limit, which
// no stored key passes: prefix, start and after at most MaxKeyBytes, end at
// most one byte more (a key followed by 0x00 ends a range just after it).
func checkRangeKeys(lim crdt.Limits, req *kvv1.RangeRequest) error {
	for _, f := range []struct {
		what  string
		key   []byte
		limit int
	}{
		{"range prefix", req.GetPrefix(), lim.MaxKeyBytes},
		{"range start", req.GetStart(), lim.MaxKeyBytes},
		{"range after", req.GetAfter(), lim.MaxKeyBytes},
		{"range end", req.GetEnd(), lim.MaxKeyBytes + 1},
	} {
		if len(f.key) > f.limit {
			return &crdt.LimitError{Err: crdt.ErrKeyTooLarge, What: f.what, Size: len(f.key), Limit: f.limit}
		}
	}
	return nil
}
