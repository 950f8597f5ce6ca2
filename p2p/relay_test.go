package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/internal/testutil"
)

// TestRepairIsRelayed: b repairs from c a key that a lacks too (a write
// made on c while it was away), and passes the repair on to a at once. a
// is connected to b only, and nobody runs periodic sessions: without the
// relay, a would get the key only at its next periodic session (5 s in a
// node), here never.
func TestRepairIsRelayed(t *testing.T) {
	a := startSyncNode(t, syncNodeOpts{})
	b := startSyncNode(t, syncNodeOpts{})
	c := startSyncNode(t, syncNodeOpts{})
	connect(t, a.host, b.host)
	if _, err := c.store.Put(context.Background(), []byte("k"), []byte("written on c")); err != nil {
		t.Fatal(err)
	}
	connect(t, b.host, c.host) // b dials: b's session with c brings k to b
	holds := func(n *syncNode) func() bool {
		return func() bool {
			e, err := n.store.GetEntry([]byte("k"))
			return err == nil && e != nil
		}
	}
	testutil.Eventually(t, 20*time.Second, "b to get c's key", holds(b))
	testutil.Eventually(t, 20*time.Second, "a to get c's key from b's relay", holds(a))
}
