package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt/frontier"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/p2p/antientropy"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// SyncProtocol is the stream protocol of anti-entropy sessions.
//
// Version 2: digests cover the value (merkle.EntryHash). A version-1 peer
// hashes the same entries differently, so every key would look like a
// conflict and the whole state would be exchanged again at every session:
// the two versions do not sync with each other (gossip still flows).
func SyncProtocol(cluster string) protocol.ID { return protocol.ID("/chorus/" + cluster + "/sync/2") }

// StatusProtocol is the stream protocol that answers a node's NodeStatus.
func StatusProtocol(cluster string) protocol.ID {
	return protocol.ID("/chorus/" + cluster + "/status/1")
}

// Defaults for SyncConfig.
const (
	DefaultSyncInterval    = 5 * time.Second
	DefaultSyncTimeout     = 30 * time.Second
	DefaultMaxDiffNodes    = 16384
	DefaultMaxSyncFollowUp = 64
	// MaxSyncHandlers bounds the sessions served at once; more are refused.
	MaxSyncHandlers = 4
	// syncChunkBytes is the size an entries frame is filled to.
	syncChunkBytes = 1 << 20
	// digestsPerFrame is the most digests in one frame (about 24 bytes each).
	digestsPerFrame = 1 << 16
	// minDiffCap is the smallest per-level cap a node asks for after its
	// sessions ran out of time.
	minDiffCap = 64
	// maxSyncFrameBytes bounds a frame, with room for one largest entry on
	// top: a level message of DefaultMaxDiffNodes parents is 2.1 MiB.
	maxSyncFrameBytes = 4 << 20
	// maxDigests bounds the digests one session accepts.
	maxDigests = 1 << 22
)

// SyncConfig configures a Syncer. Zero values mean the defaults; Host and
// Store are required.
type SyncConfig struct {
	Cluster string
	Host    host.Host
	Store   *store.Store
	Logger  *slog.Logger
	// Interval is how often the node syncs with a random connected peer,
	// ±20% jitter. Default 5 s; negative turns periodic syncs off (syncs on
	// new connections and on demand still run).
	Interval time.Duration
	// Timeout bounds one session. Default 30 s.
	Timeout time.Duration
	// MaxDiffNodes caps the differing tree nodes a session descends into at
	// each level; a larger difference is repaired over several sessions.
	// Default 16384.
	MaxDiffNodes int
	// Admit, when set, is asked before a session with a peer, in either
	// direction; an error refuses the session.
	Admit func(peer.ID) error
	// OnComplete, when set, is called after every complete (not partial)
	// session, from the session's goroutine.
	OnComplete func(peer.ID)
	// OnSession, when set, is called at the end of every session that ran,
	// started here or by the peer, complete or not (err says why not), from
	// the session's goroutine (for metrics). It must not block.
	OnSession func(st SyncStats, err error)
	// LocalFrontier, when set, gives this node's frontiers (package
	// crdt/frontier) for its hello; it is read before the Merkle root.
	LocalFrontier func() frontier.Vector
	// OnMerge, when set, is called after every complete session with the
	// frontiers the peer sent in its hello: this node now holds all of it.
	OnMerge func(peer.ID, frontier.Vector)
	// Skip, when set, leaves a peer it reports out of the periodic sessions
	// and the retries: the failure detector holds it suspect or dead, and a
	// session with it would wait, on a connection that delivers nothing, and
	// hold up every other session this node starts (they run one at a
	// time). Sessions on a new connection and on Kick still run.
	Skip func(peer.ID) bool
}

// WithDefaults returns c with every zero field set to its default.
func (c SyncConfig) WithDefaults() SyncConfig {
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Interval == 0 {
		c.Interval = DefaultSyncInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultSyncTimeout
	}
	if c.MaxDiffNodes == 0 {
		c.MaxDiffNodes = DefaultMaxDiffNodes
	}
	return c
}

