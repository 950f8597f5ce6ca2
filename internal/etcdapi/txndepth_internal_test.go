package etcdapi

import (
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// nested returns a Txn whose success branch nests depth-1 more Txns, each
// also holding a put and a range next to the nested Txn (in the failure
// branch when inFailure).
func nested(depth int, inFailure bool) *pb.TxnRequest {
	put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}}}
	rng := &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k")}}}
	req := &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("k")}}, Success: []*pb.RequestOp{put}}
	for range depth - 1 {
		ops := []*pb.RequestOp{rng, {Request: &pb.RequestOp_RequestTxn{RequestTxn: req}}}
		req = &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("k")}}}
		if inFailure {
			req.Failure = ops
		} else {
			req.Success = ops
		}
	}
	return req
}

func TestTxnDepth(t *testing.T) {
	for _, tt := range []struct {
		name  string
		req   *pb.TxnRequest
		limit int
		want  int // > limit: too deep
	}{
		{"empty", &pb.TxnRequest{}, MaxTxnDepth, 1},
		{"flat", nested(1, false), MaxTxnDepth, 1},
		{"two levels", nested(2, false), MaxTxnDepth, 2},
		{"two levels in failure", nested(2, true), MaxTxnDepth, 2},
		{"at the limit", nested(MaxTxnDepth, false), MaxTxnDepth, MaxTxnDepth},
		{"one past the limit", nested(MaxTxnDepth+1, true), MaxTxnDepth, MaxTxnDepth + 1},
		{"far past the limit stops early", nested(5000, false), MaxTxnDepth, MaxTxnDepth + 1},
		{"limit 1", nested(2, false), 1, 2},
		{"deepest of two branches", &pb.TxnRequest{
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: nested(3, false)}}},
			Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: nested(5, true)}}},
		}, MaxTxnDepth, 6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.Marshal(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := txnDepth(b, tt.limit)
			if err != nil || got != tt.want {
				t.Errorf("txnDepth = %d, %v; want %d", got, err, tt.want)
			}
			if got <= tt.limit {
				if err := checkTxnDepth(tt.req, tt.limit); err != nil {
					t.Errorf("checkTxnDepth of a request within the limit: %v", err)
				}
			} else if tt.req.Success != nil || tt.req.Failure != nil {
				if err := checkTxnDepth(tt.req, tt.limit); status.Code(err) != codes.InvalidArgument {
					t.Errorf("checkTxnDepth of a request past the limit: %v; want InvalidArgument", err)
				}
			}
		})
	}
}

func TestDecodeTxn(t *testing.T) {
	ok, err := proto.Marshal(nested(3, false))
	if err != nil {
		t.Fatal(err)
	}
	deep, err := proto.Marshal(nested(5000, false))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		b    []byte
		code codes.Code
		msg  string
	}{
		{"within the limit", ok, codes.OK, ""},
		{"5,000 levels", deep, codes.InvalidArgument, "the limit is 64"},
		{"truncated", ok[:len(ok)-3], codes.InvalidArgument, "malformed txn request"},
		{"bad tag", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, codes.InvalidArgument, "malformed txn request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := decodeTxn(tt.b)
			st := status.Convert(err)
			if st.Code() != tt.code || (tt.msg != "" && !strings.Contains(st.Message(), tt.msg)) {
				t.Fatalf("decodeTxn: %v; want %v with %q", err, tt.code, tt.msg)
			}
			if tt.code == codes.OK && !proto.Equal(req, nested(3, false)) {
				t.Errorf("decoded %v; want the request sent", req)
			}
		})
	}
}
