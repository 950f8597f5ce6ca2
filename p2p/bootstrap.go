package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

// Backoff bounds for reconnecting to bootstrap peers.
const (
	MinBackoff   = 250 * time.Millisecond
	MaxBackoff   = 30 * time.Second
	dialTimeout  = 10 * time.Second
	checkEvery   = 250 * time.Millisecond
	backoffScale = 2
	// stableAfter is how long a connection to a bootstrap peer must last
	// for its backoff to start again from the bottom. A connection closed
	// sooner (a peer whose gater refuses this node closes it right after
	// the handshake) counts as a failed attempt: the backoff keeps growing
	// instead of redialling every checkEvery.
	stableAfter = 5 * time.Second
)

// ParseBootstrap parses bootstrap multiaddrs (/ip4/..., /ip6/..., /dns4/...,
// /dns/..., ending in /p2p/<peer id> or not), merging addresses of one peer
// and leaving self out. An address without /p2p/ becomes an AddrInfo of its
// own with an empty ID: the Bootstrapper learns the id when it dials (see
// LearnPeerID). It reports every bad address at once.
func ParseBootstrap(addrs []string, self peer.ID) ([]peer.AddrInfo, error) {
	var errs []error
	byPeer := map[peer.ID]*peer.AddrInfo{}
	var order []peer.ID
	var out []peer.AddrInfo // the id-less addresses, then the peers by id
	for _, s := range addrs {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("p2p: bootstrap address %q: %w", s, err))
			continue
		}
		if _, err := m.ValueForProtocol(ma.P_P2P); err != nil {
			_, tcpErr := m.ValueForProtocol(ma.P_TCP)
			_, quicErr := m.ValueForProtocol(ma.P_QUIC_V1)
			if tcpErr != nil && quicErr != nil {
				errs = append(errs, fmt.Errorf("p2p: bootstrap address %q names no transport: want /tcp/PORT or /udp/PORT/quic-v1, optionally followed by /p2p/<peer id>", s))
				continue
			}
			out = append(out, peer.AddrInfo{Addrs: []ma.Multiaddr{m}})
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
	for _, id := range order {
		out = append(out, *byPeer[id])
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
// a link drops. A peer given by address alone (no /p2p/) has its id learned
// (LearnPeerID) before each dial, so a restarted host with a new identity
// or a new address behind the same DNS name is found again. Its one
// goroutine stops on Close.
type Bootstrapper struct {
	cfg    BootstrapConfig
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// BootstrapConfig configures StartBootstrapperWith.
type BootstrapConfig struct {
	Host   host.Host
	Peers  []peer.AddrInfo // from ParseBootstrap; an empty ID means "learn it"
	Logger *slog.Logger
	// AllowProbe and DoneProbe bracket the throwaway dial that learns a
	// peer's id, so that a connection gater lets it out (Admission's
	// AllowBootstrap and ForgetBootstrap). Optional.
	AllowProbe, DoneProbe func(peer.ID)
	// OnLearn is called with every peer id learned from an address alone,
	// before it is dialled (Admission.AllowBootstrap lets it in). Optional.
	OnLearn func(peer.ID)
	// OnRefused is called when a connection to a bootstrap peer closed
	// within a second of being made: the peer refuses this node
	// (Admission.BootstrapRefused). Optional.
	OnRefused func(peer.ID)
}

// refusedWithin: a bootstrap connection that closes this soon after the
// dial returned was refused by the peer's gater (it closes right after the
// handshake), as far as this node can tell.
const refusedWithin = time.Second

// StartBootstrapper starts keeping h connected to peers.
func StartBootstrapper(h host.Host, peers []peer.AddrInfo, log *slog.Logger) *Bootstrapper {
	return StartBootstrapperWith(BootstrapConfig{Host: h, Peers: peers, Logger: log})
}

// StartBootstrapperWith starts keeping cfg.Host connected to cfg.Peers.
func StartBootstrapperWith(cfg BootstrapConfig) *Bootstrapper {
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bootstrapper{cfg: cfg, cancel: cancel}
	for _, p := range cfg.Peers {
		if p.ID != "" {
			cfg.Host.Peerstore().AddAddrs(p.ID, p.Addrs, time.Hour)
		}
	}
	if len(cfg.Peers) > 0 {
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
		learned peer.ID // for a peer given by address alone
		// connectedAt is when the last dial succeeded (zero once the
		// connection was seen closed); stable once it lasted stableAfter.
		connectedAt time.Time
		stable      bool
		// lastErr is the reason of the last failed dial, logged at warn
		// when it changes; drops counts quick closes in a row.
		lastErr string
		drops   int
	}
	h, log := b.cfg.Host, b.cfg.Logger
	states := make([]state, len(b.cfg.Peers))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		for i, p := range b.cfg.Peers {
			st := &states[i]
			id := p.ID
			if id == "" {
				id = st.learned
			}
			if id != "" && h.Network().Connectedness(id) == network.Connected {
				if !st.stable && now.Sub(st.connectedAt) >= stableAfter {
					st.stable, st.backoff, st.drops, st.lastErr = true, 0, 0, ""
				}
				continue
			}
			if !st.connectedAt.IsZero() {
				// The connection closed; the backoff set at the dial holds
				// unless it had been stable.
				lasted := now.Sub(st.connectedAt)
				st.connectedAt = time.Time{}
				if st.stable {
					st.next = now
				} else if lasted < refusedWithin+checkEvery {
					st.drops++
					log.Debug("bootstrap peer closed the connection right after the handshake: it does not admit this node",
						"peer", id, "drops", st.drops, "retry_in", time.Until(st.next).Round(time.Millisecond))
					if b.cfg.OnRefused != nil {
						b.cfg.OnRefused(id)
					}
				}
				st.stable = false
			}
			if now.Before(st.next) {
				continue
			}
			dctx, cancel := context.WithTimeout(ctx, dialTimeout)
			err := b.dial(dctx, p, &st.learned)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, errSelf) {
				// The address is this node's own (every pod of a StatefulSet
				// is given the same list): look again now and then only.
				st.backoff, st.next = MaxBackoff, time.Now().Add(MaxBackoff)
				continue
			}
			st.backoff = nextBackoff(st.backoff, rand.Float64())
			st.next = time.Now().Add(st.backoff)
			if err != nil {
				// At warn when the reason is new (a dead address, a wrong
				// peer id, a handshake that fails), then at debug while it
				// stays the same.
				level, reason := slog.LevelDebug, dialReason(err)
				if reason != "" && reason != st.lastErr {
					level, st.lastErr = slog.LevelWarn, reason
				}
				log.Log(ctx, level, "bootstrap peer unreachable", "addrs", p.Addrs, "peer", p.ID, "retry_in", st.backoff.Round(time.Millisecond), "err", err, "hint", dialHint(err))
				continue
			}
			// Connected. The backoff just advanced stays until the
			// connection proves stable, so that a peer that refuses this
			// node is redialled with backoff too.
			st.connectedAt, st.stable, st.lastErr = time.Now(), false, ""
			if st.drops == 0 {
				log.Info("connected to bootstrap peer", "peer", id, "addrs", p.Addrs)
			} else {
				log.Debug("connected to bootstrap peer again", "peer", id, "drops", st.drops)
			}
		}
		timer.Reset(checkEvery)
	}
}

var errSelf = errors.New("p2p: the bootstrap address is this node's own")

// dialReason is the cause of a failed dial, without what changes from one
// attempt to the next (the throwaway id of a probe, say), so that the same
// failure is logged at warn once. It is "" for the swarm's own dial
// backoff, which repeats the last failure.
func dialReason(err error) string {
	var mismatch sec.ErrPeerIDMismatch
	switch {
	case errors.Is(err, swarm.ErrDialBackoff):
		return ""
	case errors.As(err, &mismatch):
		return "peer id mismatch: " + mismatch.Actual.String()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ErrNoPeerID):
		return ErrNoPeerID.Error()
	}
	return err.Error()
}

