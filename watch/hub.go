package watch

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/chorus-kv/chorus/crdt/store"
)

// Errors that end a watch.
var (
	// ErrWatcherTooSlow: the watcher's buffer filled up.
	ErrWatcherTooSlow = errors.New("watch: watcher too slow")
	// ErrClosed: the watcher or the hub was closed.
	ErrClosed = errors.New("watch: closed")
	// ErrTooManyWatchers: the hub holds Config.MaxWatchers open watchers.
	ErrTooManyWatchers = errors.New("watch: too many watchers")
)

// Defaults for Config.
const (
	DefaultBufferSize   = 4096
	DefaultBufferBytes  = 64 << 20
	DefaultReplayPage   = 512
	DefaultMaxPageBytes = 4 << 20
	DefaultMaxWatchers  = 10_000
)

// Config configures a Hub. The zero value of every field means its default.
type Config struct {
	// BufferSize is how many live events may wait for a watcher's reader
	// before the watcher is cancelled with ErrWatcherTooSlow: a batch that
	// finds fewer waiting is taken whole, so the buffer holds at most
	// BufferSize events plus one commit batch. Default 4096.
	BufferSize int
	// BufferBytes is, likewise, how many key and value bytes may wait for a
	// watcher's reader. Default 64 MiB.
	BufferBytes int
	// ReplayPage is the most events one Next returns. Default 512.
	ReplayPage int
	// MaxPageBytes caps the key and value bytes one Next returns (at least
	// one event is always returned). Default 4 MiB.
	MaxPageBytes int
	// MaxWatchers is how many watchers may be open at once; Watch fails
	// with ErrTooManyWatchers beyond it. An open watcher costs a few KiB
	// besides its buffered events. Default 10,000.
	MaxWatchers int
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.BufferSize == 0 {
		c.BufferSize = DefaultBufferSize
	}
	if c.BufferBytes == 0 {
		c.BufferBytes = DefaultBufferBytes
	}
	if c.ReplayPage == 0 {
		c.ReplayPage = DefaultReplayPage
	}
	if c.MaxPageBytes == 0 {
		c.MaxPageBytes = DefaultMaxPageBytes
	}
	if c.MaxWatchers == 0 {
		c.MaxWatchers = DefaultMaxWatchers
	}
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.BufferSize < 0 {
		errs = append(errs, fmt.Errorf("watch: BufferSize is %d; it must not be negative (0 means the default)", c.BufferSize))
	}
	if c.BufferBytes < 0 {
		errs = append(errs, fmt.Errorf("watch: BufferBytes is %d; it must not be negative (0 means the default)", c.BufferBytes))
	}
	if c.ReplayPage < 0 {
		errs = append(errs, fmt.Errorf("watch: ReplayPage is %d; it must not be negative (0 means the default)", c.ReplayPage))
	}
	if c.MaxPageBytes < 0 {
		errs = append(errs, fmt.Errorf("watch: MaxPageBytes is %d; it must not be negative (0 means the default)", c.MaxPageBytes))
	}
	if c.MaxWatchers < 0 {
		errs = append(errs, fmt.Errorf("watch: MaxWatchers is %d; it must not be negative (0 means the default)", c.MaxWatchers))
	}
	return errors.Join(errs...)
}

// Source is where a hub replays history from: the store.
type Source interface {
	// ReadLog calls fn with each change from revision from on; see store.ReadLog.
	ReadLog(from int64, prev bool, fn func(*store.Change) error) (int64, error)
	// Revision is the latest written revision.
	Revision() int64
	// OldestRevision is the oldest revision ReadLog can start from.
	OldestRevision() int64
}

// Hub fans a store's changes out to watchers. It is safe for concurrent use.
type Hub struct {
	src Source
	cfg Config

	mu struct {
		sync.Mutex
		published int64                 // the last revision passed to Publish
		watchers  map[*Watcher]struct{} // live watchers, fed by Publish
		all       map[*Watcher]struct{} // every open watcher, replaying or live
		closed    bool
	}
	// eventsSent counts the events Next returned; tooSlow the watchers
	// cancelled with ErrWatcherTooSlow.
	eventsSent, tooSlow atomic.Int64
}

