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

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/frontier"
	"github.com/chorus-kv/chorus/crdt/merkle"
	"github.com/chorus-kv/chorus/crdt/store"
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
var ErrStale = errors.New("p2p: node out of contact for longer than the tombstone grace period")

// StaleError says which side is stale and why.
type StaleError struct {
	Stale         string // "this node" or the peer's id
	LastContact   crdt.Timestamp
	Purger        string
	PurgedThrough crdt.Timestamp
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("%s was last in sync at %s, but %s has since purged tombstones up to %s: "+
		"syncing could bring deleted keys back. Reset %s: stop it, remove the db folder in its data folder "+
		"(keep identity.key) and start it again; it then catches up from its peers",
		e.Stale, e.LastContact.Time().Format(time.RFC3339), e.Purger, e.PurgedThrough.Time().Format(time.RFC3339), e.Stale)
}

// errRefused marks a session this node refused after telling the peer why.
var errRefused = errors.New("refused")

// Is makes errors.Is(err, ErrStale) true.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// checkStale refuses a session between a node and a peer when either may
// hold keys whose deletion the other has already forgotten: its last sync
// is older than a tombstone the other purged.
func checkStale(self, peerHello *replicationv1.SyncHello, peerName string) error {
	if crdt.Timestamp(self.GetLastContact()) < crdt.Timestamp(peerHello.GetPurgedThrough()) {
		return &StaleError{Stale: "this node", LastContact: crdt.Timestamp(self.GetLastContact()),
			Purger: "peer " + peerName, PurgedThrough: crdt.Timestamp(peerHello.GetPurgedThrough())}
	}
	if crdt.Timestamp(peerHello.GetLastContact()) < crdt.Timestamp(self.GetPurgedThrough()) {
		return &StaleError{Stale: "peer " + peerName, LastContact: crdt.Timestamp(peerHello.GetLastContact()),
			Purger: "this node", PurgedThrough: crdt.Timestamp(self.GetPurgedThrough())}
	}
	return nil
}

// Syncer runs anti-entropy: it serves sessions from peers, starts one with
// a random connected peer every Interval and one with every peer it newly
// dials, and runs one on demand (SyncWith). It owns its goroutines; Close
// stops them.
type Syncer struct {
	cfg    SyncConfig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan peer.ID
	notify *network.NotifyBundle

	mu struct {
		sync.Mutex
		closed   bool
		handlers int
		streams  map[network.Stream]struct{} // served now: reset by Close
		kicked   map[peer.ID]time.Time       // Kick's last accepted kick per peer
		// started are the sessions this node started and runs now, by
		// peer: Abandon cancels them.
		started map[peer.ID]map[*context.CancelFunc]struct{}
	}

	sessions, failures, refused atomic.Int64
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
	s := &Syncer{cfg: cfg, ctx: ctx, cancel: cancel, kick: make(chan peer.ID, 64)}
	s.diffCap.Store(int64(cfg.MaxDiffNodes))
	s.mu.streams = map[network.Stream]struct{}{}
	s.mu.kicked = map[peer.ID]time.Time{}
	s.mu.started = map[peer.ID]map[*context.CancelFunc]struct{}{}
	cfg.Host.SetStreamHandler(SyncProtocol(cfg.Cluster), s.handleSync)
	cfg.Host.SetStreamHandler(StatusProtocol(cfg.Cluster), s.handleStatus)
	s.notify = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		// The dialing side starts the session, so a pair runs one, not two.
		if c.Stat().Direction != network.DirOutbound {
			return
		}
		select {
		case s.kick <- c.RemotePeer():
		default: // a burst of connections: the periodic sync covers the rest
		}
	}}
	cfg.Host.Network().Notify(s.notify)
	s.wg.Add(1)
	go s.loop()
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
		return
	}
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

