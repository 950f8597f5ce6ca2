package node

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// repoFile reads a file of the repository, from this package's folder.
func repoFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricName matches the metric names the docs and dashboards use.
var metricName = regexp.MustCompile(`\b(?:chorus|grpc_server|go|process)_[a-z0-9_]+`)

// family strips a histogram's series suffix.
func family(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(name, suffix); ok {
			return f
		}
	}
	return name
}

// TestMetricsDocs checks the README's table of metrics against what a node
// serves, both ways, and that the queries, rules and dashboard in
// deploy/prometheus and deploy/grafana name only metrics a node serves. It
// also checks RegisterMetrics and that the etcd API's calls are counted.
func TestMetricsDocs(t *testing.T) {
	cfg := quietConfig(t.TempDir(), nil)
	cfg.ListenEtcd = "127.0.0.1:0"
	n := startNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := dialNode(t, n).Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(n.EtcdAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := pb.NewKVClient(conn).Put(ctx, &pb.PutRequest{Key: []byte("e"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}

	extra := prometheus.NewGauge(prometheus.GaugeOpts{Name: "chorus_test_extra", Help: "A collector a test registers."})
	extra.Set(7)
	if err := n.RegisterMetrics(extra); err != nil {
		t.Fatal(err)
	}
	dup := prometheus.NewGauge(prometheus.GaugeOpts{Name: "chorus_store_keys", Help: "A second chorus_store_keys."})
	if err := n.RegisterMetrics(dup); err == nil {
		t.Error("RegisterMetrics took a collector that describes chorus_store_keys again")
	}

	s := scrape(t, n)
	if v := s.must(t, "chorus_test_extra"); v != 7 {
		t.Errorf("the registered collector's gauge: %v; want 7", v)
	}
	delete(s, "chorus_test_extra")
	if v := s.must(t, "grpc_server_handled_total", "grpc_service", "etcdserverpb.KV", "grpc_method", "Put", "grpc_code", "OK"); v != 1 {
		t.Errorf("etcd API Put calls counted: %v; want 1", v)
	}
	served := map[string]bool{}
	var chorus []string
	for name := range s {
		served[name] = true
		if strings.HasPrefix(name, "chorus_") {
			chorus = append(chorus, name)
		}
	}
	slices.Sort(chorus)

	// The README's table: the first column of the rows of "## Metrics".
	readme := repoFile(t, "README.md")
	start := strings.Index(readme, "\n## Metrics\n")
	if start < 0 {
		t.Fatal("README has no Metrics section")
	}
	section := readme[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	var listed []string
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.SplitN(line, "|", 3)[1]
		for _, m := range metricName.FindAllString(first, -1) {
			listed = append(listed, m)
			if !served[m] {
				t.Errorf("README lists %s, which a node does not serve", m)
			}
		}
	}
	for _, m := range chorus {
		if !slices.Contains(listed, m) {
			t.Errorf("a node serves %s, which README's Metrics table does not list", m)
		}
	}

	// The queries, rules and dashboard.
	for _, path := range []string{"deploy/prometheus/README.md", "deploy/prometheus/rules.yml", "deploy/grafana/chorus.json"} {
		text := repoFile(t, path)
		names := metricName.FindAllString(text, -1)
		if len(names) == 0 {
			t.Errorf("%s names no metric", path)
		}
		for _, m := range names {
			if !served[family(m)] {
				t.Errorf("%s uses %s, which a node does not serve", path, m)
			}
		}
	}
	var dash struct {
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(repoFile(t, "deploy/grafana/chorus.json")), &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	for _, p := range dash.Panels {
		if p.Type != "row" && (len(p.Targets) == 0 || p.Targets[0].Expr == "") {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
	}
}

// TestMetricsOff: with the HTTP listener off the node has no registry, and
// says so.
func TestMetricsOff(t *testing.T) {
	cfg := quietConfig(t.TempDir(), nil)
	cfg.ListenHTTP = ListenHTTPOff
	n := startNode(t, cfg)
	if err := n.RegisterMetrics(prometheus.NewGauge(prometheus.GaugeOpts{Name: "x", Help: "x"})); !errors.Is(err, ErrMetricsOff) {
		t.Fatalf("RegisterMetrics with the listener off: %v; want ErrMetricsOff", err)
	}
	if n.MetricsGatherer() != nil || n.metrics != nil {
		t.Fatal("a node without an HTTP listener keeps a registry")
	}
}