// Validate reports every problem with c at once.
func (c SyncConfig) Validate() error {
	var errs []error
	if c.Host == nil {
		errs = append(errs, errors.New("p2p: syncer needs a Host"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("p2p: syncer needs a Store"))
	}
	if err := ValidateCluster(c.Cluster); err != nil {
		errs = append(errs, err)
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("p2p: sync Timeout is %v; it must not be negative", c.Timeout))
	}
	if c.MaxDiffNodes < 0 {
		errs = append(errs, fmt.Errorf("p2p: MaxDiffNodes is %d; it must not be negative (0 means the default %d)", c.MaxDiffNodes, DefaultMaxDiffNodes))
	}
	return errors.Join(errs...)
}

// SyncStats describes one session, from the side that ran it.
type SyncStats struct {
	Peer                                           peer.ID
	EntriesSent, EntriesReceived, EntriesApplied   int
	BytesSent, BytesReceived                       int64
	RoundTrips                                     int
	Partial                                        bool // the difference exceeded MaxDiffNodes: run another
	Duration                                       time.Duration
	LocalRoot, PeerRoot                            uint64 // after the session
	Initiator                                      bool   // this node started the session
	differingBuckets, digestsSent, digestsReceived int
}

// ErrStale is returned when a session is refused because one side has been
// out of contact longer than the other's tombstone grace period. Use
// errors.As with *StaleError.
var ErrStale = antientropy.ErrStale

// StaleError says which side is stale and why.
type StaleError = antientropy.StaleError

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
	relays    relayLimiter // see relay.go
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

// Counters returns how many sessions this node completed, failed and
// refused (as responder, for staleness or load).
func (s *Syncer) Counters() (completed, failed, refused int64) {
	return s.sessions.Load(), s.failures.Load(), s.refused.Load()
}

// SyncerStats are a syncer's counters since it started, over the sessions
// it ran and served.
type SyncerStats struct {
	Completed, Failed, Refused int64 // sessions, as in Counters
	BytesSent, BytesReceived   int64
	// EntriesSent and EntriesReceived are the entries exchanged;
	// EntriesApplied those received that changed this node's store (the
	// entries repaired here).
	EntriesSent, EntriesReceived, EntriesApplied int64
}

// Stats returns the syncer's counters.
func (s *Syncer) Stats() SyncerStats {
	t := &s.totals
	return SyncerStats{
		Completed: s.sessions.Load(), Failed: s.failures.Load(), Refused: s.refused.Load(),
		BytesSent: t.bytesSent.Load(), BytesReceived: t.bytesReceived.Load(),
		EntriesSent: t.entriesSent.Load(), EntriesReceived: t.entriesReceived.Load(), EntriesApplied: t.entriesApplied.Load(),
	}
}

