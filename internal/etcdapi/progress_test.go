package etcdapi_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/etcdapi"
	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/watch"
)

// TestWatchProgressNotify: a watch created with progress_notify gets, every
// ProgressNotifyInterval without events, a notification at a revision up to
// which it has everything. The server runs here over a bare store and hub.
func TestWatchProgressNotify(t *testing.T) {
	var hub *watch.Hub
	st, err := store.Open(store.Config{
		Path:     filepath.Join(t.TempDir(), "db"),
		NodeID:   []byte("node-a"),
		OnCommit: func(cs []store.Change) { hub.Publish(cs) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if hub, err = watch.NewHub(st, watch.Config{}); err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	srv, err := etcdapi.Start(etcdapi.Config{
		Listen: "127.0.0.1:0", Store: st, Hub: hub, NodeID: "12D3KooWtest",
		ProgressNotifyInterval: 100 * time.Millisecond, Logger: testutil.QuietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Addr().String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	wch := c.Watch(ctx, "/n/", clientv3.WithPrefix(), clientv3.WithProgressNotify())
	rev := mustPut(t, c, "/other", "x").Header.Revision // not watched: progress passes it
	for {
		select {
		case resp, ok := <-wch:
			if !ok {
				t.Fatal("watch closed")
			}
			if resp.IsProgressNotify() && resp.Header.Revision >= rev {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no progress notification at revision %d or later", rev)
		}
	}
}
