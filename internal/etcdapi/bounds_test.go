package etcdapi_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chorus-kv/chorus/internal/etcdapi"
	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/internal/testutil"
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

// TestRangeResponseBound: with a 64 KiB bound, a Range or a Txn holding
// more key-values fails with ResourceExhausted saying to read in pages;
// pages, count_only and RangeStream read everything.
func TestRangeResponseBound(t *testing.T) {
	const bound = 64 << 10
	n := startNodeWith(t, node.Config{DataDir: t.TempDir(), ListenClient: "127.0.0.1:0", ListenEtcd: "127.0.0.1:0", Logger: testutil.QuietLogger(),
		OpenAdmission: true, MaxRangeResponseBytes: bound})
	c := dial(t, n)
	kv := pb.NewKVClient(c.ActiveConnection())
	ctx := ctxT(t)
	value := strings.Repeat("v", 1000)
	const keys = 200 // about 200 KB
	for i := range keys {
		mustPut(t, c, fmt.Sprintf("/big/%03d", i), value)
	}
	prefix := func(r *pb.RangeRequest) *pb.RangeRequest {
		r.Key, r.RangeEnd = []byte("/big/"), []byte("/big0")
		return r
	}
	rangeOp := func(r *pb.RangeRequest) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
	}
	for _, tt := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"no limit", func() error { _, err := kv.Range(ctx, prefix(&pb.RangeRequest{})); return err }, codes.ResourceExhausted},
		{"keys only", func() error { _, err := kv.Range(ctx, prefix(&pb.RangeRequest{KeysOnly: true})); return err }, codes.OK},
		{"count only", func() error { _, err := kv.Range(ctx, prefix(&pb.RangeRequest{CountOnly: true})); return err }, codes.OK},
		{"limit 50", func() error { _, err := kv.Range(ctx, prefix(&pb.RangeRequest{Limit: 50})); return err }, codes.OK},
		{"sorted by mod revision, limit 5: holds every key first", func() error {
			_, err := kv.Range(ctx, prefix(&pb.RangeRequest{Limit: 5, SortTarget: pb.RangeRequest_MOD, SortOrder: pb.RangeRequest_DESCEND}))
			return err
		}, codes.ResourceExhausted},
		{"txn of two ranges of 40 keys", func() error {
			_, err := kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp(prefix(&pb.RangeRequest{Limit: 40})), rangeOp(prefix(&pb.RangeRequest{Limit: 40}))}})
			return err
		}, codes.ResourceExhausted},
		{"txn of one range of 40 keys", func() error {
			_, err := kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp(prefix(&pb.RangeRequest{Limit: 40}))}})
			return err
		}, codes.OK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			st := status.Convert(err)
			if st.Code() != tt.code {
				t.Fatalf("%v; want %v", err, tt.code)
			}
			if tt.code == codes.ResourceExhausted {
				for _, want := range []string{fmt.Sprint(bound), "in pages", "--max-range-response-bytes"} {
					if !strings.Contains(st.Message(), want) {
						t.Errorf("message %q does not say %q", st.Message(), want)
					}
				}
			}
		})
	}
	// clientv3's Get of the prefix fails likewise; reading in pages gets it
	// all, as does RangeStream.
	if _, err := c.Get(ctx, "/big/", clientv3.WithPrefix()); status.Code(err) != codes.ResourceExhausted && !strings.Contains(fmt.Sprint(err), "in pages") {
		t.Errorf("clientv3 Get of the prefix: %v; want ResourceExhausted", err)
	}
	got, start := 0, []byte("/big/")
	for {
		r, err := kv.Range(ctx, &pb.RangeRequest{Key: start, RangeEnd: []byte("/big0"), Limit: 50})
		if err != nil {
			t.Fatalf("page after %d keys: %v", got, err)
		}
		got += len(r.Kvs)
		if !r.More {
			break
		}
		start = append(r.Kvs[len(r.Kvs)-1].Key, 0)
	}
	if got != keys {
		t.Errorf("pages read %d keys; want %d", got, keys)
	}
	chunks, err := streamChunks(t, kv, prefix(&pb.RangeRequest{}))
	if err != nil {
		t.Fatalf("RangeStream: %v", err)
	}
	streamed := 0
	for _, ch := range chunks {
		streamed += len(ch.Kvs)
	}
	if streamed != keys {
		t.Errorf("RangeStream read %d keys; want %d", streamed, keys)
	}
}

// TestWatchBounds: a stream holds at most MaxWatchesPerStream watches and
// the node at most MaxWatches (across streams); one more is canceled at
// creation with the limit in the reason, and a canceled watch frees its
// slot.
func TestWatchBounds(t *testing.T) {
	n := startNodeWith(t, node.Config{DataDir: t.TempDir(), ListenClient: "127.0.0.1:0", ListenEtcd: "127.0.0.1:0", Logger: testutil.QuietLogger(),
		OpenAdmission: true, MaxWatchesPerStream: 3, MaxWatches: 5})
	c := dial(t, n)
	ctx := ctxT(t)
	open := func() pb.Watch_WatchClient {
		ws, err := pb.NewWatchClient(c.ActiveConnection()).Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ws.CloseSend() })
		return ws
	}
	create := func(ws pb.Watch_WatchClient, key string) *pb.WatchResponse {
		t.Helper()
		if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte(key)}}}); err != nil {
			t.Fatal(err)
		}
		resp, err := ws.Recv()
		if err != nil || !resp.Created {
			t.Fatalf("create %q: %v, %v", key, resp, err)
		}
		return resp
	}
	s1, s2 := open(), open()
	for i := range 3 {
		if r := create(s1, fmt.Sprint("a", i)); r.Canceled {
			t.Fatalf("watch %d of stream 1 canceled: %s", i+1, r.CancelReason)
		}
	}
	if r := create(s1, "a3"); !r.Canceled || !strings.Contains(r.CancelReason, "the limit is 3") {
		t.Fatalf("a fourth watch on a stream: %v; want canceled naming the per-stream limit", r)
	}
	ids := []int64{}
	for i := range 2 {
		r := create(s2, fmt.Sprint("b", i))
		if r.Canceled {
			t.Fatalf("watch %d of stream 2 canceled: %s", i+1, r.CancelReason)
		}
		ids = append(ids, r.WatchId)
	}
	if r := create(s2, "b2"); !r.Canceled || !strings.Contains(r.CancelReason, "the limit is 5") || !strings.Contains(r.CancelReason, "--max-watches") {
		t.Fatalf("a sixth watch on the node: %v; want canceled naming the node's limit", r)
	}
	if err := s2.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: ids[0]}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := s2.Recv(); err != nil || !r.Canceled || r.WatchId != ids[0] {
		t.Fatalf("cancel: %v, %v", r, err)
	}
	// The slot is freed once the watch's goroutine closed its watcher.
	deadline := time.Now().Add(waitTimeout)
	for {
		r := create(s2, "b3")
		if !r.Canceled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a cancel: %s", r.CancelReason)
		}
		<-time.After(20 * time.Millisecond) // the watcher closes on its own goroutine: poll
	}
	// Events still flow on the watches held.
	mustPut(t, c, "a0", "x")
	r, err := s1.Recv()
	if err != nil || len(r.Events) != 1 || string(r.Events[0].Kv.Key) != "a0" {
		t.Fatalf("event on a watch held: %v, %v", r, err)
	}
}
