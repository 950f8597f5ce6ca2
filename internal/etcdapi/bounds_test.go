package etcdapi_test

import (
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chorus-kv/chorus/internal/etcdapi"
)

// deepTxn is a Txn nesting depth levels of Txns, a put at the bottom.
func deepTxn(depth int) *pb.TxnRequest {
	req := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("deep"), Value: []byte("v")}}}}}
	for range depth - 1 {
		req = &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: req}}}}
	}
	return req
}

// TestRequestBounds: requests past a bound are refused with InvalidArgument
// and a message naming the limit; requests at the bound pass.
func TestRequestBounds(t *testing.T) {
	n := startNode(t, nil)
	c := dial(t, n)
	kv, lease := pb.NewKVClient(c.ActiveConnection()), pb.NewLeaseClient(c.ActiveConnection())
	ctx := ctxT(t)
	key4096, key4097 := []byte(strings.Repeat("k", 4096)), []byte(strings.Repeat("k", 4097))
	end4097, end4098 := append(key4096[:4096:4096], 0), append(key4097[:4097:4097], 0)
	cmp := func(key, end []byte) *pb.TxnRequest {
		return &pb.TxnRequest{Compare: []*pb.Compare{{Key: key, RangeEnd: end, Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL}}}
	}
	for _, tt := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string // in the message when refused
	}{
		{"txn 64 levels", func() error { _, err := kv.Txn(ctx, deepTxn(etcdapi.MaxTxnDepth)); return err }, codes.OK, ""},
		{"txn 65 levels", func() error { _, err := kv.Txn(ctx, deepTxn(etcdapi.MaxTxnDepth+1)); return err }, codes.InvalidArgument, "the limit is 64"},
		{"txn 5,000 levels", func() error { _, err := kv.Txn(ctx, deepTxn(5000)); return err }, codes.InvalidArgument, "the limit is 64"},
		{"range 4096-byte key", func() error { _, err := kv.Range(ctx, &pb.RangeRequest{Key: key4096}); return err }, codes.OK, ""},
		{"range 4097-byte key", func() error { _, err := kv.Range(ctx, &pb.RangeRequest{Key: key4097}); return err }, codes.InvalidArgument, "range key is 4097 bytes; the limit is 4096"},
		{"range 4097-byte prefix", func() error {
			_, err := kv.Range(ctx, &pb.RangeRequest{Key: key4097, RangeEnd: key4097})
			return err
		}, codes.InvalidArgument, "range key is 4097 bytes; the limit is 4096"},
		{"range end 4097 bytes", func() error {
			_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), RangeEnd: end4097})
			return err
		}, codes.OK, ""},
		{"range end 4098 bytes", func() error {
			_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), RangeEnd: end4098})
			return err
		}, codes.InvalidArgument, "range_end is 4098 bytes; the limit is 4097"},
		{"txn range 4097-byte key", func() error {
			_, err := kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key4097}}}}})
			return err
		}, codes.InvalidArgument, "the limit is 4096"},
		{"delete range 4097-byte key", func() error {
			_, err := kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: key4097, RangeEnd: []byte{0}})
			return err
		}, codes.InvalidArgument, "delete key is 4097 bytes; the limit is 4096"},
		{"compare 4097-byte key", func() error { _, err := kv.Txn(ctx, cmp(key4097, nil)); return err }, codes.InvalidArgument, "compare key is 4097 bytes"},
		{"compare 4098-byte range end", func() error { _, err := kv.Txn(ctx, cmp([]byte("a"), end4098)); return err }, codes.InvalidArgument, "compare range_end is 4098 bytes"},
		{"compare 4096-byte key", func() error { _, err := kv.Txn(ctx, cmp(key4096, end4097)); return err }, codes.OK, ""},
		{"lease id -7", func() error { _, err := lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: -7, TTL: 60}); return err }, codes.InvalidArgument, "lease id is -7"},
		{"lease id 7", func() error { _, err := lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 7, TTL: 60}); return err }, codes.OK, ""},
		{"lease id 0", func() error { _, err := lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 60}); return err }, codes.OK, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Fatalf("%v; want %v with %q", err, tt.code, tt.msg)
			}
		})
	}
	// The 64-level Txn's put landed.
	if g, err := c.Get(ctx, "deep"); err != nil || len(g.Kvs) != 1 {
		t.Errorf("Get of the nested put: %v, %v", err, g)
	}
}

// TestWatchKeyBound: a watch on a key or range past the key limit is
// canceled at creation with the limit in the reason; one at the limit is
// created.
func TestWatchKeyBound(t *testing.T) {
	n := startNode(t, nil)
	c := dial(t, n)
	ctx := ctxT(t)
	for _, tt := range []struct {
		name      string
		key, end  []byte
		canceled  bool
		reasonHas string
	}{
		{"4096-byte key", []byte(strings.Repeat("w", 4096)), nil, false, ""},
		{"4097-byte key", []byte(strings.Repeat("w", 4097)), nil, true, "watch key is 4097 bytes; the limit is 4096"},
		{"4098-byte range end", []byte("a"), []byte(strings.Repeat("w", 4098)), true, "watch range_end is 4098 bytes; the limit is 4097"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ws, err := pb.NewWatchClient(c.ActiveConnection()).Watch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = ws.CloseSend() }()
			if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: tt.key, RangeEnd: tt.end}}}); err != nil {
				t.Fatal(err)
			}
			resp, err := ws.Recv()
			if err != nil || !resp.Created || resp.Canceled != tt.canceled || !strings.Contains(resp.CancelReason, tt.reasonHas) {
				t.Fatalf("created response %v, %v; want canceled %v with %q", resp, err, tt.canceled, tt.reasonHas)
			}
		})
	}
}
