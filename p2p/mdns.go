package p2p

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
)

// MDNS finds peers of the same cluster on the local network and connects to
// them. For labs; off by default.
type MDNS struct {
	svc    mdns.Service
	found  func(peer.AddrInfo) // dials a peer found, under the lifetime Close ends
	cancel context.CancelFunc

	mu struct {
		sync.Mutex
		closed bool
	}
	wg sync.WaitGroup // dials in flight
}

// StartMDNS starts mDNS discovery under a service name scoped by cluster.
func StartMDNS(h host.Host, cluster string, log *slog.Logger) (*MDNS, error) {
	ctx, cancel := context.WithCancel(context.Background())
	m := &MDNS{cancel: cancel}
	m.found = func(info peer.AddrInfo) {
		if info.ID == h.ID() {
			return
		}
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		defer dcancel()
		if err := h.Connect(dctx, info); err != nil {
			log.Debug("mDNS peer unreachable", "peer", info.ID, "err", err)
			return
		}
		log.Info("connected to mDNS peer", "peer", info.ID)
	}
	m.svc = mdns.NewMdnsService(h, "chorus-"+cluster, m)
	if err := m.svc.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("p2p: start mDNS: %w", err)
	}
	return m, nil
}

// HandlePeerFound implements mdns.Notifee: it dials the peer found.
func (m *MDNS) HandlePeerFound(info peer.AddrInfo) {
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

// Close stops discovery and waits for dials in flight.
func (m *MDNS) Close() {
	_ = m.svc.Close()
	m.mu.Lock()
	m.mu.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}
