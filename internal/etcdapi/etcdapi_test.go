package etcdapi_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// waitTimeout bounds every wait for something that must happen; a healthy
// run never comes close, even under the race detector.
const waitTimeout = 20 * time.Second

// startNode starts a real node with the etcd API on a free port; it is closed
// when the test ends.
func startNode(tb testing.TB, bootstrap []string) *node.Node {
	tb.Helper()
	n, err := node.Start(node.Config{
		DataDir:      tb.TempDir(),
		ListenClient: "127.0.0.1:0",
		ListenEtcd:   "127.0.0.1:0",
		Bootstrap:    bootstrap,
		Logger:       testutil.QuietLogger(),
		// These tests are about the etcd API; admission has its own.
		OpenAdmission: true,
	})
	if err != nil {
		tb.Fatalf("node.Start: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("node.Close: %v", err)
		}
	})
	return n
}

// dial connects the official etcd client to n's etcd API.
func dial(tb testing.TB, n *node.Node) *clientv3.Client {
	tb.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{n.EtcdAddr().String()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		tb.Fatalf("clientv3.New: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	tb.Cleanup(cancel)
	return ctx
}

func mustPut(tb testing.TB, c *clientv3.Client, key, value string, opts ...clientv3.OpOption) *clientv3.PutResponse {
	tb.Helper()
	resp, err := c.Put(ctxT(tb), key, value, opts...)
	if err != nil {
		tb.Fatalf("Put(%q): %v", key, err)
	}
	return resp
}

func keys(kvs []*mvccpb.KeyValue) string {
	var out []string
	for _, kv := range kvs {
		if len(kv.Value) > 0 {
			out = append(out, string(kv.Key)+"="+string(kv.Value))
		} else {
			out = append(out, string(kv.Key))
		}
	}
	return strings.Join(out, ",")
}

func TestPutGetPrefixDeleteWithPrevKV(t *testing.T) {
	c := dial(t, startNode(t, nil))
	ctx := ctxT(t)
	p1 := mustPut(t, c, "/app/a", "1")
	if p1.Header.Revision == 0 {
		t.Fatal("put header has revision 0")
	}
	p2 := mustPut(t, c, "/app/a", "2", clientv3.WithPrevKV())
	if p2.PrevKv == nil || string(p2.PrevKv.Value) != "1" || p2.Header.Revision != p1.Header.Revision+1 {
		t.Errorf("second put: prev %v, revision %d; want value 1 and revision %d", p2.PrevKv, p2.Header.Revision, p1.Header.Revision+1)
	}
	mustPut(t, c, "/app/b", "3")
	mustPut(t, c, "/apq", "x") // just past the prefix
	mustPut(t, c, "/ap", "y")  // just before it

	g, err := c.Get(ctx, "/app/a")
	if err != nil || len(g.Kvs) != 1 {
		t.Fatalf("Get: %v, %v", err, g)
	}
	kv := g.Kvs[0]
	if string(kv.Value) != "2" || kv.Version != 2 || kv.CreateRevision != p1.Header.Revision || kv.ModRevision != p2.Header.Revision {
		t.Errorf("Get /app/a = %+v; want value 2, version 2, create %d, mod %d", kv, p1.Header.Revision, p2.Header.Revision)
	}
	if g, err := c.Get(ctx, "/missing"); err != nil || len(g.Kvs) != 0 || g.Count != 0 {
		t.Errorf("Get of a missing key: %v, %v; want nothing", err, g)
	}
	g, err = c.Get(ctx, "/app/", clientv3.WithPrefix())
	if err != nil || keys(g.Kvs) != "/app/a=2,/app/b=3" || g.Count != 2 {
		t.Errorf("Get --prefix /app/: %v, %q (count %d)", err, keys(g.Kvs), g.Count)
	}
	g, err = c.Get(ctx, "", clientv3.WithPrefix()) // key "\x00", range_end "\x00": every key
	if err != nil || keys(g.Kvs) != "/ap=y,/app/a=2,/app/b=3,/apq=x" {
		t.Errorf("Get of every key: %v, %q", err, keys(g.Kvs))
	}
	g, err = c.Get(ctx, "/app/b", clientv3.WithFromKey())
	if err != nil || keys(g.Kvs) != "/app/b=3,/apq=x" {
		t.Errorf("Get --from-key /app/b: %v, %q", err, keys(g.Kvs))
	}

	d, err := c.Delete(ctx, "/app/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil || d.Deleted != 2 || keys(d.PrevKvs) != "/app/a=2,/app/b=3" {
		t.Fatalf("Delete --prefix /app/: %v, deleted %d, prev %q", err, d.Deleted, keys(d.PrevKvs))
	}
	if d, err := c.Delete(ctx, "/app/a"); err != nil || d.Deleted != 0 {
		t.Errorf("Delete of a deleted key: %v, deleted %d; want 0", err, d.Deleted)
	}
	d, err = c.Delete(ctx, "/ap", clientv3.WithPrevKV())
	if err != nil || d.Deleted != 1 || keys(d.PrevKvs) != "/ap=y" {
		t.Errorf("Delete /ap: %v, deleted %d, prev %q", err, d.Deleted, keys(d.PrevKvs))
	}
	if _, err := c.Put(ctx, "", "v"); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Errorf("Put of an empty key: %v; want %v", err, rpctypes.ErrEmptyKey)
	}
}

func TestRangeLimitCountKeysOnlyAndRevisions(t *testing.T) {
	c := dial(t, startNode(t, nil))
	ctx := ctxT(t)
	for i := range 5 {
		mustPut(t, c, fmt.Sprintf("/r/%d", i), fmt.Sprint(i*i))
	}
	g, err := c.Get(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithLimit(2))
	if err != nil || keys(g.Kvs) != "/r/0=0,/r/1=1" || !g.More || g.Count != 5 {
		t.Errorf("limit 2: %v, %q, more %v, count %d; want 2 keys, more, count 5", err, keys(g.Kvs), g.More, g.Count)
	}
	g, err = c.Get(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil || keys(g.Kvs) != "/r/0,/r/1,/r/2,/r/3,/r/4" || g.More {
		t.Errorf("keys only: %v, %q", err, keys(g.Kvs))
	}
	g, err = c.Get(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || len(g.Kvs) != 0 || g.Count != 5 {
		t.Errorf("count only: %v, %d kvs, count %d", err, len(g.Kvs), g.Count)
	}
	g, err = c.Get(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(2))
	if err != nil || keys(g.Kvs) != "/r/4=16,/r/3=9" {
		t.Errorf("descending, limit 2: %v, %q", err, keys(g.Kvs))
	}
	g, err = c.Get(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	cur := g.Header.Revision
	if _, err := c.Get(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithRev(cur)); err != nil {
		t.Errorf("Get at the current revision: %v", err)
	}
	if _, err := c.Get(ctx, "/r/0", clientv3.WithRev(cur+10)); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Errorf("Get at a future revision: %v; want %v", err, rpctypes.ErrFutureRev)
	}

	// A past revision is rebuilt from the change log.
	mustPut(t, c, "/r/1", "changed")
	mustPut(t, c, "/r/5", "new")
	if _, err := c.Delete(ctx, "/r/2"); err != nil {
		t.Fatal(err)
	}
	g, err = c.Get(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithRev(cur))
	if err != nil || keys(g.Kvs) != "/r/0=0,/r/1=1,/r/2=4,/r/3=9,/r/4=16" || g.Header.Revision != cur+3 {
		t.Errorf("Get at revision %d: %v, %q at header revision %d; want the 5 first keys as they were, and the current revision in the header", cur, err, keys(g.Kvs), g.Header.Revision)
	}
	g, err = c.Get(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithRev(cur), clientv3.WithLimit(2), clientv3.WithSerializable())
	if err != nil || keys(g.Kvs) != "/r/0=0,/r/1=1" || !g.More || g.Count != 5 {
		t.Errorf("Get at revision %d, limit 2: %v, %q, more %v, count %d", cur, err, keys(g.Kvs), g.More, g.Count)
	}
	if _, err := c.Compact(ctx, cur+2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithRev(cur)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("Get at a compacted revision: %v; want %v", err, rpctypes.ErrCompacted)
	}
}

// TestTxnShapes runs the Txns Kubernetes sends, and etcd's limits.
func TestTxnShapes(t *testing.T) {
	c := dial(t, startNode(t, nil))
	ctx := ctxT(t)
	key := "/registry/pods/default/p"

	// Create: only if absent (mod_revision == 0).
	create := func(v string) *clientv3.TxnResponse {
		resp, err := c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, v)).Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			t.Fatalf("create txn: %v", err)
		}
		return resp
	}
	r := create("v1")
	if !r.Succeeded {
		t.Fatal("create of an absent key did not succeed")
	}
	rev1 := r.Header.Revision
	if r = create("v1bis"); r.Succeeded || keys(r.Responses[0].GetResponseRange().Kvs) != key+"=v1" {
		t.Fatalf("second create: succeeded %v, else branch %v; want the existing value", r.Succeeded, r.Responses)
	}

	// Update: If(mod_revision == r) Then(put) Else(get).
	update := func(rev int64, v string) *clientv3.TxnResponse {
		resp, err := c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, v)).Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			t.Fatalf("update txn: %v", err)
		}
		return resp
	}
	r = update(rev1, "v2")
	if !r.Succeeded || r.Header.Revision <= rev1 {
		t.Fatalf("update at the right revision: succeeded %v, revision %d", r.Succeeded, r.Header.Revision)
	}
	rev2 := r.Header.Revision
	if r = update(rev1, "v3"); r.Succeeded {
		t.Fatal("update at a stale revision succeeded")
	} else if kv := r.Responses[0].GetResponseRange().Kvs[0]; string(kv.Value) != "v2" || kv.ModRevision != rev2 {
		t.Errorf("stale update's else branch: %+v; want v2 at %d", kv, rev2)
	}

	// Compares on value, version and create_revision.
	r, err := c.Txn(ctx).If(
		clientv3.Compare(clientv3.Value(key), "=", "v2"),
		clientv3.Compare(clientv3.Version(key), "=", 2),
		clientv3.Compare(clientv3.CreateRevision(key), "=", rev1),
		clientv3.Compare(clientv3.Version(key), ">", 1),
		clientv3.Compare(clientv3.Value(key), "!=", "v1"),
	).Then(clientv3.OpGet(key)).Commit()
	if err != nil || !r.Succeeded {
		t.Errorf("value/version/create compares: %v, succeeded %v", err, r != nil && r.Succeeded)
	}
	if r, err := c.Txn(ctx).If(clientv3.Compare(clientv3.Value("/absent"), "=", "")).Commit(); err != nil || r.Succeeded {
		t.Errorf("a value compare on a missing key: %v, succeeded %v; want false", err, r != nil && r.Succeeded)
	}

	// Delete guarded by mod_revision, with prev_kv.
	r, err = c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev2)).
		Then(clientv3.OpDelete(key, clientv3.WithPrevKV())).Else(clientv3.OpGet(key)).Commit()
	if err != nil || !r.Succeeded {
		t.Fatalf("guarded delete: %v", err)
	}
	if d := r.Responses[0].GetResponseDeleteRange(); d.Deleted != 1 || keys(d.PrevKvs) != key+"=v2" {
		t.Errorf("guarded delete: deleted %d, prev %q", d.Deleted, keys(d.PrevKvs))
	}
	if g, _ := c.Get(ctx, key); len(g.Kvs) != 0 {
		t.Errorf("key still there after the delete: %v", g.Kvs)
	}

	// Several writes land together; a read after a write sees it.
	r, err = c.Txn(ctx).Then(clientv3.OpPut("/t/a", "1"), clientv3.OpPut("/t/b", "2"), clientv3.OpGet("/t/", clientv3.WithPrefix())).Commit()
	if err != nil || keys(r.Responses[2].GetResponseRange().Kvs) != "/t/a=1,/t/b=2" {
		t.Errorf("txn put, put, get: %v, %v", err, r)
	}

	// etcd's limits.
	ops := make([]clientv3.Op, 129)
	for i := range ops {
		ops[i] = clientv3.OpPut(fmt.Sprintf("/many/%d", i), "v")
	}
	if _, err := c.Txn(ctx).Then(ops...).Commit(); !errors.Is(err, rpctypes.ErrTooManyOps) {
		t.Errorf("txn of 129 ops: %v; want %v", err, rpctypes.ErrTooManyOps)
	}
	if _, err := c.Txn(ctx).Then(clientv3.OpPut("/d", "1"), clientv3.OpPut("/d", "2")).Commit(); !errors.Is(err, rpctypes.ErrDuplicateKey) {
		t.Errorf("txn writing a key twice: %v; want %v", err, rpctypes.ErrDuplicateKey)
	}
	if _, err := c.Put(ctx, "/big", strings.Repeat("x", 2<<20)); status.Code(err) != codes.InvalidArgument && status.Code(err) != codes.ResourceExhausted {
		t.Errorf("put of 2 MiB: %v; want InvalidArgument (too large)", err)
	}
}

