package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/merkle"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/netsim"
	"github.com/chorus-kv/chorus/internal/testutil"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// syncNode is a real libp2p host on loopback with a real store and a
// syncer, and no gossip: what it learns from others it learns by sync.
type syncNode struct {
	host  host.Host
	store *store.Store
	sync  *Syncer
	wall  *testutil.FakeWall // the store's wall clock, in ms, when the test set one
}

type syncNodeOpts struct {
	net       *simNet       // nil: a host on loopback
	interval  time.Duration // 0: no periodic sync
	maxDiff   int
	grace     time.Duration
	wall      int64 // fake wall clock start (ms); 0: the system clock
	admit     func(peer.ID) error
	onDone    func(peer.ID)
	onSession func(SyncStats, error)
	onCommit  func([]store.Change)
}

func startSyncNode(t testing.TB, o syncNodeOpts) *syncNode {
	t.Helper()
	id, err := LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := hostMaker(o.net)(t, id)
	n := &syncNode{host: h}
	cfg := store.Config{Path: t.TempDir(), NodeID: []byte(id.ID), TombstoneGrace: o.grace, OnCommit: o.onCommit}
	if o.wall != 0 {
		n.wall = testutil.NewFakeWall(o.wall)
		cfg.Clock = crdt.NewClock(n.wall.Now, 0)
	}
	if n.store, err = store.Open(cfg); err != nil {
		t.Fatal(err)
	}
	interval := o.interval
	if interval == 0 {
		interval = -1
	}
	n.sync, err = StartSyncer(SyncConfig{Cluster: "test", Host: h, Store: n.store, Logger: testutil.QuietLogger(),
		Interval: interval, MaxDiffNodes: o.maxDiff, Admit: o.admit, Timeout: 60 * time.Second, OnComplete: o.onDone, OnSession: o.onSession})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n.sync.Close()
		_ = n.host.Close()
		_ = n.store.Close()
	})
	return n
}

