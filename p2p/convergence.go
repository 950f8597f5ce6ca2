package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/frontier"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/p2p/swim"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// FrontierTopic is the GossipSub topic of frontier announcements.
func FrontierTopic(cluster string) string { return "/chorus/" + cluster + "/frontier/1" }

// Limits of a frontier announcement (and of the frontier in a sync hello).
const (
	// MaxFrontierOrigins bounds the origins of one announcement.
	MaxFrontierOrigins = 4096
	// maxOriginBytes bounds one origin id (a peer id is about 38 bytes).
	maxOriginBytes = 128
	// maxFrontierBytes bounds an announcement's encoding.
	maxFrontierBytes = MaxFrontierOrigins * (maxOriginBytes + 16)
)

// Defaults for ConvergenceConfig.
const (
	DefaultFrontierInterval     = 100 * time.Millisecond
	DefaultFrontierFullInterval = 5 * time.Second
	// DefaultFrontierClusterRate is the announcements per second the
	// whole cluster makes at most under writes (each node every
	// max(Interval, N / rate)).
	DefaultFrontierClusterRate = 200
	// DefaultFrontierFullRate is the full vectors per second the whole
	// cluster announces on the anti-drift schedule (each node every
	// max(FullInterval, N / rate)).
	DefaultFrontierFullRate = 2
)

// ConvergenceConfig configures a Convergence. PubSub and Clock are
// required.
type ConvergenceConfig struct {
	Cluster string
	Self    peer.ID
	PubSub  *pubsub.PubSub
	// Clock checks announced timestamps and stamps converged events.
	Clock *crdt.Clock
	// Epoch is this run's start, announced with the frontiers (see package
	// crdt/frontier); it must be the replicator's ChainStart. Default: the
	// clock's value at start.
	Epoch  crdt.Timestamp
	Logger *slog.Logger
	// Interval is the least time between two announcements: frontiers that
	// move within it go out together. It bounds how late a converged event
	// is, beyond gossip's own delay. The interval used grows with the
	// cluster, max(Interval, N / ClusterRate) for N live members, so that
	// the cluster as a whole makes at most ClusterRate announcements a
	// second (each one flooded to every node and its signature verified
	// there). Default 100 ms.
	Interval time.Duration
	// ClusterRate is the announcements per second the whole cluster makes
	// at most (see Interval). Default 200.
	ClusterRate float64
	// FullInterval is the least time between two anti-drift announcements
	// of the whole frontier (not only what moved: for a member that missed
	// a delta), ±10 % at random so that nodes started together do not
	// announce together. The interval used is max(FullInterval, N /
	// FullRate). A full vector also goes out at start and, at most every
	// tenth of that interval, when a member becomes live or announces a new
	// epoch (it joined or restarted, and knows nothing of this node's
	// frontiers). Default 5 s.
	FullInterval time.Duration
	// FullRate is the anti-drift full vectors per second the whole cluster
	// announces at most (see FullInterval). Default 2.
	FullRate float64
	// Membership, when set, gives the live members (Alive or Suspect);
	// without it no other member counts.
	Membership *Membership
	// Admit, when set, vets the signer of every announcement.
	Admit func(peer.ID) error
}

// WithDefaults returns c with every zero field set to its default.
func (c ConvergenceConfig) WithDefaults() ConvergenceConfig {
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Interval == 0 {
		c.Interval = DefaultFrontierInterval
	}
	if c.FullInterval == 0 {
		c.FullInterval = DefaultFrontierFullInterval
	}
	if c.ClusterRate == 0 {
		c.ClusterRate = DefaultFrontierClusterRate
	}
	if c.FullRate == 0 {
		c.FullRate = DefaultFrontierFullRate
	}
	return c
}

// Validate reports every problem with c at once.
func (c ConvergenceConfig) Validate() error {
	var errs []error
	if c.PubSub == nil || c.Clock == nil || c.Self == "" {
		errs = append(errs, errors.New("p2p: convergence needs Self, a PubSub and a Clock"))
	}
	if c.Interval < 0 || c.FullInterval < 0 {
		errs = append(errs, fmt.Errorf("p2p: frontier Interval %v and FullInterval %v must not be negative", c.Interval, c.FullInterval))
	}
	if c.ClusterRate < 0 || c.FullRate < 0 {
		errs = append(errs, fmt.Errorf("p2p: frontier ClusterRate %v and FullRate %v must not be negative", c.ClusterRate, c.FullRate))
	}
	return errors.Join(errs...)
}