func TestWatchStartRevisionPrevKVAndFilters(t *testing.T) {
	c := dial(t, startNode(t, nil))
	ctx := ctxT(t)
	first := mustPut(t, c, "/w/a", "1").Header.Revision
	mustPut(t, c, "/w/a", "2")
	mustPut(t, c, "/other", "x")
	if _, err := c.Delete(ctx, "/w/a"); err != nil {
		t.Fatal(err)
	}
	wch := c.Watch(ctx, "/w/", clientv3.WithPrefix(), clientv3.WithRev(first), clientv3.WithPrevKV())
	var got []string
	for len(got) < 3 {
		resp, ok := <-wch
		if !ok {
			t.Fatalf("watch channel closed after %v", got)
		}
		if err := resp.Err(); err != nil {
			t.Fatalf("watch: %v", err)
		}
		for _, ev := range resp.Events {
			s := fmt.Sprintf("%s %s=%s", ev.Type, ev.Kv.Key, ev.Kv.Value)
			if ev.PrevKv != nil {
				s += " prev=" + string(ev.PrevKv.Value)
			}
			got = append(got, s)
		}
	}
	want := "PUT /w/a=1|PUT /w/a=2 prev=1|DELETE /w/a= prev=2"
	if strings.Join(got, "|") != want {
		t.Errorf("events:\n got %s\nwant %s", strings.Join(got, "|"), want)
	}

	// Live, with a filter: deletes only.
	wch = c.Watch(ctx, "/f/", clientv3.WithPrefix(), clientv3.WithFilterPut())
	mustPut(t, c, "/f/x", "1")
	if _, err := c.Delete(ctx, "/f/x"); err != nil {
		t.Fatal(err)
	}
	resp := <-wch
	if len(resp.Events) != 1 || resp.Events[0].Type != mvccpb.DELETE {
		t.Errorf("filtered watch: %v; want just the delete", resp.Events)
	}
}

