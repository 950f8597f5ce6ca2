package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/chorus-kv/chorus/internal/testutil"
)

// scrapeMetrics GETs an agent's /metrics and parses it as Prometheus does.
func scrapeMetrics(t testing.TB, a *agent) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + a.httpAddr(t) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// metricValue is the value of the first series of name whose labels
// include labels (name=value pairs); -1 when there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
series:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !hasLabel(m, labels[i], labels[i+1]) {
				continue series
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestMetrics runs two agents and scrapes their /metrics: writes through
// the CLI move the store and gRPC metrics, the second node's anti-entropy
// session and the first's probes are counted, and the first sees the
// second converged.
func TestMetrics(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "join-secret")
	if err := os.WriteFile(secret, runCLIOK(t, "join-secret").stdout, 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, t.TempDir(), "--join-secret", secret)
	before := scrapeMetrics(t, a)
	if v := metricValue(before, "chorus_node_info", "node_id", a.nodeID); v != 1 {
		t.Fatalf("chorus_node_info for %s: %v", a.nodeID, v)
	}
	const puts = 5
	for i := range puts {
		a.mustCLI(t, nil, "put", fmt.Sprintf("/m/%d", i), "v")
	}
	after := scrapeMetrics(t, a)
	for _, c := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"chorus_store_writes_total", nil, puts},
		{"chorus_store_revision", nil, puts},
		{"chorus_store_keys", nil, puts},
		{"chorus_store_fsync_duration_seconds", nil, 1},
		{"grpc_server_handled_total", []string{"grpc_method", "Put", "grpc_code", "OK"}, puts},
	} {
		if d := metricValue(after, c.name, c.labels...) - max(metricValue(before, c.name, c.labels...), 0); d < c.min {
			t.Errorf("%s%v grew by %v after %d puts; want at least %v", c.name, c.labels, d, puts, c.min)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if metricValue(after, name) < 0 {
			t.Errorf("%s missing", name)
		}
	}

	b := startAgent(t, t.TempDir(), "--join-secret", secret, "--bootstrap", a.p2pAddr(t))
	testutil.EventuallyWhy(t, 60*time.Second, 200*time.Millisecond, "b completed a session and holds every key, and a probes and counts b converged", func() (bool, string) {
		fa, fb := scrapeMetrics(t, a), scrapeMetrics(t, b)
		sessions := metricValue(fb, "chorus_antientropy_sessions_total", "outcome", "completed")
		keys := metricValue(fb, "chorus_store_keys")
		probes := metricValue(fa, "chorus_membership_probes_total")
		converged := metricValue(fa, "chorus_antientropy_converged_peers")
		return sessions >= 1 && keys >= puts && probes > 0 && converged == 1,
			fmt.Sprintf("b's completed sessions %v, keys %v; a's probes %v, converged peers %v", sessions, keys, probes, converged)
	})
}
