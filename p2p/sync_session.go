package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/p2p/antientropy"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

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

// streamDriver runs an antientropy.Session over a stream: it writes what
// the session sends, reads and decodes what the peer sends, and applies
// what the session receives to the store.
type streamDriver struct {
	store   SyncStore
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