func TestWatchProgressRequest(t *testing.T) {
	c := dial(t, startNode(t, nil))
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	wch := c.Watch(ctx, "/p/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if resp := <-wch; !resp.Created {
		t.Fatalf("first response %+v; want created", resp)
	}
	rev := mustPut(t, c, "/elsewhere", "x").Header.Revision
	if err := c.RequestProgress(ctx); err != nil {
		t.Fatalf("RequestProgress: %v", err)
	}
	for {
		resp, ok := <-wch
		if !ok {
			t.Fatal("watch closed before a progress notification")
		}
		if resp.IsProgressNotify() {
			if resp.Header.Revision < rev {
				t.Errorf("progress at %d; want at least %d (the put before the request)", resp.Header.Revision, rev)
			}
			return
		}
	}
}

func TestWatchFromCompactedRevision(t *testing.T) {
	c := dial(t, startNode(t, nil))
	ctx := ctxT(t)
	var last int64
	for i := range 5 {
		last = mustPut(t, c, "/c/k", fmt.Sprint(i)).Header.Revision
	}
	if _, err := c.Compact(ctx, last-1); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	if _, err := c.Compact(ctx, last+5); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Errorf("Compact to a future revision: %v; want %v", err, rpctypes.ErrFutureRev)
	}
	if _, err := c.Compact(ctx, last-3); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("Compact below the last compaction: %v; want %v", err, rpctypes.ErrCompacted)
	}
	wch := c.Watch(ctx, "/c/k", clientv3.WithRev(last-3))
	resp := <-wch
	if !errors.Is(resp.Err(), rpctypes.ErrCompacted) || resp.CompactRevision != last-1 {
		t.Errorf("watch from a compacted revision: err %v, compact revision %d; want %v and %d", resp.Err(), resp.CompactRevision, rpctypes.ErrCompacted, last-1)
	}
	if _, ok := <-wch; ok {
		t.Error("the compacted watch's channel stays open")
	}
	// From the compaction revision on, the log is there.
	resp = <-c.Watch(ctx, "/c/k", clientv3.WithRev(last-1))
	if err := resp.Err(); err != nil || len(resp.Events) == 0 || resp.Events[0].Kv.ModRevision != last-1 {
		t.Errorf("watch from the compaction revision: %v, %v", err, resp.Events)
	}
}

