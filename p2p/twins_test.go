package p2p

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTwins(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	orig := boot{nonce: 7, started: 100}
	copy := boot{nonce: 3, started: 200}
	restart := boot{nonce: 9, started: 300}
	type hear struct {
		b boot
		s float64
	}
	tests := []struct {
		name    string
		heard   []hear
		refused []boot // boots refused at the end
	}{
		{"one process", []hear{{orig, 0}, {orig, 1}, {orig, 2}}, nil},
		{"a restart", []hear{{orig, 0}, {orig, 1}, {restart, 3}, {restart, 4}, {restart, 9}}, nil},
		{"a copy while the original runs", []hear{{orig, 0}, {copy, 1}, {orig, 2.5}, {copy, 3}}, []boot{copy}},
		{"the original heard within the grace only", []hear{{orig, 0}, {copy, 1}, {orig, 1.5}}, nil},
		{"the copy heard first", []hear{{copy, 0}, {orig, 2}}, []boot{copy}},
		{"the original restarts after the copy stopped", []hear{{orig, 0}, {copy, 1}, {orig, 3}, {restart, 10}, {restart, 12}}, []boot{copy}},
		{"no boot announced", []hear{{boot{}, 0}, {boot{}, 5}}, nil},
		{"same start time: the larger nonce loses", []hear{{boot{1, 5}, 0}, {boot{2, 5}, 0}, {boot{1, 5}, 2}}, []boot{{2, 5}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tw := newTwins(time.Second)
			for _, h := range tc.heard {
				tw.heard("X", h.b, []string{"addr"}, at(h.s))
			}
			for _, b := range []boot{orig, copy, restart, {1, 5}, {2, 5}} {
				want := false
				for _, r := range tc.refused {
					want = want || r == b
				}
				if _, _, got := tw.refused("X", b); got != want {
					t.Errorf("refused(%v) = %v; want %v", b, got, want)
				}
			}
		})
	}
}

func TestTwinsBounded(t *testing.T) {
	tw := newTwins(time.Second)
	now := time.Unix(0, 0)
	for i := range maxTwinPeers + 10 {
		for j := range maxBootsPerPeer + 3 {
			tw.heard(string(rune(i)), boot{nonce: uint64(j + 1), started: int64(j)}, nil, now)
		}
	}
	if len(tw.peers) > maxTwinPeers {
		t.Errorf("%d peers remembered; the bound is %d", len(tw.peers), maxTwinPeers)
	}
	for id, b := range tw.peers {
		if len(b) > maxBootsPerPeer {
			t.Fatalf("%d boots of %q remembered; the bound is %d", len(b), id, maxBootsPerPeer)
		}
	}
}

func TestDuplicateIdentityError(t *testing.T) {
	err := error(&DuplicateIdentityError{ID: "12D3KooWX", OtherStarted: time.Unix(5, 0), OtherAddrs: []string{"/ip4/10.0.0.1/tcp/7380"}, ReportedBy: "12D3KooWC"})
	if !errors.Is(err, ErrDuplicateIdentity) {
		t.Error("not ErrDuplicateIdentity")
	}
	for _, want := range []string{"12D3KooWX", "/ip4/10.0.0.1/tcp/7380", "--new-identity", "copied"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}
