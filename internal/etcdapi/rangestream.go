package etcdapi

import (
	"bytes"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
)

// initialStreamChunk is the number of keys in RangeStream's first chunk,
// etcd's value; later chunks grow or shrink to land near MaxRequestBytes.
const initialStreamChunk = 10

// RangeStream serves a Range as a stream of chunks, with etcd 3.7's
// semantics: every chunk is read at one revision (the request's, or the
// current one when the stream starts), the chunks' Kvs are disjoint and in
// key order, and only the last chunk carries the header, More and Count
// (every key of the range, as Range counts). A count_only request gets one
// message. Sort orders other than key order and the min/max revision
// filters answer Unimplemented, as in etcd.
func (k *kvServer) RangeStream(req *pb.RangeRequest, stream grpc.ServerStreamingServer[pb.RangeStreamResponse]) error {
	return toGRPC(k.s.rangeStream(req, stream))
}

func (s *Server) rangeStream(req *pb.RangeRequest, stream grpc.ServerStreamingServer[pb.RangeStreamResponse]) error {
	if s.store.CatchingUp() {
		return store.ErrCatchingUp
	}
	if err := checkRange(req, s.store.Limits()); err != nil {
		return err
	}
	if !(req.SortOrder == pb.RangeRequest_NONE || (req.SortTarget == pb.RangeRequest_KEY && req.SortOrder == pb.RangeRequest_ASCEND)) {
		return status.Errorf(codes.Unimplemented, "RangeStream does not support custom sort orders")
	}
	if req.MinModRevision != 0 || req.MaxModRevision != 0 || req.MinCreateRevision != 0 || req.MaxCreateRevision != 0 {
		return status.Errorf(codes.Unimplemented, "RangeStream does not support revision filters")
	}
	if req.CountOnly {
		resp, err := s.rangeKeys(req, nil) // count_only: no key-value held
		if err != nil {
			return err
		}
		return stream.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{Header: resp.Header, Count: resp.Count}})
	}
	// The revision every chunk is read at, checked as Range checks it. The
	// header carries the revision current when the stream started, as
	// Range's header does (and etcd's stream's).
	cur := s.store.Revision()
	at := etcdRev(cur)
	if req.Revision > 0 {
		if req.Revision > at {
			return rpctypes.ErrGRPCFutureRev
		}
		if req.Revision < s.compactRevision() {
			return rpctypes.ErrGRPCCompacted
		}
		at = req.Revision
	}
	total := req.Limit
	if total == 0 {
		total = math.MaxInt64
	}
	chunk := min(int64(initialStreamChunk), total)
	sp := spanOf(req.Key, req.RangeEnd)
	var sent int64
	for {
		recs, rest, err := s.scanAt(sp, storeRev(at), int(chunk), false)
		if err != nil {
			return err
		}
		out := &pb.RangeResponse{}
		for _, r := range recs {
			if req.KeysOnly {
				r.Value = nil
			}
			out.Kvs = append(out.Kvs, s.keyValue(r))
		}
		sent += int64(len(recs))
		more := rest > 0
		done := !more || sent == total
		if done {
			out.Header = s.header(cur)
			out.More = more
			out.Count = sent
			if more {
				next := keySpan{start: append(bytes.Clone(recs[len(recs)-1].Key), 0), end: sp.end}
				_, n, err := s.scanAt(next, storeRev(at), 0, true)
				if err != nil {
					return err
				}
				out.Count += int64(n)
			}
		}
		if err := stream.Send(&pb.RangeStreamResponse{RangeResponse: out}); err != nil {
			return err
		}
		if done {
			return nil
		}
		sp = keySpan{start: append(bytes.Clone(recs[len(recs)-1].Key), 0), end: sp.end}
		chunk = min(nextChunk(chunk, proto.Size(out), MaxRequestBytes), total-sent)
	}
}

// nextChunk is etcd's chunk sizing: double a chunk well under the target
// size, halve one well over it, at least one key.
func nextChunk(last int64, size, target int) int64 {
	switch {
	case size < target/2:
		last *= 2
	case size > target*2:
		last /= 2
	}
	return max(last, 1)
}

// checkRange validates what Range and RangeStream share.
func checkRange(req *pb.RangeRequest, lim crdt.Limits) error {
	if len(req.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if err := checkKeyRange(lim, "range", req.Key, req.RangeEnd); err != nil {
		return err
	}
	if req.Limit < 0 {
		return status.Errorf(codes.InvalidArgument, "chorus: range limit is %d; it must be 0 (no limit) or positive", req.Limit)
	}
	if req.Revision < 0 {
		return status.Errorf(codes.InvalidArgument, "chorus: range revision is %d; it must be 0 (current) or positive", req.Revision)
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(req.SortOrder)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(req.SortTarget)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

// scanAt returns the first keep live records of sp (all of them when keep
// is 0) as they were at store revision rev, and how many live keys of sp
// follow them; with countOnly, only that count (of every key). It reads the
// current state when every page of it is at rev (nothing changed since),
// else rebuilds the state at rev from the change log (recordsAt). Without
// countOnly, the current read stops one key after keep: rest is then 0 or 1
// (more or not); the rebuilt read counts them all.
func (s *Server) scanAt(sp keySpan, rev int64, keep int, countOnly bool) (recs []*store.Record, rest int, err error) {
	if !sp.single && sp.end != nil && bytes.Compare(sp.start, sp.end) >= 0 {
		return nil, 0, nil
	}
	if s.store.Revision() == rev {
		opts := store.RangeOptions{Start: sp.start, End: sp.end, Limit: store.MaxPageLimit, KeysOnly: countOnly}
		if sp.single {
			opts.End = append(bytes.Clone(sp.start), 0)
		}
		consistent := true
	pages:
		for {
			res, err := s.store.Range(opts)
			if err != nil {
				return nil, 0, err
			}
			if res.Revision != rev {
				consistent = false // a change landed since rev: rebuild
				break
			}
			for i := range res.Records {
				if !countOnly && (keep == 0 || len(recs) < keep) {
					recs = append(recs, &res.Records[i])
					continue
				}
				rest++
				if !countOnly {
					break pages // one past keep: there is more
				}
			}
			if !res.More {
				break
			}
			opts.After = res.NextKey
		}
		if consistent {
			return recs, rest, nil
		}
		recs, rest = nil, 0
	}
	all, _, err := s.recordsAt(sp, rev)
	if err != nil {
		return nil, 0, err
	}
	if countOnly {
		return nil, len(all), nil
	}
	if keep == 0 || keep >= len(all) {
		return all, 0, nil
	}
	return all[:keep], len(all) - keep, nil
}

// checkKeyRange bounds the keys of a request by the node's key limit, which
// no stored key passes: the key at most MaxKeyBytes, the range end at most
// one byte more (a key followed by 0x00 ends a range just after that key).
func checkKeyRange(lim crdt.Limits, what string, key, rangeEnd []byte) error {
	if len(key) > lim.MaxKeyBytes {
		return &crdt.LimitError{Err: crdt.ErrKeyTooLarge, What: what + " key", Size: len(key), Limit: lim.MaxKeyBytes}
	}
	if len(rangeEnd) > lim.MaxKeyBytes+1 {
		return &crdt.LimitError{Err: crdt.ErrKeyTooLarge, What: what + " range_end", Size: len(rangeEnd), Limit: lim.MaxKeyBytes + 1}
	}
	return nil
}
