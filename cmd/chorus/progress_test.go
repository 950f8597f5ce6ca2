package main

import (
	"bytes"
	"testing"

	"github.com/chorus-kv/chorus/client"
)

func TestProgressLine(t *testing.T) {
	tests := []struct {
		label, unit     string
		n, total, bytes int64
		want            string
	}{
		{"deleting", "keys", 0, 100, 0, "deleting [..........]   0% 0/100 keys"},
		{"deleting", "keys", 50, 100, 0, "deleting [#####.....]  50% 50/100 keys"},
		{"saving", "entries", 100, 100, 2048, "saving [##########] 100% 100/100 entries, 2.0 KiB"},
		{"saving", "entries", 150, 100, 0, "saving [##########] 100% 150/100 entries"}, // more than expected: full, not beyond
		{"listing", "keys", 1000, 0, 0, "listing: 1000 keys"},                          // total unknown: the count alone
		{"saving", "entries", 7, 0, 1 << 20, "saving: 7 entries, 1.0 MiB"},
	}
	for _, tt := range tests {
		if got := progressLine(tt.label, tt.unit, tt.n, tt.total, tt.bytes, 10); got != tt.want {
			t.Errorf("progressLine(%q, %q, %d, %d, %d) = %q; want %q", tt.label, tt.unit, tt.n, tt.total, tt.bytes, got, tt.want)
		}
	}
}

// TestProgressBarOffPipe: a bar on anything but a terminal draws nothing.
func TestProgressBarOffPipe(t *testing.T) {
	var b bytes.Buffer
	bar := newProgressBar(&b, "deleting", "keys")
	bar.update(1, 2, 0)
	bar.done()
	if b.Len() != 0 {
		t.Errorf("a bar on a buffer wrote %q", b.String())
	}
}

func TestCatchUpLine(t *testing.T) {
	tests := []struct {
		c    client.CatchUp
		want string
	}{
		{client.CatchUp{}, "unknown (the node is of an older version)"},
		{client.CatchUp{State: client.CatchingUp, Received: 5000, Total: 20000}, "catching-up: 5000 of about 20000 entries received (25%)"},
		{client.CatchUp{State: client.CatchingUp, Received: 12}, "catching-up: 12 entries received; the total is not known yet (no member reported its key count)"},
		{client.CatchUp{State: client.CaughtUp, Detail: "no peers to catch up from"}, "caught-up: no peers to catch up from"},
	}
	for _, tt := range tests {
		if got := catchUpLine(tt.c); got != tt.want {
			t.Errorf("catchUpLine(%+v) = %q; want %q", tt.c, got, tt.want)
		}
	}
}
