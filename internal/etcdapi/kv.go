package etcdapi

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chorus-kv/chorus/crdt/store"
)

// kvServer serves etcd's KV service.
type kvServer struct {
	pb.UnimplementedKVServer
	s *Server
}

func (k *kvServer) Range(ctx context.Context, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	if expensiveRange(req) {
		release, err := k.s.acquireRead(ctx)
		if err != nil {
			return nil, toGRPC(err)
		}
		defer release()
	}
	resp, err := k.s.rangeKeys(req, newBudget(k.s.cfg.MaxRangeResponseBytes))
	return resp, toGRPC(err)
}

func (k *kvServer) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkPut(req); err != nil {
		return nil, err
	}
	unlock := k.s.locks.lockKeys(req.Key)
	defer unlock()
	x := &txnExec{s: k.s}
	resp, err := x.put(req)
	if err != nil {
		return nil, toGRPC(err)
	}
	if err := x.commit(ctx); err != nil {
		return nil, toGRPC(err)
	}
	resp.Header = x.header()
	return resp, nil
}

func (k *kvServer) DeleteRange(ctx context.Context, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if len(req.Key) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	var unlock func()
	if len(req.RangeEnd) == 0 {
		unlock = k.s.locks.lockKeys(req.Key)
	} else {
		unlock = k.s.locks.lockAll()
	}
	defer unlock()
	x := &txnExec{s: k.s}
	resp, err := x.deleteRange(req)
	if err != nil {
		return nil, toGRPC(err)
	}
	if err := x.commit(ctx); err != nil {
		return nil, toGRPC(err)
	}
	resp.Header = x.header()
	return resp, nil
}

func (k *kvServer) Txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	if expensiveTxn(req) {
		release, err := k.s.acquireRead(ctx)
		if err != nil {
			return nil, toGRPC(err)
		}
		defer release()
	}
	resp, err := k.s.txn(ctx, req)
	return resp, toGRPC(err)
}

// Compact deletes this node's change log below the revision: watches can no
// longer start before it, nor Ranges read before it. Other nodes' logs are
// not touched. As in etcd, a revision at or below the last compaction is
// refused with ErrCompacted and a future one with ErrFutureRev.
func (k *kvServer) Compact(ctx context.Context, req *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	switch cur := etcdRev(k.s.store.Revision()); {
	case req.Revision > cur:
		return nil, rpctypes.ErrGRPCFutureRev
	case req.Revision <= k.s.compactRevision():
		return nil, rpctypes.ErrGRPCCompacted
	}
	// The store keeps the change at store revision C-1 (etcd's C), so a
	// watch can start at the compaction revision, as in etcd.
	if to := storeRev(req.Revision); to > 1 {
		if err := k.s.store.Compact(ctx, to); err != nil {
			return nil, toGRPC(err)
		}
	}
	return &pb.CompactionResponse{Header: k.s.header(k.s.store.Revision())}, nil
}