// ErrNotConverged is returned by WaitConverged when the deadline passed
// before every live member held the write. Use errors.As with
// *NotConvergedError.
var ErrNotConverged = errors.New("p2p: write not held by every live member")

// NotConvergedError names the live members not known to hold a write.
type NotConvergedError struct {
	Missing []peer.ID
	Cause   error
}

func (e *NotConvergedError) Error() string {
	ids := make([]string, len(e.Missing))
	for i, p := range e.Missing {
		ids[i] = p.String()
	}
	return fmt.Sprintf("write is durable on this node but %d live member(s) did not confirm it in time: %s; it will still spread",
		len(e.Missing), strings.Join(ids, ", "))
}

// Is makes errors.Is(err, ErrNotConverged) true.
func (e *NotConvergedError) Is(target error) bool { return target == ErrNotConverged }

// Unwrap returns why the wait ended (the context's error).
func (e *NotConvergedError) Unwrap() error { return e.Cause }

// ConvergenceStats counts the bookkeeping's traffic.
type ConvergenceStats struct {
	Announcements, AnnouncedBytes int64 // sent
	Received, ReceivedBytes       int64 // accepted from members
	Rejected                      int64
	// HelloBytes is the frontier bytes this node put in its sync hellos.
	HelloBytes int64
}

// MemberLag is one member's lag, as this node knows it.
type MemberLag struct {
	Lag time.Duration
	// Known is false when the member announced no frontier yet.
	Known bool
}

// Convergence tracks which writes every live member holds (package
// crdt/frontier holds the logic): it feeds the Tracker with this node's
// commits, gossip batches, anti-entropy sessions and the membership view,
// announces this node's frontiers on FrontierTopic (what moved, at most
// every max(Interval, N / ClusterRate); everything at start, when a member
// joins or restarts, and every max(FullInterval, N / FullRate)), and
// answers whether a write has converged. It owns two goroutines, stopped
// by Close.
type Convergence struct {
	cfg    ConvergenceConfig
	self   string
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}
	// needFull wakes the announcer when a member joined or restarted: it
	// knows nothing of this node's frontiers.
	needFull chan struct{}

	mu struct {
		sync.Mutex
		tr *frontier.Tracker
		// changed is closed at the next change of the view, when someone
		// waits on it (nil otherwise, so the write path allocates nothing).
		changed chan struct{}
		// detLive are the members the failure detector holds alive or
		// suspect; inView every member in its table, in any state.
		detLive []string
		inView  map[string]bool
		// heard is when each member's last announcement arrived: an
		// admitted member the detector does not know yet (it just joined)
		// counts as live while it announces.
		heard map[string]time.Time
	}

	announcements, announcedBytes, received, receivedBytes, rejected atomic.Int64
	helloBytes                                                       atomic.Int64
	closeOnce                                                        sync.Once
}

// StartConvergence joins the frontier topic and starts announcing.
func StartConvergence(cfg ConvergenceConfig) (*Convergence, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Epoch == 0 {
		cfg.Epoch = cfg.Clock.Now()
	}
	tr, err := frontier.New(frontier.Config{Self: string(cfg.Self), Epoch: cfg.Epoch})
	if err != nil {
		return nil, fmt.Errorf("p2p: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Convergence{cfg: cfg, self: string(cfg.Self), cancel: cancel, wake: make(chan struct{}, 1),
		needFull: make(chan struct{}, 1)}
	c.mu.tr = tr
	c.mu.inView, c.mu.heard = map[string]bool{}, map[string]time.Time{}
	topic := FrontierTopic(cfg.Cluster)
	if err := cfg.PubSub.RegisterTopicValidator(topic, c.validate); err != nil {
		cancel()
		return nil, fmt.Errorf("p2p: register frontier validator: %w", err)
	}
	if c.topic, err = cfg.PubSub.Join(topic); err != nil {
		_ = cfg.PubSub.UnregisterTopicValidator(topic)
		cancel()
		return nil, fmt.Errorf("p2p: join %s: %w", topic, err)
	}
	if c.sub, err = c.topic.Subscribe(); err != nil {
		_ = c.topic.Close()
		_ = cfg.PubSub.UnregisterTopicValidator(topic)
		cancel()
		return nil, fmt.Errorf("p2p: subscribe to %s: %w", topic, err)
	}
	c.wg.Add(2)
	go c.announceLoop(ctx)
	go c.receiveLoop(ctx)
	return c, nil
}

// Close stops announcing and waits for the goroutines. Safe to call twice.
func (c *Convergence) Close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.sub.Cancel()
		c.wg.Wait()
		_ = c.cfg.PubSub.UnregisterTopicValidator(FrontierTopic(c.cfg.Cluster))
		_ = c.topic.Close()
	})
}

