package p2p

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// SyncProtocol is the stream protocol of anti-entropy sessions.
//
// Version 2: digests cover the value (merkle.EntryHash). A version-1 peer
// hashes the same entries differently, so every key would look like a
// conflict and the whole state would be exchanged again at every session:
// the two versions do not sync with each other (gossip still flows).
func SyncProtocol(cluster string) protocol.ID { return protocol.ID("/chorus/" + cluster + "/sync/2") }

// Syncer runs anti-entropy: it serves sessions from peers, starts one with
// a random connected peer every Interval and one with every peer it newly
// dials, and runs one on demand (SyncWith). It owns its goroutines; Close
// stops them. The context they run under is created by StartSyncer and
// passed to the loop and the stream handler, never stored: Close cancels it.
type Syncer struct {
	cfg    SyncConfig
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan peer.ID
	notify *network.NotifyBundle

	mu struct {
		sync.Mutex
		closed   bool
		handlers int
		streams  map[network.Stream]struct{} // sessions running now, both directions: reset by Close
		kicked   map[peer.ID]time.Time       // Kick's last accepted kick per peer
		// started are the sessions this node started and runs now, by
		// peer: Abandon cancels them.
		started map[peer.ID]map[*context.CancelFunc]struct{}
	}

	sessions, failures, refused atomic.Int64
	// received counts the entries received from peers as each batch is
	// applied, mid-session (Received): the totals below move only when a
	// session ends.
	received atomic.Int64
	// totals add up every session's SyncStats, both directions.
	totals struct {
		bytesSent, bytesReceived                     atomic.Int64
		entriesSent, entriesReceived, entriesApplied atomic.Int64
	}
	// diffCap is the MaxDiffNodes this node asks for in the sessions it
	// starts: halved after a session runs out of time, doubled back (up to
	// MaxDiffNodes) after each one that completes, so a difference too large
	// for one deadline is repaired in smaller sessions instead of failing
	// the same way again.
	diffCap   atomic.Int64
	closeOnce sync.Once
}

// StartSyncer registers the sync and status protocols and starts the
// periodic and on-connect sessions.
func StartSyncer(cfg SyncConfig) (*Syncer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Syncer{cfg: cfg, cancel: cancel, kick: make(chan peer.ID, 64)}
	s.diffCap.Store(int64(cfg.MaxDiffNodes))
	s.mu.streams = map[network.Stream]struct{}{}
	s.mu.kicked = map[peer.ID]time.Time{}
	s.mu.started = map[peer.ID]map[*context.CancelFunc]struct{}{}
	cfg.Host.SetStreamHandler(SyncProtocol(cfg.Cluster), func(st network.Stream) { s.handleSync(ctx, st) })
	cfg.Host.SetStreamHandler(StatusProtocol(cfg.Cluster), s.handleStatus)
	s.notify = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		// The dialing side starts the session, so a pair runs one, not two.
		if c.Stat().Direction != network.DirOutbound {
			return
		}
		s.cfg.Logger.Debug("anti-entropy kick on a new connection", "peer", c.RemotePeer())
		select {
		case s.kick <- c.RemotePeer():
		default: // a burst of connections: the periodic sync covers the rest
		}
	}}
	cfg.Host.Network().Notify(s.notify)
	s.wg.Add(1)
	go s.loop(ctx)
	return s, nil
}

// Close stops the syncer's sessions and goroutines and waits for them.
func (s *Syncer) Close() error {
	s.closeOnce.Do(func() {
		s.cfg.Host.Network().StopNotify(s.notify)
		s.cfg.Host.RemoveStreamHandler(SyncProtocol(s.cfg.Cluster))
		s.cfg.Host.RemoveStreamHandler(StatusProtocol(s.cfg.Cluster))
		s.mu.Lock()
		s.mu.closed = true
		for st := range s.mu.streams {
			_ = st.Reset()
		}
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
	})
	return nil
}