func (s *Syncer) loop() {
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
	run := func(p peer.ID) {
		err := s.syncUntilDone(p)
		switch {
		case err == nil:
			if p == retryPeer {
				backoff, attempts = 0, 0
			}
		default:
			if p != retryPeer {
				backoff, attempts, retryPeer = 0, 0, p
			}
			// A few times; then the periodic syncs take over (a peer of
			// another version fails every time).
			if retryable(err) && s.ctx.Err() == nil && attempts < maxSyncRetries {
				attempts++
				backoff = retryBackoff(backoff, s.cfg.Interval)
				retry.Reset(backoff)
			}
		}
	}
	for {
		select {
		case <-s.ctx.Done():
			return
		case p := <-s.kick:
			run(p)
		case <-retry.C:
			if s.skip(retryPeer) {
				continue // suspect or dead: its recovery kicks a session
			}
			if s.cfg.Host.Network().Connectedness(retryPeer) != network.Connected {
				// The failed connection may be gone: dial again (the
				// admission gater still applies).
				ctx, cancel := context.WithTimeout(s.ctx, maxSyncRetry)
				_ = s.cfg.Host.Connect(ctx, peer.AddrInfo{ID: retryPeer})
				cancel()
			}
			run(retryPeer)
		case <-timer.C:
			if peers := slices.DeleteFunc(s.cfg.Host.Network().Peers(), s.skip); len(peers) > 0 {
				run(peers[rand.IntN(len(peers))])
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
// and the sessions this node starts run one at a time.
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
	return time.Duration(float64(s.cfg.Interval) * (0.8 + 0.4*rand.Float64()))
}

// syncUntilDone runs sessions with p until one is not partial.
func (s *Syncer) syncUntilDone(p peer.ID) error {
	for range DefaultMaxSyncFollowUp {
		st, err := s.SyncWith(s.ctx, p)
		if err != nil {
			if s.ctx.Err() == nil {
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
// what it exchanged.
func (s *Syncer) SyncWith(ctx context.Context, p peer.ID) (SyncStats, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
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

func (s *Syncer) handleSync(st network.Stream) {
	if !s.enter(st) {
		s.refused.Add(1)
		_ = st.Reset()
		return
	}
	defer s.leave(st)
	defer st.Close()
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	if _, err := s.runSession(ctx, st, false); err != nil {
		if errors.Is(err, errRefused) {
			_ = st.CloseWrite() // closed, not reset: the peer must read why
			s.refused.Add(1)
		} else {
			_ = st.Reset()
			s.failures.Add(1)
		}
		if s.ctx.Err() == nil {
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

func (s *Syncer) leave(st network.Stream) {
	s.mu.Lock()
	s.mu.handlers--
	delete(s.mu.streams, st)
	s.mu.Unlock()
	s.wg.Done()
}

// session is one anti-entropy session over a stream, from one side.
type session struct {
	s       *Syncer
	store   *store.Store
	peer    peer.ID
	r       *bufio.Reader
	w       *bufio.Writer
	maxMsg  int
	stats   SyncStats
	maxDiff int  // the per-level cap of this session: both sides' smaller
	sending bool // the last thing done was a send (for round trips)
	flights int
	// buckets are the buckets of this session's leaf step; received entries
	// must fall in them.
	buckets map[uint32]bool
	// peerFrontier is the frontier the peer sent in its hello.
	peerFrontier []*replicationv1.OriginFrontier
}

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

func (ss *session) send(m *replicationv1.SyncMessage) error {
	if !ss.sending {
		ss.sending = true
		ss.flights++
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %T: %w", m.GetBody(), err)
	}
	return writeFrame(ss.w, b)
}

func (ss *session) recv() (*replicationv1.SyncMessage, error) {
	if ss.sending {
		if err := ss.w.Flush(); err != nil {
			return nil, err
		}
		ss.sending = false
		ss.flights++
	}
	b, err := readFrame(ss.r, ss.maxMsg)
	if err != nil {
		return nil, err
	}
	m := &replicationv1.SyncMessage{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	if d := m.GetDone(); d != nil && d.GetError() != "" {
		return nil, fmt.Errorf("peer gave up: %s", d.GetError())
	}
	return m, nil
}

func (ss *session) hello() *replicationv1.SyncHello {
	// The frontier is read before the root: everything it covers is in the
	// tree the root describes (the store only gains entries, or newer ones).
	var fr []*replicationv1.OriginFrontier
	if f := ss.s.cfg.LocalFrontier; f != nil {
		fr = toProtoFrontier(f())
		if len(fr) > MaxFrontierOrigins {
			fr = nil // a peer would refuse it; this session proves nothing then
		}
	}
	return &replicationv1.SyncHello{
		Fanout: merkle.Fanout, Depth: merkle.Depth,
		Root:          ss.store.MerkleRoot(),
		LastContact:   uint64(ss.store.LastContact()),
		PurgedThrough: uint64(ss.store.PurgedThrough()),
		MaxDiffNodes:  uint32(ss.maxDiff),
		Frontier:      fr,
	}
}

// runSession runs a session on st; initiator says which side this is. The
// session counts in the totals, and goes to OnSession, whatever its outcome.
func (s *Syncer) runSession(ctx context.Context, st network.Stream, initiator bool) (SyncStats, error) {
	stats, err := s.exchange(ctx, st, initiator)
	s.account(stats, err)
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
	ss := &session{
		s: s, store: s.cfg.Store, peer: p,
		r: bufio.NewReader(cs), w: bufio.NewWriterSize(cs, 64<<10),
		maxMsg: maxSyncFrameBytes + MaxMessageBytes(s.cfg.Store.Limits()),
	}
	ss.stats.Peer, ss.stats.Initiator = p, initiator
	ss.maxDiff = s.cfg.MaxDiffNodes
	if initiator {
		ss.maxDiff = int(s.diffCap.Load())
	}
	// The contact time is taken before anything is exchanged: a complete
	// session brings in everything the peer had by then.
	contact := s.cfg.Store.Clock().Now()
	err := ss.run(initiator)
	if err == nil {
		err = ss.w.Flush()
	}
	ss.stats.Duration = time.Since(start)
	ss.stats.LocalRoot = s.cfg.Store.MerkleRoot()
	ss.stats.RoundTrips = (ss.flights + 1) / 2
	ss.stats.BytesReceived, ss.stats.BytesSent = cs.read, cs.written
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrStale) {
			err = fmt.Errorf("%w (session deadline %v)", ctx.Err(), s.cfg.Timeout)
		}
		return ss.stats, err
	}
	if !ss.stats.Partial {
		if err := s.cfg.Store.SetLastContact(contact); err != nil {
			return ss.stats, err
		}
		if s.cfg.OnComplete != nil {
			s.cfg.OnComplete(p)
		}
		if s.cfg.OnMerge != nil && len(ss.peerFrontier) > 0 {
			if v, err := FrontierFromProto(ss.peerFrontier, s.cfg.Store.Clock()); err != nil {
				s.cfg.Logger.Warn("ignored the frontier in a peer's sync hello", "peer", p, "err", err)
			} else {
				s.cfg.OnMerge(p, v)
			}
		}
	}
	return ss.stats, nil
}

func (ss *session) run(initiator bool) error {
	mine := ss.hello()
	var theirs *replicationv1.SyncHello
	if initiator {
		if err := ss.send(&replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Hello{Hello: mine}}); err != nil {
			return err
		}
		m, err := ss.recv()
		if err != nil {
			return fmt.Errorf("read hello: %w", err)
		}
		if theirs = m.GetHello(); theirs == nil {
			return fmt.Errorf("%w: expected a hello, got %T", ErrUndecodable, m.GetBody())
		}
		if theirs.GetError() != "" {
			if theirs.GetLastContact() != 0 || theirs.GetPurgedThrough() != 0 {
				if err := checkStale(mine, theirs, ss.peer.String()); err != nil {
					return err
				}
			}
			return fmt.Errorf("peer refused: %s", theirs.GetError())
		}
		if err := checkHello(theirs); err != nil {
			return err
		}
		if err := checkStale(mine, theirs, ss.peer.String()); err != nil {
			return err
		}
		ss.adoptCap(theirs)
		ss.stats.PeerRoot = theirs.GetRoot()
		ss.peerFrontier = theirs.GetFrontier()
		if theirs.GetRoot() == mine.GetRoot() {
			return nil
		}
	} else {
		m, err := ss.recv()
		if err != nil {
			return fmt.Errorf("read hello: %w", err)
		}
		if theirs = m.GetHello(); theirs == nil {
			return fmt.Errorf("%w: expected a hello, got %T", ErrUndecodable, m.GetBody())
		}
		refuse := func(err error) error {
			h := ss.hello()
			h.Error = err.Error()
			if serr := ss.send(&replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Hello{Hello: h}}); serr == nil {
				_ = ss.w.Flush()
			}
			return fmt.Errorf("%w: %w", errRefused, err)
		}
		if err := checkHello(theirs); err != nil {
			return refuse(err)
		}
		if ss.s.cfg.Admit != nil {
			if err := ss.s.cfg.Admit(ss.peer); err != nil {
				return refuse(err)
			}
		}
		if err := checkStale(mine, theirs, ss.peer.String()); err != nil {
			return refuse(err)
		}
		ss.adoptCap(theirs)
		ss.stats.PeerRoot = theirs.GetRoot()
		ss.peerFrontier = theirs.GetFrontier()
		if err := ss.send(&replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Hello{Hello: mine}}); err != nil {
			return err
		}
		if theirs.GetRoot() == mine.GetRoot() {
			return nil
		}
		if err := ss.sendLevel(0, []uint32{0}); err != nil {
			return err
		}
	}
	return ss.descend()
}

// adoptCap lowers the session's per-level cap to the peer's, if smaller.
func (ss *session) adoptCap(h *replicationv1.SyncHello) {
	if c := int(h.GetMaxDiffNodes()); c > 0 && c < ss.maxDiff {
		ss.maxDiff = c
	}
}

// checkHello checks that the peer's tree has this node's shape.
func checkHello(h *replicationv1.SyncHello) error {
	if h.GetFanout() != merkle.Fanout || h.GetDepth() != merkle.Depth {
		return fmt.Errorf("peer's Merkle tree has fanout %d and depth %d; this node's has %d and %d",
			h.GetFanout(), h.GetDepth(), merkle.Fanout, merkle.Depth)
	}
	return nil
}

func (ss *session) sendLevel(level int, parents []uint32) error {
	hashes := ss.store.MerkleChildren(make([]uint64, 0, len(parents)*merkle.Fanout), level, parents)
	return ss.send(&replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Level{Level: &replicationv1.SyncLevel{
		Level: uint32(level), Parents: parents, Hashes: hashes, Partial: ss.stats.Partial,
	}}})
}

// descend takes turns comparing levels until one side reaches the buckets,
// then runs the leaf step.
func (ss *session) descend() error {
	for {
		m, err := ss.recv()
		if err != nil {
			return err
		}
		switch body := m.GetBody().(type) {
		case *replicationv1.SyncMessage_Done:
			return nil // the trees matched after all (they change as we go)
		case *replicationv1.SyncMessage_Level:
			lv := body.Level
			level := int(lv.GetLevel())
			if err := merkle.CheckLevelMessage(level, lv.GetParents(), lv.GetHashes()); err != nil {
				return fmt.Errorf("%w: %w", ErrUndecodable, err)
			}
			// A session the peer capped is partial for this side too.
			ss.stats.Partial = ss.stats.Partial || lv.GetPartial()
			if len(lv.GetParents()) > ss.maxDiff {
				return fmt.Errorf("%w: %d parents in one level; the session's limit is %d", ErrTooLarge, len(lv.GetParents()), ss.maxDiff)
			}
			diff := ss.store.MerkleDiff(level, lv.GetParents(), lv.GetHashes(), ss.maxDiff+1)
			if len(diff) > ss.maxDiff {
				diff = diff[:ss.maxDiff]
				ss.stats.Partial = true
			}
			if len(diff) == 0 {
				return ss.send(&replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Done{Done: &replicationv1.SyncDone{}}})
			}
			if level+1 < merkle.Depth {
				if err := ss.sendLevel(level+1, diff); err != nil {
					return err
				}
				continue
			}
			return ss.leafAsDigestSender(diff)
		case *replicationv1.SyncMessage_Digests:
			return ss.leafAsDigestReceiver(body.Digests)
		default:
			return fmt.Errorf("%w: unexpected %T while comparing trees", ErrUndecodable, body)
		}
	}
}

// leafAsDigestSender sends digests of this node's keys in the differing
// buckets, then receives the peer's entries and wants, then sends those.
func (ss *session) leafAsDigestSender(buckets []uint32) error {
	ss.stats.differingBuckets = len(buckets)
	ss.setBuckets(buckets)
	digests, err := ss.store.BucketDigests(buckets)
	if err != nil {
		return err
	}
	ss.stats.digestsSent = len(digests)
	first := true
	for first || len(digests) > 0 {
		n := min(len(digests), digestsPerFrame)
		msg := &replicationv1.SyncDigests{Last: n == len(digests)}
		if first {
			msg.Buckets = buckets
			msg.Partial = ss.stats.Partial
			first = false
		}
		for _, d := range digests[:n] {
			msg.KeyHashes = append(msg.KeyHashes, d.KeyHash)
			msg.Hlcs = append(msg.Hlcs, uint64(d.HLC))
			msg.EntryHashes = append(msg.EntryHashes, d.Hash)
		}
		digests = digests[n:]
		if err := ss.send(&replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Digests{Digests: msg}}); err != nil {
			return err
		}
	}
	want, err := ss.receiveEntries(nil)
	if err != nil {
		return err
	}
	if err := ss.sendEntries(want, nil); err != nil {
		return err
	}
	// The peer confirms once it applied them, so that a session that
	// returned has repaired both sides.
	m, err := ss.recv()
	if err != nil {
		return fmt.Errorf("read the peer's confirmation: %w", err)
	}
	if m.GetDone() == nil {
		return fmt.Errorf("%w: expected the end of the session, got %T", ErrUndecodable, m.GetBody())
	}
	return nil
}

// leafAsDigestReceiver receives the peer's digests, sends the entries the
// peer lacks with the key hashes this node wants, and receives those.
func (ss *session) leafAsDigestReceiver(first *replicationv1.SyncDigests) error {
	ss.stats.Partial = ss.stats.Partial || first.GetPartial()
	buckets := first.GetBuckets()
	if len(buckets) == 0 || len(buckets) > ss.maxDiff {
		return fmt.Errorf("%w: digests for %d buckets; want 1 to %d", ErrUndecodable, len(buckets), ss.maxDiff)
	}
	for i, b := range buckets {
		if b >= merkle.Buckets || (i > 0 && b <= buckets[i-1]) {
			return fmt.Errorf("%w: bucket list is not ascending buckets below %d", ErrUndecodable, merkle.Buckets)
		}
	}
	ss.stats.differingBuckets = len(buckets)
	ss.setBuckets(buckets)
	var theirs []merkle.Digest
	msg := first
	for {
		n := len(msg.GetKeyHashes())
		if len(msg.GetHlcs()) != n || len(msg.GetEntryHashes()) != n {
			return fmt.Errorf("%w: digest columns of different lengths", ErrUndecodable)
		}
		if len(theirs)+n > maxDigests {
			return fmt.Errorf("%w: more than %d digests", ErrTooLarge, maxDigests)
		}
		for i := range n {
			d := merkle.Digest{KeyHash: msg.GetKeyHashes()[i], HLC: crdt.Timestamp(msg.GetHlcs()[i]), Hash: msg.GetEntryHashes()[i]}
			if !ss.buckets[merkle.BucketOf(d.KeyHash)] {
				return fmt.Errorf("%w: digest outside the session's buckets", ErrUndecodable)
			}
			theirs = append(theirs, d)
		}
		if msg.GetLast() {
			break
		}
		m, err := ss.recv()
		if err != nil {
			return err
		}
		if msg = m.GetDigests(); msg == nil || len(msg.GetBuckets()) > 0 {
			return fmt.Errorf("%w: expected more digests, got %T", ErrUndecodable, m.GetBody())
		}
	}
	ss.stats.digestsReceived = len(theirs)
	mine, err := ss.store.BucketDigests(buckets)
	if err != nil {
		return err
	}
	send, want := merkle.Reconcile(mine, theirs)
	if err := ss.sendEntries(send, want); err != nil {
		return err
	}
	wanted := make(map[uint64]bool, len(want))
	for _, h := range want {
		wanted[h] = true
	}
	if _, err := ss.receiveEntries(wanted); err != nil {
		return err
	}
	return ss.send(&replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Done{Done: &replicationv1.SyncDone{}}})
}

func (ss *session) setBuckets(buckets []uint32) {
	ss.buckets = make(map[uint32]bool, len(buckets))
	for _, b := range buckets {
		ss.buckets[b] = true
	}
}

// sendEntries sends this node's entries for the key hashes, in frames of
// about syncChunkBytes, with want in the first frame.
func (ss *session) sendEntries(hashes, want []uint64) error {
	msg := &replicationv1.SyncEntries{Want: want}
	size := 0
	flush := func(last bool) error {
		msg.Last = last
		err := ss.send(&replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Entries{Entries: msg}})
		msg, size = &replicationv1.SyncEntries{}, 0
		return err
	}
	// Read in slices, so no store snapshot is held while the network is slow.
	for len(hashes) > 0 {
		n := min(len(hashes), 1024)
		var batch []*replicationv1.Entry
		err := ss.store.EntriesByKeyHash(hashes[:n], func(e *crdt.Entry) error {
			batch = append(batch, &replicationv1.Entry{Key: e.Key, Value: e.Value, Hlc: uint64(e.HLC), Origin: e.Origin, Tombstone: e.Tombstone})
			return nil
		})
		if err != nil {
			return err
		}
		hashes = hashes[n:]
		for _, e := range batch {
			sz := len(e.Key) + len(e.Value) + len(e.Origin) + 32
			if size > 0 && size+sz > syncChunkBytes {
				if err := flush(false); err != nil {
					return err
				}
			}
			msg.Entries = append(msg.Entries, e)
			size += sz
			ss.stats.EntriesSent++
		}
	}
	return flush(true)
}

// receiveEntries applies entry frames until the last. With wanted nil it
// is the first answer of the leaf step (entries must be in the session's
// buckets, and it returns the peer's wants); otherwise every entry must
// answer one of wanted.
func (ss *session) receiveEntries(wanted map[uint64]bool) ([]uint64, error) {
	var want []uint64
	firstFrame := true
	for {
		m, err := ss.recv()
		if err != nil {
			return nil, err
		}
		msg := m.GetEntries()
		if msg == nil {
			return nil, fmt.Errorf("%w: expected entries, got %T", ErrUndecodable, m.GetBody())
		}
		if len(msg.GetWant()) > 0 {
			if !firstFrame || wanted != nil {
				return nil, fmt.Errorf("%w: a want list outside the first answer", ErrUndecodable)
			}
			if len(msg.GetWant()) > ss.stats.digestsSent {
				return nil, fmt.Errorf("%w: %d wants for %d digests", ErrUndecodable, len(msg.GetWant()), ss.stats.digestsSent)
			}
			want = msg.GetWant()
		}
		firstFrame = false
		entries := make([]crdt.Entry, 0, len(msg.GetEntries()))
		for _, e := range msg.GetEntries() {
			kh := merkle.KeyHash(e.GetKey())
			if wanted != nil && !wanted[kh] {
				return nil, fmt.Errorf("%w: entry %q was not asked for", ErrUndecodable, e.GetKey())
			}
			if wanted == nil && !ss.buckets[merkle.BucketOf(kh)] {
				return nil, fmt.Errorf("%w: entry %q is outside the session's buckets", ErrUndecodable, e.GetKey())
			}
			entries = append(entries, crdt.Entry{Key: e.GetKey(), Value: e.GetValue(), HLC: crdt.Timestamp(e.GetHlc()), Origin: e.GetOrigin(), Tombstone: e.GetTombstone()})
		}
		ss.stats.EntriesReceived += len(entries)
		// In bounded batches, each durable before the next is queued, so
		// that local writes queued meanwhile are committed between them
		// rather than behind a whole frame (a megabyte of entries).
		for len(entries) > 0 {
			n := applyBatchEntries(entries)
			changes, err := ss.store.Apply(ss.s.ctx, entries[:n])
			if err != nil {
				return nil, fmt.Errorf("apply %d entries from peer: %w", n, err)
			}
			ss.stats.EntriesApplied += len(changes)
			entries = entries[n:]
		}
		if msg.GetLast() {
			return want, nil
		}
	}
}

// Bounds of one store.Apply of a session's entries (applyBatchEntries).
const (
	maxApplyEntries = 256
	maxApplyBytes   = 256 << 10
)

// applyBatchEntries returns how many of entries (at least one) the next
// store.Apply takes: at most maxApplyEntries and maxApplyBytes of keys and
// values.
func applyBatchEntries(entries []crdt.Entry) int {
	size := 0
	for i := range entries {
		size += len(entries[i].Key) + len(entries[i].Value)
		if i == maxApplyEntries || i > 0 && size > maxApplyBytes {
			return i
		}
	}
	return len(entries)
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
