package node

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/p2p"
)

// catchUpQueryTimeout bounds how long Status waits for the connected
// members' key counts while the node catches up.
const catchUpQueryTimeout = time.Second

// catchUp follows the node's catch-up (p2p.EstimateCatchUp): it begins at
// start when there is someone to catch up from, and again when a session
// finds a difference too large for one session; a complete session ends
// it. Its methods are called from the syncer's session goroutines and the
// API handlers.
type catchUp struct {
	mu struct {
		sync.Mutex
		active bool
		begun  bool // a catch-up ever began
		// start and end are the syncer's Received when the catch-up began
		// and ended.
		start, end int64
		// peerKeys are the key counts the connected members reported
		// during the catch-up (status protocol).
		peerKeys map[peer.ID]int64
	}
}

// begin starts a catch-up, received being the syncer's Received now; a
// catch-up under way goes on.
func (c *catchUp) begin(received int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.active {
		return
	}
	c.mu.active, c.mu.begun = true, true
	c.mu.start, c.mu.end = received, received
	c.mu.peerKeys = map[peer.ID]int64{}
}

// end ends a catch-up under way.
func (c *catchUp) end(received int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.active {
		c.mu.active, c.mu.end = false, received
	}
}

// active reports whether a catch-up is under way.
func (c *catchUp) active() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.active
}

// notePeerKeys records the key count a member reported, during a catch-up.
func (c *catchUp) notePeerKeys(p peer.ID, keys int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.active {
		c.mu.peerKeys[p] = keys
	}
}

// facts are the catch-up's facts, received being the syncer's Received now
// and localKeys the store's key count.
func (c *catchUp) facts(received, localKeys int64) p2p.CatchUpFacts {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := p2p.CatchUpFacts{Active: c.mu.active, Alone: !c.mu.begun, LocalKeys: localKeys, PeerKeys: -1}
	if c.mu.active {
		f.Received = received - c.mu.start
		for _, k := range c.mu.peerKeys {
			f.PeerKeys = max(f.PeerKeys, k)
		}
	} else {
		f.Received = c.mu.end - c.mu.start
	}
	return f
}

// startCatchUp begins the node's first catch-up unless it has no one to
// catch up from: no bootstrap peers, no mDNS and no other member. It runs
// before the syncer starts (whose Received is then 0), so that no session
// ends before the catch-up begins.
func (n *Node) startCatchUp() {
	others := false
	for _, id := range n.admission.SortedIDs() {
		others = others || id != n.identity.ID
	}
	if len(n.cfg.Bootstrap) > 0 || n.cfg.MDNS || others {
		n.catchUp.begin(0)
	}
}

// sessionEnded follows the catch-up from a session's outcome (the
// syncer's OnSession).
func (n *Node) sessionEnded(st p2p.SyncStats, err error) {
	n.catchUp.sessionEnded(n.sync.Received(), st, err)
}

// sessionEnded follows the catch-up from a session's outcome, received
// being the syncer's Received now: a session that brought entries here
// but had to stop short of the whole difference begins one (a node back
// from a long partition); a complete one ends it. A failed session changes
// nothing.
func (c *catchUp) sessionEnded(received int64, st p2p.SyncStats, err error) {
	switch {
	case err != nil:
	case st.Partial && st.EntriesReceived > 0:
		// Only a session that brought entries here: the side that holds
		// the data sees the same sessions as partial.
		c.begin(received - int64(st.EntriesReceived))
	case !st.Partial:
		c.end(received)
	}
}

// CatchUp returns the node's catch-up progress from what it knows: the key
// counts members reported to earlier calls (Members, the metrics' scrape)
// or, with ask set and a catch-up under way, to the status protocol now
// (every connected member at once, for at most catchUpQueryTimeout).
func (n *Node) CatchUp(ctx context.Context, ask bool) p2p.CatchUp {
	if ask && n.catchUp.active() {
		ctx, cancel := context.WithTimeout(ctx, catchUpQueryTimeout)
		var wg sync.WaitGroup
		for _, p := range n.host.Network().Peers() {
			if n.admission.Check(p) != nil {
				continue
			}
			wg.Go(func() {
				if st, err := n.sync.QueryStatus(ctx, p); err == nil {
					n.catchUp.notePeerKeys(p, st.GetKeys())
				}
			})
		}
		wg.Wait()
		cancel()
	}
	// The keys before the entries received: a batch being applied counts in
	// the keys before it counts as received, which would lower the total.
	keys := n.store.Keys()
	return p2p.EstimateCatchUp(n.catchUp.facts(n.sync.Received(), keys))
}