func TestLeaseExpiryDeletesItsKeys(t *testing.T) {
	n := startNode(t, nil)
	c := dial(t, n)
	ctx := ctxT(t)
	short, err := c.Grant(ctx, 1)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	kept, err := c.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, "/lease/a", "1", clientv3.WithLease(short.ID))
	mustPut(t, c, "/lease/b", "2", clientv3.WithLease(short.ID))
	mustPut(t, c, "/lease/kept", "3", clientv3.WithLease(kept.ID))
	mustPut(t, c, "/lease/rewritten", "4", clientv3.WithLease(short.ID))
	mustPut(t, c, "/lease/rewritten", "5") // detaches it
	if _, err := c.Put(ctx, "/lease/x", "1", clientv3.WithLease(12345)); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("put with an unknown lease: %v; want %v", err, rpctypes.ErrLeaseNotFound)
	}
	ttl, err := c.TimeToLive(ctx, short.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.GrantedTTL != 1 || len(ttl.Keys) != 2 {
		t.Errorf("TimeToLive: %v, granted %d, keys %q; want 1 and the 2 attached keys", err, ttl.GrantedTTL, ttl.Keys)
	}
	g, _ := c.Get(ctx, "/lease/a")
	if len(g.Kvs) != 1 || g.Kvs[0].Lease != int64(short.ID) {
		t.Errorf("Get of a leased key: %v; want its lease %d", g.Kvs, short.ID)
	}
	wch := c.Watch(ctx, "/lease/", clientv3.WithPrefix())
	ka, err := c.KeepAlive(ctx, kept.ID)
	if err != nil {
		t.Fatalf("KeepAlive: %v", err)
	}
	var deleted []string
	for len(deleted) < 2 {
		select {
		case resp := <-wch:
			for _, ev := range resp.Events {
				if ev.Type != mvccpb.DELETE {
					t.Errorf("unexpected event %v", ev)
				}
				deleted = append(deleted, string(ev.Kv.Key))
			}
		case <-ka: // keeps "kept" alive meanwhile
		case <-ctx.Done():
			t.Fatalf("the expired lease's keys were not deleted; deleted %v", deleted)
		}
	}
	g, err = c.Get(ctx, "/lease/", clientv3.WithPrefix())
	if err != nil || keys(g.Kvs) != "/lease/kept=3,/lease/rewritten=5" {
		t.Errorf("after expiry: %v, %q; want the kept and rewritten keys", err, keys(g.Kvs))
	}
	if ttl, err := c.TimeToLive(ctx, short.ID); err != nil || ttl.TTL != -1 {
		t.Errorf("TimeToLive of the expired lease: %v, TTL %v; want -1", err, ttl)
	}
	if _, err := c.Revoke(ctx, kept.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if g, _ := c.Get(ctx, "/lease/kept"); len(g.Kvs) != 0 {
		t.Errorf("revoked lease's key still there: %v", g.Kvs)
	}
	if _, err := c.Revoke(ctx, kept.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("second Revoke: %v; want %v", err, rpctypes.ErrLeaseNotFound)
	}
}

func TestMemberListStatusAndUnimplemented(t *testing.T) {
	n1 := startNode(t, nil)
	n2 := startNode(t, n1.P2PAddrs())
	// A member that serves no etcd API is listed too, without a URL.
	n3 := startNodeWith(t, node.Config{DataDir: t.TempDir(), ListenClient: "127.0.0.1:0", Bootstrap: n1.P2PAddrs(), Logger: testutil.QuietLogger(), OpenAdmission: true})
	c := dial(t, n1)
	ctx := ctxT(t)
	deadline := time.Now().Add(waitTimeout)
	for {
		ml, err := c.MemberList(ctx)
		if err != nil {
			t.Fatalf("MemberList: %v", err)
		}
		byName := map[string][]string{}
		for _, m := range ml.Members {
			byName[m.Name] = m.ClientURLs
		}
		u1, u2 := byName[n1.ID()], byName[n2.ID()]
		u3, listed3 := byName[n3.ID()]
		if len(ml.Members) == 3 && len(u1) == 1 && len(u2) == 1 && listed3 && len(u3) == 0 {
			if u1[0] != "http://"+n1.EtcdAddr().String() || u2[0] != "http://"+n2.EtcdAddr().String() {
				t.Errorf("client URLs %v, %v; want the nodes' etcd addresses", u1, u2)
			}
			// A member has one id: the one n1 lists for n2 is the one n2
			// answers with, and n1 lists itself under its own.
			for _, m := range ml.Members {
				if m.Name == n1.ID() && m.ID != ml.Header.MemberId {
					t.Errorf("n1 lists itself as %x; its header says %x", m.ID, ml.Header.MemberId)
				}
				if m.Name == n2.ID() {
					h2, err := dial(t, n2).Get(ctx, "/none")
					if err != nil {
						t.Fatalf("Get on n2: %v", err)
					}
					if h2.Header.MemberId != m.ID {
						t.Errorf("n1 lists n2 as %x; n2's header says %x", m.ID, h2.Header.MemberId)
					}
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member list never showed the two etcd nodes with their URLs and the third without: %v", ml.Members)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronization
	}
	rev := mustPut(t, c, "/s", "1").Header.Revision
	st, err := c.Status(ctx, n1.EtcdAddr().String())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Version == "" || st.DbSize <= 0 || st.Header.Revision < rev {
		t.Errorf("Status: version %q, db size %d, revision %d; want a version, a size > 0, revision >= %d", st.Version, st.DbSize, st.Header.Revision, rev)
	}
	alarms, err := c.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) != 0 {
		t.Errorf("AlarmList: %v, %v; want none", err, alarms)
	}
	hc, err := healthpb.NewHealthClient(c.ActiveConnection()).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health check: %v, %v; want SERVING", err, hc)
	}
	_, err = c.Defragment(ctx, n1.EtcdAddr().String())
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "Defragment") {
		t.Errorf("Defragment: %v; want Unimplemented naming the call", err)
	}
}

// TestReservedKeysRefused: the keys under /chorus/ hold the cluster's own
// state (the member list); an etcd client cannot write them, alone or in a
// Txn, and the refusal says why.
func TestReservedKeysRefused(t *testing.T) {
	n := startNode(t, nil)
	c := dial(t, n)
	ctx := ctxT(t)
	before, err := c.Get(ctx, "/chorus/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Put", func() error { _, err := c.Put(ctx, "/chorus/members/x", "y"); return err }},
		{"Delete", func() error { _, err := c.Delete(ctx, "/chorus/members/x"); return err }},
		{"Txn with a free key first", func() error {
			_, err := c.Txn(ctx).Then(clientv3.OpPut("/free", "1"), clientv3.OpPut("/chorus/removed/x", "y")).Commit()
			return err
		}},
	}
	for _, call := range calls {
		err := call.call()
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s under /chorus/: %v; want InvalidArgument", call.name, err)
		}
	}
	after, err := c.Get(ctx, "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision != before.Header.Revision || len(after.Kvs) != len(before.Kvs) {
		t.Errorf("a refused write landed: revision %d -> %d, keys %v", before.Header.Revision, after.Header.Revision, after.Kvs)
	}
}