func connect(t testing.TB, a, b host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// seed applies entries to a store in batches.
func seed(t testing.TB, s *store.Store, entries []crdt.Entry) {
	t.Helper()
	for len(entries) > 0 {
		n := min(len(entries), 2000)
		if _, err := s.Apply(context.Background(), entries[:n]); err != nil {
			t.Fatal(err)
		}
		entries = entries[n:]
	}
}

func genEntry(key string, hlc crdt.Timestamp, origin string, tomb bool) crdt.Entry {
	e := crdt.Entry{Key: []byte(key), HLC: hlc, Origin: []byte(origin), Tombstone: tomb}
	if !tomb {
		e.Value = []byte("value of " + key)
	}
	return e
}

func TestSyncRepairsExactlyTheDifference(t *testing.T) {
	// The sessions b served, as OnSession reports them.
	served := make(chan SyncStats, 16)
	a := startSyncNode(t, syncNodeOpts{})
	b := startSyncNode(t, syncNodeOpts{onSession: func(st SyncStats, err error) {
		if err == nil && !st.Initiator {
			served <- st
		}
	}})
	connect(t, a.host, b.host)
	now := crdt.NewTimestamp(time.Now().Add(-time.Minute).UnixMilli(), 0)
	var shared []crdt.Entry
	for i := range 3000 {
		shared = append(shared, genEntry(fmt.Sprintf("shared/%d", i), now, "w", false))
	}
	seed(t, a.store, shared)
	seed(t, b.store, shared)
	var onlyA, onlyB []crdt.Entry
	for i := range 40 {
		onlyA = append(onlyA, genEntry(fmt.Sprintf("a/%d", i), now, "a", false))
		onlyB = append(onlyB, genEntry(fmt.Sprintf("b/%d", i), now, "b", false))
	}
	// Conflicting writes: a newer on each side, a delete, and an HLC tie
	// broken by origin.
	onlyA = append(onlyA, genEntry("shared/1", now+1, "a", false), genEntry("shared/2", now+1, "a", true), genEntry("shared/3", now+5, "a", false))
	onlyB = append(onlyB, genEntry("shared/4", now+1, "b", false), genEntry("shared/3", now+5, "b", false))
	seed(t, a.store, onlyA)
	seed(t, b.store, onlyB)
	if a.store.MerkleRoot() == b.store.MerkleRoot() {
		t.Fatal("roots equal before sync")
	}

	st, err := a.sync.SyncWith(context.Background(), b.host.ID())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", st)
	if a.store.MerkleRoot() != b.store.MerkleRoot() {
		t.Fatalf("roots differ after a session: %x vs %x", a.store.MerkleRoot(), b.store.MerkleRoot())
	}
	// a sends its 40 keys, its 3 conflicting entries; b sends its 40 and 2
	// (the HLC tie goes both ways).
	if st.EntriesSent != 43 || st.EntriesReceived != 42 {
		t.Errorf("sent %d, received %d entries; want exactly the difference: 43 and 42", st.EntriesSent, st.EntriesReceived)
	}
	if st.Partial || st.RoundTrips > 5 {
		t.Errorf("partial %v, %d round trips; want a complete session in at most 5", st.Partial, st.RoundTrips)
	}
	// b saw the same session from its side (after a's on-connect session,
	// which found nothing yet or ran before the seeding).
	deadline := time.After(20 * time.Second)
	for seen := false; !seen; {
		select {
		case bs := <-served:
			seen = bs.EntriesReceived == st.EntriesSent && bs.EntriesSent == st.EntriesReceived && bs.EntriesApplied > 0 && bs.Peer == a.host.ID()
		case <-deadline:
			t.Fatal("b's OnSession never reported the session it served")
		}
	}
	// The totals add up every session.
	if tot := a.sync.Stats(); tot.EntriesSent < 43 || tot.EntriesReceived < 42 || tot.EntriesApplied < 1 || tot.BytesSent < st.BytesSent || tot.BytesReceived < st.BytesReceived || st.BytesSent == 0 {
		t.Errorf("a's totals %+v after a session of %+v", tot, st)
	}
	for _, k := range []string{"shared/1", "shared/2", "shared/3", "shared/4", "a/0", "b/39"} {
		ea, _ := a.store.GetEntry([]byte(k))
		eb, _ := b.store.GetEntry([]byte(k))
		if ea == nil || eb == nil || crdt.Compare(&ea.Entry, &eb.Entry) != 0 {
			t.Errorf("key %q differs after sync", k)
		}
	}
	if e, _ := a.store.GetEntry([]byte("shared/3")); e == nil || string(e.Origin) != "b" {
		t.Errorf("HLC tie: the larger origin must win on both")
	}

	// A second session finds nothing to do, in one round trip.
	st, err = b.sync.SyncWith(context.Background(), a.host.ID())
	if err != nil {
		t.Fatal(err)
	}
	if st.EntriesSent+st.EntriesReceived != 0 || st.RoundTrips != 1 {
		t.Errorf("second session: %+v; want nothing exchanged in 1 round trip", st)
	}
	if c, f, _ := a.sync.Counters(); c < 1 || f != 0 {
		t.Errorf("a's counters: %d completed, %d failed", c, f)
	}
}

func TestSyncLargeDifferenceOverSeveralSessions(t *testing.T) {
	// a, the responder, has the default cap: the initiator's caps make the
	// sessions partial, and a must know it (no OnComplete until the last).
	var aCompleted atomic.Int64
	a := startSyncNode(t, syncNodeOpts{onDone: func(peer.ID) { aCompleted.Add(1) }})
	b := startSyncNode(t, syncNodeOpts{maxDiff: 8})
	now := crdt.NewTimestamp(time.Now().Add(-time.Minute).UnixMilli(), 0)
	var es []crdt.Entry
	for i := range 2000 {
		es = append(es, genEntry(fmt.Sprintf("k/%d", i), now, "a", false))
	}
	seed(t, a.store, es)
	// Only the test's sessions run: b's on-connect session would race them.
	b.host.Network().StopNotify(b.sync.notify)
	connect(t, b.host, a.host)
	sessions := 0
	for {
		st, err := b.sync.SyncWith(context.Background(), a.host.ID())
		if err != nil {
			t.Fatal(err)
		}
		sessions++
		if !st.Partial {
			break
		}
		if n := aCompleted.Load(); n != 0 {
			t.Fatalf("the responder counted %d complete sessions while the initiator's were partial", n)
		}
		if sessions > 1000 {
			t.Fatal("no convergence after 1000 sessions")
		}
	}
	if a.store.MerkleRoot() != b.store.MerkleRoot() || b.store.Keys() != 2000 {
		t.Fatalf("after %d sessions: b has %d keys, roots equal %v", sessions, b.store.Keys(), a.store.MerkleRoot() == b.store.MerkleRoot())
	}
	if sessions < 2 {
		t.Fatalf("a difference of 2000 keys with MaxDiffNodes 8 took %d session; want several", sessions)
	}
}

// TestSyncRunsOnConnectAndPeriodically: a session runs when two nodes
// connect, and then every interval. On the simulated network, on virtual
// time.
func TestSyncRunsOnConnectAndPeriodically(t *testing.T) {
	t.Run("on connect", func(t *testing.T) {
		netsim.Run(t, func(t *testing.T) {
			sn := startSimNet(t)
			now := crdt.NewTimestamp(time.Now().Add(-time.Minute).UnixMilli(), 0)
			a := startSyncNode(t, syncNodeOpts{net: sn})
			b := startSyncNode(t, syncNodeOpts{net: sn})
			seed(t, a.store, []crdt.Entry{genEntry("x", now, "a", false)})
			connect(t, b.host, a.host) // b dials: b starts a session
			testutil.Eventually(t, 20*time.Second, "b has a's key", func() bool { return b.store.MerkleRoot() == a.store.MerkleRoot() })
		})
	})
	t.Run("periodic", func(t *testing.T) {
		netsim.Run(t, func(t *testing.T) {
			sn := startSimNet(t)
			now := crdt.NewTimestamp(time.Now().Add(-time.Minute).UnixMilli(), 0)
			const interval = 50 * time.Millisecond
			a := startSyncNode(t, syncNodeOpts{net: sn, interval: interval})
			b := startSyncNode(t, syncNodeOpts{net: sn})
			connect(t, a.host, b.host)
			testutil.Eventually(t, 20*time.Second, "the on-connect session", func() bool { c, _, _ := a.sync.Counters(); return c >= 1 })
			seed(t, b.store, []crdt.Entry{genEntry("y", now, "b", false)}) // after the connection: only a periodic session brings it
			// Within a few intervals (each jittered), on virtual time.
			testutil.Eventually(t, 10*interval, "a has b's key", func() bool { return b.store.MerkleRoot() == a.store.MerkleRoot() })
		})
	})
}

func TestSyncRefusesStaleNode(t *testing.T) {
	const start = int64(1_700_000_000_000)
	grace := time.Hour
	a := startSyncNode(t, syncNodeOpts{wall: start, grace: grace})
	b := startSyncNode(t, syncNodeOpts{wall: start, grace: grace})
	connect(t, a.host, b.host)
	ctx := context.Background()
	if _, err := a.sync.SyncWith(ctx, b.host.ID()); err != nil {
		t.Fatal(err)
	}
	// b goes quiet; a deletes a key after that and, past the grace period,
	// purges the tombstone.
	a.wall.Add(time.Minute.Milliseconds())
	if _, err := a.store.Delete(ctx, []byte("gone")); err != nil {
		t.Fatal(err)
	}
	a.wall.Add((grace + time.Minute).Milliseconds())
	b.wall.Add((grace + 2*time.Minute).Milliseconds())
	if n, err := a.store.PurgeTombstones(ctx, 0); err != nil || n != 1 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	for _, tc := range []struct {
		name      string
		from, to  *syncNode
		staleSide string
	}{
		{"stale node initiates", b, a, "this node"},
		{"fresh node initiates", a, b, "peer "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.from.sync.SyncWith(ctx, tc.to.host.ID())
			var se *StaleError
			if !errors.As(err, &se) || !errors.Is(err, ErrStale) {
				t.Fatalf("err = %v; want a StaleError", err)
			}
			if !strings.HasPrefix(se.Stale, tc.staleSide) || !strings.Contains(err.Error(), "remove the db folder") {
				t.Fatalf("err = %v; want it to name %q as stale and say how to reset", err, tc.staleSide)
			}
		})
	}
	// A node that was in contact recently enough is not refused.
	c := startSyncNode(t, syncNodeOpts{wall: a.wall.Now(), grace: grace})
	connect(t, c.host, a.host)
	if _, err := c.sync.SyncWith(ctx, a.host.ID()); err != nil {
		t.Fatalf("a new node: %v", err)
	}
}

