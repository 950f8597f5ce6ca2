package p2p

import (
	"bufio"
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
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/p2p/swim"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// ProbeProtocol is the stream protocol of failure-detection probes.
func ProbeProtocol(cluster string) protocol.ID {
	return protocol.ID("/chorus/" + cluster + "/probe/1")
}

// MembersTopic is the GossipSub topic of failure-detector updates.
func MembersTopic(cluster string) string { return "/chorus/" + cluster + "/members/1" }

// maxProbeBytes bounds a probe message.
const maxProbeBytes = 16 << 10

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

// Membership runs SWIM failure detection (package swim holds the logic):
// it probes one member every probe interval, directly then through others,
// spreads suspicions, deaths and leaves on MembersTopic, refutes suspicions
// of this node, and announces a graceful leave. It owns its goroutines;
// Close stops them.
type Membership struct {
	cfg    MembershipConfig
	self   peer.ID
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

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
	if cfg.Host == nil || cfg.PubSub == nil {
		return nil, errors.New("p2p: membership needs a Host and a PubSub")
	}
	if cfg.Cluster == "" {
		cfg.Cluster = DefaultCluster
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Detector.Rand == nil {
		cfg.Detector.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
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
	m := &Membership{cfg: cfg, self: cfg.Host.ID(), det: det, ctx: ctx, cancel: cancel, changed: make(chan struct{}), reaped: map[string]bool{},
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
	go m.probeLoop()
	go m.receiveLoop()
	go m.redialLoop()
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
		m.cancel()
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

// notifyLocked wakes the watchers of Changed. REQUIRES: m.mu.
func (m *Membership) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// syncMembers adds admitted members to the detector and removes those no
// longer admitted (or, with open admission, adds connected peers).
func (m *Membership) syncMembers(now time.Time) {
	var want []peer.ID
	open := m.cfg.Members == nil
	if open {
		want = m.cfg.Host.Network().Peers()
	} else {
		want = m.cfg.Members()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := false
	set := map[string]bool{}
	for _, p := range want {
		set[p.String()] = true
		if _, ok := m.det.Member(p.String()); !ok && p != m.self && !m.reaped[p.String()] {
			m.det.Add(p.String(), now)
			changed = true
		}
	}
	if !open {
		for _, mem := range m.det.Members() {
			if mem.ID != m.self.String() && !set[mem.ID] {
				m.det.Remove(mem.ID)
				changed = true
			}
		}
	}
	if changed {
		m.notifyLocked()
	}
}

func (m *Membership) probeLoop() {
	defer m.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	lastSync := time.Now()
	var lastAnnounce time.Time
	announcedToPeers := false
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		if now.Sub(lastSync) >= time.Second {
			m.syncMembers(now)
			lastSync = now
		}
		// Announce this node (alive, with its addresses) every 30 probe
		// intervals, and as soon as the topic first has peers, so members
		// that are not connected to it learn where it is.
		hasPeers := len(m.topic.ListPeers()) > 0
		m.mu.Lock()
		every := 30 * m.det.Config().ProbeInterval
		me, _ := m.det.Member(m.self.String())
		m.mu.Unlock()
		if me.State == swim.Alive && (now.Sub(lastAnnounce) >= every || hasPeers && !announcedToPeers) {
			m.publish([]swim.Update{{ID: me.ID, State: swim.Alive, Incarnation: me.Incarnation, From: me.ID}})
			lastAnnounce, announcedToPeers = now, hasPeers
		}
		m.mu.Lock()
		updates, reaped := m.det.Tick(now)
		for _, id := range reaped {
			m.reaped[id] = true
		}
		if len(updates) > 0 || len(reaped) > 0 {
			m.notifyLocked()
		}
		var target string
		var ok bool
		if !now.Before(m.det.NextProbeAt()) {
			target, ok = m.det.StartProbe(now)
		}
		m.mu.Unlock()
		for _, u := range updates {
			m.cfg.Logger.Debug("member state changed by a timeout", "peer", u.ID, "to", u.State)
		}
		m.publish(updates)
		if ok {
			m.probe(target)
		}
		m.mu.Lock()
		next := m.det.NextProbeAt()
		if t, ok := m.det.NextTickAt(); ok && t.Before(next) {
			next = t
		}
		m.mu.Unlock()
		wait := min(time.Until(next), time.Second)
		timer.Reset(max(wait, time.Millisecond))
	}
}

// probe runs one SWIM probe of target: a direct ping, then ping-reqs
// through helpers, and reports the outcome to the detector.
func (m *Membership) probe(target string) {
	p, err := peer.Decode(target)
	if err != nil {
		return
	}
	m.mu.Lock()
	timeout, interval := m.det.ProbeTimeout(), m.det.ProbeInterval()
	var accusation []*replicationv1.MemberUpdate
	if u, ok := m.det.Accusation(target); ok {
		accusation = append(accusation, toProtoUpdate(u))
	}
	// Every probe carries this node's own state, so a peer that still holds
	// it dead or left from a previous run learns that it is back.
	if me, ok := m.det.Member(m.self.String()); ok && me.State == swim.Alive {
		accusation = append(accusation, m.withAddrs(toProtoUpdate(swim.Update{ID: me.ID, State: swim.Alive, Incarnation: me.Incarnation, From: me.ID})))
	}
	m.mu.Unlock()
	if ack, _ := m.ping(p, &replicationv1.Probe{Kind: replicationv1.Probe_KIND_PING, Updates: accusation}, timeout); ack {
		m.acked(target)
		return
	}
	m.mu.Lock()
	helpers := m.det.DirectFailed(target, time.Now())
	before, _ := m.det.Member(target)
	m.mu.Unlock()
	// The indirect probes get the rest of the probe interval.
	indirect := max(interval-timeout, timeout)
	type result struct{ ack, answered bool }
	results := make(chan result, len(helpers))
	for _, h := range helpers {
		hp, err := peer.Decode(h)
		if err != nil {
			results <- result{}
			continue
		}
		go func() {
			ack, answered := m.ping(hp, &replicationv1.Probe{Kind: replicationv1.Probe_KIND_PING_REQ, Target: target, Updates: accusation}, indirect)
			results <- result{ack, answered}
		}()
	}
	acked, nacks := false, 0
	for range helpers {
		r := <-results
		acked = acked || r.ack
		if r.answered && !r.ack {
			nacks++
		}
	}
	if acked {
		m.acked(target)
		return
	}
	m.probeFailures.Add(1)
	m.mu.Lock()
	// A helper that did not even answer with a nack is what Lifeguard
	// counts against this node: it may be the slow one.
	updates := m.det.ProbeFailed(target, time.Now(), nacks, len(helpers))
	if len(updates) > 0 {
		m.notifyLocked()
	}
	after, _ := m.det.Member(target)
	m.mu.Unlock()
	m.publish(updates)
	m.noteUnreachable(p, before.State, after.State)
}

// noteUnreachable calls OnUnreachable if a member went from alive to
// suspect or dead.
func (m *Membership) noteUnreachable(p peer.ID, before, after swim.State) {
	if before != after {
		m.cfg.Logger.Debug("member state changed", "peer", p, "from", before, "to", after)
	}
	if before == swim.Alive && (after == swim.Suspect || after == swim.Dead) && p != m.self && m.cfg.OnUnreachable != nil {
		m.cfg.OnUnreachable(p)
	}
}

// Suspected reports whether the failure detector holds p suspect or dead.
func (m *Membership) Suspected(p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.det.Member(p.String())
	return ok && (mem.State == swim.Suspect || mem.State == swim.Dead)
}

// heard records a message from id; a member reaped after it stayed dead is
// added back (the detector ignores updates about unknown members).
func (m *Membership) heard(id string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reaped[id] {
		delete(m.reaped, id)
		m.det.Add(id, now)
		m.notifyLocked()
	}
	m.det.Heard(id, now)
	m.det.Reachable(id, now) // a dead member is probed at once
}

func (m *Membership) acked(target string) {
	m.mu.Lock()
	m.det.Acked(target, time.Now())
	m.det.Heard(target, time.Now())
	m.mu.Unlock()
}

// ping sends req to p and reports whether it answered in time, and whether
// the answer was an ack (a PING_REQ's helper answers a nack when its target
// did not answer).
func (m *Membership) ping(p peer.ID, req *replicationv1.Probe, timeout time.Duration) (ack, answered bool) {
	ctx, cancel := context.WithTimeout(m.ctx, timeout)
	defer cancel()
	m.probes.Add(1)
	st, err := m.cfg.Host.NewStream(ctx, p, ProbeProtocol(m.cfg.Cluster))
	if err != nil {
		return false, false
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(timeout))
	b, err := proto.Marshal(req)
	if err != nil {
		_ = st.Reset()
		return false, false
	}
	if err := writeFrame(st, b); err != nil {
		_ = st.Reset()
		return false, false
	}
	m.probeBytesOut.Add(int64(len(b) + 2))
	resp, err := readFrame(bufio.NewReader(st), maxProbeBytes)
	if err != nil {
		_ = st.Reset()
		return false, false
	}
	m.probeBytesIn.Add(int64(len(resp) + 1))
	var pa replicationv1.ProbeAck
	if err := proto.Unmarshal(resp, &pa); err != nil {
		return false, false
	}
	if d := pa.GetDuplicate(); d != nil && d.GetBoot() == m.boot.nonce {
		m.refuse(p, d)
	}
	// The responder's suspicion or death of this node: refute it now.
	for _, u := range pa.GetUpdates() {
		if su, ok := fromProtoUpdate(u); ok && su.ID == m.self.String() && su.State != swim.Alive {
			m.apply(su)
		}
	}
	return pa.GetAck(), true
}

func (m *Membership) handleProbe(st network.Stream) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		_ = st.Reset()
		return
	}
	m.handlers.Add(1)
	m.mu.Unlock()
	defer m.handlers.Done()
	defer st.Close()
	from := st.Conn().RemotePeer()
	if m.cfg.Admit != nil && m.cfg.Admit(from) != nil {
		_ = st.Reset()
		return
	}
	_ = st.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := readFrame(bufio.NewReader(st), maxProbeBytes)
	if err != nil {
		_ = st.Reset()
		return
	}
	m.probeBytesIn.Add(int64(len(b) + 1))
	var req replicationv1.Probe
	if err := proto.Unmarshal(b, &req); err != nil {
		_ = st.Reset()
		return
	}
	now := time.Now()
	m.heard(from.String(), now)
	// Accusations about this node are refuted; the sender's own state
	// (alive, or its leave) is applied.
	ack := &replicationv1.ProbeAck{}
	for _, u := range req.GetUpdates() {
		if su, ok := fromProtoUpdate(u); ok && (su.ID == m.self.String() || su.ID == from.String() && su.From == from.String()) {
			m.learnAddrs(u)
			m.urls.learn(from, u)
			m.apply(su)
			if su.ID == from.String() && su.State == swim.Alive {
				ack.Duplicate = m.checkTwins(from, u, now)
			}
		}
	}
	m.mu.Lock()
	if acc, ok := m.det.Accusation(from.String()); ok {
		ack.Updates = append(ack.Updates, toProtoUpdate(acc))
	}
	m.mu.Unlock()
	switch req.GetKind() {
	case replicationv1.Probe_KIND_PING, replicationv1.Probe_KIND_LEAVE:
		if d := m.cfg.ProbeDelay; d != nil && req.GetKind() == replicationv1.Probe_KIND_PING {
			select {
			case <-time.After(d()):
			case <-m.ctx.Done():
				return
			}
		}
		ack.Ack = true
	case replicationv1.Probe_KIND_PING_REQ:
		target, err := peer.Decode(req.GetTarget())
		if err != nil {
			_ = st.Reset()
			return
		}
		m.mu.Lock()
		timeout := m.det.ProbeTimeout()
		m.mu.Unlock()
		ack.Ack, _ = m.ping(target, &replicationv1.Probe{Kind: replicationv1.Probe_KIND_PING}, timeout)
	default:
		_ = st.Reset()
		return
	}
	out, _ := proto.Marshal(ack)
	if err := writeFrame(st, out); err == nil {
		m.probeBytesOut.Add(int64(len(out) + 1))
	}
}

// apply applies an update and spreads it on if it changed this node's view
// (SWIM dissemination: a node that learned something passes it on once),
// with what it leads to (a refutation).
func (m *Membership) apply(u swim.Update) {
	m.mu.Lock()
	before, known := m.det.Member(u.ID)
	changed, out := m.det.Apply(u, time.Now())
	after, _ := m.det.Member(u.ID)
	if changed || len(out) > 0 {
		m.notifyLocked()
	}
	m.mu.Unlock()
	if known && u.ID != m.self.String() {
		if p, err := peer.Decode(u.ID); err == nil {
			m.noteUnreachable(p, before.State, after.State)
		}
	}
	if recovered := known && (before.State == swim.Suspect || before.State == swim.Dead) && after.State == swim.Alive; recovered && u.ID != m.self.String() && m.cfg.OnRecovered != nil {
		if p, err := peer.Decode(u.ID); err == nil {
			m.cfg.OnRecovered(p)
		}
	}
	if changed {
		out = append([]swim.Update{u}, out...)
	}
	m.publish(out)
}

func (m *Membership) publish(updates []swim.Update) {
	if len(updates) == 0 {
		return
	}
	msg := &replicationv1.MemberUpdates{}
	for _, u := range updates {
		msg.Updates = append(msg.Updates, m.withAddrs(toProtoUpdate(u)))
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		return
	}
	if err := m.topic.Publish(m.ctx, b); err == nil {
		m.updatesOut.Add(int64(len(updates)))
	}
}

// validate accepts a membership message only from an admitted signer.
// Members relay each other's updates (dissemination); the incarnation rules
// decide which update wins.
func (m *Membership) validate(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if msg.Local {
		return pubsub.ValidationAccept
	}
	from := msg.GetFrom()
	if m.cfg.Admit != nil && m.cfg.Admit(from) != nil {
		return pubsub.ValidationReject
	}
	us, err := decodeMemberUpdates(msg.GetData())
	if err != nil {
		return pubsub.ValidationReject
	}
	msg.ValidatorData = us
	return pubsub.ValidationAccept
}

func (m *Membership) receiveLoop() {
	defer m.wg.Done()
	for {
		msg, err := m.sub.Next(m.ctx)
		if err != nil {
			return
		}
		if msg.Local {
			continue
		}
		us, _ := msg.ValidatorData.(*replicationv1.MemberUpdates)
		m.heard(msg.GetFrom().String(), time.Now())
		for _, u := range us.GetUpdates() {
			if su, ok := fromProtoUpdate(u); ok {
				m.learnAddrs(u)
				m.urls.learn(msg.GetFrom(), u)
				m.apply(su)
			}
		}
	}
}

// Leave announces that this node leaves: its Left update goes to every
// connected member directly (each answers, within ctx) and on the topic.
func (m *Membership) Leave(ctx context.Context) {
	m.mu.Lock()
	u := m.det.Leave(time.Now())
	m.notifyLocked()
	m.mu.Unlock()
	m.publish([]swim.Update{u})
	req := &replicationv1.Probe{Kind: replicationv1.Probe_KIND_LEAVE, Updates: []*replicationv1.MemberUpdate{toProtoUpdate(u)}}
	timeout := time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	var wg sync.WaitGroup
	for _, p := range m.cfg.Host.Network().Peers() {
		wg.Go(func() { m.ping(p, req, timeout) })
	}
	wg.Wait()
}

// decodeMemberUpdates decodes and checks a membership message: within
// maxProbeBytes, at least one update, every update with an id, a known
// state, at most maxAnnouncedAddrs addresses that parse and client URLs
// within their bounds (checkClientURLs).
func decodeMemberUpdates(data []byte) (*replicationv1.MemberUpdates, error) {
	if len(data) > maxProbeBytes {
		return nil, fmt.Errorf("%w: membership message of %d bytes; the limit is %d", ErrTooLarge, len(data), maxProbeBytes)
	}
	var us replicationv1.MemberUpdates
	if err := proto.Unmarshal(data, &us); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	if len(us.GetUpdates()) == 0 {
		return nil, fmt.Errorf("%w: a membership message with no update", ErrUndecodable)
	}
	for i, u := range us.GetUpdates() {
		if _, ok := fromProtoUpdate(u); !ok {
			return nil, fmt.Errorf("%w: update %d has no id or an unknown state", ErrUndecodable, i)
		}
		if len(u.GetAddrs()) > maxAnnouncedAddrs {
			return nil, fmt.Errorf("%w: update %d has %d addresses; the limit is %d", ErrTooLarge, i, len(u.GetAddrs()), maxAnnouncedAddrs)
		}
		for _, a := range u.GetAddrs() {
			if _, err := ma.NewMultiaddrBytes(a); err != nil {
				return nil, fmt.Errorf("%w: update %d: address: %w", ErrUndecodable, i, err)
			}
		}
		if err := checkClientURLs(u.GetClientUrls()); err != nil {
			return nil, fmt.Errorf("%w: update %d: %w", ErrTooLarge, i, err)
		}
	}
	return &us, nil
}

// twinGrace is how long after a newer boot of a member was first heard an
// older one must still be heard for both to count as live (see twins). Boots
// are taken from probes only, which come straight from the live process, and
// two processes cannot share a data folder (its store is locked): the grace
// covers probes in flight.
const twinGrace = time.Second

// checkTwins records the boot of from, heard in its probe (u, its own alive
// update), and returns the notice to answer with if that process is refused:
// its identity is live in an older process too.
func (m *Membership) checkTwins(from peer.ID, u *replicationv1.MemberUpdate, now time.Time) *replicationv1.DuplicateIdentity {
	b := boot{nonce: u.GetBoot(), started: u.GetStartedUnixNano()}
	var addrs []string
	for _, a := range u.GetAddrs()[:min(len(u.GetAddrs()), maxAnnouncedAddrs)] {
		if addr, err := ma.NewMultiaddrBytes(a); err == nil {
			addrs = append(addrs, addr.String())
		}
	}
	m.mu.Lock()
	found := m.twins.heard(from.String(), b, addrs, now)
	winner, waddrs, refused := m.twins.refused(from.String(), b)
	warn := found && !m.warned[from.String()]
	if warn {
		m.warned[from.String()] = true
	}
	m.mu.Unlock()
	if warn {
		m.cfg.Logger.Error("a member's peer id is live in two processes (a copied data folder); the one started last is told to stop",
			"peer", from, "started", time.Unix(0, winner.started).UTC(), "addrs", waddrs)
	}
	if !refused {
		return nil
	}
	d := &replicationv1.DuplicateIdentity{Boot: b.nonce, OtherStartedUnixNano: winner.started}
	for _, a := range waddrs {
		if addr, err := ma.NewMultiaddr(a); err == nil {
			d.OtherAddrs = append(d.OtherAddrs, addr.Bytes())
		}
	}
	return d
}

// refuse reports, once, that a member (by) found this node's identity live
// in an older process.
func (m *Membership) refuse(by peer.ID, d *replicationv1.DuplicateIdentity) {
	m.refused.Do(func() {
		e := &DuplicateIdentityError{ID: m.self.String(), OtherStarted: time.Unix(0, d.GetOtherStartedUnixNano()), ReportedBy: by.String()}
		for _, b := range d.GetOtherAddrs()[:min(len(d.GetOtherAddrs()), maxAnnouncedAddrs)] {
			if a, err := ma.NewMultiaddrBytes(b); err == nil {
				e.OtherAddrs = append(e.OtherAddrs, a.String())
			}
		}
		m.cfg.Logger.Error("this node's identity is live in another process; stopping", "err", e)
		if m.cfg.OnDuplicateIdentity != nil {
			m.cfg.OnDuplicateIdentity(e)
		}
	})
}

// maxAnnouncedAddrs bounds the addresses of one announcement.
const maxAnnouncedAddrs = 16

// withAddrs attaches this node's listen addresses, boot and client URLs to
// its own alive update.
func (m *Membership) withAddrs(u *replicationv1.MemberUpdate) *replicationv1.MemberUpdate {
	if u.GetId() != m.self.String() || u.GetState() != replicationv1.MemberUpdate_STATE_ALIVE {
		return u
	}
	u.Boot, u.StartedUnixNano = m.boot.nonce, m.boot.started
	u.ClientUrls = m.urls.own()
	for _, a := range m.cfg.Host.Addrs() {
		if len(u.Addrs) == maxAnnouncedAddrs {
			break
		}
		u.Addrs = append(u.Addrs, a.Bytes())
	}
	return u
}

// learnAddrs adds the addresses a member announced for itself to the
// peerstore, so this node can dial it.
func (m *Membership) learnAddrs(u *replicationv1.MemberUpdate) {
	if u.GetId() != u.GetFrom() || u.GetId() == m.self.String() || len(u.GetAddrs()) == 0 {
		return
	}
	id, err := peer.Decode(u.GetId())
	if err != nil {
		return
	}
	if m.cfg.Admit != nil && m.cfg.Admit(id) != nil {
		return
	}
	var addrs []ma.Multiaddr
	for _, b := range u.GetAddrs()[:min(len(u.GetAddrs()), maxAnnouncedAddrs)] {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			addrs = append(addrs, a)
		}
	}
	m.cfg.Host.Peerstore().AddAddrs(id, addrs, peerstore.RecentlyConnectedAddrTTL)
}

func toProtoUpdate(u swim.Update) *replicationv1.MemberUpdate {
	return &replicationv1.MemberUpdate{Id: u.ID, State: replicationv1.MemberUpdate_State(u.State + 1), Incarnation: u.Incarnation, From: u.From}
}

func fromProtoUpdate(u *replicationv1.MemberUpdate) (swim.Update, bool) {
	s := int(u.GetState()) - 1
	if s < int(swim.Alive) || s > int(swim.Left) || u.GetId() == "" {
		return swim.Update{}, false
	}
	return swim.Update{ID: u.GetId(), State: swim.State(s), Incarnation: u.GetIncarnation(), From: u.GetFrom()}, true
}
