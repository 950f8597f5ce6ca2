package node

import (
	"errors"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/p2p"
)

// MetricsPath is where the HTTP listener serves Prometheus metrics.
const MetricsPath = "/metrics"

// metrics is a node's Prometheus registry and the instruments that the
// packages' hooks feed (histograms: a distribution cannot be read from a
// counter at scrape time). Every other Chorus metric is read at scrape time
// from the counters the packages keep (nodeCollector). A nil *metrics (the
// HTTP listener is off) gives nil hooks and no interceptors: metrics then
// cost nothing.
//
// Adding a metric: a value some component already keeps goes into
// nodeCollector (a desc in newNodeCollector, a line in Collect); a
// distribution gets a hook in the component's Config and a histogram here;
// a component with a collector of its own registers it with
// Node.RegisterMetrics.
type metrics struct {
	reg  *prometheus.Registry
	grpc *grpcprom.ServerMetrics
	// closed is closed when the node closes: a scrape's peer queries stop,
	// so that no scrape outlives the node.
	closed chan struct{}

	batchSize       prometheus.Histogram
	fsync           prometheus.Histogram
	applyLag        prometheus.Histogram
	sessionDuration *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}))),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chorus_store_batch_size_changes",
			Help:    "Changes per LevelDB batch the store wrote (group commit: the writes that arrived during one fsync share the next).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13), // 1 to 4096 (the batch cap)
		}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chorus_store_fsync_duration_seconds",
			Help:    "Duration of the store's fsynced LevelDB writes (the batch's write and its fsync), like etcd_disk_wal_fsync_duration_seconds.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100 µs to 3.3 s
		}),
		applyLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chorus_gossip_apply_lag_seconds",
			Help:    "Time from a gossiped write (its HLC, by the origin's clock) to its apply here, per message; includes the clock offset between the two nodes (at most the max clock offset, 500 ms by default).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1 ms to 33 s
		}),
		sessionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chorus_antientropy_session_duration_seconds",
			Help:    "Duration of anti-entropy sessions this node started or served, by outcome (completed, failed).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1 ms to 33 s (the session timeout is 30 s)
		}, []string{"outcome"}),
	}
	m.closed = make(chan struct{})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpc, m.batchSize, m.fsync, m.applyLag, m.sessionDuration,
	)
	return m
}

// close ends the scrapes' peer queries (Node.Close, once, before the HTTP
// listener stops).
func (m *metrics) close() {
	if m != nil {
		close(m.closed)
	}
}

// storeHook is the store's OnWrite, nil without metrics.
func (m *metrics) storeHook() func(store.WriteInfo) {
	if m == nil {
		return nil
	}
	return func(w store.WriteInfo) {
		if w.Changes > 0 {
			m.batchSize.Observe(float64(w.Changes))
		}
		if w.Sync {
			m.fsync.Observe(w.Duration.Seconds())
		}
	}
}

// applyHook is the replicator's OnApply, nil without metrics.
func (m *metrics) applyHook() func(int, time.Duration) {
	if m == nil {
		return nil
	}
	return func(_ int, lag time.Duration) { m.applyLag.Observe(lag.Seconds()) }
}

// sessionHook is the syncer's OnSession, nil without metrics.
func (m *metrics) sessionHook() func(p2p.SyncStats, error) {
	if m == nil {
		return nil
	}
	completed, failed := m.sessionDuration.WithLabelValues("completed"), m.sessionDuration.WithLabelValues("failed")
	return func(st p2p.SyncStats, err error) {
		if err != nil {
			failed.Observe(st.Duration.Seconds())
			return
		}
		completed.Observe(st.Duration.Seconds())
	}
}

// grpcOptions are the interceptors that count and time the calls of the
// node's gRPC servers (the native API and the etcd API), nil without
// metrics.
func (m *metrics) grpcOptions() []grpc.ServerOption {
	if m == nil {
		return nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.grpc.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.grpc.StreamServerInterceptor()),
	}
}

// serveMetrics registers the node's collector and serves the registry at
// MetricsPath on the HTTP mux.
func (n *Node) serveMetrics() {
	if n.metrics == nil || n.httpMux == nil {
		return
	}
	n.metrics.reg.MustRegister(newNodeCollector(n))
	n.httpMux.Handle("GET "+MetricsPath, promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{
		// A collector that fails leaves its metrics out; the rest are served.
		ErrorHandling: promhttp.ContinueOnError,
		// Bounds a scrape when the machine is overloaded; the convergence
		// gauges wait at most statusTimeout for peers.
		Timeout: 10 * time.Second,
	}))
}

// ErrMetricsOff is returned by RegisterMetrics when the node serves no
// metrics (its HTTP listener is off).
var ErrMetricsOff = errors.New("node: metrics are off (the HTTP listener is off)")

// RegisterMetrics adds collectors to the node's Prometheus registry, served
// at MetricsPath with the node's own. Each node has a registry of its own
// (not Prometheus's global one), so several nodes in one process do not
// collide. A collector whose metrics another already describes is refused
// (prometheus.AlreadyRegisteredError).
func (n *Node) RegisterMetrics(cs ...prometheus.Collector) error {
	if n.metrics == nil {
		return ErrMetricsOff
	}
	for _, c := range cs {
		if err := n.metrics.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// MetricsGatherer returns the node's registry, for a caller that gathers
// the metrics in-process; nil when metrics are off.
func (n *Node) MetricsGatherer() prometheus.Gatherer {
	if n.metrics == nil {
		return nil
	}
	return n.metrics.reg
}
