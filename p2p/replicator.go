package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/crdtpb"
	"github.com/chorus-kv/chorus/crdt/store"
)

// Defaults for ReplicatorConfig.
const (
	DefaultSubscriptionBuffer = 8192
	DefaultMaxBatchBytes      = 256 << 10
	DefaultApplyWorkers       = 4
	DefaultPushTimeout        = 5 * time.Second
	DefaultMaxQueueBytes      = 64 << 20
)

// ReplicatorConfig configures a Replicator. Zero values mean the defaults;
// Host and Store are required.
type ReplicatorConfig struct {
	// Cluster scopes the topic and protocols. Default "default".
	Cluster string
	Host    host.Host
	Store   ReplicatorStore
	Logger  *slog.Logger
	// SubscriptionBuffer is how many received messages may wait for the
	// apply workers; GossipSub drops past it. Default 8192.
	SubscriptionBuffer int
	// MaxBatchBytes caps the entries of one gossip message; a single larger
	// entry is sent alone. Default 256 KiB.
	MaxBatchBytes int
	// ApplyWorkers is how many goroutines apply received messages; their
	// writes share the store's group commit. Default 4.
	ApplyWorkers int
	// PushTimeout bounds a push to peers when the caller's context has no
	// deadline, and one push stream. Default 5 s.
	PushTimeout time.Duration
	// MaxQueueBytes bounds local writes waiting to be gossiped; past it they
	// are dropped from gossip (and counted) rather than blocking writers.
	// Default 64 MiB.
	MaxQueueBytes int
	// Admit, when set, is asked about the signer of every gossip message and
	// the sender of every push; an error rejects the message (admission).
	Admit func(peer.ID) error
	// ChainStart is the HLC this node's gossip chain starts from (the
	// convergence tracker's epoch: above every write made before this run).
	// 0 means batches carry no chain and prove nothing to receivers.
	ChainStart crdt.Timestamp
	// OnBatch, when set, is called after a gossip batch that carries its
	// chain (Batch.prev_hlc) is applied: it holds every write of origin in
	// (prev, last]. From the apply workers, concurrently.
	OnBatch func(origin peer.ID, prev, first, last crdt.Timestamp)
	// DropGossip injects a fault for tests: when it returns true, a gossip
	// message received from a peer is dropped as if lost. GossipSub does lose
	// messages (slow readers, partitions), but not on demand.
	DropGossip func() bool
	// OnApply, when set, is called by an apply worker after each gossip
	// message from a peer is applied (for metrics), with the message's
	// entries and its apply lag: how long after its newest entry was
	// written, by the origin's clock read against this node's, it was
	// applied here (0 when the origin's clock is ahead). It must not block.
	OnApply func(entries int, lag time.Duration)
	// PubSubOptions are added after the GossipSub options the replicator
	// sets (a simulation adds a tracer to count what gossip sends). Default
	// none.
	PubSubOptions []pubsub.Option
}

// WithDefaults returns c with every zero field set to its default.
func (c ReplicatorConfig) WithDefaults() ReplicatorConfig {
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.SubscriptionBuffer == 0 {
		c.SubscriptionBuffer = DefaultSubscriptionBuffer
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.ApplyWorkers == 0 {
		c.ApplyWorkers = DefaultApplyWorkers
	}
	if c.PushTimeout == 0 {
		c.PushTimeout = DefaultPushTimeout
	}
	if c.MaxQueueBytes == 0 {
		c.MaxQueueBytes = DefaultMaxQueueBytes
	}
	return c
}

// Validate reports every problem with c at once.
func (c ReplicatorConfig) Validate() error {
	var errs []error
	if c.Host == nil {
		errs = append(errs, errors.New("p2p: replicator needs a Host"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("p2p: replicator needs a Store"))
	}
	if err := ValidateCluster(c.Cluster); err != nil {
		errs = append(errs, err)
	}
	for name, v := range map[string]int{
		"SubscriptionBuffer": c.SubscriptionBuffer, "MaxBatchBytes": c.MaxBatchBytes,
		"ApplyWorkers": c.ApplyWorkers, "MaxQueueBytes": c.MaxQueueBytes,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("p2p: %s is %d; it must not be negative (0 means the default)", name, v))
		}
	}
	if c.PushTimeout < 0 {
		errs = append(errs, fmt.Errorf("p2p: PushTimeout is %v; it must not be negative", c.PushTimeout))
	}
	return errors.Join(errs...)
}

