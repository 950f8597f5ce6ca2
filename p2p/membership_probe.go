package p2p

// Membership's probe protocol: a SWIM probe round (ping, then ping-reqs
// through helpers), one ping, and the handler that answers them.

import (
	"bufio"
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/p2p/swim"

	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// ProbeProtocol is the stream protocol of failure-detection probes.
func ProbeProtocol(cluster string) protocol.ID {
	return protocol.ID("/chorus/" + cluster + "/probe/1")
}

// maxProbeBytes bounds a probe message.
const maxProbeBytes = 16 << 10

// probe runs one SWIM probe of target: a direct ping, then ping-reqs
// through helpers, and reports the outcome to the detector.
func (m *Membership) probe(ctx context.Context, target string) {
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
	if ack, _ := m.ping(ctx, p, &replicationv1.Probe{Kind: replicationv1.Probe_KIND_PING, Updates: accusation}, timeout); ack {
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
			ack, answered := m.ping(ctx, hp, &replicationv1.Probe{Kind: replicationv1.Probe_KIND_PING_REQ, Target: target, Updates: accusation}, indirect)
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
	m.publish(ctx, updates)
	m.noteUnreachable(p, before.State, after.State)
}

// ping sends req to p (within ctx) and reports whether it answered in time, and whether
// the answer was an ack (a PING_REQ's helper answers a nack when its target
// did not answer).
func (m *Membership) ping(ctx context.Context, p peer.ID, req *replicationv1.Probe, timeout time.Duration) (ack, answered bool) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
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
			m.apply(ctx, su)
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
	ctx, cancel := m.untilClose()
	defer cancel()
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
			m.apply(ctx, su)
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
			case <-ctx.Done():
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
		ack.Ack, _ = m.ping(ctx, target, &replicationv1.Probe{Kind: replicationv1.Probe_KIND_PING}, timeout)
	default:
		_ = st.Reset()
		return
	}
	out, _ := proto.Marshal(ack)
	if err := writeFrame(st, out); err == nil {
		m.probeBytesOut.Add(int64(len(out) + 1))
	}
}

// untilClose returns a context for work the membership's own goroutines
// do not run (a probe handler, which libp2p starts; SetClientURLs' caller):
// it ends when Close begins or when cancel is called, whichever comes
// first. Its goroutine ends with it.
func (m *Membership) untilClose() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-m.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
