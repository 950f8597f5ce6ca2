package store

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/internal/testutil"
)

var convergenceSeed = flag.Uint64("convergence.seed", 0, "seed for TestApplyConvergence (0: a new one)")

// ts returns the timestamp d after testWall.
func ts(d time.Duration, logical uint16) crdt.Timestamp {
	return crdt.NewTimestamp(testWall+d.Milliseconds(), logical)
}

func entry(key, value string, hlc crdt.Timestamp, origin string) crdt.Entry {
	return crdt.Entry{Key: []byte(key), Value: []byte(value), HLC: hlc, Origin: []byte(origin)}
}

func tombstone(key string, hlc crdt.Timestamp, origin string) crdt.Entry {
	return crdt.Entry{Key: []byte(key), HLC: hlc, Origin: []byte(origin), Tombstone: true}
}

func TestApplyMerge(t *testing.T) {
	type batch struct {
		entries     []crdt.Entry
		wantChanges int // changes (and revisions) the batch makes
	}
	cases := []struct {
		name    string
		batches []batch
		key     string
		want    *crdt.Entry // the key's final entry; nil: unknown
	}{
		{
			name: "higher HLC wins",
			batches: []batch{
				{[]crdt.Entry{entry("k", "old", ts(-time.Second, 0), "node-b")}, 1},
				{[]crdt.Entry{entry("k", "new", ts(-time.Second, 1), "node-b")}, 1},
			},
			key: "k", want: &crdt.Entry{Key: []byte("k"), Value: []byte("new"), HLC: ts(-time.Second, 1), Origin: []byte("node-b")},
		},
		{
			name: "stale entry changes nothing",
			batches: []batch{
				{[]crdt.Entry{entry("k", "new", ts(-time.Second, 1), "node-b")}, 1},
				{[]crdt.Entry{entry("k", "old", ts(-time.Second, 0), "node-z")}, 0},
			},
			key: "k", want: &crdt.Entry{Key: []byte("k"), Value: []byte("new"), HLC: ts(-time.Second, 1), Origin: []byte("node-b")},
		},
		{
			name: "duplicate changes nothing",
			batches: []batch{
				{[]crdt.Entry{entry("k", "v", ts(0, 0), "node-b")}, 1},
				{[]crdt.Entry{entry("k", "v", ts(0, 0), "node-b")}, 0},
				{[]crdt.Entry{entry("k", "v", ts(0, 0), "node-b"), entry("k", "v", ts(0, 0), "node-b")}, 0},
			},
			key: "k", want: &crdt.Entry{Key: []byte("k"), Value: []byte("v"), HLC: ts(0, 0), Origin: []byte("node-b")},
		},
		{
			name: "duplicate within one batch",
			batches: []batch{
				{[]crdt.Entry{entry("k", "v", ts(0, 0), "node-b"), entry("k", "v", ts(0, 0), "node-b")}, 1},
			},
			key: "k", want: &crdt.Entry{Key: []byte("k"), Value: []byte("v"), HLC: ts(0, 0), Origin: []byte("node-b")},
		},
		{
			name: "tie broken by origin, higher first",
			batches: []batch{
				{[]crdt.Entry{entry("k", "from c", ts(0, 3), "node-c")}, 1},
				{[]crdt.Entry{entry("k", "from b", ts(0, 3), "node-b")}, 0},
			},
			key: "k", want: &crdt.Entry{Key: []byte("k"), Value: []byte("from c"), HLC: ts(0, 3), Origin: []byte("node-c")},
		},
		{
			name: "tie broken by origin, lower first",
			batches: []batch{
				{[]crdt.Entry{entry("k", "from b", ts(0, 3), "node-b")}, 1},
				{[]crdt.Entry{entry("k", "from c", ts(0, 3), "node-c")}, 1},
			},
			key: "k", want: &crdt.Entry{Key: []byte("k"), Value: []byte("from c"), HLC: ts(0, 3), Origin: []byte("node-c")},
		},
		{
			name: "exact tie: tombstone wins",
			batches: []batch{
				{[]crdt.Entry{tombstone("k", ts(0, 3), "node-b")}, 1},
				{[]crdt.Entry{entry("k", "zzz", ts(0, 3), "node-b")}, 0},
			},
			key: "k", want: &crdt.Entry{Key: []byte("k"), HLC: ts(0, 3), Origin: []byte("node-b"), Tombstone: true},
		},
		{
			name: "exact tie: higher value wins",
			batches: []batch{
				{[]crdt.Entry{entry("k", "a", ts(0, 3), "node-b"), entry("k", "b", ts(0, 3), "node-b")}, 2},
				{[]crdt.Entry{entry("k", "a", ts(0, 3), "node-b")}, 0},
			},
			key: "k", want: &crdt.Entry{Key: []byte("k"), Value: []byte("b"), HLC: ts(0, 3), Origin: []byte("node-b")},
		},
		{
			name: "remote tombstone wins over older value",
			batches: []batch{
				{[]crdt.Entry{entry("k", "v", ts(-time.Hour, 0), "node-b")}, 1},
				{[]crdt.Entry{tombstone("k", ts(-time.Minute, 0), "node-c")}, 1},
				{[]crdt.Entry{entry("k", "late", ts(-time.Hour, 5), "node-z")}, 0},
			},
			key: "k", want: &crdt.Entry{Key: []byte("k"), HLC: ts(-time.Minute, 0), Origin: []byte("node-c"), Tombstone: true},
		},
		{
			name: "tombstone for an unknown key is kept",
			batches: []batch{
				{[]crdt.Entry{tombstone("k", ts(-time.Minute, 0), "node-c")}, 1},
				{[]crdt.Entry{entry("k", "older", ts(-time.Hour, 0), "node-b")}, 0},
			},
			key: "k", want: &crdt.Entry{Key: []byte("k"), HLC: ts(-time.Minute, 0), Origin: []byte("node-c"), Tombstone: true},
		},
		{
			name: "out of order within one batch",
			batches: []batch{
				{[]crdt.Entry{
					entry("k", "1", ts(-3*time.Second, 0), "node-b"),
					entry("k", "3", ts(-1*time.Second, 0), "node-b"),
					entry("k", "2", ts(-2*time.Second, 0), "node-b"),
				}, 2},
			},
			key: "k", want: &crdt.Entry{Key: []byte("k"), Value: []byte("3"), HLC: ts(-time.Second, 0), Origin: []byte("node-b")},
		},
		{
			name: "at the max offset is accepted",
			batches: []batch{
				{[]crdt.Entry{entry("k", "edge", ts(testMaxOffset, 0xffff), "node-b")}, 1},
			},
			key: "k", want: &crdt.Entry{Key: []byte("k"), Value: []byte("edge"), HLC: ts(testMaxOffset, 0xffff), Origin: []byte("node-b")},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var commits int
			s := openStore(t, Config{OnCommit: func(cs []Change) { commits++ }})
			rev := int64(0)
			for i, b := range c.batches {
				changes, err := s.Apply(context.Background(), b.entries)
				if err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
				if len(changes) != b.wantChanges {
					t.Fatalf("batch %d made %d changes; want %d", i, len(changes), b.wantChanges)
				}
				for j, ch := range changes {
					if ch.Record.ModRevision != rev+int64(j)+1 {
						t.Errorf("batch %d change %d has revision %d; want %d", i, j, ch.Record.ModRevision, rev+int64(j)+1)
					}
				}
				rev += int64(b.wantChanges)
				if s.Revision() != rev {
					t.Fatalf("batch %d: Revision() = %d; want %d", i, s.Revision(), rev)
				}
			}
			got := mustGetEntry(t, s, []byte(c.key))
			if c.want == nil {
				if got != nil {
					t.Errorf("entry %s; want none", fmtRecord(got))
				}
				return
			}
			if got == nil || !entryEqual(&got.Entry, c.want) {
				t.Errorf("entry %s; want %s", fmtRecord(got), fmtEntry(c.want))
			}
			if got != nil && got.ModRevision != rev {
				t.Errorf("ModRevision %d; want %d (the last change)", got.ModRevision, rev)
			}
			wantCommits := 0
			for _, b := range c.batches {
				if b.wantChanges > 0 {
					wantCommits++
				}
			}
			if commits != wantCommits {
				t.Errorf("OnCommit called %d times; want %d (not for batches that change nothing)", commits, wantCommits)
			}
		})
	}
}

