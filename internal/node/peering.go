package node

import (
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/frontier"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/p2p"
)

// PeeringConfig configures Peering.Start. The component configs carry the
// caller's settings only: the fields that connect the components to each
// other and to the store (Cluster, Host, Store, Logger, PubSub, Self,
// Clock, Admit, ChainStart, Epoch, Membership, Members, OnBatch,
// LocalFrontier, OnMerge, Skip, OnRecovered, OnUnreachable) are set by
// Start, and Syncer.OnComplete runs after the admission has been told of
// the completed session.
type PeeringConfig struct {
	Cluster  string
	Identity p2p.Identity
	// Store is the node's open store; its commit hook must call
	// Peering.OnCommit. Required.
	Store  *store.Store
	Logger *slog.Logger
	// Bootstrap are the peers the bootstrapper dials (p2p.ParseBootstrap).
	Bootstrap []peer.AddrInfo
	// OpenAdmission admits any peer; otherwise the member list decides, and
	// membership probes its members only.
	OpenAdmission bool
	// OnAdmission, when set, is called with the admission once it has read
	// the member list, before the host starts.
	OnAdmission func(*p2p.Admission)
	// OnRemoved, when set, is called from OnCommit with each member a
	// commit removed from the list. It must not block.
	OnRemoved func(peer.ID)
	// Gater, when set, vets every connection after the admission.
	Gater connmgr.ConnectionGater
	// Host configures the libp2p host (its Gater is set by Start);
	// HostOptions are passed on to p2p.NewHostWith (a simulated transport).
	Host        p2p.HostConfig
	HostOptions []libp2p.Option
	// OnHost, when set, is called with the host once it listens, before any
	// protocol is registered on it.
	OnHost func(host.Host)

	Replicator  p2p.ReplicatorConfig
	Syncer      p2p.SyncConfig
	Membership  p2p.MembershipConfig
	Convergence p2p.ConvergenceConfig
}

// Peering is the cluster-facing half of a node: admission, the libp2p host,
// the gossip replicator, anti-entropy, membership, convergence tracking and
// the bootstrapper, wired to each other and to the store. Start (the agent)
// and internal/sim (simulated clusters) both run it, so that a simulation
// runs the node's own wiring; what Start adds around it (the watch hub, the
// client servers, tombstone collection, mDNS) serves clients.
//
// Its zero value is ready for OnCommit, which the store's commit hook calls
// from the moment the store opens; Start then starts the components, and
// Close stops them. The fields are set by Start and not changed after.
type Peering struct {
	Host      host.Host
	Admission *p2p.Admission
	Syncer    *p2p.Syncer
	Members   *p2p.Membership
	// Bootstrapper is nil until StartBootstrapper.
	Bootstrapper *p2p.Bootstrapper

	cfg PeeringConfig
	// Read by the commit hook and by the components' callbacks, which may
	// run before Start has started the component they call.
	admission atomic.Pointer[p2p.Admission]
	repl      atomic.Pointer[p2p.Replicator]
	conv      atomic.Pointer[p2p.Convergence]
	members   atomic.Pointer[p2p.Membership]
}

// Replicator returns the gossip replicator, nil before Start.
func (p *Peering) Replicator() *p2p.Replicator { return p.repl.Load() }

// Convergence returns the convergence tracker, nil before Start.
func (p *Peering) Convergence() *p2p.Convergence { return p.conv.Load() }

// OnCommit is the peering's part of the store's commit hook: the admission
// follows the member list, this node's own writes go to gossip, and the
// convergence tracker follows this node's frontier. Components not started
// yet are skipped. It never blocks (OnRemoved must not either).
func (p *Peering) OnCommit(changes []store.Change) {
	if a := p.admission.Load(); a != nil {
		for _, id := range a.Observe(changes) {
			if p.cfg.OnRemoved != nil {
				p.cfg.OnRemoved(id)
			}
		}
	}
	if r := p.repl.Load(); r != nil {
		r.Enqueue(changes)
	}
	if c := p.conv.Load(); c != nil {
		c.LocalCommit(changes)
	}
}