// Epoch returns the epoch this node announces.
func (c *Convergence) Epoch() crdt.Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.tr.Epoch()
}

// notifyLocked wakes the waiters of Changed. REQUIRES: c.mu.
func (c *Convergence) notifyLocked() {
	if c.mu.changed != nil {
		close(c.mu.changed)
		c.mu.changed = nil
	}
}

// moved wakes the announcer after this node's own frontier moved.
func (c *Convergence) moved() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Changed returns a channel closed at the next change that may move a
// stable frontier.
func (c *Convergence) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.changed == nil {
		c.mu.changed = make(chan struct{})
	}
	return c.mu.changed
}

// LocalCommit takes a committed batch of changes (the store's OnCommit) and
// records this node's own writes in it. It never blocks for long and, in
// the steady state, allocates nothing.
func (c *Convergence) LocalCommit(changes []store.Change) {
	var first, last crdt.Timestamp
	for i := range changes {
		r := &changes[i].Record
		if string(r.Origin) != c.self {
			continue
		}
		if first == 0 {
			first = r.HLC
		}
		last = max(last, r.HLC)
	}
	if last == 0 {
		return
	}
	c.mu.Lock()
	c.mu.tr.LocalWrite(first, last)
	c.notifyLocked()
	c.mu.Unlock()
	c.moved()
}

// ObserveBatch records a gossip batch of origin applied here, holding every
// write of origin in (prev, last] (ReplicatorConfig.OnBatch).
func (c *Convergence) ObserveBatch(origin peer.ID, prev, first, last crdt.Timestamp) {
	c.mu.Lock()
	moved := c.mu.tr.ObserveBatch(string(origin), prev, first, last)
	if moved {
		c.notifyLocked()
	}
	c.mu.Unlock()
	if moved {
		c.moved()
	}
}

// LocalFrontier returns this node's frontiers, for a sync hello
// (SyncConfig.LocalFrontier).
func (c *Convergence) LocalFrontier() frontier.Vector {
	c.mu.Lock()
	v := c.mu.tr.Vector()
	c.mu.Unlock()
	n := 0
	for o := range v {
		n += len(o) + 14 // an OriginFrontier: tags, lengths, a varint HLC
	}
	c.helloBytes.Add(int64(n))
	return v
}

// Merge takes the frontiers a peer sent in the hello of a session that
// completed (SyncConfig.OnMerge).
func (c *Convergence) Merge(_ peer.ID, v frontier.Vector) {
	c.mu.Lock()
	moved := c.mu.tr.Merge(v)
	if moved {
		c.notifyLocked()
	}
	c.mu.Unlock()
	if moved {
		c.moved()
	}
}