// Kick asks for a session with p soon, as after p came back from a
// partition on a connection that never closed (no new connection to start
// one): at most one per peer per KickInterval, and dropped when a burst
// fills the queue (the periodic sync covers the rest).
func (s *Syncer) Kick(p peer.ID) {
	now := time.Now()
	s.mu.Lock()
	if last, ok := s.mu.kicked[p]; ok && now.Sub(last) < KickInterval || s.mu.closed {
		s.mu.Unlock()
		s.cfg.Logger.Debug("anti-entropy kick dropped: one less than a kick interval ago", "peer", p)
		return
	}
	s.cfg.Logger.Debug("anti-entropy kick", "peer", p)
	if len(s.mu.kicked) >= 4096 {
		clear(s.mu.kicked)
	}
	s.mu.kicked[p] = now
	s.mu.Unlock()
	select {
	case s.kick <- p:
	default:
	}
}

// KickInterval is the shortest time between two Kicks of one peer.
const KickInterval = time.Second

// Retries of a failed session (see retryBackoff).
const (
	minSyncRetry   = 250 * time.Millisecond
	maxSyncRetry   = 4 * time.Second
	maxSyncRetries = 5
)

// retryBackoff returns the wait before retrying a failed session, the
// previous wait being prev (0 after a success): doubling from minSyncRetry,
// capped at maxSyncRetry and at the sync interval (when periodic syncs run).
func retryBackoff(prev, interval time.Duration) time.Duration {
	d := max(minSyncRetry, 2*prev)
	d = min(d, maxSyncRetry)
	if interval > 0 {
		d = min(d, interval)
	}
	return d
}

// retryable reports whether a failed session is worth retrying soon: not
// when a side is stale (an operator must act) or the syncer is closing.
func retryable(err error) bool {
	return !errors.Is(err, ErrStale) && !errors.Is(err, context.Canceled)
}

// MaxOutgoingSessions bounds the sessions this node starts that run at
// once; a peer has at most one of them. So a session stuck on a connection
// that delivers nothing (a partition not yet noticed) holds up no session
// with another peer: after a heal, repairs from the peers that are back
// run at once.
const MaxOutgoingSessions = 4

