package p2p

import (
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

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