// Stats are a replicator's counters.
type Stats struct {
	Published, PublishedEntries int64 // messages and entries sent
	Received, ReceivedEntries   int64 // messages and entries accepted from peers
	Applied                     int64 // entries that changed the store
	DroppedLocal                int64 // local entries not gossiped: queue full or publish failed
	// SkippedAlone counts local entries not gossiped because the node was
	// connected to no peer: nobody would have received them, and
	// anti-entropy brings them to a peer when it connects.
	SkippedAlone int64
	ApplyErrors  int64
	Rejected     RejectionCounts
}

// Replicator spreads this node's writes over GossipSub and applies other
// nodes' writes to the store. It owns its goroutines: one publisher and
// ApplyWorkers appliers, stopped by Close.
type Replicator struct {
	cfg       ReplicatorConfig
	self      peer.ID
	validator *Validator
	ps        *pubsub.PubSub
	topic     *pubsub.Topic
	sub       *pubsub.Subscription
	// connected is how many peers this node has connections to, kept by
	// notify; Enqueue gossips nothing while it is 0.
	connected atomic.Int64
	notify    *network.NotifyBundle

	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}

	mu struct {
		sync.Mutex
		queue        []queued // local writes waiting to be published
		queueBytes   int
		closed       bool // no new push handlers
		pushHandlers int  // push handlers running

		// lastOwn is the HLC of this node's newest write seen by Enqueue,
		// gossiped or not: the prev of the next one.
		lastOwn crdt.Timestamp
	}
	handlers sync.WaitGroup // running push handlers

	rejected                           Rejections
	published, publishedEntries        atomic.Int64
	received, receivedEntries, applied atomic.Int64
	droppedLocal, applyErrors          atomic.Int64
	skippedAlone                       atomic.Int64
	closeOnce                          sync.Once
}

// queued is a local write waiting to be gossiped, with the HLC of this
// node's write before it (0 when the chain is unknown: the write is older
// than one already seen).
type queued struct {
	entry crdt.Entry
	prev  crdt.Timestamp
}

// MaxMessageBytes is the largest gossip message or push accepted for limits:
// one largest entry with room for the envelope.
func MaxMessageBytes(l crdt.Limits) int {
	return max(1<<20, l.MaxValueBytes+l.MaxKeyBytes+64<<10)
}

// StartReplicator joins the cluster's topic and starts gossiping.
func StartReplicator(cfg ReplicatorConfig) (*Replicator, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	limits := cfg.Store.Limits()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Replicator{
		cfg:  cfg,
		self: cfg.Host.ID(),
		validator: &Validator{
			Limits:          limits,
			Clock:           cfg.Store.Clock(),
			MaxMessageBytes: MaxMessageBytes(limits),
		},
		cancel: cancel,
		wake:   make(chan struct{}, 1),
	}
	r.mu.lastOwn = cfg.ChainStart
	fail := func(err error) (*Replicator, error) {
		cancel()
		return nil, err
	}
	ps, err := pubsub.NewGossipSub(ctx, cfg.Host, append([]pubsub.Option{
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithMaxMessageSize(r.validator.MaxMessageBytes + 4<<10),
		// GossipSub drops, silently, what does not fit its per-peer outbound
		// queue (default 32 messages) and its validation queue (default 32):
		// under a write burst both overflow. Size them for bursts.
		pubsub.WithPeerOutboundQueueSize(cfg.SubscriptionBuffer),
		pubsub.WithValidateQueueSize(cfg.SubscriptionBuffer),
		pubsub.WithLogger(cfg.Logger.With("component", "gossipsub")),
	}, cfg.PubSubOptions...)...,
	)
	if err != nil {
		return fail(fmt.Errorf("p2p: start gossipsub: %w", err))
	}
	r.ps = ps
	topic := Topic(cfg.Cluster)
	if err := ps.RegisterTopicValidator(topic, r.validate); err != nil {
		return fail(fmt.Errorf("p2p: register validator: %w", err))
	}
	if r.topic, err = ps.Join(topic); err != nil {
		return fail(fmt.Errorf("p2p: join %s: %w", topic, err))
	}
	if r.sub, err = r.topic.Subscribe(pubsub.WithBufferSize(cfg.SubscriptionBuffer)); err != nil {
		return fail(fmt.Errorf("p2p: subscribe to %s: %w", topic, err))
	}
	// Recounted at every connection event (rare next to writes): the
	// events arrive asynchronously, so the count after the last one is the
	// network's.
	recount := func(n network.Network, _ network.Conn) { r.connected.Store(int64(len(n.Peers()))) }
	r.notify = &network.NotifyBundle{ConnectedF: recount, DisconnectedF: recount}
	cfg.Host.Network().Notify(r.notify)
	r.connected.Store(int64(len(cfg.Host.Network().Peers())))
	cfg.Host.SetStreamHandler(PushProtocol(cfg.Cluster), r.handlePush)
	r.wg.Add(1 + cfg.ApplyWorkers)
	go r.publishLoop(ctx)
	for range cfg.ApplyWorkers {
		go r.applyLoop(ctx)
	}
	return r, nil
}

