// Package apierr is the contract between the gRPC server and the Go SDK for
// errors: every error the server returns for a known cause is a gRPC status
// whose message says what was wrong and what the limit is, with an
// errdetails.ErrorInfo whose Reason names the cause and whose Metadata
// carries the numbers. The SDK maps Reason, never the message, back to typed
// errors. The reasons are the names of the protobuf enum kvv1.ErrorReason, so
// that clients in any language see them.
package apierr

import (
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "github.com/chorus-kv/chorus/proto/chorus/kv/v1"
)

// Domain is the ErrorInfo domain of Chorus errors.
const Domain = "chorus.kv.v1"

// Reasons, as sent in ErrorInfo.Reason: the names of kvv1.ErrorReason, the
// contract any gRPC client sees (proto/chorus/kv/v1/errors.proto documents
// each).
var (
	ReasonKeyEmpty           = kvv1.ErrorReason_KEY_EMPTY.String()
	ReasonKeyTooLarge        = kvv1.ErrorReason_KEY_TOO_LARGE.String()
	ReasonValueTooLarge      = kvv1.ErrorReason_VALUE_TOO_LARGE.String()
	ReasonBadRange           = kvv1.ErrorReason_BAD_RANGE.String()
	ReasonBadRequest         = kvv1.ErrorReason_BAD_REQUEST.String()
	ReasonCompacted          = kvv1.ErrorReason_COMPACTED.String()
	ReasonWatcherTooSlow     = kvv1.ErrorReason_WATCHER_TOO_SLOW.String()
	ReasonNodeUnavailable    = kvv1.ErrorReason_NODE_UNAVAILABLE.String()
	ReasonReplicasNotReached = kvv1.ErrorReason_REPLICAS_NOT_REACHED.String()
	ReasonStale              = kvv1.ErrorReason_STALE_NODE.String()
	ReasonPeerNotConnected   = kvv1.ErrorReason_PEER_NOT_CONNECTED.String()
	ReasonTooManyWatches     = kvv1.ErrorReason_TOO_MANY_WATCHES.String()
	ReasonNotConverged       = kvv1.ErrorReason_NOT_CONVERGED.String()
	ReasonConvergedBacklog   = kvv1.ErrorReason_CONVERGED_BACKLOG.String()
)

// Metadata keys.
const (
	MetaSize           = "size"
	MetaLimit          = "limit"
	MetaOldestRevision = "oldest_revision"
	MetaAcked          = "acked"
	MetaWanted         = "wanted"
	// MetaMissing is a comma-separated list of peer ids.
	MetaMissing = "missing"
)

// New builds a status error with an ErrorInfo.
func New(code codes.Code, reason, msg string, meta map[string]string) error {
	st := status.New(code, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: meta}); err == nil {
		st = withInfo
	}
	return st.Err()
}

// Info returns the Chorus ErrorInfo of a status error, if it has one.
func Info(err error) (*errdetails.ErrorInfo, *status.Status) {
	st, ok := status.FromError(err)
	if !ok {
		return nil, nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info, st
		}
	}
	return nil, st
}

// Int formats a number for Metadata.
func Int(v int64) string { return strconv.FormatInt(v, 10) }

// MetaInt reads a number from Metadata, 0 if absent or malformed.
func MetaInt(info *errdetails.ErrorInfo, key string) int64 {
	v, _ := strconv.ParseInt(info.GetMetadata()[key], 10, 64)
	return v
}