// TestCloseEndsStreams: open watch and keep-alive streams do not hold a
// node's Close until its shutdown timeout; the server ends them.
func TestCloseEndsStreams(t *testing.T) {
	n, err := node.Start(node.Config{
		DataDir: t.TempDir(), ListenClient: "127.0.0.1:0", ListenEtcd: "127.0.0.1:0",
		Logger: testutil.QuietLogger(), ShutdownTimeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, n)
	ctx := ctxT(t)
	wch := c.Watch(ctx, "/x", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if resp := <-wch; !resp.Created {
		t.Fatalf("watch not created: %v", resp.Err())
	}
	lease, err := c.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.KeepAlive(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, "/x/a", "1", clientv3.WithLease(lease.ID))
	start := time.Now()
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Close took %v with open streams; want it to end them at once", d)
	}
	// Every goroutine of the server is gone once Close returns: the stream
	// receivers, the watch senders, the lease loop, the member refresh. One
	// that has just signalled Close (wg.Done) may still be returning, so the
	// check allows a moment for that, never for one still blocked.
	var left []string
	for deadline := time.Now().Add(2 * time.Second); ; {
		left = left[:0]
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "/internal/etcdapi.") && !strings.Contains(g, "etcdapi_test.") {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
	for _, g := range left {
		t.Errorf("a goroutine of the etcd API outlives Close:\n%s", g)
	}
}

// TestWatchCancelAndSingleKey: a canceled watch gets no more events;
// a watch on a single key ignores its neighbours.
func TestWatchCancelAndSingleKey(t *testing.T) {
	c := dial(t, startNode(t, nil))
	ctx := ctxT(t)
	wctx, cancel := context.WithCancel(ctx)
	canceled := c.Watch(wctx, "/k", clientv3.WithCreatedNotify())
	if resp := <-canceled; !resp.Created {
		t.Fatal("not created")
	}
	cancel()
	single := c.Watch(ctx, "/k")
	mustPut(t, c, "/k2", "neighbour")
	mustPut(t, c, "/k", "1")
	resp := <-single
	if len(resp.Events) != 1 || string(resp.Events[0].Kv.Key) != "/k" {
		t.Errorf("single-key watch got %v; want just /k", resp.Events)
	}
	for resp := range canceled {
		if len(resp.Events) > 0 {
			t.Errorf("canceled watch got events %v", resp.Events)
		}
	}
}

// TestLeasesSurviveARestart: a lease and its keys are saved with the node,
// and the key is deleted when the lease expires after the restart.
func TestLeasesSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	cfg := node.Config{DataDir: dir, ListenClient: "127.0.0.1:0", ListenEtcd: "127.0.0.1:0", Logger: testutil.QuietLogger()}
	n, err := node.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, n)
	ctx := ctxT(t)
	lease, err := c.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, "/restart/leased", "1", clientv3.WithLease(lease.ID))
	mustPut(t, c, "/restart/plain", "2")
	_ = c.Close()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	n = startNodeWith(t, cfg)
	c = dial(t, n)
	ttl, err := c.TimeToLive(ctx, lease.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.GrantedTTL != 2 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "/restart/leased" {
		t.Fatalf("TimeToLive after a restart: %v, %+v; want the lease with its key", err, ttl)
	}
	wch := c.Watch(ctx, "/restart/leased")
	select {
	case resp := <-wch:
		if len(resp.Events) != 1 || resp.Events[0].Type != mvccpb.DELETE {
			t.Errorf("watch got %v; want the key's deletion", resp.Events)
		}
	case <-ctx.Done():
		t.Fatal("the leased key was not deleted after the restart")
	}
	if g, err := c.Get(ctx, "/restart/plain"); err != nil || len(g.Kvs) != 1 {
		t.Errorf("unleased key: %v, %v; want it kept", err, g)
	}
}

