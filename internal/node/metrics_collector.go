package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chorus-kv/chorus/p2p"
	"github.com/chorus-kv/chorus/p2p/swim"
)

// nodeCollector turns the counters and gauges the node's components keep
// (store.Stats, p2p.Stats, p2p.SyncerStats, p2p.MembershipStats,
// watch.Stats, p2p.AdmissionStats, ...) into Prometheus metrics at scrape
// time: no second set of counters on the hot paths.
type nodeCollector struct {
	n *Node

	info, ready *prometheus.Desc

	storeWrites, storeBatches, storeFsyncs             *prometheus.Desc
	storeKeys, storeTombstones                         *prometheus.Desc
	storeRevision, storeOldest, storeSize, storeFailed *prometheus.Desc
	storeSkipped                                       *prometheus.Desc

	gossipPublished, gossipPublishedEntries *prometheus.Desc
	gossipReceived, gossipReceivedEntries   *prometheus.Desc
	gossipApplied, gossipRejected           *prometheus.Desc
	gossipUnsent, gossipApplyErrors         *prometheus.Desc
	gossipPeers                             *prometheus.Desc

	aeSessions, aeBytes, aeEntries, aeRepaired *prometheus.Desc
	aeConverged, aeCompared                    *prometheus.Desc
	catchingUp, catchUpReceived, catchUpTotal  *prometheus.Desc

	mMembers, mProbes, mProbeFailures, mSuspicions *prometheus.Desc
	mRefutations, mUpdates, mProbeBytes            *prometheus.Desc
	mHealth, mInterval                             *prometheus.Desc

	watchWatchers, watchEvents, watchSlow *prometheus.Desc

	admRefused, admMembers *prometheus.Desc

	convLag, convMaxLag, convUnknown      *prometheus.Desc
	convAnnouncements, convAnnouncedBytes *prometheus.Desc
	convRejected, convHelloBytes          *prometheus.Desc
}

