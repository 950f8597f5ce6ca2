package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/crdt/frontier"
)

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
	Store   SyncStore
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