// validate is the topic validator: it rejects, and counts, what DecodeBatch
// refuses, and hands the decoded entries to the appliers.
func (r *Replicator) validate(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if msg.Local {
		return pubsub.ValidationAccept
	}
	if r.cfg.DropGossip != nil && r.cfg.DropGossip() {
		return pubsub.ValidationIgnore
	}
	if r.cfg.Admit != nil {
		if err := r.cfg.Admit(msg.GetFrom()); err != nil {
			r.rejected.count(err)
			r.cfg.Logger.Warn("rejected gossip from a non-member", "from", msg.GetFrom(), "via", msg.ReceivedFrom, "err", err)
			return pubsub.ValidationReject
		}
	}
	b, err := r.validator.DecodeGossip(msg.GetData(), msg.GetFrom(), true)
	if err != nil {
		r.rejected.count(err)
		r.cfg.Logger.Warn("rejected gossip", "from", msg.GetFrom(), "via", msg.ReceivedFrom, "err", err)
		return pubsub.ValidationReject
	}
	msg.ValidatorData = b
	return pubsub.ValidationAccept
}

// PubSub returns the replicator's GossipSub router, for other topics of
// the cluster (membership).
func (r *Replicator) PubSub() *pubsub.PubSub { return r.ps }

// Enqueue takes a committed batch of changes (the store's OnCommit) and
// queues this node's own writes for gossip. It never blocks. While the node
// is connected to no peer it queues nothing: a message would reach no one,
// and signing and validating it would cost a lone node about 60 µs of CPU
// per write. A peer that connects later gets these writes from
// anti-entropy, which runs on every new connection.
func (r *Replicator) Enqueue(changes []store.Change) {
	if r.connected.Load() <= 0 {
		n := 0
		var last crdt.Timestamp
		for i := range changes {
			if peer.ID(changes[i].Record.Origin) == r.self {
				n++
				last = max(last, changes[i].Record.HLC)
			}
		}
		if n > 0 {
			r.skippedAlone.Add(int64(n))
			r.mu.Lock()
			r.mu.lastOwn = max(r.mu.lastOwn, last) // the chain breaks here: anti-entropy repairs
			r.mu.Unlock()
		}
		return
	}
	r.mu.Lock()
	added := false
	for i := range changes {
		e := changes[i].Record.Entry
		if peer.ID(e.Origin) != r.self {
			continue // others' writes are spread by their origin (and anti-entropy)
		}
		// Own writes arrive in HLC order (one committer stamps them); one
		// that does not (an old own write brought back by anti-entropy)
		// carries no chain.
		var prev crdt.Timestamp
		if r.mu.lastOwn != 0 && e.HLC > r.mu.lastOwn {
			prev = r.mu.lastOwn
		}
		r.mu.lastOwn = max(r.mu.lastOwn, e.HLC)
		size := crdtpb.WireBytes(&e)
		if r.mu.queueBytes+size > r.cfg.MaxQueueBytes {
			r.droppedLocal.Add(1)
			continue
		}
		r.mu.queue = append(r.mu.queue, queued{entry: e, prev: prev})
		r.mu.queueBytes += size
		added = true
	}
	r.mu.Unlock()
	if added {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// publishLoop publishes queued writes. It does not wait to fill a batch: a
// lone write goes out at once, and writes that arrive while a publish is
// under way share the next message.
func (r *Replicator) publishLoop(ctx context.Context) {
	defer r.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		r.mu.Lock()
		entries := r.mu.queue
		r.mu.queue, r.mu.queueBytes = nil, 0
		r.mu.Unlock()
		for len(entries) > 0 {
			n, size := 0, 0
			for n < len(entries) && (n == 0 || size+crdtpb.WireBytes(&entries[n].entry) <= r.cfg.MaxBatchBytes) {
				// A break in the chain (a write dropped from gossip, or one
				// with no chain) starts a new batch: a batch's chain must
				// cover every write in it.
				if n > 0 && entries[n].prev != entries[n-1].entry.HLC {
					break
				}
				size += crdtpb.WireBytes(&entries[n].entry)
				n++
			}
			if err := r.publish(ctx, entries[:n]); err != nil {
				if ctx.Err() != nil {
					return
				}
				r.droppedLocal.Add(int64(n))
				r.cfg.Logger.Warn("gossip publish failed; anti-entropy will repair", "entries", n, "err", err)
			}
			entries = entries[n:]
		}
	}
}

func (r *Replicator) publish(ctx context.Context, entries []queued) error {
	data, err := encodeGossip(entries)
	if err != nil {
		return fmt.Errorf("p2p: encode batch: %w", err)
	}
	if err := r.topic.Publish(ctx, data); err != nil {
		return fmt.Errorf("p2p: publish: %w", err)
	}
	r.published.Add(1)
	r.publishedEntries.Add(int64(len(entries)))
	return nil
}

// applyLoop applies validated messages from peers to the store, buffered:
// their origin acknowledged them only once durable, and anti-entropy brings
// back what a machine crash loses here, so they need no fsync of their own
// (store.ApplyBuffered). Pushes and anti-entropy apply durably.
func (r *Replicator) applyLoop(ctx context.Context) {
	defer r.wg.Done()
	for {
		msg, err := r.sub.Next(ctx)
		if err != nil {
			return // cancelled or subscription closed
		}
		if msg.Local || msg.GetFrom() == r.self {
			continue
		}
		b, ok := msg.ValidatorData.(*GossipBatch)
		if !ok {
			continue
		}
		entries := b.Entries
		r.received.Add(1)
		r.receivedEntries.Add(int64(len(entries)))
		changes, err := r.cfg.Store.ApplyBuffered(ctx, entries)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.applyErrors.Add(1)
			r.cfg.Logger.Warn("apply gossip failed", "from", msg.GetFrom(), "err", err)
			continue
		}
		r.applied.Add(int64(len(changes)))
		if r.cfg.OnApply != nil {
			r.cfg.OnApply(len(entries), applyLag(r.cfg.Store.Clock().Wall(), entries))
		}
		if b.HasPrev && r.cfg.OnBatch != nil {
			r.cfg.OnBatch(msg.GetFrom(), b.Prev, entries[0].HLC, entries[len(entries)-1].HLC)
		}
	}
}