func TestApplyChangeRecords(t *testing.T) {
	s := openStore(t, Config{})
	ctx := context.Background()
	local := mustPut(t, s, "k", "local")
	remote := entry("k", "remote", local.Record.HLC+1, "node-b")
	changes, err := s.Apply(ctx, []crdt.Entry{remote, entry("other", "o", ts(0, 0), "node-c")})
	if err != nil || len(changes) != 2 {
		t.Fatalf("Apply = %d changes, %v; want 2", len(changes), err)
	}
	c := changes[0]
	want := Record{Entry: remote, CreateRevision: 1, ModRevision: 2, Version: 2}
	if !recordEqual(&c.Record, &want) || c.PrevModRevision != 1 || !recordEqual(c.Prev, &local.Record) {
		t.Errorf("change %s prev %d %s; want %s prev 1 %s", fmtRecord(&c.Record), c.PrevModRevision, fmtRecord(c.Prev), fmtRecord(&want), fmtRecord(&local.Record))
	}
	if c := changes[1]; c.Record.CreateRevision != 3 || c.Record.Version != 1 || c.Prev != nil || c.PrevModRevision != 0 {
		t.Errorf("new key change %s prev %s", fmtRecord(&c.Record), fmtRecord(c.Prev))
	}
	// A remote delete resets the version; a remote put after it re-creates.
	changes, err = s.Apply(ctx, []crdt.Entry{tombstone("k", remote.HLC+1, "node-b"), entry("k", "again", remote.HLC+2, "node-c")})
	if err != nil || len(changes) != 2 {
		t.Fatalf("Apply = %d changes, %v; want 2", len(changes), err)
	}
	if d := changes[0].Record; !d.Tombstone || d.CreateRevision != 0 || d.Version != 0 || d.ModRevision != 4 {
		t.Errorf("remote delete %s", fmtRecord(&d))
	}
	if p := changes[1].Record; p.CreateRevision != 5 || p.Version != 1 || p.ModRevision != 5 || !changes[1].Prev.Tombstone {
		t.Errorf("remote put after delete %s prev %s", fmtRecord(&p), fmtRecord(changes[1].Prev))
	}
	if got, _ := s.Apply(ctx, nil); got != nil {
		t.Errorf("Apply(nil) = %v", got)
	}
	if s.Revision() != 5 {
		t.Errorf("Revision() = %d; want 5", s.Revision())
	}
}