// account adds a session's stats to the totals and reports it to OnSession.
func (s *Syncer) account(st SyncStats, err error) {
	t := &s.totals
	t.bytesSent.Add(st.BytesSent)
	t.bytesReceived.Add(st.BytesReceived)
	t.entriesSent.Add(int64(st.EntriesSent))
	t.entriesReceived.Add(int64(st.EntriesReceived))
	t.entriesApplied.Add(int64(st.EntriesApplied))
	if s.cfg.OnSession != nil {
		s.cfg.OnSession(st, err)
	}
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

// SyncWith runs one session with p, which must be connected, and returns
// what it exchanged. Close ends a session running here (it resets the
// stream).
func (s *Syncer) SyncWith(ctx context.Context, p peer.ID) (SyncStats, error) {
	s.mu.Lock()
	closed := s.mu.closed
	s.mu.Unlock()
	if closed {
		return SyncStats{Peer: p}, fmt.Errorf("p2p: sync with %s: %w", p, errSyncerClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	s.mu.Lock()
	if s.mu.started[p] == nil {
		s.mu.started[p] = map[*context.CancelFunc]struct{}{}
	}
	s.mu.started[p][&cancel] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.started[p], &cancel)
		if len(s.mu.started[p]) == 0 {
			delete(s.mu.started, p)
		}
		s.mu.Unlock()
	}()
	if s.cfg.Host.Network().Connectedness(p) != network.Connected {
		return SyncStats{Peer: p}, fmt.Errorf("p2p: sync with %s: not connected", p)
	}
	if s.cfg.Admit != nil {
		if err := s.cfg.Admit(p); err != nil {
			return SyncStats{Peer: p}, fmt.Errorf("p2p: sync with %s: %w", p, err)
		}
	}
	st, err := s.cfg.Host.NewStream(network.WithNoDial(ctx, "sync"), p, SyncProtocol(s.cfg.Cluster))
	if err != nil {
		return SyncStats{Peer: p}, fmt.Errorf("p2p: sync with %s: %w", p, err)
	}
	defer st.Close()
	if !s.track(st) {
		_ = st.Reset()
		return SyncStats{Peer: p}, fmt.Errorf("p2p: sync with %s: %w", p, errSyncerClosed)
	}
	defer s.untrack(st)
	stats, err := s.runSession(ctx, st, true)
	if err != nil {
		_ = st.Reset()
		s.failures.Add(1)
		if errors.Is(err, context.DeadlineExceeded) {
			s.diffCap.Store(max(minDiffCap, s.diffCap.Load()/2))
		}
		return stats, fmt.Errorf("p2p: sync with %s: %w", p, err)
	}
	s.sessions.Add(1)
	s.diffCap.Store(min(int64(s.cfg.MaxDiffNodes), s.diffCap.Load()*2))
	return stats, nil
}

// errSyncerClosed: a session asked for after Close.
var errSyncerClosed = errors.New("the syncer is closed")

// handleSync serves a session the peer started; ctx ends when the syncer
// closes.
func (s *Syncer) handleSync(ctx context.Context, st network.Stream) {
	if !s.enter(st) {
		s.refused.Add(1)
		_ = st.Reset()
		return
	}
	defer s.leave(st)
	defer st.Close()
	sessionCtx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if _, err := s.runSession(sessionCtx, st, false); err != nil {
		if errors.Is(err, antientropy.ErrRefused) {
			_ = st.CloseWrite() // closed, not reset: the peer must read why
			s.refused.Add(1)
		} else {
			_ = st.Reset()
			s.failures.Add(1)
		}
		if ctx.Err() == nil {
			s.cfg.Logger.Warn("anti-entropy session from peer failed", "peer", st.Conn().RemotePeer(), "err", err)
		}
		return
	}
	s.sessions.Add(1)
}

func (s *Syncer) enter(st network.Stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed || s.mu.handlers >= MaxSyncHandlers {
		return false
	}
	s.mu.handlers++
	s.mu.streams[st] = struct{}{}
	s.wg.Add(1)
	return true
}

// track registers a session this node started, so that Close resets its
// stream; false once the syncer is closed.
func (s *Syncer) track(st network.Stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return false
	}
	s.mu.streams[st] = struct{}{}
	return true
}

func (s *Syncer) untrack(st network.Stream) {
	s.mu.Lock()
	delete(s.mu.streams, st)
	s.mu.Unlock()
}

func (s *Syncer) leave(st network.Stream) {
	s.mu.Lock()
	s.mu.handlers--
	delete(s.mu.streams, st)
	s.mu.Unlock()
	s.wg.Done()
}

// maxApplyEntries bounds one store.Apply of a session's entries.
const maxApplyEntries = antientropy.DefaultApplyBatchEntries

// countingStream counts the bytes read and written on a stream.
type countingStream struct {
	rw interface {
		io.Reader
		io.Writer
	}
	read, written int64
}

func (c *countingStream) Read(p []byte) (int, error) {
	n, err := c.rw.Read(p)
	c.read += int64(n)
	return n, err
}

func (c *countingStream) Write(p []byte) (int, error) {
	n, err := c.rw.Write(p)
	c.written += int64(n)
	return n, err
}

