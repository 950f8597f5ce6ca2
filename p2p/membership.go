package p2p

// Membership: its configuration, lifecycle and the view it exposes. The
// driver loop is in membership_loop.go, the probe protocol in
// membership_probe.go, the topic's validator in membership_validate.go,
// address learning in membership_addrs.go, duplicate identities in
// membership_twins.go and the wire conversions in membership_convert.go.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/p2p/swim"

	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// MembersTopic is the GossipSub topic of failure-detector updates.
func MembersTopic(cluster string) string { return "/chorus/" + cluster + "/members/1" }

// MembershipConfig configures a Membership. Host and PubSub are required.
type MembershipConfig struct {
	Cluster string
	Host    host.Host
	PubSub  *pubsub.PubSub
	Logger  *slog.Logger
	// Detector is the failure detector's timing; zero fields take
	// swim.LANConfig's values. Rand may be nil.
	Detector swim.Config
	// Members lists the admitted members; nil means open admission, where
	// every peer this node connects to is a member.
	Members func() []peer.ID
	// Admit, when set, vets the sender of every probe and update.
	Admit func(peer.ID) error
	// ProbeDelay injects a fault for tests: a delay before this node answers
	// a ping, as a slow or overloaded node would.
	ProbeDelay func() time.Duration
	// OnDuplicateIdentity, when set, is called once, with a
	// *DuplicateIdentityError, when a member reports that this node's peer
	// id is live in another process started before this one (a copied data
	// folder). The node must stop: see DuplicateIdentityError.
	OnDuplicateIdentity func(error)
	// OnRecovered, when set, is called (from the membership's goroutines,
	// without its lock) when a member held suspect or dead becomes alive
	// again: after a partition heals, say, when what it missed should be
	// repaired at once.
	OnRecovered func(peer.ID)
	// OnUnreachable, when set, is called (from the membership's goroutines,
	// without its lock) when a member held alive becomes suspect or dead:
	// what waits on it (a sync session) should stop waiting.
	OnUnreachable func(peer.ID)
}

// WithDefaults returns c with its zero fields set: the default cluster,
// slog's default logger and a random source for the detector (seeded from
// the runtime). The detector's zero timing fields take swim.LANConfig's
// values inside swim.New.
func (c MembershipConfig) WithDefaults() MembershipConfig {
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Detector.Rand == nil {
		c.Detector.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return c
}

// Validate reports every problem with c at once: a missing Host or PubSub,
// and the detector's timing rules (swim.Config.Validate).
func (c MembershipConfig) Validate() error {
	var errs []error
	if c.Host == nil {
		errs = append(errs, errors.New("p2p: membership needs a Host"))
	}
	if c.PubSub == nil {
		errs = append(errs, errors.New("p2p: membership needs a PubSub"))
	}
	if err := c.Detector.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("p2p: membership's failure detector: %w", err))
	}
	return errors.Join(errs...)
}

// Membership runs SWIM failure detection (package swim holds the logic):
// it probes one member every probe interval, directly then through others,
// spreads suspicions, deaths and leaves on MembersTopic, refutes suspicions
// of this node, and announces a graceful leave. It owns its goroutines;
// Close stops them.
type Membership struct {
	cfg   MembershipConfig
	self  peer.ID
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	// stop cancels the context the goroutines run in (they receive it as
	// an argument); done is closed at the same time, for what runs on
	// others' goroutines (untilClose).
	stop context.CancelFunc
	done chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	det      *swim.Detector
	changed  chan struct{}  // closed and replaced at every change
	closed   bool           // no new probe handlers
	handlers sync.WaitGroup // probe handlers running
	// reaped are members the detector forgot after they stayed dead: they
	// stay admitted but are not probed again until heard from.
	reaped map[string]bool
	// twins holds the boots heard from each member (see twins); warned the
	// ids already logged as live twice.
	twins  *twins
	warned map[string]bool
	// redials tracks the fresh dials of unreachable members (reconnect.go).
	redials map[string]redial
	// redialed counts the redials that connected (reconnect.go).
	redialed atomic.Int64
	// urls are the client URLs of this node and its members (clienturls.go).
	urls clientURLBook

	notify  *network.NotifyBundle
	boot    boot      // this process
	refused sync.Once // OnDuplicateIdentity called

	probes, probeBytesOut, probeBytesIn, updatesOut atomic.Int64
	probeFailures                                   atomic.Int64
	// startRefutations is the refutation StartMembership makes to raise
	// this node's incarnation past its previous run: not an accusation.
	startRefutations int64
	closeOnce        sync.Once
}