// dialHint says what to check for a failed bootstrap dial.
func dialHint(err error) string {
	var mismatch sec.ErrPeerIDMismatch
	switch {
	case errors.As(err, &mismatch):
		return fmt.Sprintf("the address is served by peer %s, not %s: correct the /p2p/ part of --bootstrap, or leave it out to learn the id at each dial", mismatch.Actual, mismatch.Expected)
	case errors.Is(err, ErrNoPeerID):
		return "the address answered but presented no peer id: is it a Chorus node of this cluster (same --cluster, --swarm-key or --join-secret)?"
	default:
		return "is a Chorus agent running there, listening on that address (--listen-p2p), with the same --cluster, --swarm-key or --join-secret?"
	}
}

// dial connects to p; for a peer given by address alone it first learns
// the id behind each address, into *learned.
func (b *Bootstrapper) dial(ctx context.Context, p peer.AddrInfo, learned *peer.ID) error {
	h := b.cfg.Host
	if p.ID != "" {
		return h.Connect(ctx, p)
	}
	id, err := LearnPeerID(ctx, h, p.Addrs[0], b.cfg.AllowProbe, b.cfg.DoneProbe)
	if err != nil {
		return err
	}
	if id == h.ID() {
		*learned = ""
		return errSelf
	}
	if *learned != id {
		b.cfg.Logger.Info("learned a bootstrap peer's id from its address", "addr", p.Addrs[0], "peer", id)
	}
	*learned = id
	if b.cfg.OnLearn != nil {
		b.cfg.OnLearn(id)
	}
	return h.Connect(ctx, peer.AddrInfo{ID: id, Addrs: p.Addrs})
}

// Close stops the bootstrapper and waits for its goroutine.
func (b *Bootstrapper) Close() {
	b.cancel()
	b.wg.Wait()
}
