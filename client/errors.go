package client

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/chorus-kv/chorus/internal/apierr"
)

// Errors for known causes. Test with errors.Is.
var (
	ErrNotFound       = errors.New("chorus: key not found")
	ErrKeyEmpty       = errors.New("chorus: key is empty")
	ErrKeyTooLarge    = errors.New("chorus: key too large")
	ErrValueTooLarge  = errors.New("chorus: value too large")
	ErrBadRange       = errors.New("chorus: bad range")
	ErrBadRequest     = errors.New("chorus: bad request")
	ErrCompacted      = errors.New("chorus: revision compacted")
	ErrWatcherTooSlow = errors.New("chorus: watcher too slow")
	ErrUnavailable    = errors.New("chorus: node unavailable")
	// ErrReplicasNotReached: the write is durable on the node it reached and
	// will still spread, but fewer peers than asked confirmed it in time.
	ErrReplicasNotReached = errors.New("chorus: not enough replicas confirmed the write")
	// ErrStale: a sync was refused because a node has been out of contact
	// for longer than the tombstone grace period; the message says which
	// node must be reset, and how.
	ErrStale = errors.New("chorus: node out of contact for longer than the tombstone grace period")
	// ErrPeerNotConnected: the peer named is not connected to the node.
	ErrPeerNotConnected = errors.New("chorus: peer not connected")
	// ErrTooManyWatches: the node holds as many watches as it allows
	// (--max-watches); retry later, or watch a common prefix.
	ErrTooManyWatches = errors.New("chorus: too many watches on the node")
	// ErrNotConverged: the write is durable on the node it reached and will
	// still spread, but not every live member confirmed it before the
	// deadline (WithWaitConverged); Error.Missing names them.
	ErrNotConverged = errors.New("chorus: not every live member confirmed the write")
	// ErrConvergedBacklog: a converged watch held back more changes than
	// the node's limit (a member far behind); resume it later.
	ErrConvergedBacklog = errors.New("chorus: too many changes waiting to converge")
)

var reasons = map[string]error{
	apierr.ReasonKeyEmpty:           ErrKeyEmpty,
	apierr.ReasonKeyTooLarge:        ErrKeyTooLarge,
	apierr.ReasonValueTooLarge:      ErrValueTooLarge,
	apierr.ReasonBadRange:           ErrBadRange,
	apierr.ReasonBadRequest:         ErrBadRequest,
	apierr.ReasonCompacted:          ErrCompacted,
	apierr.ReasonWatcherTooSlow:     ErrWatcherTooSlow,
	apierr.ReasonNodeUnavailable:    ErrUnavailable,
	apierr.ReasonReplicasNotReached: ErrReplicasNotReached,
	apierr.ReasonStale:              ErrStale,
	apierr.ReasonPeerNotConnected:   ErrPeerNotConnected,
	apierr.ReasonTooManyWatches:     ErrTooManyWatches,
	apierr.ReasonNotConverged:       ErrNotConverged,
	apierr.ReasonConvergedBacklog:   ErrConvergedBacklog,
}

// Error is an error the node returned for a known cause.
type Error struct {
	Kind    error      // one of the Err* values above
	Code    codes.Code // the gRPC status code
	Message string     // the node's message: what was wrong, and the limit
	// Size and Limit are set for ErrKeyTooLarge and ErrValueTooLarge.
	Size, Limit int64
	// OldestRevision is set for ErrCompacted: the oldest revision a watch
	// can still start from.
	OldestRevision int64
	// Acked and Wanted are set for ErrReplicasNotReached.
	Acked, Wanted int64
	// Missing is set for ErrNotConverged: the peer ids of the live members
	// that did not confirm the write.
	Missing []string
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%s)", e.Message, e.Code) }

// Unwrap makes errors.Is(err, ErrKeyTooLarge) and the like work.
func (e *Error) Unwrap() error { return e.Kind }

// fromStatus turns a gRPC error into an *Error when the node named its cause,
// and wraps it with the operation otherwise.
func fromStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	info, st := apierr.Info(err)
	if info != nil {
		if kind, ok := reasons[info.GetReason()]; ok {
			return &Error{
				Kind:           kind,
				Code:           st.Code(),
				Message:        st.Message(),
				Size:           apierr.MetaInt(info, apierr.MetaSize),
				Limit:          apierr.MetaInt(info, apierr.MetaLimit),
				OldestRevision: apierr.MetaInt(info, apierr.MetaOldestRevision),
				Acked:          apierr.MetaInt(info, apierr.MetaAcked),
				Wanted:         apierr.MetaInt(info, apierr.MetaWanted),
				Missing:        splitIDs(info.GetMetadata()[apierr.MetaMissing]),
			}
		}
	}
	if st != nil && st.Code() == codes.Unavailable {
		return fmt.Errorf("chorus %s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("chorus %s: %w", op, err)
}

func splitIDs(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