// loop starts the sessions this node initiates: on a kick, on a retry, and
// every Interval with a random peer. Each runs on a goroutine of its own,
// at most MaxOutgoingSessions at once and one per peer; a peer that asks
// for more waits in a queue (once). The loop owns the retry state and waits
// for its sessions before it returns.
func (s *Syncer) loop(ctx context.Context) {
	defer s.wg.Done()
	timer := time.NewTimer(s.jittered())
	defer timer.Stop()
	if s.cfg.Interval < 0 {
		timer.Stop()
	}
	// A failed session is retried with the same peer after a backoff
	// rather than waiting for the next interval: a stale connection ("stateless
	// reset") or a peer restarting fails a session that succeeds a moment later.
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var retryPeer peer.ID
	var backoff time.Duration
	attempts := 0

	type outcome struct {
		p   peer.ID
		err error
	}
	// Each session sends one outcome; the buffer holds all that can run,
	// so none blocks after the loop has returned.
	outcomes := make(chan outcome, MaxOutgoingSessions)
	var sessions sync.WaitGroup
	defer sessions.Wait()
	running := map[peer.ID]bool{}
	var queue []peer.ID // peers waiting for a slot or for their running session
	queued := map[peer.ID]bool{}
	redial := map[peer.ID]bool{} // queued retries dial again first

	start := func(p peer.ID, dial bool, why string) {
		if running[p] || len(running) >= MaxOutgoingSessions {
			s.cfg.Logger.Debug("anti-entropy session queued", "peer", p, "why", why, "running", running[p])
			if !queued[p] {
				queued[p] = true
				queue = append(queue, p)
			}
			redial[p] = redial[p] || dial
			return
		}
		running[p] = true
		sessions.Add(1)
		s.cfg.Logger.Debug("anti-entropy session starts", "peer", p, "why", why)
		go func() {
			defer sessions.Done()
			if dial && s.cfg.Host.Network().Connectedness(p) != network.Connected {
				// The failed connection may be gone, or a member back alive
				// (Kick) has none yet: dial, past libp2p's dial backoff (the
				// dials that failed while it was away must not delay this
				// one; the admission gater still applies).
				dialCtx, cancel := context.WithTimeout(network.WithForceDirectDial(ctx, "a sync session's peer may be reachable again"), maxSyncRetry)
				_ = s.cfg.Host.Connect(dialCtx, peer.AddrInfo{ID: p})
				cancel()
			}
			outcomes <- outcome{p, s.syncUntilDone(ctx, p)}
		}()
	}
	startQueued := func() {
		for i := 0; i < len(queue) && len(running) < MaxOutgoingSessions; {
			p := queue[i]
			if running[p] {
				i++
				continue
			}
			queue = slices.Delete(queue, i, i+1)
			delete(queued, p)
			dial := redial[p]
			delete(redial, p)
			start(p, dial, "queued")
		}
	}
	finish := func(o outcome) {
		delete(running, o.p)
		s.cfg.Logger.Debug("anti-entropy session ended", "peer", o.p, "err", o.err)
		switch {
		case o.err == nil:
			if o.p == retryPeer {
				backoff, attempts = 0, 0
			}
		default:
			if o.p != retryPeer {
				backoff, attempts, retryPeer = 0, 0, o.p
			}
			// A few times; then the periodic syncs take over (a peer of
			// another version fails every time).
			if retryable(o.err) && ctx.Err() == nil && attempts < maxSyncRetries {
				attempts++
				backoff = retryBackoff(backoff, s.cfg.Interval)
				retry.Reset(backoff)
			}
		}
		startQueued()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-outcomes:
			finish(o)
		case p := <-s.kick:
			start(p, true, "kick")
		case <-retry.C:
			if s.skip(retryPeer) {
				s.cfg.Logger.Debug("anti-entropy retry skipped: peer suspect or dead", "peer", retryPeer)
				continue // suspect or dead: its recovery kicks a session
			}
			start(retryPeer, true, "retry")
		case <-timer.C:
			if peers := slices.DeleteFunc(s.cfg.Host.Network().Peers(), s.skip); len(peers) > 0 {
				start(peers[rand.IntN(len(peers))], false, "periodic")
			}
			timer.Reset(s.jittered())
		}
	}
}

// skip reports whether SyncConfig.Skip leaves p out.
func (s *Syncer) skip(p peer.ID) bool { return s.cfg.Skip != nil && s.cfg.Skip(p) }

// Abandon cancels the sessions this node started with p and runs now, as
// when the failure detector starts to suspect p: such a session would wait
// on a connection that delivers nothing (a partition) until its deadline,
// holding one of the MaxOutgoingSessions slots.
func (s *Syncer) Abandon(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.mu.started[p] {
		(*c)()
	}
}

// jittered returns Interval ±20%.
func (s *Syncer) jittered() time.Duration {
	if s.cfg.Interval <= 0 {
		return time.Hour
	}
	return jitter(s.cfg.Interval, 0.2)
}

// jitter returns d ± frac of it, uniformly at random, so that nodes started
// together do not act together.
func jitter(d time.Duration, frac float64) time.Duration {
	return time.Duration(float64(d) * (1 - frac + 2*frac*rand.Float64()))
}

// syncUntilDone runs sessions with p until one is not partial.
func (s *Syncer) syncUntilDone(ctx context.Context, p peer.ID) error {
	for range DefaultMaxSyncFollowUp {
		st, err := s.SyncWith(ctx, p)
		if err != nil {
			if ctx.Err() == nil {
				s.cfg.Logger.Warn("anti-entropy session failed", "peer", p, "err", err)
			}
			return err
		}
		if st.EntriesSent+st.EntriesReceived > 0 {
			s.cfg.Logger.Info("anti-entropy repaired a difference", "peer", p,
				"sent", st.EntriesSent, "received", st.EntriesReceived, "applied", st.EntriesApplied,
				"round_trips", st.RoundTrips, "partial", st.Partial, "duration", st.Duration)
		}
		if !st.Partial {
			return nil
		}
	}
	return nil
}