func TestApplyRejectsWholeBatch(t *testing.T) {
	valid := entry("valid", "v", ts(-time.Second, 0), "node-b")
	cases := []struct {
		name    string
		bad     crdt.Entry
		wantErr error
		wantMsg []string
	}{
		{name: "from the future", bad: entry("k", "v", ts(testMaxOffset+time.Millisecond, 0), "node-b"),
			wantErr: crdt.ErrClockSkew, wantMsg: []string{"501ms", "500ms"}},
		{name: "far in the future", bad: entry("k", "v", ts(24*time.Hour, 0), "node-b"), wantErr: crdt.ErrClockSkew},
		{name: "no origin", bad: entry("k", "v", ts(0, 0), ""), wantErr: crdt.ErrNoOrigin},
		{name: "tombstone with value", bad: crdt.Entry{Key: []byte("k"), Value: []byte("v"), HLC: ts(0, 0), Origin: []byte("node-b"), Tombstone: true},
			wantErr: crdt.ErrTombstoneData},
		{name: "empty key", bad: entry("", "v", ts(0, 0), "node-b"), wantErr: crdt.ErrKeyEmpty},
		{name: "key too large", bad: entry(strings.Repeat("k", crdt.DefaultMaxKeyBytes+1), "v", ts(0, 0), "node-b"),
			wantErr: crdt.ErrKeyTooLarge, wantMsg: []string{"4097", "4096"}},
		{name: "value too large", bad: entry("k", strings.Repeat("v", crdt.DefaultMaxValueBytes+1), ts(0, 0), "node-b"),
			wantErr: crdt.ErrValueTooLarge, wantMsg: []string{"1048577", "1048576"}},
	}
	for _, c := range cases {
		for _, pos := range []string{"first", "last"} {
			t.Run(c.name+"/"+pos, func(t *testing.T) {
				var commits int
				s := openStore(t, Config{OnCommit: func([]Change) { commits++ }})
				clockBefore := s.Clock().Last()
				batch := []crdt.Entry{valid, entry("also-valid", "v", ts(100*time.Millisecond, 0), "node-c"), c.bad}
				if pos == "first" {
					batch = []crdt.Entry{c.bad, valid, entry("also-valid", "v", ts(100*time.Millisecond, 0), "node-c")}
				}
				changes, err := s.Apply(context.Background(), batch)
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("Apply: %v; want %v", err, c.wantErr)
				}
				for _, m := range c.wantMsg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not mention %q", err, m)
					}
				}
				if changes != nil || s.Revision() != 0 || commits != 0 {
					t.Errorf("rejected batch made %d changes, Revision() %d, %d commits; want none", len(changes), s.Revision(), commits)
				}
				for _, k := range []string{"valid", "also-valid", "k"} {
					if r := mustGetEntry(t, s, []byte(k)); r != nil {
						t.Errorf("%q stored from a rejected batch: %s", k, fmtRecord(r))
					}
				}
				if s.Clock().Last() != clockBefore {
					t.Errorf("rejected batch moved the clock from %s to %s", clockBefore, s.Clock().Last())
				}
			})
		}
	}
}