func newNodeCollector(n *Node) *nodeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &nodeCollector{
		n:     n,
		info:  d("chorus_node_info", "Always 1; its labels say which node this is.", "version", "node_id", "cluster", "name"),
		ready: d("chorus_node_ready", "1 when the node is ready for traffic (as /readyz), else 0."),

		storeWrites:     d("chorus_store_writes_total", "Changes the store wrote (each took a revision): local writes and entries from peers that won their merge."),
		storeBatches:    d("chorus_store_batches_total", "LevelDB batches the store wrote."),
		storeFsyncs:     d("chorus_store_fsyncs_total", "fsyncs of the store: of batches, of buffered gossip batches, at close."),
		storeKeys:       d("chorus_store_keys", "Keys the store holds, tombstones included."),
		storeTombstones: d("chorus_store_tombstones", "Tombstones (deleted keys not yet purged) among the keys."),
		storeRevision:   d("chorus_store_revision", "The store's revision: that of its latest change."),
		storeOldest:     d("chorus_store_oldest_revision", "The oldest revision still in the change log (a watch can resume from it)."),
		storeSize:       d("chorus_store_leveldb_size_bytes", "Size of the store's LevelDB folder: tables, journal and manifest."),
		storeFailed:     d("chorus_store_failed", "1 when a disk write failed and the store refuses writes until the node restarts, else 0."),
		storeSkipped:    d("chorus_store_skipped_revisions", "Revisions the store skipped at its last start because it was not closed cleanly and the machine may have crashed."),

		gossipPublished:        d("chorus_gossip_published_messages_total", "Gossip messages this node published (its own writes)."),
		gossipPublishedEntries: d("chorus_gossip_published_entries_total", "Entries in the gossip messages this node published."),
		gossipReceived:         d("chorus_gossip_received_messages_total", "Gossip messages from peers that passed validation."),
		gossipReceivedEntries:  d("chorus_gossip_received_entries_total", "Entries in the gossip messages received from peers."),
		gossipApplied:          d("chorus_gossip_applied_entries_total", "Entries received by gossip that changed the store."),
		gossipRejected:         d("chorus_gossip_rejected_messages_total", "Gossip messages rejected, by reason.", "reason"),
		gossipUnsent:           d("chorus_gossip_unsent_entries_total", "Local writes not gossiped, by reason: dropped (queue full or publish failed) or alone (no peer connected); anti-entropy brings them to peers.", "reason"),
		gossipApplyErrors:      d("chorus_gossip_apply_errors_total", "Gossip messages whose entries the store failed to apply."),
		gossipPeers:            d("chorus_gossip_peers", "Peers this node exchanges gossip with on the cluster's topic."),

		aeSessions:  d("chorus_antientropy_sessions_total", "Anti-entropy sessions this node started or served, by outcome: completed, failed, refused (served: stale peer or too many at once).", "outcome"),
		aeBytes:     d("chorus_antientropy_bytes_total", "Bytes of anti-entropy sessions, by direction (sent, received).", "direction"),
		aeEntries:   d("chorus_antientropy_entries_total", "Entries exchanged in anti-entropy sessions, by direction (sent, received).", "direction"),
		aeRepaired:  d("chorus_antientropy_repaired_entries_total", "Entries received in anti-entropy sessions that changed this node's store."),
		aeConverged: d("chorus_antientropy_converged_peers", "Connected members whose Merkle root equals this node's, asked at scrape time."),
		aeCompared:  d("chorus_antientropy_compared_peers", "Connected members that answered for their Merkle root at scrape time."),

		catchingUp:      d("chorus_catchup_active", "1 while the node catches up from its peers (no anti-entropy session completed since it started, or since a session found a difference too large for one), else 0."),
		catchUpReceived: d("chorus_catchup_received_entries", "Entries received by anti-entropy since the catch-up began (of the last catch-up, once caught up)."),
		catchUpTotal:    d("chorus_catchup_estimated_entries", "Estimated entries the catch-up receives in all: those received plus the keys the fullest connected member holds beyond this node's (asked at scrape time); 0 while unknown."),

		mMembers:       d("chorus_membership_members", "Members in this node's failure-detector view (itself included), by state.", "state"),
		mProbes:        d("chorus_membership_probes_total", "Failure-detector pings and ping-reqs this node sent."),
		mProbeFailures: d("chorus_membership_probe_failures_total", "Probes of a member that got no ack, direct or indirect, within the probe interval."),
		mSuspicions:    d("chorus_membership_suspicions_total", "Members this node's view moved from alive to suspect (on its own probe or another member's word)."),
		mRefutations:   d("chorus_membership_refutations_total", "Accusations of this node (suspect, dead) it refuted."),
		mUpdates:       d("chorus_membership_updates_published_total", "Membership updates this node published."),
		mProbeBytes:    d("chorus_membership_probe_bytes_total", "Bytes on the probe protocol, by direction (sent, received).", "direction"),
		mHealth:        d("chorus_membership_health_score", "Lifeguard local health score: 0 is healthy; probe interval and timeout are multiplied by score+1."),
		mInterval:      d("chorus_membership_probe_interval_seconds", "The probe interval now (the configured one times health score+1)."),

		watchWatchers: d("chorus_watch_watchers", "Open watchers (native and etcd API)."),
		watchEvents:   d("chorus_watch_events_sent_total", "Events delivered to watchers."),
		watchSlow:     d("chorus_watch_slow_watchers_cancelled_total", "Watchers cancelled because they fell too far behind (their buffer filled)."),

		admRefused: d("chorus_admission_refused_connections_total", "libp2p connections admission refused, by reason: not_member, removed.", "reason"),
		admMembers: d("chorus_admission_members", "Members on the replicated member list."),

		convLag:            d("chorus_convergence_member_lag_seconds", "Per member that announced its frontiers (this node included): the age of the oldest write it is not known to hold, 0 when none (as LAG in chorus members).", "member"),
		convMaxLag:         d("chorus_convergence_max_lag_seconds", "The highest of chorus_convergence_member_lag_seconds: how far behind the slowest member is."),
		convUnknown:        d("chorus_convergence_unannounced_members", "Live members that announced no frontier yet (LAG ?): until they do, converged watches and puts that wait for convergence wait for them."),
		convAnnouncements:  d("chorus_convergence_announcements_total", "Frontier announcements, by direction: sent, received (accepted from members).", "direction"),
		convAnnouncedBytes: d("chorus_convergence_announcement_bytes_total", "Payload bytes of frontier announcements, by direction: sent, received.", "direction"),
		convRejected:       d("chorus_convergence_rejected_announcements_total", "Frontier announcements rejected (undecodable, or not from an admitted member)."),
		convHelloBytes:     d("chorus_convergence_hello_bytes_total", "Frontier bytes this node put in its anti-entropy hellos."),
	}
}

