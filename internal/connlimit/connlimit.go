package connlimit

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// logEvery is the least time between two warnings about refused
// connections of one listener.
const logEvery = time.Minute

// Listener is a net.Listener that hands out at most Max connections at once.
type Listener struct {
	net.Listener
	max     int
	name    string
	logger  *slog.Logger
	slots   chan struct{}
	refused atomic.Int64

	mu struct {
		sync.Mutex
		lastLog time.Time // of the last warning
		logged  int64     // refusals counted at the last warning
	}
}

// New wraps l so that at most max connections accepted through it are open
// at once; max must be positive. name names the listener in the warning
// logged (at most once a minute) when connections are refused.
func New(l net.Listener, max int, name string, logger *slog.Logger) *Listener {
	if logger == nil {
		logger = slog.Default()
	}
	return &Listener{Listener: l, max: max, name: name, logger: logger, slots: make(chan struct{}, max)}
}

// Max returns the cap.
func (l *Listener) Max() int { return l.max }

// Open returns how many connections handed out are still open.
func (l *Listener) Open() int { return len(l.slots) }

// Refused returns how many connections were closed at once for want of a
// slot.
func (l *Listener) Refused() int64 { return l.refused.Load() }

// Accept returns the next connection for which there is a slot; it closes
// at once every connection accepted while all slots are taken.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &conn{Conn: c, l: l}, nil
		default:
		}
		refused := l.refused.Add(1)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset: no TIME_WAIT kept for a refused client
		}
		_ = c.Close()
		l.warn(refused)
	}
}

func (l *Listener) warn(refused int64) {
	now := time.Now()
	l.mu.Lock()
	if !l.mu.lastLog.IsZero() && now.Sub(l.mu.lastLog) < logEvery {
		l.mu.Unlock()
		return
	}
	since := refused - l.mu.logged
	l.mu.lastLog, l.mu.logged = now, refused
	l.mu.Unlock()
	l.logger.Warn("connection limit reached: refusing new connections until open ones close",
		"listener", l.name, "limit", l.max, "refused", since, "refused_total", refused)
}

// conn frees its slot when closed.
type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.l.slots })
	return err
}