func TestApplyAndLocalClock(t *testing.T) {
	t.Run("local put after an old remote entry wins", func(t *testing.T) {
		s := openStore(t, Config{})
		old := entry("k", "old", ts(-24*time.Hour, 9), "node-zzzz")
		if _, err := s.Apply(context.Background(), []crdt.Entry{old}); err != nil {
			t.Fatal(err)
		}
		c := mustPut(t, s, "k", "local")
		if c.Prev == nil || !entryEqual(&c.Prev.Entry, &old) {
			t.Errorf("Prev %s; want the remote entry", fmtRecord(c.Prev))
		}
		if got, _ := s.Get([]byte("k")); got == nil || string(got.Value) != "local" {
			t.Errorf("Get = %s; want the local write", fmtRecord(got))
		}
	})
	t.Run("apply moves the clock forward", func(t *testing.T) {
		wall := testutil.NewFakeWall(testWall)
		s := openStore(t, Config{Clock: wallClock(wall)})
		ahead := entry("k", "ahead", ts(400*time.Millisecond, 7), "node-zzzz")
		if _, err := s.Apply(context.Background(), []crdt.Entry{ahead}); err != nil {
			t.Fatal(err)
		}
		if s.Clock().Last() <= ahead.HLC {
			t.Errorf("clock %s after Apply; want above %s", s.Clock().Last(), ahead.HLC)
		}
		// The wall clock has not moved: the next local writes still stamp
		// above the remote entry, on the same key and on another.
		for _, key := range []string{"other", "k"} {
			c := mustPut(t, s, key, "local")
			if c.Record.HLC <= ahead.HLC {
				t.Errorf("Put(%q) HLC %s; want above the applied %s", key, c.Record.HLC, ahead.HLC)
			}
		}
		if got, _ := s.Get([]byte("k")); got == nil || string(got.Value) != "local" {
			t.Errorf("Get = %s; want the local write", fmtRecord(got))
		}
		// An entry further ahead moves the clock again.
		further := entry("y", "further", ts(450*time.Millisecond, 0), "node-b")
		if _, err := s.Apply(context.Background(), []crdt.Entry{further}); err != nil {
			t.Fatal(err)
		}
		if c := mustPut(t, s, "y", "v"); c.Record.HLC <= further.HLC || c.Prev == nil || c.Prev.HLC != further.HLC {
			t.Errorf("Put HLC %s prev %s; want above %s, replacing it", c.Record.HLC, fmtRecord(c.Prev), further.HLC)
		}
	})
}

func TestWallClockSteps(t *testing.T) {
	wall := testutil.NewFakeWall(testWall)
	s := openStore(t, Config{Clock: wallClock(wall)})
	ctx := context.Background()
	first := mustPut(t, s, "k", "1")
	// The wall clock steps back an hour: local writes still go forward.
	wall.Set(testWall - time.Hour.Milliseconds())
	second := mustPut(t, s, "k", "2")
	if second.Record.HLC <= first.Record.HLC {
		t.Errorf("HLC %s after the wall clock stepped back; want above %s", second.Record.HLC, first.Record.HLC)
	}
	// The skew check is against the wall clock, not the HLC: an entry 1 s
	// ahead of the (stepped back) wall clock is refused...
	e := entry("r", "v", crdt.NewTimestamp(wall.Now()+1000, 0), "node-b")
	if _, err := s.Apply(ctx, []crdt.Entry{e}); !errors.Is(err, crdt.ErrClockSkew) {
		t.Fatalf("Apply 1 s ahead: %v; want ErrClockSkew", err)
	}
	// ...and accepted once the wall clock has caught up to within the offset.
	wall.Set(wall.Now() + 600)
	if cs, err := s.Apply(ctx, []crdt.Entry{e}); err != nil || len(cs) != 1 {
		t.Fatalf("Apply after the wall clock moved on: %d changes, %v; want 1", len(cs), err)
	}
	if c := mustPut(t, s, "r", "local"); c.Record.HLC <= e.HLC {
		t.Errorf("Put HLC %s; want above the applied %s", c.Record.HLC, e.HLC)
	}
}

