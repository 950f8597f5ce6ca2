package main

import (
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{1, 3, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1}, 5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v; want %v", tc.in, got, tc.want)
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v; want NaN", got)
	}
}

func TestNewRow(t *testing.T) {
	for _, tc := range []struct {
		name                string
		unit                string
		e, c                []float64
		etcd, chorus        float64
		adv, advMin, advMax float64 // NaN: none
		runs                int
	}{
		{"throughput: Chorus ÷ etcd per pair", "req/s", []float64{100, 200, 100}, []float64{300, 200, 50}, 100, 200, 1, 0.5, 3, 3},
		{"latency: etcd ÷ Chorus per pair", "ms", []float64{2, 4}, []float64{1, 4}, 3, 2.5, 1.5, 1, 2, 2},
		{"CPU is lower-better", "µs", []float64{100}, []float64{40}, 100, 40, 2.5, 2.5, 2.5, 1},
		{"a zero divisor forms no pair", "ms", []float64{2, 3}, []float64{0, 1}, 2.5, 0.5, 3, 3, 3, 1},
		{"no pair at all", "ms", []float64{2}, []float64{0}, 2, 0, math.NaN(), math.NaN(), math.NaN(), 0},
		{"unequal run counts pair by index", "req/s", []float64{10, 20}, []float64{30}, 15, 30, 3, 3, 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRow("w", "m", tc.unit, tc.e, tc.c)
			same := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }
			if !same(r.etcd, tc.etcd) || !same(r.chorus, tc.chorus) || !same(r.adv, tc.adv) || !same(r.advMin, tc.advMin) || !same(r.advMax, tc.advMax) || r.runs != tc.runs {
				t.Errorf("newRow = etcd %v chorus %v adv %v (%v – %v) over %d; want %v %v %v (%v – %v) over %d",
					r.etcd, r.chorus, r.adv, r.advMin, r.advMax, r.runs, tc.etcd, tc.chorus, tc.adv, tc.advMin, tc.advMax, tc.runs)
			}
		})
	}
}

// measured fills samples as two runs of every group would.
func measured() *samples {
	s := &samples{}
	for run := range 2 {
		f := float64(run) // a little spread
		s.add(systemDisk, wDisk, "p50", "ms", 0.40+0.02*f)
		s.add(systemDisk, wDisk, "p99", "ms", 0.9)
		for _, sys := range []string{"etcd", "chorus"} {
			chorus := sys == "chorus"
			pick := func(e, c float64) float64 {
				if chorus {
					return c
				}
				return e
			}
			lone, cl := workload(labelLone, wPut1), workload(labelCluster, wPut1)
			s.add(sys, lone, "throughput", "req/s", pick(1000, 1600))
			s.add(sys, lone, "p50", "ms", pick(0.9, 0.6+0.01*f)) // ≤ 0.41 + 0.25
			s.add(sys, lone, "p99", "ms", pick(3, 2))
			s.add(sys, workload(labelLone, wPut100), cpuMetric(1), "µs", pick(100, 60)) // 1.67×: missed
			s.add(sys, cl, "p50", "ms", pick(2.2, 1.0+0.1*f))                           // 2.2× and 2×: met
			s.add(sys, workload(labelCluster, wPut100), "throughput", "req/s", pick(4000, 4400))
			s.add(sys, workload(labelCluster, wPut100), cpuMetric(3), "µs", pick(360, 350))
			s.add(sys, workload(labelCluster, wRange), "throughput", "req/s", pick(10000, 10000))
			s.add(sys, workload(labelCluster, wWatch), "p99", "ms", pick(9, 12))
		}
	}
	return s
}

