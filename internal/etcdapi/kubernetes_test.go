package etcdapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/etcdapi"
	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/watch"
)

// The tests of this file are the differences kube-apiserver ran into
// (issue "Kubernetes on Chorus"), each against what etcd 3.7 does.

// TestFreshNodeStartsAtRevisionOne: an empty node is at etcd revision 1 and
// its first put gets 2, as in etcd (Kubernetes refuses revision 0).
func TestFreshNodeStartsAtRevisionOne(t *testing.T) {
	c := dial(t, startNode(t, nil))
	ctx := ctxT(t)
	g, err := c.Get(ctx, "/registry/namespaces/", clientv3.WithPrefix())
	if err != nil || g.Header.Revision != 1 || g.Count != 0 {
		t.Fatalf("Get on a fresh node: %v, revision %v; want revision 1 and no keys", err, g)
	}
	st, err := c.Status(ctx, c.Endpoints()[0])
	if err != nil || st.Header.Revision != 1 {
		t.Fatalf("Status on a fresh node: %v, %v; want revision 1", err, st)
	}
	// Kubernetes' create: a Txn guarded on mod_revision 0.
	r, err := c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("/registry/a"), "=", 0)).
		Then(clientv3.OpPut("/registry/a", "1")).Else(clientv3.OpGet("/registry/a")).Commit()
	if err != nil || !r.Succeeded || r.Header.Revision != 2 {
		t.Fatalf("first create: %v, %v; want success at revision 2", err, r)
	}
	g, err = c.Get(ctx, "/registry/a")
	if err != nil || len(g.Kvs) != 1 || g.Kvs[0].CreateRevision != 2 || g.Kvs[0].ModRevision != 2 || g.Kvs[0].Version != 1 {
		t.Fatalf("Get after the first put: %v, %v; want create and mod revision 2, version 1", err, g)
	}
	// Revision 1, the empty state, stays readable, and a watch from it
	// sees the first put.
	if g, err := c.Get(ctx, "/registry/a", clientv3.WithRev(1)); err != nil || len(g.Kvs) != 0 || g.Header.Revision != 2 {
		t.Errorf("Get at revision 1: %v, %v; want no key, header revision 2", err, g)
	}
	resp := <-c.Watch(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithRev(1))
	if err := resp.Err(); err != nil || len(resp.Events) != 1 || resp.Events[0].Kv.ModRevision != 2 {
		t.Errorf("watch from revision 1: %v, %v; want the put at revision 2", err, resp.Events)
	}
	if g, err := c.Get(ctx, "/registry/a", clientv3.WithRev(3)); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Errorf("Get at revision 3 (future): %v, %v; want %v", err, g, rpctypes.ErrFutureRev)
	}
}

// bareServer is an etcd API server over a store and hub opened on a folder,
// so that a test can write the store as an earlier version did and open it
// again.
type bareServer struct {
	store *store.Store
	hub   *watch.Hub
	srv   *etcdapi.Server
	c     *clientv3.Client
}