// streamDriver runs an antientropy.Session over a stream: it writes what
// the session sends, reads and decodes what the peer sends, and applies
// what the session receives to the store.
type streamDriver struct {
	store   *store.Store
	r       *bufio.Reader
	w       *bufio.Writer
	maxMsg  int
	applied int
	// received counts the entries received as each batch is applied (the
	// Syncer's counter, read mid-session by Received).
	received *atomic.Int64
	sending  bool // the last thing done was a send (for round trips)
	flights  int
}

// run drives m to its end and returns the session's error.
func (d *streamDriver) run(ctx context.Context, m *antientropy.Session) error {
	out := m.Start()
	for {
		// Each batch durable before the next is queued, so that local
		// writes queued meanwhile are committed between them rather than
		// behind a whole frame (a megabyte of entries).
		for _, b := range out.Apply {
			changes, err := d.store.Apply(ctx, b)
			if err != nil {
				return fmt.Errorf("apply %d entries from peer: %w", len(b), err)
			}
			d.applied += len(changes)
			d.received.Add(int64(len(b)))
		}
		for _, msg := range out.Send {
			if err := d.send(msg); err != nil {
				return err
			}
		}
		switch {
		case out.Done:
			if out.Err == nil || errors.Is(out.Err, antientropy.ErrRefused) {
				if err := d.w.Flush(); err != nil && out.Err == nil {
					return err
				}
			}
			return out.Err
		case out.More:
			out = m.Continue()
		default:
			msg, err := d.recv()
			if err != nil {
				return err
			}
			out = m.Step(msg)
		}
	}
}

func (d *streamDriver) send(m *replicationv1.SyncMessage) error {
	if !d.sending {
		d.sending = true
		d.flights++
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %T: %w", m.GetBody(), err)
	}
	return writeFrame(d.w, b)
}

