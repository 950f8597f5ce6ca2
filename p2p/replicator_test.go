package p2p

import (
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt"
)

func TestApplyLag(t *testing.T) {
	at := func(ms int64) crdt.Entry { return crdt.Entry{HLC: crdt.NewTimestamp(ms, 7)} }
	tests := []struct {
		name    string
		wall    int64
		entries []crdt.Entry
		want    time.Duration
	}{
		{"one entry", 10_250, []crdt.Entry{at(10_000)}, 250 * time.Millisecond},
		{"the newest entry counts", 10_250, []crdt.Entry{at(9_000), at(10_200), at(10_000)}, 50 * time.Millisecond},
		{"an origin clock ahead is no lag", 10_000, []crdt.Entry{at(10_300)}, 0},
		{"no entries", 10_000, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := applyLag(tt.wall, tt.entries); got != tt.want {
				t.Errorf("applyLag = %v; want %v", got, tt.want)
			}
		})
	}
}