func TestMarkdownTargetsAndReplot(t *testing.T) {
	cfg := config{runs: 2, fsyncs: 2000, duration: 10 * time.Second, watchPuts: 1000, watchInterval: 5 * time.Millisecond}
	md, rs, d := markdown(cfg, measured(), time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC))
	if math.Abs(d.p50-0.41) > 1e-9 || d.runs != 2 {
		t.Errorf("disk p50 %v over %d runs; want 0.41 over 2", d.p50, d.runs)
	}
	for _, want := range []string{
		"- lone node, 1 client: Chorus's put p50 ≤ the raw append + fsync p50 + 0.25 ms: 0.60 ms against 0.41 + 0.25 = 0.66 ms (etcd's: 0.90 ms): **met**",
		"- lone node, 100 clients: server CPU per put, etcd ÷ Chorus: 1.67× (spread 1.67 – 1.67×; etcd 100 µs, Chorus 60 µs); target ≥ 2.5× (Chorus ≤ 0.4× etcd's): **missed**",
		"- 3 nodes, 100 clients: put throughput, Chorus ÷ etcd: 1.10×",
		"target ≥ 3×: **missed**",
		"- 3 nodes, 1 client: put p50, etcd ÷ Chorus: 2.10× (spread 2.00 – 2.20×; etcd 2.20 ms, Chorus 1.05 ms); target ≥ 2× (Chorus ≤ ½ etcd's): **met**",
		"- 3 nodes, 100 clients: serializable range throughput, Chorus ÷ etcd: 1.00×",
		"target ≥ 1×: **met**",
		"- 3 nodes: watch p99, etcd ÷ Chorus: 0.75×",
		"| 3 nodes: put, 1 client | p50 | 2.20 ms | 1.05 ms | 2.10× | 2.00 – 2.20× |",
		"2 runs of every phase",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}

	back, diskP50, err := rowsFromTable(md)
	if err != nil {
		t.Fatal(err)
	}
	if diskP50 != 0.41 {
		t.Errorf("disk p50 read back: %v; want 0.41", diskP50)
	}
	if len(back) != len(rs) {
		t.Fatalf("%d rows read back; want %d", len(back), len(rs))
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 0.006*max(1, math.Abs(b)) }
	for i, r := range rs {
		g := back[i]
		if g.workload != r.workload || g.metric != r.metric || g.unit != r.unit || !near(g.etcd, r.etcd) || !near(g.chorus, r.chorus) ||
			!near(g.adv, r.adv) || !near(g.advMin, r.advMin) || !near(g.advMax, r.advMax) {
			t.Errorf("row %d read back as %+v; want %+v", i, g, r)
		}
	}
	chart := svg(back, diskP50)
	if !strings.Contains(chart, "stroke-dasharray") || !strings.Contains(chart, "(2.00 – 2.20)") {
		t.Errorf("the chart lacks the disk mark or a spread:\n%s", chart)
	}
}

func TestTargetsNotMeasured(t *testing.T) {
	got := targets(nil, disk{})
	if n := strings.Count(got, "not measured"); n != 6 {
		t.Errorf("%d targets not measured; want 6:\n%s", n, got)
	}
}

// A table of one run written before the spread column still replots.
func TestRowsFromOldTable(t *testing.T) {
	md := `| workload | metric | etcd | Chorus | Chorus's advantage |
| --- | --- | --- | --- | --- |
| put, 1 client | throughput | 401 req/s | 431 req/s | 1.08× |
| put, 100 clients | server CPU per put (3 servers) | 367 µs | 356 µs | 1.03× |
`
	rs, diskP50, err := rowsFromTable(md)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || diskP50 != 0 || rs[0].chorus != 431 || rs[1].unit != "µs" || rs[1].adv != 1.03 || !math.IsNaN(rs[0].advMin) {
		t.Errorf("read %+v, disk %v", rs, diskP50)
	}
}

func TestParsePhases(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{"fsync,lone,cluster", []string{"cluster", "fsync", "lone"}, true},
		{"lone, cluster", []string{"cluster", "lone"}, true},
		{"fsync", []string{"fsync"}, true},
		{"lone,raft", nil, false},
		{"", nil, false},
	} {
		got, err := parsePhases(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("parsePhases(%q): error %v; want ok %v", tc.in, err, tc.ok)
			continue
		}
		var names []string
		for p := range got {
			names = append(names, p)
		}
		slices.Sort(names)
		if tc.ok && !slices.Equal(names, tc.want) {
			t.Errorf("parsePhases(%q) = %v; want %v", tc.in, names, tc.want)
		}
	}
}

func TestAppendFsync(t *testing.T) {
	dir := t.TempDir()
	lats, err := appendFsync(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(lats) != 5 || !slices.IsSorted(lats) || lats[0] <= 0 {
		t.Errorf("latencies %v; want 5, sorted, positive", lats)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the probe left %d files behind", len(left))
	}
}