// genEntries returns a random set of entries from a few origins on a few
// keys: tombstones, exact HLC ties, and duplicates included.
func genEntries(r *rand.Rand, keys [][]byte) []crdt.Entry {
	origins := []string{"node-a", "node-b", "node-c", "node-d"}
	n := 20 + r.IntN(60)
	out := make([]crdt.Entry, 0, n+n/3)
	for range n {
		e := crdt.Entry{
			Key:    keys[r.IntN(len(keys))],
			HLC:    crdt.NewTimestamp(testWall-int64(r.IntN(4)), uint16(r.IntN(3))),
			Origin: []byte(origins[r.IntN(len(origins))]),
		}
		if r.IntN(4) == 0 {
			e.Tombstone = true
		} else {
			e.Value = []byte{"xyz"[r.IntN(3)]}
		}
		out = append(out, e)
	}
	for range n / 3 { // duplicates
		out = append(out, out[r.IntN(n)])
	}
	return out
}

// TestApplyConvergence checks that stores receiving the same entries in
// different orders and batchings end in the same state, the one of
// crdt.State. Reproduce a failure with -convergence.seed.
func TestApplyConvergence(t *testing.T) {
	seed := *convergenceSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -convergence.seed=%d)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 0x636f6e76))
	keys := [][]byte{[]byte("a"), []byte("a/b"), {0}, {0xff, 0xff}, []byte("k\x00\xff")}
	const rounds, replicas = 30, 3
	ctx := context.Background()
	for round := range rounds {
		entries := genEntries(r, keys)
		ref := crdt.State{}
		for _, e := range entries {
			ref.Apply(e)
		}
		stores := make([]*Store, replicas)
		for i := range stores {
			stores[i] = openStore(t, Config{NodeID: fmt.Appendf(nil, "replica-%d", i)})
			order := slices.Clone(entries)
			r.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
			var changes int
			for len(order) > 0 {
				n := min(len(order), 1+r.IntN(8))
				cs, err := stores[i].Apply(ctx, order[:n])
				if err != nil {
					t.Fatalf("round %d replica %d: Apply: %v", round, i, err)
				}
				changes += len(cs)
				order = order[n:]
			}
			if stores[i].Revision() != int64(changes) {
				t.Fatalf("round %d replica %d: Revision() %d; the Apply calls returned %d changes", round, i, stores[i].Revision(), changes)
			}
			// Replaying everything changes nothing.
			if cs, err := stores[i].Apply(ctx, entries); err != nil || len(cs) != 0 {
				t.Fatalf("round %d replica %d: replay made %d changes, %v; want none", round, i, len(cs), err)
			}
		}
		for _, k := range keys {
			want, known := ref[string(k)]
			for i, s := range stores {
				got := mustGetEntry(t, s, k)
				switch {
				case !known && got != nil:
					t.Errorf("round %d replica %d key %q: %s; the reference has none", round, i, k, fmtRecord(got))
				case known && (got == nil || !entryEqual(&got.Entry, &want)):
					t.Errorf("round %d replica %d key %q: %s; the reference has %s", round, i, k, fmtRecord(got), fmtEntry(&want))
				}
			}
		}
		// The Merkle root is the tree of the reference state, on every replica.
		wantRoot := rootOf(ref)
		for i, s := range stores {
			if got := s.MerkleRoot(); got != wantRoot {
				t.Errorf("round %d replica %d: Merkle root %x; the reference state's is %x", round, i, got, wantRoot)
			}
		}
		var firstKeys []string
		for i, s := range stores {
			got := keysOf(rangeAll(t, s, RangeOptions{Limit: 2}))
			if i == 0 {
				firstKeys = got
			} else if !slices.Equal(got, firstKeys) {
				t.Errorf("round %d: replica %d ranges %q; replica 0 %q", round, i, got, firstKeys)
			}
		}
		for _, s := range stores {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if t.Failed() {
			t.Fatalf("round %d diverged (seed %d)", round, seed)
		}
	}
}

// TestApplyDoesNotAliasCaller checks that the store keeps no reference to the
// caller's slices once Apply returned.
func TestApplyDoesNotAliasCaller(t *testing.T) {
	s := openStore(t, Config{})
	key, value := []byte("key"), []byte("value")
	if _, err := s.Apply(context.Background(), []crdt.Entry{{Key: key, Value: value, HLC: ts(0, 0), Origin: []byte("node-b")}}); err != nil {
		t.Fatal(err)
	}
	copy(value, "XXXXX")
	copy(key, "KKK")
	got := mustGetEntry(t, s, []byte("key"))
	if got == nil || !bytes.Equal(got.Value, []byte("value")) {
		t.Errorf("stored %s after the caller reused its buffers", fmtRecord(got))
	}
}