// rogue opens a raw sync stream to n and plays frames at it.
func rogueSession(t *testing.T, n *syncNode, frames [][]byte) error {
	t.Helper()
	r := startSyncNode(t, syncNodeOpts{})
	connect(t, r.host, n.host)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := r.host.NewStream(ctx, n.host.ID(), SyncProtocol("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(st)
	for _, f := range frames {
		if err := writeFrame(st, f); err != nil {
			return err
		}
	}
	_ = st.CloseWrite()
	for {
		b, err := readFrame(br, 8<<20)
		if err != nil {
			return err
		}
		m := &replicationv1.SyncMessage{}
		if err := proto.Unmarshal(b, m); err != nil {
			return err
		}
		if h := m.GetHello(); h != nil && h.GetError() != "" {
			return errors.New(h.GetError())
		}
	}
}

func TestSyncRejectsMalformedPeers(t *testing.T) {
	n := startSyncNode(t, syncNodeOpts{})
	now := crdt.NewTimestamp(time.Now().UnixMilli(), 0)
	seed(t, n.store, []crdt.Entry{genEntry("k", now, "x", false)})
	msg := func(m *replicationv1.SyncMessage) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hello := func(fanout uint32, root uint64) []byte {
		return msg(&replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Hello{Hello: &replicationv1.SyncHello{
			Fanout: fanout, Depth: merkle.Depth, Root: root, LastContact: uint64(now)}}})
	}
	level := func(l uint32, parents []uint32, hashes int) []byte {
		return msg(&replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Level{Level: &replicationv1.SyncLevel{
			Level: l, Parents: parents, Hashes: make([]uint64, hashes)}}})
	}
	cases := []struct {
		name   string
		frames [][]byte
	}{
		{"garbage", [][]byte{[]byte("\xff\xff\xff not a message")}},
		{"another tree shape", [][]byte{hello(8, 1)}},
		{"level outside the tree", [][]byte{hello(merkle.Fanout, 1), level(merkle.Depth, []uint32{0}, merkle.Fanout)}},
		{"parent outside its level", [][]byte{hello(merkle.Fanout, 1), level(1, []uint32{99}, merkle.Fanout)}},
		{"short hashes", [][]byte{hello(merkle.Fanout, 1), level(1, []uint32{0}, 3)}},
		{"entries out of turn", [][]byte{hello(merkle.Fanout, 1), msg(&replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Entries{Entries: &replicationv1.SyncEntries{
			Entries: []*replicationv1.Entry{{Key: []byte("evil"), Value: []byte("v"), Hlc: uint64(now), Origin: []byte("x")}}, Last: true}}})}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, failedBefore, refusedBefore := n.sync.Counters()
			_ = rogueSession(t, n, tc.frames)
			testutil.Eventually(t, 10*time.Second, "the session counted as failed or refused", func() bool {
				_, f, r := n.sync.Counters()
				return f+r > failedBefore+refusedBefore
			})
			if e, _ := n.store.GetEntry([]byte("evil")); e != nil {
				t.Fatal("an entry from a malformed session was applied")
			}
		})
	}
}

