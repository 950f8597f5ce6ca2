package node

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p/swim"
)

// scraped is one scrape of /metrics, parsed.
type scraped map[string]*dto.MetricFamily

// scrape gets n's /metrics over HTTP and parses it as Prometheus does.
func scrape(t testing.TB, n *Node) scraped {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr().String() + MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", MetricsPath, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", MetricsPath, err)
	}
	return fams
}

// get returns the value of the series of family name whose labels include
// labels (name=value pairs), summed over the matching series; a histogram's
// value is its sample count. ok is false when no series matches.
func (s scraped) get(name string, labels ...string) (v float64, ok bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
series:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue series
			}
		}
		ok = true
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			v += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			v += float64(m.GetHistogram().GetSampleCount())
		default:
			v += m.GetUntyped().GetValue()
		}
	}
	return v, ok
}

// must returns get's value and fails the test when no series matches.
func (s scraped) must(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, ok := s.get(name, labels...)
	if !ok {
		t.Fatalf("%s%v: not in the scrape", name, labels)
	}
	return v
}

// TestMetricsEndpoint scrapes two real nodes over HTTP and checks that the
// values move as writes, gossip, anti-entropy sessions, probes and watches
// happen.
func TestMetricsEndpoint(t *testing.T) {
	nodes, clients, _ := startMeshNodes(t, aeNodeOpts{groups: []int{0, 0}, fd: swim.LoopbackConfig()})
	a, b := nodes[0], nodes[1]
	// Gossip must carry the writes below: with no mesh yet, anti-entropy
	// (every 300 ms here) can bring them all first and gossip applies none.
	waitMesh(t, nodes, func(a, b int) bool { return true })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := scrape(t, a)
	beforeB := scrape(t, b)

	// Writes: the store's counters, its histograms and the gRPC server's.
	const puts = 20
	for i := range puts {
		if _, err := clients[0].Put(ctx, fmt.Sprintf("m/%02d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := clients[0].Delete(ctx, "m/00"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "b has a's writes", func() bool {
		r, err := b.Store().Get([]byte("m/19"))
		return err == nil && r != nil
	})
	after := scrape(t, a)
	grew := func(s0, s1 scraped, min float64, name string, labels ...string) {
		t.Helper()
		v0, _ := s0.get(name, labels...) // a series may appear with its first event
		if d := s1.must(t, name, labels...) - v0; d < min {
			t.Errorf("%s%v grew by %v; want at least %v", name, labels, d, min)
		}
	}
	grew(before, after, puts+1, "chorus_store_writes_total")
	grew(before, after, puts+1, "chorus_store_revision")
	grew(before, after, puts, "chorus_store_keys")
	grew(before, after, 1, "chorus_store_tombstones")
	grew(before, after, 1, "chorus_store_batches_total")
	grew(before, after, 1, "chorus_store_fsyncs_total")
	grew(before, after, 1, "chorus_store_batch_size_changes")
	grew(before, after, 1, "chorus_store_fsync_duration_seconds")
	grew(before, after, puts, "grpc_server_handled_total", "grpc_service", "chorus.kv.v1.KVService", "grpc_method", "Put", "grpc_code", "OK")
	grew(before, after, puts, "grpc_server_handling_seconds", "grpc_method", "Put")
	if size := after.must(t, "chorus_store_leveldb_size_bytes"); size <= 0 {
		t.Errorf("chorus_store_leveldb_size_bytes = %v; want the folder's size", size)
	}
	if v := after.must(t, "chorus_store_failed"); v != 0 {
		t.Errorf("chorus_store_failed = %v on a healthy store", v)
	}

	// Gossip: published by a, received and applied by b, with its lag.
	grew(before, after, 1, "chorus_gossip_published_messages_total")
	grew(before, after, 1, "chorus_gossip_published_entries_total")
	// Until GossipSub's mesh has formed, anti-entropy may bring the writes
	// first: one more write per poll gives gossip a message of its own.
	extra := 0
	testutil.Eventually(t, 30*time.Second, "b counts the gossip it applied", func() bool {
		extra++
		if _, err := clients[0].Put(ctx, fmt.Sprintf("m/gossip-%d", extra), []byte("v")); err != nil {
			t.Fatal(err)
		}
		s := scrape(t, b)
		rec, _ := s.get("chorus_gossip_received_entries_total")
		lag, _ := s.get("chorus_gossip_apply_lag_seconds")
		recBefore, _ := beforeB.get("chorus_gossip_received_entries_total")
		lagBefore, _ := beforeB.get("chorus_gossip_apply_lag_seconds")
		return rec > recBefore && lag > lagBefore
	})
	if v := after.must(t, "chorus_gossip_rejected_messages_total", "reason", "clock_ahead"); v != 0 {
		t.Errorf("gossip rejected for clock_ahead: %v", v)
	}

	// Anti-entropy (every 300 ms here) and membership probes (loopback
	// timing) go on by themselves; the convergence gauge sees b.
	testutil.Eventually(t, 30*time.Second, "sessions and probes are counted, and a sees b converged", func() bool {
		s := scrape(t, a)
		sessions, _ := s.get("chorus_antientropy_sessions_total", "outcome", "completed")
		sessions0, _ := before.get("chorus_antientropy_sessions_total", "outcome", "completed")
		durations, _ := s.get("chorus_antientropy_session_duration_seconds", "outcome", "completed")
		probes, _ := s.get("chorus_membership_probes_total")
		probes0, _ := before.get("chorus_membership_probes_total")
		conv, _ := s.get("chorus_antientropy_converged_peers")
		compared, _ := s.get("chorus_antientropy_compared_peers")
		return sessions > sessions0 && durations > 0 && probes > probes0 && conv == 1 && compared == 1
	})
	// Convergence bookkeeping: b announces its frontiers, a counts them and
	// shows b's lag, which falls to 0 once b holds every write a knows of.
	testutil.Eventually(t, 30*time.Second, "a holds b's announced lag at 0 and no unannounced member", func() bool {
		s := scrape(t, a)
		received, _ := s.get("chorus_convergence_announcements_total", "direction", "received")
		sent, _ := s.get("chorus_convergence_announcements_total", "direction", "sent")
		lag, ok := s.get("chorus_convergence_member_lag_seconds", "member", b.ID())
		unknown, _ := s.get("chorus_convergence_unannounced_members")
		maxLag, _ := s.get("chorus_convergence_max_lag_seconds")
		return received > 0 && sent > 0 && ok && lag == 0 && unknown == 0 && maxLag == 0
	})
	s := scrape(t, a)
	if v := s.must(t, "chorus_membership_members", "state", "alive"); v != 2 {
		t.Errorf("members alive = %v; want 2 (a and b)", v)
	}
	if v := s.must(t, "chorus_antientropy_bytes_total", "direction", "sent"); v <= 0 {
		t.Errorf("anti-entropy bytes sent = %v after sessions", v)
	}
	if v := s.must(t, "chorus_admission_members"); v != 2 {
		t.Errorf("admission members = %v; want 2", v)
	}
	if v := s.must(t, "chorus_node_info", "node_id", a.ID(), "version", Version); v != 1 {
		t.Errorf("chorus_node_info = %v", v)
	}
	if v := s.must(t, "chorus_node_ready"); v != 1 {
		t.Errorf("chorus_node_ready = %v after a sync", v)
	}

	// A watch: watchers and events sent.
	w, err := clients[0].Watch(ctx, "w/", client.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := clients[0].Put(ctx, "w/1", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if evs, err := w.Next(); err != nil || len(evs) != 1 {
		t.Fatalf("watch: %d events, %v; want the put", len(evs), err)
	}
	s = scrape(t, a)
	if v := s.must(t, "chorus_watch_watchers"); v < 1 {
		t.Errorf("watchers = %v with a watch open", v)
	}
	grew(before, s, 1, "chorus_watch_events_sent_total")

	// Admission: a node that was not admitted is refused, and counted.
	stranger := startNode(t, quietConfig(t.TempDir(), nil))
	if err := connectErr(a, stranger); err == nil {
		t.Fatal("a connected to a node that is not a member")
	}
	testutil.Eventually(t, 10*time.Second, "a counts the refused connection", func() bool {
		v, _ := scrape(t, a).get("chorus_admission_refused_connections_total", "reason", "not_member")
		return v >= 1
	})

	// The Go and process collectors.
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_resident_memory_bytes", "process_open_fds"} {
		s.must(t, name)
	}
}