func openStore(t *testing.T, dir string, hub **watch.Hub) *store.Store {
	t.Helper()
	st, err := store.Open(store.Config{
		Path:   filepath.Join(dir, "db"),
		NodeID: []byte("node-a"),
		OnCommit: func(cs []store.Change) {
			if *hub != nil {
				(*hub).Publish(cs)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func startBare(t *testing.T, dir string, cfg etcdapi.Config) *bareServer {
	t.Helper()
	b := &bareServer{}
	b.store = openStore(t, dir, &b.hub)
	var err error
	if b.hub, err = watch.NewHub(b.store, watch.Config{}); err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.Store, cfg.Hub, cfg.NodeID, cfg.Logger = "127.0.0.1:0", b.store, b.hub, "12D3KooWtest", testutil.QuietLogger()
	cfg.StorePath, cfg.LeaseFile = filepath.Join(dir, "db"), filepath.Join(dir, "etcd-leases.json")
	if b.srv, err = etcdapi.Start(cfg); err != nil {
		t.Fatal(err)
	}
	if b.c, err = clientv3.New(clientv3.Config{Endpoints: []string{b.srv.Addr().String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.close)
	return b
}

func (b *bareServer) close() {
	if b.c != nil {
		_ = b.c.Close()
		b.srv.Close()
		b.hub.Close()
		_ = b.store.Close()
		b.c = nil
	}
}

// TestDataFolderOfAnEarlierVersion: a store written without the etcd API
// (as an earlier version, or the Chorus API, left it), and an empty store,
// open under the etcd API with every revision one higher than the store's:
// an empty store at 1, and reads at past revisions, watches from a
// revision and compaction agree with each other.
func TestDataFolderOfAnEarlierVersion(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		dir := t.TempDir()
		var hub *watch.Hub
		if err := openStore(t, dir, &hub).Close(); err != nil {
			t.Fatal(err)
		}
		b := startBare(t, dir, etcdapi.Config{})
		g, err := b.c.Get(ctxT(t), "/x")
		if err != nil || g.Header.Revision != 1 {
			t.Fatalf("Get on an empty store of before: %v, %v; want revision 1", err, g)
		}
	})
	t.Run("written", func(t *testing.T) {
		dir := t.TempDir()
		var hub *watch.Hub
		st := openStore(t, dir, &hub)
		ctx := ctxT(t)
		for i, kv := range [][2]string{{"/old/a", "1"}, {"/old/b", "2"}, {"/old/a", "3"}} {
			c, err := st.Put(ctx, []byte(kv[0]), []byte(kv[1]))
			if err != nil || c.Record.ModRevision != int64(i+1) {
				t.Fatalf("store.Put %d: %v, %v", i, err, c)
			}
		}
		if _, err := st.Delete(ctx, []byte("/old/b")); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}

		b := startBare(t, dir, etcdapi.Config{})
		g, err := b.c.Get(ctx, "/old/", clientv3.WithPrefix())
		if err != nil || g.Header.Revision != 5 || keys(g.Kvs) != "/old/a=3" || g.Kvs[0].CreateRevision != 2 || g.Kvs[0].ModRevision != 4 {
			t.Fatalf("Get: %v, %v; want /old/a=3 created at 2, modified at 4, header revision 5", err, g)
		}
		for rev, want := range map[int64]string{1: "", 2: "/old/a=1", 3: "/old/a=1,/old/b=2", 4: "/old/a=3,/old/b=2", 5: "/old/a=3"} {
			g, err := b.c.Get(ctx, "/old/", clientv3.WithPrefix(), clientv3.WithRev(rev))
			if err != nil || keys(g.Kvs) != want {
				t.Errorf("Get at revision %d: %v, %q; want %q", rev, err, keys(g.Kvs), want)
			}
		}
		resp := <-b.c.Watch(ctx, "/old/", clientv3.WithPrefix(), clientv3.WithRev(3))
		var got []string
		for _, ev := range resp.Events {
			got = append(got, fmt.Sprintf("%s %s@%d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision))
		}
		if want := "PUT /old/b@3,PUT /old/a@4,DELETE /old/b@5"; strings.Join(got, ",") != want {
			t.Errorf("watch from revision 3: %v, %q; want %q", resp.Err(), strings.Join(got, ","), want)
		}
		p, err := b.c.Put(ctx, "/old/c", "new")
		if err != nil || p.Header.Revision != 6 {
			t.Fatalf("Put after the upgrade: %v, %v; want revision 6", err, p)
		}
		if _, err := b.c.Compact(ctx, 4); err != nil {
			t.Fatal(err)
		}
		if _, err := b.c.Get(ctx, "/old/", clientv3.WithPrefix(), clientv3.WithRev(3)); !errors.Is(err, rpctypes.ErrCompacted) {
			t.Errorf("Get at 3 after Compact(4): %v; want %v", err, rpctypes.ErrCompacted)
		}
		resp = <-b.c.Watch(ctx, "/old/", clientv3.WithPrefix(), clientv3.WithRev(4))
		if err := resp.Err(); err != nil || len(resp.Events) == 0 || resp.Events[0].Kv.ModRevision != 4 {
			t.Errorf("watch from the compaction revision 4: %v, %v; want events from revision 4", err, resp.Events)
		}
		// The store, reopened, still holds its own numbering.
		b.close()
		st = openStore(t, dir, &hub)
		defer st.Close()
		if st.Revision() != 5 || st.OldestRevision() != 3 {
			t.Errorf("store after the etcd API: revision %d, oldest %d; want 5 and 3", st.Revision(), st.OldestRevision())
		}
	})
}

// TestRangeBelowCompactionRefused: after Compact(C), a Range at any
// revision below C fails with ErrCompacted, even when the change log could
// still rebuild it, as in etcd (Kubernetes' "resource version too old" and
// expired continue tokens rely on it); C itself and later stay readable.
func TestRangeBelowCompactionRefused(t *testing.T) {
	c := dial(t, startNode(t, nil))
	ctx := ctxT(t)
	var revs []int64
	for i := range 4 {
		revs = append(revs, mustPut(t, c, "a", fmt.Sprint(i+1)).Header.Revision)
	}
	if revs[0] != 2 || revs[3] != 5 {
		t.Fatalf("put revisions %v; want 2 to 5, as in etcd", revs)
	}
	if _, err := c.Compact(ctx, 4); err != nil {
		t.Fatalf("Compact(4): %v", err)
	}
	for _, tc := range []struct {
		rev     int64
		want    string
		wantErr error
	}{
		{rev: 1, wantErr: rpctypes.ErrCompacted},
		{rev: 3, wantErr: rpctypes.ErrCompacted},
		{rev: 4, want: "a=3"},
		{rev: 5, want: "a=4"},
		{rev: 6, wantErr: rpctypes.ErrFutureRev},
	} {
		g, err := c.Get(ctx, "a", clientv3.WithRev(tc.rev))
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Get a at %d: %v, %v; want %v", tc.rev, err, g, tc.wantErr)
			}
			continue
		}
		if err != nil || keys(g.Kvs) != tc.want {
			t.Errorf("Get a at %d: %v, %v; want %s", tc.rev, err, g, tc.want)
		}
	}
	// The same boundary inside a Txn (Kubernetes reads through Txns too).
	if _, err := c.Txn(ctx).Then(clientv3.OpGet("a", clientv3.WithRev(3))).Commit(); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("Txn with a Range at 3: %v; want %v", err, rpctypes.ErrCompacted)
	}
	// Compacting at or below the last compaction is refused, as in etcd.
	for _, rev := range []int64{3, 4} {
		if _, err := c.Compact(ctx, rev); !errors.Is(err, rpctypes.ErrCompacted) {
			t.Errorf("Compact(%d) after Compact(4): %v; want %v", rev, err, rpctypes.ErrCompacted)
		}
	}
	// A watch agrees: from 4 on it starts; below, it is compacted at 4.
	resp := <-c.Watch(ctx, "a", clientv3.WithRev(3))
	if !errors.Is(resp.Err(), rpctypes.ErrCompacted) || resp.CompactRevision != 4 {
		t.Errorf("watch from 3: %v, compact revision %d; want %v at 4", resp.Err(), resp.CompactRevision, rpctypes.ErrCompacted)
	}
	resp = <-c.Watch(ctx, "a", clientv3.WithRev(4))
	if err := resp.Err(); err != nil || len(resp.Events) == 0 || resp.Events[0].Kv.ModRevision != 4 {
		t.Errorf("watch from 4: %v, %v; want the put at 4 first", err, resp.Events)
	}
}

// TestWatchProgressNotifyIntervalFromNodeConfig: the interval set in the
// node's config (the agent's --watch-progress-notify-interval) reaches the
// etcd API: a progress_notify watch with no events hears from it.
func TestWatchProgressNotifyIntervalFromNodeConfig(t *testing.T) {
	n, err := node.Start(node.Config{
		DataDir: t.TempDir(), ListenClient: "127.0.0.1:0", ListenEtcd: "127.0.0.1:0",
		Logger: testutil.QuietLogger(), OpenAdmission: true, WatchProgressNotifyInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	c := dial(t, n)
	ctx := ctxT(t)
	wch := c.Watch(ctx, "/quiet/", clientv3.WithPrefix(), clientv3.WithProgressNotify())
	rev := mustPut(t, c, "/elsewhere", "x").Header.Revision
	notified := 0
	for notified < 2 { // two: the interval repeats
		select {
		case resp := <-wch:
			if len(resp.Events) > 0 {
				t.Fatalf("events on a quiet prefix: %v", resp.Events)
			}
			if resp.IsProgressNotify() && resp.Header.Revision >= rev {
				notified++
			}
		case <-ctx.Done():
			t.Fatalf("%d progress notifications at revision %d or later within %v; want 2", notified, rev, waitTimeout)
		}
	}

	if _, err := node.Start(node.Config{DataDir: t.TempDir(), WatchProgressNotifyInterval: -time.Second}); err == nil || !strings.Contains(err.Error(), "progress-notify interval") {
		t.Errorf("node.Start with a negative interval: %v; want an error naming the interval", err)
	}
}

// streamChunks reads a RangeStream to its end: its chunks, merged as the
// client merges them.
func streamChunks(t *testing.T, kv pb.KVClient, req *pb.RangeRequest) ([]*pb.RangeResponse, error) {
	t.Helper()
	st, err := kv.RangeStream(ctxT(t), req)
	if err != nil {
		return nil, err
	}
	var chunks []*pb.RangeResponse
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return chunks, nil
		}
		if err != nil {
			return chunks, err
		}
		chunks = append(chunks, r.RangeResponse)
	}
}

// TestRangeStream: KV.RangeStream (etcd 3.7) sends a range in chunks read
// at one revision, with the header, More and Count on the last one only,
// as etcd's server does; the merged stream equals Range's answer.
func TestRangeStream(t *testing.T) {
	b := startBare(t, t.TempDir(), etcdapi.Config{})
	c := b.c
	ctx := ctxT(t)
	value := strings.Repeat("v", 4<<10)
	const n = 300
	for i := range n {
		mustPut(t, c, fmt.Sprintf("/s/%03d", i), value+fmt.Sprint(i))
	}
	mustPut(t, c, "/t", "outside")
	kv := pb.NewKVClient(c.ActiveConnection())
	prefix := &pb.RangeRequest{Key: []byte("/s/"), RangeEnd: []byte("/s0")}

	t.Run("chunks", func(t *testing.T) {
		chunks, err := streamChunks(t, kv, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if len(chunks) < 3 || len(chunks[0].Kvs) != 10 {
			t.Fatalf("%d chunks, the first of %d keys; want several, the first of 10 (etcd's)", len(chunks), len(chunks[0].Kvs))
		}
		for i, ch := range chunks[:len(chunks)-1] {
			if ch.Header != nil || ch.More || ch.Count != 0 {
				t.Errorf("chunk %d carries header %v, more %v, count %d; only the last may", i, ch.Header, ch.More, ch.Count)
			}
		}
		last := chunks[len(chunks)-1]
		g, err := c.Get(ctx, "/s/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if last.Header == nil || last.Header.Revision != g.Header.Revision || last.Count != n || last.More {
			t.Fatalf("last chunk: header %v, count %d, more %v; want revision %d, count %d, no more", last.Header, last.Count, last.More, g.Header.Revision, n)
		}
		var kvs []*mvccpb.KeyValue
		for _, ch := range chunks {
			kvs = append(kvs, ch.Kvs...)
		}
		if len(kvs) != n || keys(kvs) != keys(g.Kvs) || kvs[n-1].ModRevision != g.Kvs[n-1].ModRevision {
			t.Fatalf("merged stream has %d keys; want Range's %d, same keys and values", len(kvs), len(g.Kvs))
		}
		// The client's GetStream merges the same.
		sc, err := c.GetStream(ctx, "/s/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		merged, err := clientv3.GetStreamToGetResponse(sc)
		if err != nil || keys(merged.Kvs) != keys(g.Kvs) || merged.Count != n || merged.Header.Revision != g.Header.Revision {
			t.Fatalf("GetStream: %v, %d keys, count %d", err, len(merged.Kvs), merged.Count)
		}
	})

	t.Run("one revision while writes land", func(t *testing.T) {
		g, err := c.Get(ctx, "/s/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.RangeStream(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		first, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		// Between the chunks: change, delete and add keys past the first.
		mustPut(t, c, "/s/299", "changed")
		if _, err := c.Delete(ctx, "/s/150"); err != nil {
			t.Fatal(err)
		}
		mustPut(t, c, "/s/150a", "added")
		kvs := first.RangeResponse.Kvs
		var last *pb.RangeResponse
		for {
			r, err := st.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			kvs = append(kvs, r.RangeResponse.Kvs...)
			last = r.RangeResponse
		}
		if last == nil || last.Header.Revision != g.Header.Revision || last.Count != n {
			t.Fatalf("last chunk %v; want header revision %d (the stream's start) and count %d", last, g.Header.Revision, n)
		}
		if keys(kvs) != keys(g.Kvs) {
			t.Errorf("a stream interleaved with writes returned other keys or values than the state at its revision %d", g.Header.Revision)
		}
	})

	t.Run("limit, keys only, count only, revision", func(t *testing.T) {
		chunks, err := streamChunks(t, kv, &pb.RangeRequest{Key: []byte("/s/"), RangeEnd: []byte("/s0"), Limit: 25, KeysOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		var kvs []*mvccpb.KeyValue
		for _, ch := range chunks {
			kvs = append(kvs, ch.Kvs...)
		}
		last := chunks[len(chunks)-1]
		if len(kvs) != 25 || !last.More || last.Count != n || len(kvs[0].Value) != 0 || string(kvs[24].Key) != "/s/024" {
			t.Errorf("limit 25 keys only: %d keys, more %v, count %d; want 25 keys without values, more, count %d", len(kvs), last.More, last.Count, n)
		}
		chunks, err = streamChunks(t, kv, &pb.RangeRequest{Key: []byte("/s/"), RangeEnd: []byte("/s0"), CountOnly: true})
		if err != nil || len(chunks) != 1 || chunks[0].Count != n || len(chunks[0].Kvs) != 0 || chunks[0].Header == nil {
			t.Errorf("count only: %v, %v; want one message with count %d and a header", err, chunks, n)
		}
		chunks, err = streamChunks(t, kv, &pb.RangeRequest{Key: []byte("/none/"), RangeEnd: []byte("/none0")})
		if err != nil || len(chunks) != 1 || chunks[0].Count != 0 || chunks[0].Header == nil {
			t.Errorf("empty range: %v, %v; want one message with a header and count 0", err, chunks)
		}
		chunks, err = streamChunks(t, kv, &pb.RangeRequest{Key: []byte("/s/000"), Revision: 3})
		if err != nil || len(chunks) != 1 || len(chunks[0].Kvs) != 1 || chunks[0].Header.Revision < int64(n) || chunks[0].Kvs[0].ModRevision != 2 || chunks[0].Count != 1 {
			t.Errorf("one key at revision 3: %v, %v; want it, modified at 2, count 1, the current revision in the header", err, chunks)
		}
	})

	t.Run("refused", func(t *testing.T) {
		cur := mustPut(t, c, "/u", "x").Header.Revision
		if _, err := c.Compact(ctx, 10); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			req  *pb.RangeRequest
			want codes.Code
			err  error
		}{
			{"empty key", &pb.RangeRequest{}, codes.InvalidArgument, rpctypes.ErrGRPCEmptyKey},
			{"descending", &pb.RangeRequest{Key: []byte("/s/"), RangeEnd: []byte("/s0"), SortOrder: pb.RangeRequest_DESCEND}, codes.Unimplemented, nil},
			{"by value", &pb.RangeRequest{Key: []byte("/s/"), RangeEnd: []byte("/s0"), SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_VALUE}, codes.Unimplemented, nil},
			{"filter", &pb.RangeRequest{Key: []byte("/s/"), RangeEnd: []byte("/s0"), MinModRevision: 2}, codes.Unimplemented, nil},
			{"compacted", &pb.RangeRequest{Key: []byte("/s/"), RangeEnd: []byte("/s0"), Revision: 9}, codes.OutOfRange, rpctypes.ErrGRPCCompacted},
			{"future", &pb.RangeRequest{Key: []byte("/s/"), RangeEnd: []byte("/s0"), Revision: cur + 1}, codes.OutOfRange, rpctypes.ErrGRPCFutureRev},
		} {
			_, err := streamChunks(t, kv, tc.req)
			if status.Code(err) != tc.want || (tc.err != nil && err.Error() != tc.err.Error()) {
				t.Errorf("%s: %v; want code %v %v", tc.name, err, tc.want, tc.err)
			}
		}
	})
}

// TestCompactRevisionOnAFreshStore: Compact(1) on a fresh node (etcd's
// first revision) is accepted and changes nothing.
func TestCompactRevisionOnAFreshStore(t *testing.T) {
	c := dial(t, startNode(t, nil))
	ctx := ctxT(t)
	if _, err := c.Compact(ctx, 1); err != nil {
		t.Fatalf("Compact(1) on a fresh node: %v", err)
	}
	if _, err := c.Compact(ctx, 2); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Errorf("Compact(2) on a fresh node: %v; want %v", err, rpctypes.ErrFutureRev)
	}
	ctx2, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if g, err := c.Get(ctx2, "x", clientv3.WithRev(1)); err != nil || g.Header.Revision != 1 {
		t.Errorf("Get at 1 after Compact(1): %v, %v", err, g)
	}
}