func TestQueryStatus(t *testing.T) {
	a := startSyncNode(t, syncNodeOpts{})
	b := startSyncNode(t, syncNodeOpts{})
	connect(t, a.host, b.host)
	if _, err := b.store.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := a.sync.QueryStatus(ctx, b.host.ID())
	if err != nil {
		t.Fatal(err)
	}
	if st.GetMerkleRoot() != b.store.MerkleRoot() || st.GetRevision() != 1 || st.GetKeys() != 1 {
		t.Fatalf("status %v; want b's root %x, revision 1, 1 key", st, b.store.MerkleRoot())
	}
}

// TestSyncRepairsTwinWrites: two nodes sharing an identity (a copied data
// folder) can make two writes with the same (HLC, origin) and different
// values. The Merkle hash covers the value, so the roots differ, and one
// session leaves both sides with crdt.Compare's winner.
func TestSyncRepairsTwinWrites(t *testing.T) {
	a := startSyncNode(t, syncNodeOpts{})
	b := startSyncNode(t, syncNodeOpts{})
	connect(t, a.host, b.host)
	now := crdt.NewTimestamp(time.Now().Add(-time.Minute).UnixMilli(), 0)
	var onA, onB []crdt.Entry
	for i := range 200 {
		ea := genEntry(fmt.Sprintf("twin/%03d", i), now, "twin", false)
		eb := ea
		ea.Value, eb.Value = fmt.Appendf(nil, "from a %d", i), fmt.Appendf(nil, "from b %d", i)
		onA, onB = append(onA, ea), append(onB, eb)
	}
	seed(t, a.store, onA)
	seed(t, b.store, onB)
	if a.store.MerkleRoot() == b.store.MerkleRoot() {
		t.Fatal("roots equal although 200 keys hold different values")
	}
	st, err := a.sync.SyncWith(context.Background(), b.host.ID())
	if err != nil {
		t.Fatal(err)
	}
	if st.EntriesSent != 200 || st.EntriesReceived != 200 {
		t.Errorf("sent %d, received %d entries; want 200 each way (an HLC tie goes both ways)", st.EntriesSent, st.EntriesReceived)
	}
	if a.store.MerkleRoot() != b.store.MerkleRoot() {
		t.Fatalf("roots differ after a session: %x vs %x", a.store.MerkleRoot(), b.store.MerkleRoot())
	}
	for i := range onA {
		want := crdt.Merge(&onA[i], &onB[i])
		for name, s := range map[string]*store.Store{"a": a.store, "b": b.store} {
			got, err := s.GetEntry(want.Key)
			if err != nil || got == nil || crdt.Compare(&got.Entry, want) != 0 {
				t.Fatalf("%s holds %v for %q; want the total order's winner %q", name, got, want.Key, want.Value)
			}
		}
	}
}