// Start reads the member list and starts, in this order, the host, the
// replicator, the syncer, membership and the convergence tracker. On an
// error it stops what it started. The bootstrapper starts apart
// (StartBootstrapper), once the caller is ready for peers.
func (p *Peering) Start(cfg PeeringConfig) (err error) {
	if cfg.Store == nil {
		return errors.New("node: peering needs a Store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// OnCommit reads cfg.OnRemoved once the admission is published below.
	p.cfg = cfg
	st := cfg.Store
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	a, err := p2p.NewAdmission(cfg.Identity.ID, cfg.Bootstrap, cfg.OpenAdmission, st, cfg.Logger)
	if err != nil {
		return err
	}
	p.Admission = a
	p.admission.Store(a)
	cleanup = append(cleanup, func() { p.admission.Store(nil) })
	if cfg.OnAdmission != nil {
		cfg.OnAdmission(a)
	}

	var gater connmgr.ConnectionGater = a
	if cfg.Gater != nil {
		gater = bothGaters{a, cfg.Gater}
	}
	hc := cfg.Host
	hc.Gater = gater
	if p.Host, err = p2p.NewHostWith(cfg.Identity, hc, cfg.HostOptions...); err != nil {
		return err
	}
	cleanup = append(cleanup, func() { _ = p.Host.Close() })
	if cfg.OnHost != nil {
		cfg.OnHost(p.Host)
	}

	// This run's epoch: the gossip chain of this node's writes starts there,
	// and its convergence tracker announces it.
	epoch := st.Clock().Now()
	rc := cfg.Replicator
	rc.Cluster, rc.Host, rc.Store, rc.Logger = cfg.Cluster, p.Host, st, cfg.Logger
	rc.Admit, rc.ChainStart = a.Check, epoch
	rc.OnBatch = func(origin peer.ID, prev, first, last crdt.Timestamp) {
		if c := p.conv.Load(); c != nil {
			c.ObserveBatch(origin, prev, first, last)
		}
	}
	repl, err := p2p.StartReplicator(rc)
	if err != nil {
		return err
	}
	p.repl.Store(repl)
	cleanup = append(cleanup, func() { repl.Close(); p.repl.Store(nil) })

	sc := cfg.Syncer
	sc.Cluster, sc.Host, sc.Store, sc.Logger, sc.Admit = cfg.Cluster, p.Host, st, cfg.Logger, a.Check
	sc.LocalFrontier = func() frontier.Vector {
		if c := p.conv.Load(); c != nil {
			return c.LocalFrontier()
		}
		return nil
	}
	sc.OnMerge = func(id peer.ID, v frontier.Vector) {
		if c := p.conv.Load(); c != nil {
			c.Merge(id, v)
		}
	}
	onComplete := cfg.Syncer.OnComplete
	sc.OnComplete = func(id peer.ID) {
		a.Synced()
		if onComplete != nil {
			onComplete(id)
		}
	}
	// No periodic session or retry with a member the failure detector
	// holds suspect or dead (a partition): it would hold up the others.
	sc.Skip = func(id peer.ID) bool {
		m := p.members.Load()
		return m != nil && m.Suspected(id)
	}
	if p.Syncer, err = p2p.StartSyncer(sc); err != nil {
		return err
	}
	cleanup = append(cleanup, func() { _ = p.Syncer.Close() })

	mc := cfg.Membership
	mc.Cluster, mc.Host, mc.PubSub, mc.Logger, mc.Admit = cfg.Cluster, p.Host, repl.PubSub(), cfg.Logger, a.Check
	// A member back from a partition (often on connections that never
	// closed, so no new connection starts a session) is repaired now, not
	// at the next periodic session.
	mc.OnRecovered = p.Syncer.Kick
	// A session under way with a member that just became unreachable would
	// wait until the connection fails or its deadline (30 s), holding up
	// every other session this node starts, the repair after the heal
	// included.
	mc.OnUnreachable = p.Syncer.Abandon
	if !cfg.OpenAdmission {
		mc.Members = a.SortedIDs
	}
	if p.Members, err = p2p.StartMembership(mc); err != nil {
		return err
	}
	p.members.Store(p.Members)
	cleanup = append(cleanup, p.Members.Close)

	cc := cfg.Convergence
	cc.Cluster, cc.Self, cc.PubSub, cc.Clock, cc.Epoch = cfg.Cluster, cfg.Identity.ID, repl.PubSub(), st.Clock(), epoch
	cc.Logger, cc.Membership, cc.Admit = cfg.Logger, p.Members, a.Check
	conv, err := p2p.StartConvergence(cc)
	if err != nil {
		return err
	}
	p.conv.Store(conv)
	return nil
}

// StartBootstrapper starts dialing the bootstrap peers, under the
// admission's bootstrap rules, and returns the bootstrapper (also in
// p.Bootstrapper). Call it once, after Start.
func (p *Peering) StartBootstrapper() *p2p.Bootstrapper {
	a := p.Admission
	p.Bootstrapper = p2p.StartBootstrapperWith(p2p.BootstrapConfig{
		Host:       p.Host,
		Peers:      p.cfg.Bootstrap,
		Logger:     p.cfg.Logger,
		AllowProbe: a.AllowBootstrap,
		DoneProbe:  a.ForgetBootstrap,
		OnLearn:    a.AllowBootstrap,
		OnRefused:  a.BootstrapRefused,
	})
	return p.Bootstrapper
}

// Close stops the components in the reverse order of their start (the
// bootstrapper first) and returns the host's close error. It does not
// announce a leave (Membership.Leave) and does not close the store.
func (p *Peering) Close() error {
	if p.Bootstrapper != nil {
		p.Bootstrapper.Close()
	}
	p.Convergence().Close()
	p.Members.Close()
	_ = p.Syncer.Close()
	p.Replicator().Close()
	return p.Host.Close()
}