// Describe sends every desc of the collector.
func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.info, c.ready,
		c.storeWrites, c.storeBatches, c.storeFsyncs, c.storeKeys, c.storeTombstones,
		c.storeRevision, c.storeOldest, c.storeSize, c.storeFailed, c.storeSkipped,
		c.gossipPublished, c.gossipPublishedEntries, c.gossipReceived, c.gossipReceivedEntries,
		c.gossipApplied, c.gossipRejected, c.gossipUnsent, c.gossipApplyErrors, c.gossipPeers,
		c.aeSessions, c.aeBytes, c.aeEntries, c.aeRepaired, c.aeConverged, c.aeCompared,
		c.catchingUp, c.catchUpReceived, c.catchUpTotal,
		c.mMembers, c.mProbes, c.mProbeFailures, c.mSuspicions, c.mRefutations, c.mUpdates,
		c.mProbeBytes, c.mHealth, c.mInterval,
		c.watchWatchers, c.watchEvents, c.watchSlow,
		c.admRefused, c.admMembers,
		c.convLag, c.convMaxLag, c.convUnknown, c.convAnnouncements, c.convAnnouncedBytes,
		c.convRejected, c.convHelloBytes,
	} {
		ch <- d
	}
}

// Collect reads the components' counters.
func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}

	gauge(c.info, 1, Version, n.ID(), n.cfg.Cluster, n.cfg.Name)
	gauge(c.ready, b2f(n.Readiness().Ready))

	st := n.store
	ss := st.Stats()
	counter(c.storeWrites, ss.Changes)
	counter(c.storeBatches, ss.Batches)
	counter(c.storeFsyncs, ss.Syncs)
	gauge(c.storeKeys, float64(st.Keys()))
	gauge(c.storeTombstones, float64(st.Tombstones()))
	gauge(c.storeRevision, float64(st.Revision()))
	gauge(c.storeOldest, float64(st.OldestRevision()))
	gauge(c.storeSkipped, float64(ss.SkippedRevisions))
	gauge(c.storeFailed, b2f(st.Err() != nil))
	if size, err := st.DiskBytes(); err == nil {
		gauge(c.storeSize, float64(size))
	} else {
		ch <- prometheus.NewInvalidMetric(c.storeSize, err)
	}

	r := n.Replicator()
	rs := r.Stats()
	counter(c.gossipPublished, rs.Published)
	counter(c.gossipPublishedEntries, rs.PublishedEntries)
	counter(c.gossipReceived, rs.Received)
	counter(c.gossipReceivedEntries, rs.ReceivedEntries)
	counter(c.gossipApplied, rs.Applied)
	counter(c.gossipApplyErrors, rs.ApplyErrors)
	for reason, v := range map[string]int64{
		"undecodable": rs.Rejected.Undecodable, "empty": rs.Rejected.Empty, "too_large": rs.Rejected.TooLarge,
		"bad_entry": rs.Rejected.BadEntry, "clock_ahead": rs.Rejected.ClockAhead, "foreign": rs.Rejected.Foreign,
		"not_member": rs.Rejected.NotMember,
	} {
		counter(c.gossipRejected, v, reason)
	}
	counter(c.gossipUnsent, rs.DroppedLocal, "dropped")
	counter(c.gossipUnsent, rs.SkippedAlone, "alone")
	gauge(c.gossipPeers, float64(len(r.TopicPeers())))

	ys := n.sync.Stats()
	counter(c.aeSessions, ys.Completed, "completed")
	counter(c.aeSessions, ys.Failed, "failed")
	counter(c.aeSessions, ys.Refused, "refused")
	counter(c.aeBytes, ys.BytesSent, "sent")
	counter(c.aeBytes, ys.BytesReceived, "received")
	counter(c.aeEntries, ys.EntriesSent, "sent")
	counter(c.aeEntries, ys.EntriesReceived, "received")
	counter(c.aeRepaired, ys.EntriesApplied)
	compared, converged := n.convergence()
	gauge(c.aeCompared, float64(compared))
	gauge(c.aeConverged, float64(converged))
	// After convergence(), which noted the members' key counts.
	cu := n.CatchUp(context.Background(), false)
	gauge(c.catchingUp, b2f(cu.State == p2p.CatchingUp))
	gauge(c.catchUpReceived, float64(cu.Received))
	gauge(c.catchUpTotal, float64(cu.Total))

	ms := n.members.Stats()
	states := map[swim.State]int{swim.Alive: 0, swim.Suspect: 0, swim.Dead: 0, swim.Left: 0}
	for _, m := range n.members.Members() {
		states[m.State]++
	}
	for s, v := range states {
		gauge(c.mMembers, float64(v), s.String())
	}
	counter(c.mProbes, ms.Probes)
	counter(c.mProbeFailures, ms.ProbeFailures)
	counter(c.mSuspicions, ms.Suspicions)
	counter(c.mRefutations, ms.Refutations)
	counter(c.mUpdates, ms.UpdatesPublished)
	counter(c.mProbeBytes, ms.ProbeBytesOut, "sent")
	counter(c.mProbeBytes, ms.BytesIn, "received")
	gauge(c.mHealth, float64(ms.Health))
	gauge(c.mInterval, ms.ProbeInterval.Seconds())

	ws := n.hub.Stats()
	gauge(c.watchWatchers, float64(ws.Watchers))
	counter(c.watchEvents, ws.EventsSent)
	counter(c.watchSlow, ws.CancelledTooSlow)

	as := n.admission.Stats()
	counter(c.admRefused, as.RefusedNotMember, "not_member")
	counter(c.admRefused, as.RefusedRemoved, "removed")
	gauge(c.admMembers, float64(len(n.admission.SortedIDs())))

	if conv := n.Convergence(); conv != nil {
		var maxLag time.Duration
		known := map[string]bool{}
		for id, l := range conv.Lag() {
			if !l.Known {
				continue
			}
			known[id.String()] = true
			maxLag = max(maxLag, l.Lag)
			gauge(c.convLag, l.Lag.Seconds(), id.String())
		}
		gauge(c.convMaxLag, maxLag.Seconds())
		unknown := 0
		for _, m := range n.members.Members() {
			if (m.State == swim.Alive || m.State == swim.Suspect) && !known[m.ID] && m.ID != n.ID() {
				unknown++
			}
		}
		gauge(c.convUnknown, float64(unknown))
		cs := conv.Stats()
		counter(c.convAnnouncements, cs.Announcements, "sent")
		counter(c.convAnnouncements, cs.Received, "received")
		counter(c.convAnnouncedBytes, cs.AnnouncedBytes, "sent")
		counter(c.convAnnouncedBytes, cs.ReceivedBytes, "received")
		counter(c.convRejected, cs.Rejected)
		counter(c.convHelloBytes, cs.HelloBytes)
	}
}

// convergence asks every connected, admitted peer for its Merkle root (at
// once, for at most statusTimeout, and not after the node began closing)
// and returns how many answered and how many of those have this node's
// root. Under writes, roots differ for as long as the writes take to
// spread: a gauge to watch over time.
func (n *Node) convergence() (compared, converged int) {
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	go func() {
		select {
		case <-n.metrics.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	var answered, same atomic.Int64
	var wg sync.WaitGroup
	for _, p := range n.host.Network().Peers() {
		if n.admission.Check(p) != nil {
			continue
		}
		wg.Go(func() {
			st, err := n.sync.QueryStatus(ctx, p)
			if err != nil {
				return
			}
			answered.Add(1)
			n.catchUp.notePeerKeys(p, st.GetKeys())
			// Compared after the answer: the local root as close in time to
			// the peer's as can be.
			if st.GetMerkleRoot() == n.store.MerkleRoot() {
				same.Add(1)
			}
		})
	}
	wg.Wait()
	return int(answered.Load()), int(same.Load())
}