// setMembers sets the live members from the failure detector's view and
// forgets the announced members that are neither in it nor admitted
// (removed from the member list). It reports whether a member became live
// in the detector's view.
func (c *Convergence) setMembers(ms []swim.Member) bool {
	var live []string
	inView := map[string]bool{c.self: true}
	for _, m := range ms {
		id, err := peer.Decode(m.ID)
		if err != nil {
			continue
		}
		inView[string(id)] = true
		if m.State == swim.Alive || m.State == swim.Suspect {
			live = append(live, string(id))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	joined := false
	for _, m := range live {
		joined = joined || !slices.Contains(c.mu.detLive, m)
	}
	c.mu.detLive, c.mu.inView = live, inView
	for _, m := range c.mu.tr.Members() {
		if !inView[m] && c.cfg.Admit != nil && c.cfg.Admit(peer.ID(m)) != nil {
			c.mu.tr.Forget(m)
			delete(c.mu.heard, m)
		}
	}
	c.refreshLiveLocked(time.Now())
	return joined
}

// intervalsLocked returns the least time between two announcements and
// between two anti-drift full vectors, both growing with the cluster so
// that the cluster's announcement rates stay within ClusterRate and
// FullRate. REQUIRES: c.mu.
func (c *Convergence) intervalsLocked() (delta, full time.Duration) {
	return frontierIntervals(c.cfg, len(c.mu.detLive)+1)
}

// frontierIntervals returns, for a cluster of n live members, the least
// time between two announcements of a node and between two of its
// anti-drift full vectors: cfg's intervals, or longer so that the cluster
// makes at most ClusterRate announcements and FullRate full vectors a
// second.
func frontierIntervals(cfg ConvergenceConfig, n int) (delta, full time.Duration) {
	perRate := func(rate float64) time.Duration { return time.Duration(float64(n) / rate * float64(time.Second)) }
	return max(cfg.Interval, perRate(cfg.ClusterRate)), max(cfg.FullInterval, perRate(cfg.FullRate))
}

// refreshLiveLocked sets the tracker's live members: the detector's alive
// and suspect ones, and the admitted members it does not know yet that
// announced within two anti-drift full intervals (each announces a full
// vector at start) (a member that just joined counts
// before the detector adds it; one it forgot after staying dead does not,
// since it no longer announces). REQUIRES: c.mu.
func (c *Convergence) refreshLiveLocked(now time.Time) bool {
	live := slices.Clone(c.mu.detLive)
	_, full := c.intervalsLocked()
	for m, at := range c.mu.heard {
		if c.mu.inView[m] || now.Sub(at) > 2*full {
			continue
		}
		if c.cfg.Admit != nil && c.cfg.Admit(peer.ID(m)) != nil {
			continue
		}
		live = append(live, m)
	}
	changed := c.mu.tr.SetLive(live)
	if changed {
		c.notifyLocked()
	}
	return changed
}

// Stable returns the stable frontier of origin: every live member holds
// its writes at or below it.
func (c *Convergence) Stable(origin []byte) crdt.Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.tr.Stable(string(origin))
}

// Now returns the clock's current HLC (the time an event converged).
func (c *Convergence) Now() crdt.Timestamp { return c.cfg.Clock.Now() }

// Missing returns the live members, this node included, not known to hold
// the write (origin, h).
func (c *Convergence) Missing(origin []byte, h crdt.Timestamp) []peer.ID {
	c.mu.Lock()
	ms := c.mu.tr.Missing(string(origin), h)
	c.mu.Unlock()
	out := make([]peer.ID, len(ms))
	for i, m := range ms {
		out[i] = peer.ID(m)
	}
	return out
}

// WaitConverged returns once every live member holds the write (origin, h),
// or fails when ctx ends with a *NotConvergedError naming the others.
func (c *Convergence) WaitConverged(ctx context.Context, origin []byte, h crdt.Timestamp) error {
	for {
		ch := c.Changed()
		if h <= c.Stable(origin) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if h <= c.Stable(origin) {
				return nil
			}
			return &NotConvergedError{Missing: c.Missing(origin, h), Cause: ctx.Err()}
		}
	}
}

// Lag returns every tracked member's lag at the clock's current time (see
// package crdt/frontier), this node included. It is what a metric of
// member lag reads.
func (c *Convergence) Lag() map[peer.ID]MemberLag {
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	lags := c.mu.tr.Lags(now)
	out := make(map[peer.ID]MemberLag, len(lags))
	for m, l := range lags {
		out[peer.ID(m)] = MemberLag{Lag: l, Known: true}
	}
	return out
}