// StartMembership joins the membership topic and starts probing.
func StartMembership(cfg MembershipConfig) (*Membership, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	det, err := swim.New(cfg.Host.ID().String(), cfg.Detector, time.Now())
	if err != nil {
		return nil, fmt.Errorf("p2p: failure detector: %w", err)
	}
	// A restarted node must outrank what others remember of its previous
	// run (dead, or left, at some incarnation): it starts from the clock.
	// The detector's own API raises the incarnation, by refuting a
	// suspicion of itself at that number.
	det.Apply(swim.Update{ID: cfg.Host.ID().String(), State: swim.Suspect, Incarnation: uint64(time.Now().Unix()), From: cfg.Host.ID().String()}, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	m := &Membership{cfg: cfg, self: cfg.Host.ID(), det: det, stop: cancel, done: make(chan struct{}), changed: make(chan struct{}), reaped: map[string]bool{},
		startRefutations: det.Stats().Refutations,
		twins:            newTwins(twinGrace), warned: map[string]bool{}, redials: map[string]redial{},
		boot: boot{nonce: rand.Uint64() | 1, started: time.Now().UnixNano()}}
	topic := MembersTopic(cfg.Cluster)
	if err := cfg.PubSub.RegisterTopicValidator(topic, m.validate); err != nil {
		cancel()
		return nil, fmt.Errorf("p2p: register membership validator: %w", err)
	}
	if m.topic, err = cfg.PubSub.Join(topic); err != nil {
		cancel()
		return nil, fmt.Errorf("p2p: join %s: %w", topic, err)
	}
	if m.sub, err = m.topic.Subscribe(); err != nil {
		_ = m.topic.Close()
		cancel()
		return nil, fmt.Errorf("p2p: subscribe to %s: %w", topic, err)
	}
	cfg.Host.SetStreamHandler(ProbeProtocol(cfg.Cluster), m.handleProbe)
	// A new connection to a member held dead (a partition healed, a node
	// back) makes it probeable at once.
	m.notify = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		m.mu.Lock()
		m.det.Reachable(c.RemotePeer().String(), time.Now())
		m.mu.Unlock()
	}}
	cfg.Host.Network().Notify(m.notify)
	m.syncMembers(time.Now())
	m.wg.Add(3)
	go m.probeLoop(ctx)
	go m.receiveLoop(ctx)
	go m.redialLoop(ctx)
	return m, nil
}

// Close stops probing and waits for the goroutines. Leave first for a
// graceful exit.
func (m *Membership) Close() {
	m.closeOnce.Do(func() {
		m.cfg.Host.RemoveStreamHandler(ProbeProtocol(m.cfg.Cluster))
		m.cfg.Host.Network().StopNotify(m.notify)
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		m.stop()
		close(m.done)
		m.sub.Cancel()
		m.wg.Wait()
		m.handlers.Wait()
		_ = m.cfg.PubSub.UnregisterTopicValidator(MembersTopic(m.cfg.Cluster))
		_ = m.topic.Close()
	})
}

// Members returns the detector's view, self included, sorted by id.
func (m *Membership) Members() []swim.Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.det.Members()
}

// Changed returns a channel closed at the next change of the view.
func (m *Membership) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// MembershipStats counts failure-detection traffic and events.
type MembershipStats struct {
	Probes                 int64 // pings and ping-reqs sent
	ProbeBytesOut, BytesIn int64 // on the probe protocol
	UpdatesPublished       int64
	Health                 int // Lifeguard local health, 0 = healthy
	ProbeInterval, Timeout time.Duration
	// ProbeFailures counts probes of a member that got no ack, direct or
	// indirect, within the probe interval.
	ProbeFailures int64
	// Suspicions and Refutations are the detector's (swim.Stats).
	Suspicions, Refutations int64
	// Redialed counts the fresh dials of a member held suspect or dead
	// that connected (reconnect.go).
	Redialed int64
}

// Stats returns the traffic counters.
func (m *Membership) Stats() MembershipStats {
	m.mu.Lock()
	h, iv, to := m.det.Health(), m.det.ProbeInterval(), m.det.ProbeTimeout()
	ds := m.det.Stats()
	m.mu.Unlock()
	return MembershipStats{Probes: m.probes.Load(), ProbeBytesOut: m.probeBytesOut.Load(), BytesIn: m.probeBytesIn.Load(),
		UpdatesPublished: m.updatesOut.Load(), Health: h, ProbeInterval: iv, Timeout: to,
		ProbeFailures: m.probeFailures.Load(), Suspicions: ds.Suspicions, Refutations: ds.Refutations - m.startRefutations,
		Redialed: m.redialed.Load()}
}

// Suspected reports whether the failure detector holds p suspect or dead.
func (m *Membership) Suspected(p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.det.Member(p.String())
	return ok && (mem.State == swim.Suspect || mem.State == swim.Dead)
}

// Leave announces that this node leaves: its Left update goes to every
// connected member directly (each answers, within ctx) and on the topic.
func (m *Membership) Leave(ctx context.Context) {
	m.mu.Lock()
	u := m.det.Leave(time.Now())
	m.notifyLocked()
	m.mu.Unlock()
	m.publish(ctx, []swim.Update{u})
	req := &replicationv1.Probe{Kind: replicationv1.Probe_KIND_LEAVE, Updates: []*replicationv1.MemberUpdate{toProtoUpdate(u)}}
	timeout := time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	var wg sync.WaitGroup
	for _, p := range m.cfg.Host.Network().Peers() {
		wg.Go(func() { m.ping(ctx, p, req, timeout) })
	}
	wg.Wait()
}

// notifyLocked wakes the watchers of Changed. REQUIRES: m.mu.
func (m *Membership) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}
