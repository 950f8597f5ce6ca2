package client

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chorus-kv/chorus/internal/apierr"
	kvv1 "github.com/chorus-kv/chorus/proto/chorus/kv/v1"
)

var allKinds = []error{
	ErrNotFound, ErrKeyEmpty, ErrKeyTooLarge, ErrValueTooLarge, ErrBadRange, ErrBadRequest,
	ErrCompacted, ErrWatcherTooSlow, ErrUnavailable, ErrReplicasNotReached,
}

// onlyKind checks that err matches kind (nil: none) and no other Err* value.
func onlyKind(t *testing.T, err, kind error) {
	t.Helper()
	for _, k := range allKinds {
		if got := errors.Is(err, k); got != (k == kind) {
			t.Errorf("errors.Is(%v, %v) = %v", err, k, got)
		}
	}
}

func withInfo(code codes.Code, msg string, info *errdetails.ErrorInfo) error {
	st, err := status.New(code, msg).WithDetails(info)
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestFromStatusWithoutErrorInfo(t *testing.T) {
	plain := errors.New("some transport trouble")
	tests := []struct {
		name     string
		in       error
		kind     error      // the Err* it must match, nil for none
		code     codes.Code // status.Code of the result; not checked for ErrUnavailable, which keeps only the message
		contains []string
		wraps    error // errors.Is(result, wraps)
	}{
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), ErrUnavailable, codes.Unknown,
			[]string{"chorus put", "connection refused"}, nil},
		{"internal", status.Error(codes.Internal, "boom"), nil, codes.Internal, []string{"chorus put", "boom"}, nil},
		{"deadline", status.Error(codes.DeadlineExceeded, "too slow"), nil, codes.DeadlineExceeded, []string{"chorus put", "too slow"}, nil},
		{"canceled", status.Error(codes.Canceled, "context canceled"), nil, codes.Canceled, []string{"chorus put"}, nil},
		{"not a status", plain, nil, codes.Unknown, []string{"chorus put", plain.Error()}, plain},
		{"eof", io.EOF, nil, codes.Unknown, []string{"chorus put"}, io.EOF},
		{"unknown chorus reason", withInfo(codes.Unavailable, "later",
			&errdetails.ErrorInfo{Reason: "SOMETHING_NEW", Domain: apierr.Domain}), ErrUnavailable, codes.Unknown, []string{"later"}, nil},
		{"foreign domain", withInfo(codes.InvalidArgument, "empty",
			&errdetails.ErrorInfo{Reason: apierr.ReasonKeyEmpty, Domain: "example.com"}), nil, codes.InvalidArgument, []string{"empty"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fromStatus("put", tt.in)
			if err == nil {
				t.Fatalf("fromStatus(%v) = nil", tt.in)
			}
			var ce *Error
			if errors.As(err, &ce) {
				t.Fatalf("fromStatus(%v) = *Error %+v; want a plain wrapped error (no known reason)", tt.in, *ce)
			}
			onlyKind(t, err, tt.kind)
			if got := status.Code(err); tt.kind != ErrUnavailable && got != tt.code {
				t.Errorf("status.Code(%v) = %v; want %v", err, got, tt.code)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not contain %q", err, s)
				}
			}
			if tt.wraps != nil && !errors.Is(err, tt.wraps) {
				t.Errorf("%v does not wrap %v", err, tt.wraps)
			}
			if tt.kind == nil && !errors.Is(err, tt.in) {
				t.Errorf("%v does not wrap the original %v", err, tt.in)
			}
		})
	}
	if err := fromStatus("put", nil); err != nil {
		t.Errorf("fromStatus(nil) = %v", err)
	}
}