// applyLag is how long after the newest of entries was written (by its
// HLC's physical time) wallMillis is; 0 if the HLC is ahead, or for no
// entries.
func applyLag(wallMillis int64, entries []crdt.Entry) time.Duration {
	if len(entries) == 0 {
		return 0
	}
	var newest int64
	for i := range entries {
		newest = max(newest, entries[i].HLC.Physical())
	}
	return time.Duration(max(wallMillis-newest, 0)) * time.Millisecond
}

// Stats returns the replicator's counters.
func (r *Replicator) Stats() Stats {
	return Stats{
		Published: r.published.Load(), PublishedEntries: r.publishedEntries.Load(),
		Received: r.received.Load(), ReceivedEntries: r.receivedEntries.Load(),
		Applied: r.applied.Load(), DroppedLocal: r.droppedLocal.Load(),
		SkippedAlone: r.skippedAlone.Load(),
		ApplyErrors:  r.applyErrors.Load(), Rejected: r.rejected.Snapshot(),
	}
}

// TopicPeers returns the peers this node exchanges gossip with on the topic.
func (r *Replicator) TopicPeers() []peer.ID { return r.ps.ListPeers(Topic(r.cfg.Cluster)) }

// Close stops gossiping and waits for the replicator's goroutines. Writes
// still queued are not sent (anti-entropy repairs them). Safe to call twice.
func (r *Replicator) Close() {
	r.closeOnce.Do(func() {
		r.cfg.Host.RemoveStreamHandler(PushProtocol(r.cfg.Cluster))
		r.mu.Lock()
		r.mu.closed = true
		r.mu.Unlock()
		r.handlers.Wait()
		r.cfg.Host.Network().StopNotify(r.notify)
		r.cancel()
		r.sub.Cancel()
		r.wg.Wait()
		_ = r.topic.Close()
	})
}
