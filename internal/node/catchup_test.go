package node

import (
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/p2p"
)

// TestCatchUpTracker replays the events of catch-ups (sessions ending, key
// counts reported) and checks the facts the tracker hands to
// p2p.EstimateCatchUp after each.
func TestCatchUpTracker(t *testing.T) {
	const p1, p2 = peer.ID("p1"), peer.ID("p2")
	type step struct {
		name     string
		do       func(c *catchUp)
		received int64 // the syncer's Received at the check
		want     p2p.CatchUpFacts
	}
	partial := func(got int) p2p.SyncStats { return p2p.SyncStats{Partial: true, EntriesReceived: got} }
	complete := p2p.SyncStats{}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "a lone node never catches up", steps: []step{
			{name: "start", do: func(*catchUp) {}, want: p2p.CatchUpFacts{Alone: true, PeerKeys: -1}},
			{name: "a complete session", do: func(c *catchUp) { c.sessionEnded(0, complete, nil) },
				want: p2p.CatchUpFacts{Alone: true, PeerKeys: -1}},
			{name: "a partial session that brought nothing (a newcomer syncing from it)",
				do: func(c *catchUp) { c.sessionEnded(0, partial(0), nil) }, want: p2p.CatchUpFacts{Alone: true, PeerKeys: -1}},
			{name: "a key count is not kept outside a catch-up",
				do: func(c *catchUp) { c.notePeerKeys(p1, 10) }, want: p2p.CatchUpFacts{Alone: true, PeerKeys: -1}},
		}},
		{name: "a newcomer", steps: []step{
			{name: "start", do: func(c *catchUp) { c.begin(0) }, want: p2p.CatchUpFacts{Active: true, PeerKeys: -1}},
			{name: "peers report their keys: the fullest counts",
				do:   func(c *catchUp) { c.notePeerKeys(p1, 900); c.notePeerKeys(p2, 1000) },
				want: p2p.CatchUpFacts{Active: true, PeerKeys: 1000}},
			{name: "a peer's newer count replaces its older one",
				do: func(c *catchUp) { c.notePeerKeys(p2, 800) }, want: p2p.CatchUpFacts{Active: true, PeerKeys: 900}},
			{name: "a failed session changes nothing", received: 300,
				do:   func(c *catchUp) { c.sessionEnded(300, partial(300), errors.New("reset")) },
				want: p2p.CatchUpFacts{Active: true, Received: 300, PeerKeys: 900}},
			{name: "a partial session goes on", received: 600,
				do:   func(c *catchUp) { c.sessionEnded(600, partial(300), nil) },
				want: p2p.CatchUpFacts{Active: true, Received: 600, PeerKeys: 900}},
			{name: "a complete session ends it", received: 900,
				do:   func(c *catchUp) { c.sessionEnded(900, complete, nil) },
				want: p2p.CatchUpFacts{Received: 900, PeerKeys: -1}},
			{name: "entries received later (gossip repairs, small sessions) do not count", received: 950,
				do:   func(c *catchUp) { c.sessionEnded(950, complete, nil) },
				want: p2p.CatchUpFacts{Received: 900, PeerKeys: -1}},
		}},
		{name: "back from a long partition", steps: []step{
			{name: "caught up at start", received: 10, do: func(c *catchUp) { c.begin(0); c.sessionEnded(10, complete, nil) },
				want: p2p.CatchUpFacts{Received: 10, PeerKeys: -1}},
			{name: "a partial session that brought entries begins a catch-up from before it", received: 510,
				do: func(c *catchUp) { c.sessionEnded(510, partial(400), nil); c.notePeerKeys(p1, 5000) },
				// It began at 510-400 = 110.
				want: p2p.CatchUpFacts{Active: true, Received: 400, PeerKeys: 5000}},
			{name: "begin during a catch-up keeps its start", received: 700,
				do:   func(c *catchUp) { c.begin(700) },
				want: p2p.CatchUpFacts{Active: true, Received: 590, PeerKeys: 5000}},
			{name: "a complete session ends it", received: 800,
				do:   func(c *catchUp) { c.sessionEnded(800, complete, nil) },
				want: p2p.CatchUpFacts{Received: 690, PeerKeys: -1}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c catchUp
			for _, s := range tt.steps {
				s.do(&c)
				got := c.facts(s.received, 0)
				if got != s.want {
					t.Fatalf("%s: facts %+v; want %+v", s.name, got, s.want)
				}
			}
		})
	}
}
