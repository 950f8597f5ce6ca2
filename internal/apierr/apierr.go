// Package apierr is the contract between the gRPC server and the Go SDK for
// errors: every error the server returns for a known cause is a gRPC status
// whose message says what was wrong and what the limit is, with an
// errdetails.ErrorInfo whose Reason names the cause and whose Metadata
// carries the numbers. The SDK maps Reason, never the message, back to typed
// errors.
package apierr

import (
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of Chorus errors.
const Domain = "chorus.kv.v1"

// Reasons, as sent in ErrorInfo.Reason.
const (
	ReasonKeyEmpty        = "KEY_EMPTY"
	ReasonKeyTooLarge     = "KEY_TOO_LARGE"
	ReasonValueTooLarge   = "VALUE_TOO_LARGE"
	ReasonBadRange        = "BAD_RANGE"
	ReasonBadRequest      = "BAD_REQUEST"
	ReasonCompacted       = "COMPACTED"
	ReasonWatcherTooSlow  = "WATCHER_TOO_SLOW"
	ReasonNodeUnavailable = "NODE_UNAVAILABLE"
	// ReasonReplicasNotReached: the write is durable on the node, but fewer
	// peers than min_replicas confirmed it in time.
	ReasonReplicasNotReached = "REPLICAS_NOT_REACHED"
	// ReasonStale: an anti-entropy session was refused because a node has
	// been out of contact for longer than the tombstone grace period.
	ReasonStale = "STALE_NODE"
	// ReasonPeerNotConnected: the peer named is not connected to this node.
	ReasonPeerNotConnected = "PEER_NOT_CONNECTED"
	// ReasonTooManyWatches: the node holds as many watches as it allows.
	ReasonTooManyWatches = "TOO_MANY_WATCHES"
	// ReasonNotConverged: the write is durable on the node, but not every
	// live member confirmed it before the deadline (wait_converged);
	// MetaMissing names them.
	ReasonNotConverged = "NOT_CONVERGED"
	// ReasonConvergedBacklog: a converged watch held back more changes than
	// its limit.
	ReasonConvergedBacklog = "CONVERGED_BACKLOG"
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