func (d *streamDriver) recv() (*replicationv1.SyncMessage, error) {
	if d.sending {
		if err := d.w.Flush(); err != nil {
			return nil, err
		}
		d.sending = false
		d.flights++
	}
	b, err := readFrame(d.r, d.maxMsg)
	if err != nil {
		return nil, fmt.Errorf("read from peer: %w", err)
	}
	m := &replicationv1.SyncMessage{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	return m, nil
}

// local is what this node's hello says about its store. The frontier is
// read before the root: everything it covers is in the tree the root
// describes (the store only gains entries, or newer ones).
func (s *Syncer) local() antientropy.Local {
	var fr []*replicationv1.OriginFrontier
	if f := s.cfg.LocalFrontier; f != nil {
		fr = toProtoFrontier(f())
		if len(fr) > MaxFrontierOrigins {
			fr = nil // a peer would refuse it; this session proves nothing then
		}
	}
	st := s.cfg.Store
	return antientropy.Local{Root: st.MerkleRoot(), LastContact: st.LastContact(), PurgedThrough: st.PurgedThrough(), Frontier: fr}
}

// runSession runs a session on st; initiator says which side this is. The
// session counts in the totals, and goes to OnSession, whatever its outcome.
func (s *Syncer) runSession(ctx context.Context, st network.Stream, initiator bool) (SyncStats, error) {
	stats, err := s.exchange(ctx, st, initiator)
	s.account(stats, err)
	if err == nil && stats.EntriesApplied > 0 {
		s.relay(st.Conn().RemotePeer()) // a repair: pass it on (relay.go)
	}
	return stats, err
}

// exchange is runSession's session.
func (s *Syncer) exchange(ctx context.Context, st network.Stream, initiator bool) (SyncStats, error) {
	start := time.Now()
	p := st.Conn().RemotePeer()
	if d, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	cs := &countingStream{rw: st}
	d := &streamDriver{
		store: s.cfg.Store, received: &s.received,
		r: bufio.NewReader(cs), w: bufio.NewWriterSize(cs, 64<<10),
		maxMsg: maxSyncFrameBytes + MaxMessageBytes(s.cfg.Store.Limits()),
	}
	cfg := antientropy.Config{Peer: p.String(), MaxDiffNodes: s.cfg.MaxDiffNodes, MaxDigests: maxDigests,
		DigestsPerFrame: digestsPerFrame, EntryFrameBytes: syncChunkBytes}
	var m *antientropy.Session
	if initiator {
		cfg.MaxDiffNodes = int(s.diffCap.Load())
		m = antientropy.NewInitiator(cfg, s.cfg.Store, s.local())
	} else {
		var refuse error
		if s.cfg.Admit != nil {
			refuse = s.cfg.Admit(p)
		}
		m = antientropy.NewResponder(cfg, s.cfg.Store, s.local(), refuse)
	}
	// The contact time is taken before anything is exchanged: a complete
	// session brings in everything the peer had by then.
	contact := s.cfg.Store.Clock().Now()
	err := d.run(ctx, m)
	ms := m.Stats()
	stats := SyncStats{
		Peer: p, Initiator: initiator,
		EntriesSent: ms.EntriesSent, EntriesReceived: ms.EntriesReceived, EntriesApplied: d.applied,
		BytesSent: cs.written, BytesReceived: cs.read,
		RoundTrips: (d.flights + 1) / 2,
		Partial:    ms.Partial,
		Duration:   time.Since(start),
		LocalRoot:  s.cfg.Store.MerkleRoot(), PeerRoot: ms.PeerRoot,
		differingBuckets: ms.DifferingBuckets, digestsSent: ms.DigestsSent, digestsReceived: ms.DigestsReceived,
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrStale) {
			err = fmt.Errorf("%w (session deadline %v)", ctx.Err(), s.cfg.Timeout)
		}
		return stats, err
	}
	if !stats.Partial {
		if err := s.cfg.Store.SetLastContact(contact); err != nil {
			return stats, err
		}
		if s.cfg.OnComplete != nil {
			s.cfg.OnComplete(p)
		}
		if s.cfg.OnMerge != nil && len(m.PeerFrontier()) > 0 {
			if v, err := FrontierFromProto(m.PeerFrontier(), s.cfg.Store.Clock()); err != nil {
				s.cfg.Logger.Warn("ignored the frontier in a peer's sync hello", "peer", p, "err", err)
			} else {
				s.cfg.OnMerge(p, v)
			}
		}
	}
	return stats, nil
}

// QueryStatus asks a connected peer for its NodeStatus.
func (s *Syncer) QueryStatus(ctx context.Context, p peer.ID) (*replicationv1.NodeStatus, error) {
	st, err := s.cfg.Host.NewStream(network.WithNoDial(ctx, "status"), p, StatusProtocol(s.cfg.Cluster))
	if err != nil {
		return nil, fmt.Errorf("p2p: status of %s: %w", p, err)
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(d)
	}
	b, err := readFrame(bufio.NewReader(st), 4<<10)
	if err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("p2p: status of %s: %w", p, err)
	}
	out := &replicationv1.NodeStatus{}
	if err := proto.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("p2p: status of %s: %w: %w", p, ErrUndecodable, err)
	}
	return out, nil
}

// LocalStatus is this node's NodeStatus.
func (s *Syncer) LocalStatus() *replicationv1.NodeStatus {
	st := s.cfg.Store
	return &replicationv1.NodeStatus{
		MerkleRoot: st.MerkleRoot(), Revision: st.Revision(), Hlc: uint64(st.Clock().Last()),
		LastContact: uint64(st.LastContact()), Keys: st.Keys(),
	}
}

func (s *Syncer) handleStatus(st network.Stream) {
	defer st.Close()
	if s.cfg.Admit != nil && s.cfg.Admit(st.Conn().RemotePeer()) != nil {
		_ = st.Reset()
		return
	}
	_ = st.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := proto.Marshal(s.LocalStatus())
	if err := writeFrame(st, b); err != nil {
		_ = st.Reset()
	}
}
