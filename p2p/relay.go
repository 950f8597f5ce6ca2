package p2p

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A session that applied entries this node did not hold is a repair: most
// often a peer back from a partition (or a restart) brought what was
// written on its side. Those entries are likely missing on other peers too,
// and gossip will not carry them (a node publishes only its own writes), so
// they would wait for the others' periodic sessions (Interval, 5 s ±20%),
// or for a session with a peer whose connection a partition left stalled
// (TCP's retransmission backoff can keep it silent for seconds after the
// heal). So after such a session, in either direction, this node starts a
// session at once with up to relayFanout other connected peers that the
// failure detector does not skip, each at most once per KickInterval: the
// repair spreads in a few hops, and a quiet cluster (sessions that apply
// nothing) relays nothing.

// relayFanout is how many other peers a repair is relayed to.
const relayFanout = 3

// relayLimiter keeps the last relay to each peer.
type relayLimiter struct {
	mu   sync.Mutex
	last map[peer.ID]time.Time
}

// allow reports whether p may get a relayed session at now, and records it.
func (l *relayLimiter) allow(p peer.ID, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil || len(l.last) >= 4096 {
		l.last = map[peer.ID]time.Time{}
	}
	if t, ok := l.last[p]; ok && now.Sub(t) < KickInterval {
		return false
	}
	l.last[p] = now
	return true
}

// relay starts sessions with up to relayFanout connected peers other than
// from (the peer the entries came from), chosen at random among those not
// skipped.
func (s *Syncer) relay(from peer.ID) {
	peers := slices.DeleteFunc(s.cfg.Host.Network().Peers(), func(p peer.ID) bool { return p == from || s.skip(p) })
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	now := time.Now()
	sent := 0
	for _, p := range peers {
		if sent == relayFanout {
			break
		}
		if !s.relays.allow(p, now) {
			continue
		}
		sent++
		s.cfg.Logger.Debug("anti-entropy relays a repair", "peer", p, "from", from)
		select {
		case s.kick <- p:
		default: // a burst: the periodic sync covers the rest
		}
	}
}
