package p2p

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/testutil"
)

func TestEstimateCatchUp(t *testing.T) {
	tests := []struct {
		name        string
		f           CatchUpFacts
		state       CatchUpState
		received    int64
		total       int64
		percent     float64
		detailHolds string
	}{
		{name: "a lone node has nothing to catch up",
			f:     CatchUpFacts{Alone: true, PeerKeys: -1},
			state: CaughtUp, detailHolds: "no peers"},
		{name: "a new node before any peer answered",
			f:     CatchUpFacts{Active: true, PeerKeys: -1},
			state: CatchingUp, detailHolds: "no connected member has reported"},
		{name: "a new node at the start",
			f:     CatchUpFacts{Active: true, PeerKeys: 20000},
			state: CatchingUp, total: 20000, detailHolds: "received 0 of about 20000"},
		{name: "a new node half way",
			f:     CatchUpFacts{Active: true, Received: 10000, LocalKeys: 10000, PeerKeys: 20000},
			state: CatchingUp, received: 10000, total: 20000, percent: 50, detailHolds: "(50%)"},
		{name: "gossip brought some keys: fewer left to receive",
			f:     CatchUpFacts{Active: true, Received: 10000, LocalKeys: 10100, PeerKeys: 20100},
			state: CatchingUp, received: 10000, total: 20000, percent: 50},
		{name: "back after downtime: overwrites arrive but add no key",
			f:     CatchUpFacts{Active: true, Received: 700, LocalKeys: 1000, PeerKeys: 1000},
			state: CatchingUp, received: 700, total: 700, percent: 100},
		{name: "the peer holds fewer keys (it purged tombstones, or is behind)",
			f:     CatchUpFacts{Active: true, Received: 5, LocalKeys: 900, PeerKeys: 100},
			state: CatchingUp, received: 5, total: 5, percent: 100},
		{name: "caught up keeps the last catch-up's count",
			f:     CatchUpFacts{Received: 20000, LocalKeys: 20000, PeerKeys: 20000},
			state: CaughtUp, received: 20000, total: 20000, percent: 100, detailHolds: "20000 entries received"},
		{name: "caught up although the estimate said more was to come",
			f:     CatchUpFacts{Received: 19000, LocalKeys: 19000, PeerKeys: 25000},
			state: CaughtUp, received: 19000, total: 19000, percent: 100},
		{name: "negative inputs are clamped",
			f:     CatchUpFacts{Active: true, Received: -3, LocalKeys: -1, PeerKeys: 10},
			state: CatchingUp, received: 0, total: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := EstimateCatchUp(tt.f)
			if c.State != tt.state || c.Received != tt.received || c.Total != tt.total {
				t.Errorf("EstimateCatchUp(%+v) = %s, %d of %d; want %s, %d of %d", tt.f, c.State, c.Received, c.Total, tt.state, tt.received, tt.total)
			}
			if c.Total != 0 && c.Total < c.Received {
				t.Errorf("total %d below received %d", c.Total, c.Received)
			}
			if got := c.Percent(); got != tt.percent {
				t.Errorf("Percent() = %v; want %v", got, tt.percent)
			}
			if !strings.Contains(c.Detail, tt.detailHolds) {
				t.Errorf("detail %q does not say %q", c.Detail, tt.detailHolds)
			}
		})
	}
}

// TestCatchUpPercentBounds: the percentage stays within 0 to 100.
func TestCatchUpPercentBounds(t *testing.T) {
	for _, c := range []CatchUp{{}, {Received: 5}, {Received: 5, Total: 4}, {Received: 0, Total: 7}, {Received: 7, Total: 7}} {
		if p := c.Percent(); p < 0 || p > 100 {
			t.Errorf("%+v.Percent() = %v", c, p)
		}
	}
}

// TestSyncerReceivedMovesMidSession: Received counts entries as each batch
// is applied, before the session ends (the totals move only at its end),
// and adds up to the totals once it has.
func TestSyncerReceivedMovesMidSession(t *testing.T) {
	var bp atomic.Pointer[syncNode] // set once started; read by b's commit hook
	var midReceived, midTotals atomic.Int64
	b := startSyncNode(t, syncNodeOpts{onCommit: func([]store.Change) {
		b := bp.Load()
		if b == nil {
			return
		}
		if r := b.sync.Received(); r > midReceived.Load() {
			midReceived.Store(r)
			midTotals.Store(b.sync.Stats().EntriesReceived)
		}
	}})
	bp.Store(b)
	a := startSyncNode(t, syncNodeOpts{})
	now := crdt.NewTimestamp(time.Now().Add(-time.Minute).UnixMilli(), 0)
	var entries []crdt.Entry
	for i := range 3000 {
		entries = append(entries, genEntry(fmt.Sprintf("k/%d", i), now, "a", false))
	}
	seed(t, a.store, entries)
	connect(t, b.host, a.host)
	// b's on-connect session may already run; SyncWith completes the rest.
	if _, err := b.sync.SyncWith(context.Background(), a.host.ID()); err != nil {
		t.Fatal(err)
	}
	if b.store.Keys() != 3000 {
		t.Fatalf("b holds %d keys after a session; want 3000", b.store.Keys())
	}
	// The on-connect session may still be ending (both received it all):
	// once it has, Received and the totals agree.
	testutil.EventuallyWhy(t, 30*time.Second, 10*time.Millisecond, "Received() equals the totals, at least 3000", func() (bool, string) {
		r, tot := b.sync.Received(), b.sync.Stats().EntriesReceived
		return r == tot && r >= 3000, fmt.Sprintf("Received() = %d, totals %d after the sessions", r, tot)
	})
	if midReceived.Load() == 0 || midReceived.Load() <= midTotals.Load() {
		t.Errorf("during the session Received() reached %d while the totals said %d; want it ahead", midReceived.Load(), midTotals.Load())
	}
}
