package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Backoff bounds for reconnecting to bootstrap peers.
const (
	MinBackoff   = 250 * time.Millisecond
	MaxBackoff   = 30 * time.Second
	dialTimeout  = 10 * time.Second
	checkEvery   = 250 * time.Millisecond
	backoffScale = 2
)

// ParseBootstrap parses bootstrap multiaddrs (/ip4/..., /ip6/..., /dns4/...,
// /dns/..., each ending in /p2p/<peer id>), merging addresses of one peer and
// leaving self out. It reports every bad address at once.
func ParseBootstrap(addrs []string, self peer.ID) ([]peer.AddrInfo, error) {
	var errs []error
	byPeer := map[peer.ID]*peer.AddrInfo{}
	var order []peer.ID
	for _, s := range addrs {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("p2p: bootstrap address %q: %w", s, err))
			continue
		}
		info, err := peer.AddrInfoFromP2pAddr(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("p2p: bootstrap address %q must end in /p2p/<peer id>: %w", s, err))
			continue
		}
		if info.ID == self {
			continue
		}
		if existing, ok := byPeer[info.ID]; ok {
			existing.Addrs = append(existing.Addrs, info.Addrs...)
			continue
		}
		byPeer[info.ID] = info
		order = append(order, info.ID)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]peer.AddrInfo, len(order))
	for i, id := range order {
		out[i] = *byPeer[id]
	}
	return out, nil
}

// nextBackoff doubles the backoff up to MaxBackoff, with ±20% jitter so that
// nodes restarted together do not dial in lockstep.
func nextBackoff(cur time.Duration, jitter float64) time.Duration {
	next := min(max(cur*backoffScale, MinBackoff), MaxBackoff)
	return time.Duration(float64(next) * (0.8 + 0.4*jitter))
}

// Bootstrapper keeps the host connected to its bootstrap peers: it dials
// each one until connected, with exponential backoff, and dials again when
// a link drops. Its one goroutine stops on Close.
type Bootstrapper struct {
	h      host.Host
	peers  []peer.AddrInfo
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartBootstrapper starts keeping h connected to peers.
func StartBootstrapper(h host.Host, peers []peer.AddrInfo, log *slog.Logger) *Bootstrapper {
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bootstrapper{h: h, peers: peers, log: log, cancel: cancel}
	for _, p := range peers {
		h.Peerstore().AddAddrs(p.ID, p.Addrs, time.Hour)
	}
	if len(peers) > 0 {
		b.wg.Add(1)
		go b.loop(ctx)
	}
	return b
}

func (b *Bootstrapper) loop(ctx context.Context) {
	defer b.wg.Done()
	type state struct {
		next    time.Time
		backoff time.Duration
	}
	states := make([]state, len(b.peers))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		for i, p := range b.peers {
			st := &states[i]
			if b.h.Network().Connectedness(p.ID) == network.Connected {
				st.backoff = 0
				continue
			}
			if now.Before(st.next) {
				continue
			}
			dctx, cancel := context.WithTimeout(ctx, dialTimeout)
			err := b.h.Connect(dctx, p)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				st.backoff = nextBackoff(st.backoff, rand.Float64())
				st.next = time.Now().Add(st.backoff)
				b.log.Debug("bootstrap peer unreachable", "peer", p.ID, "retry_in", st.backoff, "err", err)
				continue
			}
			st.backoff = 0
			b.log.Info("connected to bootstrap peer", "peer", p.ID)
		}
		timer.Reset(checkEvery)
	}
}

// Close stops the bootstrapper and waits for its goroutine.
func (b *Bootstrapper) Close() {
	b.cancel()
	b.wg.Wait()
}
