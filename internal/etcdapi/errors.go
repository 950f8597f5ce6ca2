package etcdapi

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/watch"
)

// toGRPC maps an error to what an etcd client expects: etcd's own error
// (package rpctypes) where etcd has one, else a gRPC status whose message
// says what was wrong and, for a limit, what the limit is.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var limit *crdt.LimitError
	switch {
	case errors.Is(err, crdt.ErrKeyEmpty):
		return rpctypes.ErrGRPCEmptyKey
	case errors.As(err, &limit):
		return status.Error(codes.InvalidArgument, "chorus: "+err.Error())
	case errors.Is(err, store.ErrCompacted):
		return rpctypes.ErrGRPCCompacted
	case errors.Is(err, store.ErrFutureRevision):
		return rpctypes.ErrGRPCFutureRev
	case errors.Is(err, store.ErrBadRange):
		return status.Error(codes.InvalidArgument, "chorus: "+err.Error())
	case errors.Is(err, store.ErrClosed), errors.Is(err, watch.ErrClosed), errors.Is(err, errStopped):
		return rpctypes.ErrGRPCStopped
	case errors.Is(err, store.ErrWriteFailed), errors.Is(err, store.ErrCatchingUp):
		return status.Error(codes.Unavailable, "chorus: "+err.Error())
	case errors.Is(err, watch.ErrTooManyWatchers):
		return status.Error(codes.ResourceExhausted, "chorus: "+err.Error()+" (--max-watches)")
	case errors.Is(err, context.Canceled):
		return rpctypes.ErrGRPCCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return rpctypes.ErrGRPCDeadlineExceeded
	}
	return status.Error(codes.Internal, "chorus: "+err.Error())
}

// errStopped ends stream handlers when the server closes.
var errStopped = errors.New("etcdapi: server stopped")