// TestSyncAppliesInBoundedBatches: a large repair is committed in batches of
// at most maxApplyEntries, each durable before the next is queued, so a
// local write waits behind one of them, not behind the whole repair (before,
// a frame of up to a megabyte of entries was one batch).
func TestSyncAppliesInBoundedBatches(t *testing.T) {
	const keys = 5000
	var biggest, remote, batches atomic.Int64
	var aID atomic.Value
	a := startSyncNode(t, syncNodeOpts{onCommit: func(changes []store.Change) {
		n := int64(0)
		for i := range changes {
			if string(changes[i].Record.Origin) != aID.Load().(string) {
				n++
			}
		}
		remote.Add(n)
		batches.Add(1)
		if n > biggest.Load() {
			biggest.Store(n)
		}
	}})
	aID.Store(string(a.host.ID()))
	b := startSyncNode(t, syncNodeOpts{})
	entries := make([]crdt.Entry, keys)
	for i := range entries {
		entries[i] = genEntry(fmt.Sprintf("k%05d", i), crdt.Timestamp(1000+i), string(b.host.ID()), false)
	}
	seed(t, b.store, entries)
	connect(t, a.host, b.host) // a dials: a runs the session
	testutil.Eventually(t, 30*time.Second, "a has b's keys", func() bool { return a.store.Keys() == keys })
	if got := biggest.Load(); got > maxApplyEntries {
		t.Errorf("a batch held %d entries of the repair; the bound is %d", got, maxApplyEntries)
	}
	t.Logf("%d entries repaired in %d batches", remote.Load(), batches.Load())
}

func TestRetryBackoff(t *testing.T) {
	tests := []struct {
		prev, interval, want time.Duration
	}{
		{0, 5 * time.Second, minSyncRetry},
		{minSyncRetry, 5 * time.Second, 2 * minSyncRetry},
		{2 * time.Second, 5 * time.Second, maxSyncRetry},
		{maxSyncRetry, 5 * time.Second, maxSyncRetry},
		{time.Second, 300 * time.Millisecond, 300 * time.Millisecond}, // never past the interval
		{time.Second, -1, 2 * time.Second},                            // periodic syncs off
	}
	for _, tc := range tests {
		if got := retryBackoff(tc.prev, tc.interval); got != tc.want {
			t.Errorf("retryBackoff(%v, %v) = %v; want %v", tc.prev, tc.interval, got, tc.want)
		}
	}
	for _, err := range []error{ErrStale, context.Canceled, fmt.Errorf("p2p: sync with x: %w", &StaleError{})} {
		if retryable(err) {
			t.Errorf("retryable(%v) = true", err)
		}
	}
	if !retryable(errors.New("stateless reset")) {
		t.Error("a connection error is not retryable")
	}
}

// TestKickRunsASessionRateLimited: Kick starts a session with a connected
// peer (as membership does when a member comes back), at most one per peer
// per KickInterval. On the simulated network, on virtual time.
func TestKickRunsASessionRateLimited(t *testing.T) {
	netsim.Run(t, func(t *testing.T) {
		sn := startSimNet(t)
		a := startSyncNode(t, syncNodeOpts{net: sn})
		b := startSyncNode(t, syncNodeOpts{net: sn})
		completed := func(n *syncNode) int64 { c, _, _ := n.sync.Counters(); return c }
		connect(t, b.host, a.host) // b dials: b runs the on-connect session
		testutil.Eventually(t, 30*time.Second, "b's on-connect session", func() bool { return completed(b) >= 1 && completed(a) >= 1 })
		before := completed(b) // sessions b ran or served
		a.sync.Kick(b.host.ID())
		a.sync.Kick(b.host.ID()) // within KickInterval: dropped
		testutil.Eventually(t, 30*time.Second, "a's kicked session, served by b", func() bool { return completed(b) >= before+1 })
		a.sync.mu.Lock()
		kicks := len(a.sync.mu.kicked)
		a.sync.mu.Unlock()
		if kicks != 1 {
			t.Errorf("%d peers kicked; want 1", kicks)
		}
		if n := len(a.sync.kick); n != 0 {
			t.Errorf("%d kicks queued after a rate-limited one", n)
		}
	})
}
