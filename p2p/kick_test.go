package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// TestKickDialsPastDialBackoff: a member back alive (Kick, as OnRecovered
// calls it) that this node has no connection to, and whose address failed
// to dial while it was away (libp2p then refuses to dial it again for 5 s
// or more: its dial backoff), gets a session at once: the kick dials, past
// the backoff. Before, the kicked session failed "not connected" and its
// retries' dials hit the backoff until it expired.
func TestKickDialsPastDialBackoff(t *testing.T) {
	a := startSyncNode(t, syncNodeOpts{})
	dir := t.TempDir()
	id, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	// b's first run: its address, then gone.
	h, err := NewHost(id, []string{"/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	addrs := h.Addrs()
	_ = h.Close()
	a.host.Peerstore().AddAddrs(id.ID, addrs, peerstore.PermanentAddrTTL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := a.host.Connect(ctx, peer.AddrInfo{ID: id.ID}); err == nil {
		t.Fatal("dialled a host that is closed")
	}
	cancel()
	// b again, same identity and address, holding a key a lacks.
	bh, err := NewHost(id, []string{addrs[0].String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bh.Close() })
	bs, err := store.Open(store.Config{Path: t.TempDir(), NodeID: []byte(id.ID)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bs.Close() })
	if _, err := bs.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	bsync, err := StartSyncer(SyncConfig{Cluster: "test", Host: bh, Store: bs, Logger: testutil.QuietLogger(), Interval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bsync.Close() })
	a.sync.Kick(id.ID)
	// Well within libp2p's dial backoff (5 s at least), which the retries
	// of the old code waited out.
	testutil.Eventually(t, 4*time.Second, "a to get b's key after the kick", func() bool {
		e, err := a.store.GetEntry([]byte("k"))
		return err == nil && e != nil
	})
}