// checkPut validates a put before anything is locked or written.
func checkPut(req *pb.PutRequest) error {
	if len(req.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if n := len(req.Key) + len(req.Value); n > MaxRequestBytes {
		return rpctypes.ErrGRPCRequestTooLarge
	}
	if req.IgnoreValue && len(req.Value) != 0 {
		return rpctypes.ErrGRPCValueProvided
	}
	if req.IgnoreLease && req.Lease != 0 {
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

// keySpan is the keys a request selects: one key (end nil), or [start, end)
// with end nil meaning no upper bound when all is set (range_end "\x00").
type keySpan struct {
	start, end []byte
	single     bool
}

func spanOf(key, rangeEnd []byte) keySpan {
	switch {
	case len(rangeEnd) == 0:
		return keySpan{start: key, single: true}
	case len(rangeEnd) == 1 && rangeEnd[0] == 0:
		return keySpan{start: key} // every key from key on
	}
	return keySpan{start: key, end: rangeEnd}
}

func (sp keySpan) contains(key []byte) bool {
	if sp.single {
		return bytes.Equal(key, sp.start)
	}
	return bytes.Compare(key, sp.start) >= 0 && (sp.end == nil || bytes.Compare(key, sp.end) < 0)
}

// forEach calls fn with every live key of the span, in key order, reading
// the store a page at a time. It returns the revision of the first page.
func (s *Server) forEach(sp keySpan, keysOnly bool, fn func(*store.Record) (bool, error)) (int64, error) {
	if sp.single {
		rev := s.store.Revision() // before the read: the value is at least this fresh
		r, err := s.store.Get(sp.start)
		if err != nil || r == nil {
			return rev, err
		}
		if keysOnly {
			r.Value = nil
		}
		_, err = fn(r)
		return rev, err
	}
	if sp.end != nil && bytes.Compare(sp.start, sp.end) >= 0 {
		return s.store.Revision(), nil // an empty range, as in etcd
	}
	opts := store.RangeOptions{Start: sp.start, End: sp.end, Limit: store.MaxPageLimit, KeysOnly: keysOnly}
	rev := int64(-1)
	for {
		res, err := s.store.Range(opts)
		if err != nil {
			return rev, err
		}
		if rev < 0 {
			rev = res.Revision
		}
		for i := range res.Records {
			more, err := fn(&res.Records[i])
			if err != nil || !more {
				return rev, err
			}
		}
		if !res.More {
			return rev, nil
		}
		opts.After = res.NextKey
	}
}

// rangeKeys serves a Range with etcd's semantics: Count is every key of the
// range, Kvs those that pass the filters, sorted, up to Limit. The key-values
// it holds are taken from budget (nil: no bound).
func (s *Server) rangeKeys(req *pb.RangeRequest, budget *respBudget) (*pb.RangeResponse, error) {
	if s.store.CatchingUp() {
		return nil, store.ErrCatchingUp
	}
	if err := checkRange(req, s.store.Limits()); err != nil {
		return nil, err
	}
	sp := spanOf(req.Key, req.RangeEnd)
	each := func(keysOnly bool, fn func(*store.Record) (bool, error)) (int64, error) {
		return s.forEach(sp, keysOnly, fn)
	}
	if req.Revision > 0 {
		if cur := etcdRev(s.store.Revision()); req.Revision > cur {
			return nil, rpctypes.ErrGRPCFutureRev
		} else if req.Revision < s.compactRevision() {
			// etcd refuses every revision below the compaction, even one
			// the change log could still rebuild.
			return nil, rpctypes.ErrGRPCCompacted
		} else if req.Revision < cur {
			// A past revision: the current state with the changes since
			// undone, from the change log.
			recs, rev, err := s.recordsAt(sp, storeRev(req.Revision))
			if err != nil {
				return nil, err
			}
			each = func(keysOnly bool, fn func(*store.Record) (bool, error)) (int64, error) {
				for _, r := range recs {
					if keysOnly {
						r.Value = nil
					}
					if more, err := fn(r); err != nil || !more {
						return rev, err
					}
				}
				return rev, nil
			}
		}
	}
	sortOrder, sortTarget := req.SortOrder, req.SortTarget
	if sortOrder == pb.RangeRequest_NONE {
		sortTarget = pb.RangeRequest_KEY // etcd returns key order then too
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(sortOrder)]; !ok {
		return nil, rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(sortTarget)]; !ok {
		return nil, rpctypes.ErrGRPCInvalidSortOption
	}
	keyOrder := sortTarget == pb.RangeRequest_KEY && sortOrder != pb.RangeRequest_DESCEND
	filtered := req.MinModRevision != 0 || req.MaxModRevision != 0 || req.MinCreateRevision != 0 || req.MaxCreateRevision != 0
	// In key order without filters, the first Limit keys are the answer and
	// the rest are only counted.
	streaming := keyOrder && !filtered
	keysOnly := req.KeysOnly || req.CountOnly
	resp := &pb.RangeResponse{}
	var kvs []*mvccpb.KeyValue
	rev, err := each(keysOnly, func(r *store.Record) (bool, error) {
		resp.Count++
		if req.CountOnly || (streaming && req.Limit > 0 && int64(len(kvs)) >= req.Limit) {
			return true, nil
		}
		if !passes(req, r) {
			return true, nil
		}
		kv := s.keyValue(r)
		if err := budget.take(kv); err != nil {
			return false, err
		}
		kvs = append(kvs, kv)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if !keyOrder {
		sortKVs(kvs, sortTarget, sortOrder)
	}
	if req.Limit > 0 && int64(len(kvs)) > req.Limit {
		kvs = kvs[:req.Limit]
	}
	if !req.CountOnly {
		resp.Kvs = kvs
		resp.More = req.Limit > 0 && resp.Count > int64(len(kvs))
		if filtered {
			resp.More = req.Limit > 0 && int64(len(kvs)) == req.Limit && resp.Count > req.Limit
		}
	}
	resp.Header = s.header(rev)
	return resp, nil
}

func passes(req *pb.RangeRequest, r *store.Record) bool {
	mod, create := etcdRev(r.ModRevision), etcdRev(r.CreateRevision)
	return (req.MinModRevision == 0 || mod >= req.MinModRevision) &&
		(req.MaxModRevision == 0 || mod <= req.MaxModRevision) &&
		(req.MinCreateRevision == 0 || create >= req.MinCreateRevision) &&
		(req.MaxCreateRevision == 0 || create <= req.MaxCreateRevision)
}

func sortKVs(kvs []*mvccpb.KeyValue, target pb.RangeRequest_SortTarget, order pb.RangeRequest_SortOrder) {
	cmp := func(a, b *mvccpb.KeyValue) int {
		switch target {
		case pb.RangeRequest_VERSION:
			return compareInt(a.Version, b.Version)
		case pb.RangeRequest_CREATE:
			return compareInt(a.CreateRevision, b.CreateRevision)
		case pb.RangeRequest_MOD:
			return compareInt(a.ModRevision, b.ModRevision)
		case pb.RangeRequest_VALUE:
			return bytes.Compare(a.Value, b.Value)
		}
		return bytes.Compare(a.Key, b.Key)
	}
	slices.SortStableFunc(kvs, func(a, b *mvccpb.KeyValue) int {
		if order == pb.RangeRequest_DESCEND {
			return cmp(b, a)
		}
		return cmp(a, b)
	})
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// keyValue converts a live record, with the lease it is attached to here.
func (s *Server) keyValue(r *store.Record) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{
		Key:            r.Key,
		Value:          r.Value,
		CreateRevision: etcdRev(r.CreateRevision),
		ModRevision:    etcdRev(r.ModRevision),
		Version:        r.Version,
		Lease:          s.leases.leaseOf(r),
	}
}

// tombstoneKV is the kv of a delete event: the key and the revision.
func tombstoneKV(r *store.Record) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: r.Key, ModRevision: etcdRev(r.ModRevision)}
}

func errTooLarge(what string, n int) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf("%s: %s is %d bytes; the limit is %d", rpctypes.ErrorDesc(rpctypes.ErrGRPCRequestTooLarge), what, n, MaxRequestBytes))
}

// recordsAt returns the live records of sp as they were at store revision
// rev, in key order, and the revision of the current state they were
// derived from: the current state, with every change made after rev undone
// from the change log (each key takes the previous record of its first
// change after rev). It fails with an error wrapping *store.CompactedError
// when the log no longer holds what that needs.
func (s *Server) recordsAt(sp keySpan, rev int64) ([]*store.Record, int64, error) {
	byKey := map[string]*store.Record{}
	cur, err := s.forEach(sp, false, func(r *store.Record) (bool, error) {
		byKey[string(r.Key)] = r
		return true, nil
	})
	if err != nil {
		return nil, 0, err
	}
	// Every change after rev is undone, up to the end of the log as read
	// now, after the state: the state's pages were read at different
	// revisions, and a change the state read missed is undone all the same
	// (the key takes the record it had at rev either way).
	undone := map[string]bool{}
	_, err = s.store.ReadLog(rev+1, true, func(c *store.Change) error {
		k := string(c.Record.Key)
		if undone[k] || !sp.contains(c.Record.Key) {
			return nil
		}
		undone[k] = true
		switch {
		case !c.PrevLive:
			delete(byKey, k)
		case c.Prev == nil:
			// The value before is older than the log keeps.
			return &store.CompactedError{Requested: rev, Oldest: c.PrevModRevision + 1}
		default:
			byKey[k] = c.Prev
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	out := make([]*store.Record, 0, len(byKey))
	for _, r := range byKey {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *store.Record) int { return bytes.Compare(a.Key, b.Key) })
	return out, cur, nil
}
