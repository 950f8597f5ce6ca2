package node

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/apierr"
	"github.com/chorus-kv/chorus/p2p"
	"github.com/chorus-kv/chorus/watch"
)

// toStatus maps an error from the store or the hub to the gRPC status a
// client sees: a code, a message that says what was wrong (and the limit),
// and an ErrorInfo the SDK turns back into a typed error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	msg := err.Error()
	var limit *crdt.LimitError
	var compacted *store.CompactedError
	var replicas *p2p.ReplicasError
	var notConverged *p2p.NotConvergedError
	switch {
	case errors.As(err, &notConverged):
		ids := make([]string, len(notConverged.Missing))
		for i, p := range notConverged.Missing {
			ids[i] = p.String()
		}
		code := codes.DeadlineExceeded
		if errors.Is(err, context.Canceled) {
			code = codes.Canceled
		}
		return apierr.New(code, apierr.ReasonNotConverged, msg, map[string]string{apierr.MetaMissing: strings.Join(ids, ",")})
	case errors.Is(err, watch.ErrConvergedBacklog):
		return apierr.New(codes.ResourceExhausted, apierr.ReasonConvergedBacklog, msg, nil)
	case errors.As(err, &replicas):
		code := codes.Unavailable
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(replicas.Cause, context.DeadlineExceeded) {
			code = codes.DeadlineExceeded
		}
		return apierr.New(code, apierr.ReasonReplicasNotReached, msg, map[string]string{
			apierr.MetaAcked:  apierr.Int(int64(replicas.Acked)),
			apierr.MetaWanted: apierr.Int(int64(replicas.Wanted)),
		})
	case errors.As(err, &limit):
		reason := apierr.ReasonKeyTooLarge
		if errors.Is(err, crdt.ErrValueTooLarge) {
			reason = apierr.ReasonValueTooLarge
		}
		return apierr.New(codes.InvalidArgument, reason, msg, map[string]string{
			apierr.MetaSize:  apierr.Int(int64(limit.Size)),
			apierr.MetaLimit: apierr.Int(int64(limit.Limit)),
		})
	case errors.Is(err, crdt.ErrKeyEmpty):
		return apierr.New(codes.InvalidArgument, apierr.ReasonKeyEmpty, msg, nil)
	case errors.Is(err, store.ErrBadRange):
		return apierr.New(codes.InvalidArgument, apierr.ReasonBadRange, msg, nil)
	case errors.As(err, &compacted):
		return apierr.New(codes.OutOfRange, apierr.ReasonCompacted, msg, map[string]string{
			apierr.MetaOldestRevision: apierr.Int(compacted.Oldest),
		})
	case errors.Is(err, watch.ErrTooManyWatchers):
		return apierr.New(codes.ResourceExhausted, apierr.ReasonTooManyWatches, msg+" (--max-watches)", nil)
	case errors.Is(err, watch.ErrWatcherTooSlow):
		return apierr.New(codes.ResourceExhausted, apierr.ReasonWatcherTooSlow, msg, nil)
	case errors.Is(err, p2p.ErrStale):
		return apierr.New(codes.FailedPrecondition, apierr.ReasonStale, msg, nil)
	case errors.Is(err, store.ErrCatchingUp):
		return apierr.New(codes.Unavailable, apierr.ReasonNodeUnavailable, msg, nil)
	case errors.Is(err, store.ErrWriteFailed):
		return apierr.New(codes.Unavailable, apierr.ReasonNodeUnavailable, msg, nil)
	case errors.Is(err, store.ErrClosed), errors.Is(err, watch.ErrClosed):
		return apierr.New(codes.Unavailable, apierr.ReasonNodeUnavailable, "node is shutting down", nil)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	}
	return status.Error(codes.Internal, msg)
}
