package p2p

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

func testClock() *crdt.Clock {
	return crdt.NewClock(func() int64 { return 1_000_000 }, 500*time.Millisecond)
}

// TestDecodeGossipChain: a batch's prev_hlc is checked at the boundary.
func TestDecodeGossipChain(t *testing.T) {
	signer := peer.ID("signer")
	v := &Validator{Limits: crdt.Limits{MaxKeyBytes: 64, MaxValueBytes: 256}, Clock: testClock(), MaxMessageBytes: 4096}
	ts := func(l uint16) crdt.Timestamp { return crdt.NewTimestamp(999_000, l) }
	entry := func(l uint16) *replicationv1.Entry {
		return &replicationv1.Entry{Key: []byte("k"), Value: []byte("v"), Hlc: uint64(ts(l)), Origin: []byte(signer)}
	}
	prev := func(l uint16) *uint64 { p := uint64(ts(l)); return &p }
	tests := []struct {
		name    string
		batch   *replicationv1.Batch
		ownOnly bool
		wantErr error
		hasPrev bool
	}{
		{"no chain (an older version)", &replicationv1.Batch{Entries: []*replicationv1.Entry{entry(2)}}, true, nil, false},
		{"chain", &replicationv1.Batch{Entries: []*replicationv1.Entry{entry(2), entry(3)}, PrevHlc: prev(1)}, true, nil, true},
		{"prev not below", &replicationv1.Batch{Entries: []*replicationv1.Entry{entry(2)}, PrevHlc: prev(2)}, true, ErrBadChain, false},
		{"entries not ascending", &replicationv1.Batch{Entries: []*replicationv1.Entry{entry(3), entry(2)}, PrevHlc: prev(1)}, true, ErrBadChain, false},
		{"chain outside gossip", &replicationv1.Batch{Entries: []*replicationv1.Entry{entry(2)}, PrevHlc: prev(1)}, false, ErrBadChain, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := proto.Marshal(tc.batch)
			if err != nil {
				t.Fatal(err)
			}
			b, err := v.DecodeGossip(data, signer, tc.ownOnly)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v; want %v", err, tc.wantErr)
			}
			if err == nil && b.HasPrev != tc.hasPrev {
				t.Fatalf("HasPrev %v; want %v", b.HasPrev, tc.hasPrev)
			}
		})
	}
}

// TestDecodeFrontierUpdate: announcements are checked at the boundary.
func TestDecodeFrontierUpdate(t *testing.T) {
	ok := uint64(crdt.NewTimestamp(999_000, 0))
	ahead := uint64(crdt.NewTimestamp(1_002_000, 0))
	of := func(origin string, hlc uint64) *replicationv1.OriginFrontier {
		return &replicationv1.OriginFrontier{Origin: []byte(origin), Hlc: hlc}
	}
	many := make([]*replicationv1.OriginFrontier, MaxFrontierOrigins+1)
	for i := range many {
		many[i] = of("o", ok)
	}
	tests := []struct {
		name    string
		msg     *replicationv1.FrontierUpdate
		wantErr error
	}{
		{"good", &replicationv1.FrontierUpdate{Epoch: ok, Origins: []*replicationv1.OriginFrontier{of("a", ok), of("b", ok)}}, nil},
		{"no epoch", &replicationv1.FrontierUpdate{Origins: []*replicationv1.OriginFrontier{of("a", ok)}}, ErrUndecodable},
		{"epoch ahead", &replicationv1.FrontierUpdate{Epoch: ahead}, ErrClockAhead},
		{"frontier ahead", &replicationv1.FrontierUpdate{Epoch: ok, Origins: []*replicationv1.OriginFrontier{of("a", ahead)}}, ErrClockAhead},
		{"empty origin", &replicationv1.FrontierUpdate{Epoch: ok, Origins: []*replicationv1.OriginFrontier{of("", ok)}}, ErrUndecodable},
		{"origin too long", &replicationv1.FrontierUpdate{Epoch: ok, Origins: []*replicationv1.OriginFrontier{of(strings.Repeat("o", maxOriginBytes+1), ok)}}, ErrUndecodable},
		{"too many origins", &replicationv1.FrontierUpdate{Epoch: ok, Origins: many}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := proto.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			a, err := DecodeFrontierUpdate(data, testClock())
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v; want %v", err, tc.wantErr)
			}
			if err == nil && len(a.Frontier) != len(tc.msg.Origins) {
				t.Fatalf("frontier %v", a.Frontier)
			}
		})
	}
	if _, err := DecodeFrontierUpdate(make([]byte, maxFrontierBytes+1), testClock()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("an oversized announcement: %v", err)
	}
}

// FuzzDecodeFrontierUpdate: the announcement decoder never panics, and what
// it accepts is within the limits.
func FuzzDecodeFrontierUpdate(f *testing.F) {
	good, _ := proto.Marshal(&replicationv1.FrontierUpdate{Epoch: uint64(crdt.NewTimestamp(999_000, 0)),
		Origins: []*replicationv1.OriginFrontier{{Origin: []byte("a"), Hlc: 5}}})
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeFrontierUpdate(data, testClock())
		if err != nil {
			return
		}
		if a.Epoch == 0 || len(a.Frontier) > MaxFrontierOrigins {
			t.Fatalf("accepted %+v", a)
		}
		for o, h := range a.Frontier {
			if o == "" || len(o) > maxOriginBytes || h.Physical() > 1_000_500 {
				t.Fatalf("accepted origin %q at %v", o, h)
			}
		}
	})
}

func TestJitterStaysWithinItsFraction(t *testing.T) {
	for _, frac := range []float64{0.1, 0.2} {
		for _, d := range []time.Duration{0, 5, 100 * time.Millisecond, 5 * time.Second} {
			lo, hi := time.Duration(float64(d)*(1-frac)), time.Duration(float64(d)*(1+frac))
			seen := map[time.Duration]bool{}
			for range 1000 {
				j := jitter(d, frac)
				if j < lo || j > hi {
					t.Fatalf("jitter(%v, %v) = %v; want within [%v, %v]", d, frac, j, lo, hi)
				}
				seen[j] = true
			}
			if d >= time.Millisecond && len(seen) < 100 {
				t.Fatalf("jitter(%v, %v) took only %d values in 1,000 draws", d, frac, len(seen))
			}
		}
	}
}

// TestFrontierIntervalsScaleWithTheCluster: the announcement intervals are
// the configured ones in a small cluster and grow with N past it, so the
// cluster's announcement rates stay within ClusterRate and FullRate.
func TestFrontierIntervalsScaleWithTheCluster(t *testing.T) {
	cfg := ConvergenceConfig{}.WithDefaults()
	tests := []struct {
		n           int
		delta, full time.Duration
	}{
		{1, 100 * time.Millisecond, 5 * time.Second},
		{10, 100 * time.Millisecond, 5 * time.Second},
		{20, 100 * time.Millisecond, 10 * time.Second},
		{100, 500 * time.Millisecond, 50 * time.Second},
		{1000, 5 * time.Second, 500 * time.Second},
	}
	for _, tc := range tests {
		delta, full := frontierIntervals(cfg, tc.n)
		if delta != tc.delta || full != tc.full {
			t.Errorf("n=%d: intervals %v and %v, want %v and %v", tc.n, delta, full, tc.delta, tc.full)
		}
		if rate := float64(tc.n) / delta.Seconds(); rate > cfg.ClusterRate+1e-9 {
			t.Errorf("n=%d: %.1f announcements a second in the cluster, above %v", tc.n, rate, cfg.ClusterRate)
		}
	}
}