// Stats returns the bookkeeping's traffic counters.
func (c *Convergence) Stats() ConvergenceStats {
	return ConvergenceStats{Announcements: c.announcements.Load(), AnnouncedBytes: c.announcedBytes.Load(),
		Received: c.received.Load(), ReceivedBytes: c.receivedBytes.Load(), Rejected: c.rejected.Load(),
		HelloBytes: c.helloBytes.Load()}
}

// announceLoop announces this node's frontiers: what moved, at most every
// delta interval; everything at start, every anti-drift interval, and when
// a member joined or restarted (at most every tenth of the anti-drift
// interval). It also feeds the membership view to the Tracker.
func (c *Convergence) announceLoop(ctx context.Context) {
	defer c.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var memChanged <-chan struct{}
	if m := c.cfg.Membership; m != nil {
		memChanged = m.Changed()
		c.setMembers(m.Members())
	}
	var lastSent, lastFull time.Time
	full := true // at start: every member learns this epoch's frontiers
	wantFull := false
	c.mu.Lock()
	_, fullEvery := c.intervalsLocked()
	c.mu.Unlock()
	fullGap := jitter(fullEvery, 0.1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-timer.C:
		case <-c.needFull:
			wantFull = true
		case <-memChanged:
			memChanged = c.cfg.Membership.Changed()
			if c.setMembers(c.cfg.Membership.Members()) {
				wantFull = true
			}
		}
		now := time.Now()
		c.mu.Lock()
		deltaEvery, fullEvery := c.intervalsLocked()
		c.mu.Unlock()
		if wait := deltaEvery - now.Sub(lastSent); wait > 0 {
			// Too soon: go out when the interval ends, with whatever moved.
			timer.Reset(wait)
			continue
		}
		sinceFull := now.Sub(lastFull)
		if sinceFull >= fullGap || (wantFull && sinceFull >= fullEvery/10) {
			full = true
		}
		c.mu.Lock()
		c.refreshLiveLocked(now) // members heard but unknown to the detector expire
		delta := c.mu.tr.TakeDelta()
		if full {
			delta = c.mu.tr.Vector()
		}
		epoch := c.mu.tr.Epoch()
		c.mu.Unlock()
		if len(delta) > 0 || full {
			c.announce(ctx, epoch, delta, full)
			lastSent = now
			if full {
				lastFull, full, wantFull = now, false, false
				fullGap = jitter(fullEvery, 0.1)
			}
		}
		next := fullGap - now.Sub(lastFull)
		if wantFull {
			next = min(next, fullEvery/10-now.Sub(lastFull))
		}
		timer.Reset(next)
	}
}

// announce publishes one FrontierUpdate.
func (c *Convergence) announce(ctx context.Context, epoch crdt.Timestamp, v frontier.Vector, full bool) {
	msg := &replicationv1.FrontierUpdate{Epoch: uint64(epoch), Full: full, Origins: toProtoFrontier(v)}
	if len(msg.Origins) > MaxFrontierOrigins {
		msg.Origins = msg.Origins[:MaxFrontierOrigins] // the rest goes out as it moves
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		return
	}
	if err := c.topic.Publish(ctx, b); err != nil {
		if ctx.Err() == nil {
			c.cfg.Logger.Debug("frontier announcement failed", "err", err)
		}
		return
	}
	c.announcements.Add(1)
	c.announcedBytes.Add(int64(len(b)))
}

// validate accepts an announcement only from an admitted signer, within the
// limits.
func (c *Convergence) validate(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if msg.Local {
		return pubsub.ValidationAccept
	}
	if c.cfg.Admit != nil && c.cfg.Admit(msg.GetFrom()) != nil {
		c.rejected.Add(1)
		return pubsub.ValidationReject
	}
	a, err := DecodeFrontierUpdate(msg.GetData(), c.cfg.Clock)
	if err != nil {
		c.rejected.Add(1)
		c.cfg.Logger.Warn("rejected frontier announcement", "from", msg.GetFrom(), "err", err)
		return pubsub.ValidationReject
	}
	msg.ValidatorData = a
	return pubsub.ValidationAccept
}

