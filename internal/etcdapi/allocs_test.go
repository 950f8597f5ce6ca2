package etcdapi_test

import (
	"bytes"
	"context"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// maxAllocsPerEtcdPut is the ceiling on allocations of one etcd Put round
// trip to a lone node: the gRPC client stub and server, the etcd API, the
// store and, with no peer subscribed, no gossip. Both ends run in this
// process, so both count. Measured at 199 (260 before a lone node stopped gossiping to no one) when it was set; raise it only
// with a profile that says why.
const maxAllocsPerEtcdPut = 240

func TestEtcdPutAllocationsCeiling(t *testing.T) {
	n := startNode(t, nil)
	conn, err := grpc.NewClient(n.EtcdAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	kv := pb.NewKVClient(conn)
	ctx := ctxT(t)
	req := &pb.PutRequest{Key: []byte("alloc/0000000000000000000000000"), Value: bytes.Repeat([]byte("v"), 256)}
	if _, err := kv.Put(ctx, req); err != nil { // connect first
		t.Fatal(err)
	}
	i := 0
	got := testing.AllocsPerRun(300, func() {
		i++
		for j, k := len(req.Key)-1, i; k > 0; j, k = j-1, k/10 {
			req.Key[j] = byte('0' + k%10)
		}
		if _, err := kv.Put(context.WithoutCancel(ctx), req); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("allocations per etcd Put round trip: %.0f (ceiling %d)", got, maxAllocsPerEtcdPut)
	if got > maxAllocsPerEtcdPut {
		t.Errorf("an etcd Put round trip allocates %.0f times; the ceiling is %d", got, maxAllocsPerEtcdPut)
	}
}