// Stats are a hub's watchers and counters.
type Stats struct {
	Watchers   int   // open watchers, replaying or live
	EventsSent int64 // events returned by Next, to every watcher
	// CancelledTooSlow counts the watchers cancelled with ErrWatcherTooSlow.
	CancelledTooSlow int64
}

// Stats returns the hub's watchers and counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	n := len(h.mu.all)
	h.mu.Unlock()
	return Stats{Watchers: n, EventsSent: h.eventsSent.Load(), CancelledTooSlow: h.tooSlow.Load()}
}

// NewHub returns a hub over src. Every change src makes from now on must be
// passed to Publish.
func NewHub(src Source, cfg Config) (*Hub, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Hub{src: src, cfg: cfg}
	h.mu.published = src.Revision()
	h.mu.watchers = make(map[*Watcher]struct{})
	h.mu.all = make(map[*Watcher]struct{})
	return h, nil
}

// Publish hands the hub a written batch of changes, in revision order. It
// never blocks on a watcher.
func (h *Hub) Publish(changes []store.Change) {
	if len(changes) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mu.published = changes[len(changes)-1].Record.ModRevision
	for w := range h.mu.watchers {
		if !w.deliver(changes) {
			delete(h.mu.watchers, w)
		}
	}
}

// Revision returns the last revision published.
func (h *Hub) Revision() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.published
}

// Close ends every watcher with ErrClosed and refuses new ones.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mu.closed = true
	for w := range h.mu.all { // replaying ones too: their Next stops at the next page
		w.cancel(ErrClosed)
	}
	clear(h.mu.all)
	clear(h.mu.watchers)
}

// Options says what to watch.
type Options struct {
	// Key is the key watched, or the key prefix when Prefix is set. An empty
	// Key with Prefix set watches every key.
	Key    []byte
	Prefix bool
	// StartRevision replays changes from this revision on; 0 means only
	// changes after the current revision.
	StartRevision int64
	// PrevKV asks for each event's previous value, when still known.
	PrevKV bool
}

// Watch starts a watcher. It fails with an error wrapping
// *store.CompactedError when StartRevision is older than the change log,
// and with ErrTooManyWatchers when MaxWatchers are open.
func (h *Hub) Watch(opts Options) (*Watcher, error) {
	if opts.StartRevision < 0 {
		return nil, fmt.Errorf("watch: start revision is %d; it must be 0 (now) or positive", opts.StartRevision)
	}
	w := &Watcher{
		hub:    h,
		opts:   opts,
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	w.opts.Key = bytes.Clone(opts.Key)
	if opts.StartRevision > 0 {
		if oldest := h.src.OldestRevision(); opts.StartRevision < oldest {
			return nil, fmt.Errorf("watch: %w", &store.CompactedError{Requested: opts.StartRevision, Oldest: oldest})
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed {
		return nil, ErrClosed
	}
	if n := len(h.mu.all); n >= h.cfg.MaxWatchers {
		return nil, fmt.Errorf("%w: %d watchers are open on this node; the limit is %d", ErrTooManyWatchers, n, h.cfg.MaxWatchers)
	}
	h.mu.all[w] = struct{}{}
	if opts.StartRevision == 0 || opts.StartRevision > h.mu.published {
		// Nothing to replay: live from the next revision (or the one asked for).
		w.next = max(opts.StartRevision, h.mu.published+1)
		w.startedAfter = h.mu.published
		h.mu.watchers[w] = struct{}{}
		w.live = true
	} else {
		w.next = opts.StartRevision
		w.startedAfter = opts.StartRevision - 1
	}
	return w, nil
}

// goLive registers w for live events if it has replayed everything the hub
// has published, and reports whether it did.
func (h *Hub) goLive(w *Watcher) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed {
		return false, ErrClosed
	}
	if _, open := h.mu.all[w]; !open {
		return false, ErrClosed // closed while replaying
	}
	if h.mu.published >= w.next {
		return false, nil
	}
	h.mu.watchers[w] = struct{}{}
	return true, nil
}

func (h *Hub) remove(w *Watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.mu.watchers, w)
	delete(h.mu.all, w)
}
