package p2p

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
)

// MDNSConfig tunes mDNS discovery. The zero value takes the defaults.
type MDNSConfig struct {
	// FirstRebrowse is the delay before the first restart of discovery;
	// each later one waits twice as long, up to MaxRebrowse. Default 5 s.
	FirstRebrowse time.Duration
	// MaxRebrowse caps the delay between restarts. Default 2 min.
	MaxRebrowse time.Duration
	// DialAttempts is how many times a peer found is dialled before it is
	// given up until it is found again. Default 4 (after 0, 0.5, 1 and 2 s).
	DialAttempts int
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c MDNSConfig) WithDefaults() MDNSConfig {
	if c.FirstRebrowse <= 0 {
		c.FirstRebrowse = 5 * time.Second
	}
	if c.MaxRebrowse <= 0 {
		c.MaxRebrowse = 2 * time.Minute
	}
	if c.MaxRebrowse < c.FirstRebrowse {
		c.MaxRebrowse = c.FirstRebrowse
	}
	if c.DialAttempts <= 0 {
		c.DialAttempts = 4
	}
	return c
}

// MDNS finds peers of the same cluster on the local network and connects to
// them. For labs; off by default.
//
// go-libp2p's mDNS service queries once when it starts and stops querying as
// soon as any answer arrives, its own included: one lost multicast packet, or
// a peer that answered while it could not be dialled, and two nodes never
// find each other. So MDNS restarts the service (a new query and new
// announcements) after FirstRebrowse, then at doubling intervals up to
// MaxRebrowse, and dials a peer found several times with a backoff.
type MDNS struct {
	host    host.Host
	service string
	cfg     MDNSConfig
	log     *slog.Logger
	cancel  context.CancelFunc  // ends dials and the rebrowse loop
	found   func(peer.AddrInfo) // dials a peer found, under the lifetime Close ends

	mu struct {
		sync.Mutex
		svc    mdns.Service
		closed bool
	}
	wg sync.WaitGroup // dials in flight and the rebrowse loop
}

// StartMDNS starts mDNS discovery under a service name scoped by cluster,
// with the default MDNSConfig.
func StartMDNS(h host.Host, cluster string, log *slog.Logger) (*MDNS, error) {
	return StartMDNSWithConfig(h, cluster, MDNSConfig{}, log)
}

// StartMDNSWithConfig starts mDNS discovery with cfg.
func StartMDNSWithConfig(h host.Host, cluster string, cfg MDNSConfig, log *slog.Logger) (*MDNS, error) {
	ctx, cancel := context.WithCancel(context.Background())
	m := &MDNS{host: h, service: "chorus-" + cluster, cfg: cfg.WithDefaults(), log: log, cancel: cancel}
	m.found = func(info peer.AddrInfo) { m.dial(ctx, info) }
	svc := mdns.NewMdnsService(h, m.service, m)
	if err := svc.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("p2p: start mDNS: %w", err)
	}
	m.mu.svc = svc
	m.wg.Add(1)
	go m.rebrowseLoop(ctx)
	return m, nil
}

// rebrowseLoop restarts the mDNS service at doubling intervals until Close.
func (m *MDNS) rebrowseLoop(ctx context.Context) {
	defer m.wg.Done()
	delay := m.cfg.FirstRebrowse
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if err := m.restart(); err != nil {
			m.log.Warn("mDNS restart failed; discovery stops", "err", err)
			return
		}
		delay = min(2*delay, m.cfg.MaxRebrowse)
		timer.Reset(delay)
	}
}

// restart replaces the service with a new one, which queries and announces
// again.
func (m *MDNS) restart() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return nil
	}
	_ = m.mu.svc.Close()
	svc := mdns.NewMdnsService(m.host, m.service, m)
	if err := svc.Start(); err != nil {
		return fmt.Errorf("p2p: restart mDNS: %w", err)
	}
	m.mu.svc = svc
	return nil
}

// HandlePeerFound implements mdns.Notifee: it dials the peer found.
func (m *MDNS) HandlePeerFound(info peer.AddrInfo) {
	if info.ID == m.host.ID() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.found(info)
	}()
}

// dial connects to a peer found, retrying with a backoff.
func (m *MDNS) dial(ctx context.Context, info peer.AddrInfo) {
	if m.host.Network().Connectedness(info.ID) == network.Connected {
		return
	}
	wait := 500 * time.Millisecond
	var err error
	for attempt := 1; ; attempt++ {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = m.host.Connect(dctx, info)
		cancel()
		if err == nil {
			m.log.Info("connected to mDNS peer", "peer", info.ID)
			return
		}
		if attempt == m.cfg.DialAttempts || ctx.Err() != nil {
			break
		}
		m.log.Debug("mDNS peer unreachable; retrying", "peer", info.ID, "attempt", attempt, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait *= 2
	}
	if ctx.Err() == nil {
		m.log.Warn("mDNS peer unreachable; trying again when it is found again", "peer", info.ID, "addrs", info.Addrs, "attempts", m.cfg.DialAttempts, "err", err)
	}
}

// Close stops discovery and waits for dials in flight.
func (m *MDNS) Close() {
	m.mu.Lock()
	m.mu.closed = true
	svc := m.mu.svc
	m.mu.Unlock()
	_ = svc.Close()
	m.cancel()
	m.wg.Wait()
}
