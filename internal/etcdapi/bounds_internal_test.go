package etcdapi

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/watch"
)

func TestExpensiveRange(t *testing.T) {
	span := func(r *pb.RangeRequest) *pb.RangeRequest { r.Key, r.RangeEnd = []byte("a"), []byte("b"); return r }
	for _, tt := range []struct {
		name string
		req  *pb.RangeRequest
		want bool
	}{
		{"one key", &pb.RangeRequest{Key: []byte("a")}, false},
		{"one key at a past revision", &pb.RangeRequest{Key: []byte("a"), Revision: 3}, false},
		{"span, no limit", span(&pb.RangeRequest{}), true},
		{"span, count only", span(&pb.RangeRequest{CountOnly: true}), false},
		{"span, limit 1", span(&pb.RangeRequest{Limit: 1}), false},
		{"span, limit 1000", span(&pb.RangeRequest{Limit: cheapLimit}), false},
		{"span, limit 1001", span(&pb.RangeRequest{Limit: cheapLimit + 1}), true},
		{"span, limit 1, past revision", span(&pb.RangeRequest{Limit: 1, Revision: 5}), true},
		{"span, limit 1, key order", span(&pb.RangeRequest{Limit: 1, SortTarget: pb.RangeRequest_KEY, SortOrder: pb.RangeRequest_ASCEND}), false},
		{"span, limit 1, key descending", span(&pb.RangeRequest{Limit: 1, SortTarget: pb.RangeRequest_KEY, SortOrder: pb.RangeRequest_DESCEND}), true},
		{"span, limit 1, by mod revision", span(&pb.RangeRequest{Limit: 1, SortTarget: pb.RangeRequest_MOD, SortOrder: pb.RangeRequest_ASCEND}), true},
		{"span, limit 1, filtered", span(&pb.RangeRequest{Limit: 1, MinModRevision: 2}), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := expensiveRange(tt.req); got != tt.want {
				t.Errorf("expensiveRange = %v; want %v", got, tt.want)
			}
			op := func(r *pb.RangeRequest) []*pb.RequestOp {
				return []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: r}}}
			}
			nested := &pb.TxnRequest{Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: op(tt.req)}}}}}
			if got := expensiveTxn(nested); got != tt.want {
				t.Errorf("expensiveTxn of a nested Txn reading it = %v; want %v", got, tt.want)
			}
		})
	}
}

// TestReadSemaphore: with both slots held, an expensive Range waits (and
// fails with DeadlineExceeded when its deadline passes first) while a cheap
// one is served; once a slot is free, the expensive Range is served.
func TestReadSemaphore(t *testing.T) {
	st, err := store.Open(store.Config{NodeID: []byte("node-a")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hub, err := watch.NewHub(st, watch.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	s, err := Start(Config{Listen: "127.0.0.1:0", Store: st, Hub: hub, NodeID: "12D3KooWtest", MaxConcurrentRangeReads: 2,
		Logger: testutil.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := grpc.NewClient(s.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kv := pb.NewKVClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rel1, err := s.acquireRead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rel2, err := s.acquireRead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = kv.Range(short, all)
	cancelShort()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("an expensive Range with both slots held: %v; want DeadlineExceeded", err)
	}
	if _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("b"), Limit: 10}); err != nil {
		t.Fatalf("a cheap Range with both slots held: %v", err)
	}
	if _, err := kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a")}}}}}); err != nil {
		t.Fatalf("a cheap Txn with both slots held: %v", err)
	}
	rel1()
	if _, err := kv.Range(ctx, all); err != nil {
		t.Fatalf("an expensive Range with a slot free: %v", err)
	}
	if _, err := kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: all}}}}); err != nil {
		t.Fatalf("an expensive Txn with a slot free: %v", err)
	}
	rel2()
	if len(s.reads) != 0 {
		t.Errorf("%d slots still taken after every read ended", len(s.reads))
	}
	// Waiting ends with the server.
	rel1, _ = s.acquireRead(ctx)
	rel2, _ = s.acquireRead(ctx)
	defer rel1()
	defer rel2()
	done := make(chan error, 1)
	go func() { _, err := s.acquireRead(ctx); done <- err }()
	s.Close()
	if err := <-done; err != errStopped {
		t.Errorf("a wait for a slot when the server closed: %v; want errStopped", err)
	}
}