func startNodeWith(tb testing.TB, cfg node.Config) *node.Node {
	tb.Helper()
	n, err := node.Start(cfg)
	if err != nil {
		tb.Fatalf("node.Start: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("node.Close: %v", err)
		}
	})
	return n
}

// TestTxnCompareAndSwapIsAtomic: concurrent read-modify-write loops through
// Txn (If mod_revision == r Then put r+1) never lose an increment.
func TestTxnCompareAndSwapIsAtomic(t *testing.T) {
	n := startNode(t, nil)
	const workers, each = 8, 25
	ctx := ctxT(t)
	mustPut(t, dial(t, n), "/counter", "0")
	errs := make(chan error, workers)
	for range workers {
		c := dial(t, n)
		go func() {
			done := 0
			for done < each {
				g, err := c.Get(ctx, "/counter")
				if err != nil {
					errs <- err
					return
				}
				kv := g.Kvs[0]
				var v int
				fmt.Sscan(string(kv.Value), &v)
				r, err := c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("/counter"), "=", kv.ModRevision)).
					Then(clientv3.OpPut("/counter", fmt.Sprint(v+1))).Commit()
				if err != nil {
					errs <- err
					return
				}
				if r.Succeeded {
					done++
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	g, err := dial(t, n).Get(ctx, "/counter")
	if err != nil || string(g.Kvs[0].Value) != fmt.Sprint(workers*each) {
		t.Errorf("counter = %v (%v); want %d: an increment was lost", g, err, workers*each)
	}
}

func TestPutIgnoreValueAndIgnoreLease(t *testing.T) {
	c := dial(t, startNode(t, nil))
	ctx := ctxT(t)
	lease, err := c.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, "/i", "v1", clientv3.WithLease(lease.ID))
	mustPut(t, c, "/i", "v2", clientv3.WithIgnoreLease()) // keeps the lease
	g, _ := c.Get(ctx, "/i")
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "v2" || g.Kvs[0].Lease != int64(lease.ID) {
		t.Errorf("after ignore_lease: %+v; want v2 with the lease", g.Kvs)
	}
	mustPut(t, c, "/i", "", clientv3.WithIgnoreValue()) // keeps the value, drops the lease
	g, _ = c.Get(ctx, "/i")
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "v2" || g.Kvs[0].Lease != 0 || g.Kvs[0].Version != 3 {
		t.Errorf("after ignore_value: %+v; want v2, no lease, version 3", g.Kvs)
	}
	if _, err := c.Put(ctx, "/absent", "", clientv3.WithIgnoreValue()); !errors.Is(err, rpctypes.ErrKeyNotFound) {
		t.Errorf("ignore_value on a missing key: %v; want %v", err, rpctypes.ErrKeyNotFound)
	}
	if _, err := c.Put(ctx, "/i", "x", clientv3.WithIgnoreValue()); !errors.Is(err, rpctypes.ErrValueProvided) {
		t.Errorf("ignore_value with a value: %v; want %v", err, rpctypes.ErrValueProvided)
	}
}

// TestLeaseExpiryReplicates: the deletion of an expired lease's key on the
// node that granted it reaches the other nodes like any delete.
func TestLeaseExpiryReplicates(t *testing.T) {
	n1 := startNode(t, nil)
	n2 := startNode(t, n1.P2PAddrs())
	c1, c2 := dial(t, n1), dial(t, n2)
	ctx := ctxT(t)
	lease, err := c1.Grant(ctx, 3) // room for the writes below before it expires
	if err != nil {
		t.Fatal(err)
	}
	// Gossip may drop what is published before the nodes' streams are up:
	// write until node 2 has the key (each put re-attaches it to the lease).
	deadline := time.Now().Add(waitTimeout)
	for {
		mustPut(t, c1, "/replicated/leased", "1", clientv3.WithLease(lease.ID))
		if g, err := c2.Get(ctx, "/replicated/leased"); err == nil && len(g.Kvs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the leased key never reached node 2")
		}
		time.Sleep(50 * time.Millisecond) // re-publish interval, not synchronization
	}
	for {
		g, err := c2.Get(ctx, "/replicated/leased")
		if err == nil && len(g.Kvs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired lease's key is still on node 2")
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronization
	}
}