func (c *Convergence) receiveLoop(ctx context.Context) {
	defer c.wg.Done()
	for {
		msg, err := c.sub.Next(ctx)
		if err != nil {
			return
		}
		if msg.Local || msg.GetFrom() == c.cfg.Self {
			continue
		}
		a, ok := msg.ValidatorData.(*Announcement)
		if !ok {
			continue
		}
		c.received.Add(1)
		c.receivedBytes.Add(int64(len(msg.GetData())))
		m := string(msg.GetFrom())
		c.mu.Lock()
		if known, ok := c.mu.tr.EpochOf(m); !ok || a.Epoch > known {
			// It joined or restarted: it needs this node's full vector.
			select {
			case c.needFull <- struct{}{}:
			default:
			}
		}
		if c.mu.tr.Announce(m, a.Epoch, a.Frontier) {
			c.notifyLocked()
		}
		_, before := c.mu.heard[m]
		c.mu.heard[m] = time.Now()
		if !before || (!c.mu.inView[m] && !c.mu.tr.IsLive(m)) {
			// Newly heard, or heard again after it expired: it counts
			// again. (A refresh costs O(members): not on every
			// announcement; the announcer's loop expires members.)
			c.refreshLiveLocked(time.Now())
		}
		c.mu.Unlock()
	}
}

// Announcement is a decoded FrontierUpdate.
type Announcement struct {
	Epoch    crdt.Timestamp
	Full     bool
	Frontier frontier.Vector
}

// DecodeFrontierUpdate decodes and checks an announcement: within
// maxFrontierBytes and MaxFrontierOrigins, an epoch, every origin non-empty
// and at most maxOriginBytes, no timestamp beyond clock's max offset. It
// never panics on bad input.
func DecodeFrontierUpdate(data []byte, clock *crdt.Clock) (*Announcement, error) {
	if len(data) > maxFrontierBytes {
		return nil, fmt.Errorf("%w: frontier announcement of %d bytes; the limit is %d", ErrTooLarge, len(data), maxFrontierBytes)
	}
	var m replicationv1.FrontierUpdate
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	if m.GetEpoch() == 0 {
		return nil, fmt.Errorf("%w: frontier announcement with no epoch", ErrUndecodable)
	}
	if err := clock.Check(crdt.Timestamp(m.GetEpoch())); err != nil {
		return nil, fmt.Errorf("%w: epoch: %w", ErrClockAhead, err)
	}
	v, err := FrontierFromProto(m.GetOrigins(), clock)
	if err != nil {
		return nil, err
	}
	return &Announcement{Epoch: crdt.Timestamp(m.GetEpoch()), Full: m.GetFull(), Frontier: v}, nil
}

// FrontierFromProto checks and converts frontiers received from a peer.
func FrontierFromProto(fs []*replicationv1.OriginFrontier, clock *crdt.Clock) (frontier.Vector, error) {
	if len(fs) > MaxFrontierOrigins {
		return nil, fmt.Errorf("%w: %d origins in a frontier; the limit is %d", ErrTooLarge, len(fs), MaxFrontierOrigins)
	}
	v := make(frontier.Vector, len(fs))
	for i, f := range fs {
		if n := len(f.GetOrigin()); n == 0 || n > maxOriginBytes {
			return nil, fmt.Errorf("%w: frontier origin %d has %d bytes; want 1 to %d", ErrUndecodable, i, n, maxOriginBytes)
		}
		if err := clock.Check(crdt.Timestamp(f.GetHlc())); err != nil {
			return nil, fmt.Errorf("%w: frontier origin %d: %w", ErrClockAhead, i, err)
		}
		o := string(f.GetOrigin())
		v[o] = max(v[o], crdt.Timestamp(f.GetHlc()))
	}
	return v, nil
}

// toProtoFrontier encodes v, sorted by origin so equal vectors encode alike.
func toProtoFrontier(v frontier.Vector) []*replicationv1.OriginFrontier {
	origins := make([]string, 0, len(v))
	for o := range v {
		origins = append(origins, o)
	}
	sort.Strings(origins)
	out := make([]*replicationv1.OriginFrontier, len(origins))
	for i, o := range origins {
		out[i] = &replicationv1.OriginFrontier{Origin: []byte(o), Hlc: uint64(v[o])}
	}
	return out
}
