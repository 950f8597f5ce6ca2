package etcdapi

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of the server's bounds on what one client may make it hold.
const (
	// DefaultMaxRangeResponseBytes bounds the keys and values one Range (or
	// the Ranges of one Txn) holds; etcd sets no bound (its gRPC send limit
	// is 2 GiB).
	DefaultMaxRangeResponseBytes = 16 << 20
	// DefaultMaxConcurrentRangeReads is how many expensive reads (see
	// expensiveRange) run at once; the others wait.
	DefaultMaxConcurrentRangeReads = 4
	// DefaultMaxWatchesPerStream bounds the watches of one Watch stream.
	// clientv3 puts every watch of a client made with the same context
	// metadata on one stream; kube-apiserver, with its watch cache, opens
	// one per resource type.
	DefaultMaxWatchesPerStream = 1000
)

// cheapLimit is the largest Range limit that is not an expensive read by
// itself.
const cheapLimit = 1000

// kvOverhead is what a key-value costs in a response besides its key and
// value (revisions, version, lease, framing), rounded up.
const kvOverhead = 48

// expensiveRange reports whether a Range may hold many keys at once: a
// range of keys (not one key) that returns them (not count_only) with no
// limit or one above cheapLimit, read at a past revision (rebuilt from the
// whole range), sorted other than by key, or filtered by revision (every
// key of the range is then read before the limit applies). Such reads take
// a slot of the server's read semaphore.
func expensiveRange(req *pb.RangeRequest) bool {
	if len(req.RangeEnd) == 0 || req.CountOnly {
		return false
	}
	sorted := req.SortOrder != pb.RangeRequest_NONE && !(req.SortTarget == pb.RangeRequest_KEY && req.SortOrder == pb.RangeRequest_ASCEND)
	filtered := req.MinModRevision != 0 || req.MaxModRevision != 0 || req.MinCreateRevision != 0 || req.MaxCreateRevision != 0
	return req.Limit == 0 || req.Limit > cheapLimit || req.Revision != 0 || sorted || filtered
}

// expensiveTxn reports whether a Txn holds an expensive Range, in any
// branch, nested or not.
func expensiveTxn(req *pb.TxnRequest) bool {
	for _, branch := range [][]*pb.RequestOp{req.Success, req.Failure} {
		for _, op := range branch {
			switch r := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				if expensiveRange(r.RequestRange) {
					return true
				}
			case *pb.RequestOp_RequestTxn:
				if expensiveTxn(r.RequestTxn) {
					return true
				}
			}
		}
	}
	return false
}

// acquireRead takes a slot of the read semaphore, waiting for one while
// ctx lasts; release gives it back.
func (s *Server) acquireRead(ctx context.Context) (release func(), err error) {
	select {
	case s.reads <- struct{}{}:
		return func() { <-s.reads }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("etcdapi: waiting for one of the %d expensive-read slots (--max-concurrent-range-reads): %w", cap(s.reads), ctx.Err())
	case <-s.done:
		return nil, errStopped
	}
}

// respBudget bounds the key and value bytes a response holds. A nil budget
// bounds nothing.
type respBudget struct {
	left, limit int
}

func newBudget(limit int) *respBudget { return &respBudget{left: limit, limit: limit} }

// take accounts for kv, and fails once the response would pass the bound.
func (b *respBudget) take(kv *mvccpb.KeyValue) error {
	if b == nil {
		return nil
	}
	b.left -= len(kv.Key) + len(kv.Value) + kvOverhead
	if b.left < 0 {
		return status.Errorf(codes.ResourceExhausted,
			"chorus: the range response would hold more than %d bytes of keys and values (the limit, --max-range-response-bytes); read the range in pages: set a limit and continue from the key after the last one returned (as etcdctl --limit and clientv3's paginated reads do), or use RangeStream; a sorted or revision-filtered range holds every key of the range before its limit applies",
			b.limit)
	}
	return nil
}