func TestFromStatusWithErrorInfo(t *testing.T) {
	tests := []struct {
		reason string
		kind   error
		code   codes.Code
		meta   map[string]string
		want   Error // the numbers
	}{
		{apierr.ReasonKeyEmpty, ErrKeyEmpty, codes.InvalidArgument, nil, Error{}},
		{apierr.ReasonKeyTooLarge, ErrKeyTooLarge, codes.InvalidArgument,
			map[string]string{apierr.MetaSize: "4097", apierr.MetaLimit: "4096"}, Error{Size: 4097, Limit: 4096}},
		{apierr.ReasonValueTooLarge, ErrValueTooLarge, codes.InvalidArgument,
			map[string]string{apierr.MetaSize: "1048577", apierr.MetaLimit: "1048576"}, Error{Size: 1048577, Limit: 1048576}},
		{apierr.ReasonBadRange, ErrBadRange, codes.InvalidArgument, nil, Error{}},
		{apierr.ReasonBadRequest, ErrBadRequest, codes.InvalidArgument, nil, Error{}},
		{apierr.ReasonCompacted, ErrCompacted, codes.OutOfRange,
			map[string]string{apierr.MetaOldestRevision: "41"}, Error{OldestRevision: 41}},
		{apierr.ReasonWatcherTooSlow, ErrWatcherTooSlow, codes.ResourceExhausted, nil, Error{}},
		{apierr.ReasonNodeUnavailable, ErrUnavailable, codes.Unavailable, nil, Error{}},
		{apierr.ReasonReplicasNotReached, ErrReplicasNotReached, codes.DeadlineExceeded,
			map[string]string{apierr.MetaAcked: "1", apierr.MetaWanted: "3"}, Error{Acked: 1, Wanted: 3}},
		// Malformed numbers read as 0 rather than failing.
		{apierr.ReasonKeyTooLarge, ErrKeyTooLarge, codes.InvalidArgument,
			map[string]string{apierr.MetaSize: "lots", apierr.MetaLimit: ""}, Error{}},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			msg := fmt.Sprintf("what was wrong with %s", tt.reason)
			in := apierr.New(tt.code, tt.reason, msg, tt.meta)
			err := fromStatus("get", in)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("fromStatus = %v (%T); want *Error", err, err)
			}
			onlyKind(t, err, tt.kind)
			if ce.Kind != tt.kind || ce.Code != tt.code || ce.Message != msg {
				t.Errorf("Error %+v; want Kind %v Code %v Message %q", *ce, tt.kind, tt.code, msg)
			}
			if ce.Size != tt.want.Size || ce.Limit != tt.want.Limit || ce.OldestRevision != tt.want.OldestRevision ||
				ce.Acked != tt.want.Acked || ce.Wanted != tt.want.Wanted {
				t.Errorf("numbers %+v; want %+v", *ce, tt.want)
			}
			if s := ce.Error(); !strings.Contains(s, msg) || !strings.Contains(s, tt.code.String()) {
				t.Errorf("Error() = %q; want the message and the code", s)
			}
		})
	}
}

func TestErrorUnwrap(t *testing.T) {
	e := &Error{Kind: ErrKeyTooLarge, Code: codes.InvalidArgument, Message: "key is 5 bytes; the limit is 4"}
	if got := e.Unwrap(); got != ErrKeyTooLarge {
		t.Errorf("Unwrap = %v; want ErrKeyTooLarge", got)
	}
	if !errors.Is(e, ErrKeyTooLarge) || errors.Is(e, ErrValueTooLarge) {
		t.Errorf("errors.Is through Unwrap is wrong")
	}
	// Through further wrapping, too.
	wrapped := fmt.Errorf("loading config: %w", e)
	var ce *Error
	if !errors.Is(wrapped, ErrKeyTooLarge) || !errors.As(wrapped, &ce) || ce != e {
		t.Errorf("wrapped *Error lost its kind")
	}
	if (&Error{}).Unwrap() != nil {
		t.Errorf("Unwrap of an Error without Kind is not nil")
	}
}

// TestEveryErrorReasonHasAKind: every reason of the protobuf enum (the
// contract any gRPC client sees) maps to a typed error of the SDK, and the
// names on the wire are the ones documented since before the enum existed.
func TestEveryErrorReasonHasAKind(t *testing.T) {
	for v, name := range kvv1.ErrorReason_name {
		if v == int32(kvv1.ErrorReason_ERROR_REASON_UNSPECIFIED) {
			continue
		}
		if _, ok := reasons[name]; !ok {
			t.Errorf("reason %s (%d) has no typed error in the SDK", name, v)
		}
	}
	if len(reasons) != len(kvv1.ErrorReason_name)-1 {
		t.Errorf("the SDK maps %d reasons; the enum has %d", len(reasons), len(kvv1.ErrorReason_name)-1)
	}
	for reason, wire := range map[string]string{
		apierr.ReasonKeyEmpty: "KEY_EMPTY", apierr.ReasonKeyTooLarge: "KEY_TOO_LARGE", apierr.ReasonValueTooLarge: "VALUE_TOO_LARGE",
		apierr.ReasonCompacted: "COMPACTED", apierr.ReasonStale: "STALE_NODE", apierr.ReasonNodeUnavailable: "NODE_UNAVAILABLE",
	} {
		if reason != wire {
			t.Errorf("reason %q on the wire; documented as %q", reason, wire)
		}
	}
}
