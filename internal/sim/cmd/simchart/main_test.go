package main

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantN   []int
		wantP99 []float64
		wantErr bool
	}{
		{name: "sizes sorted, suffix and other lines ignored", in: `goos: linux
BenchmarkSimCluster/N=100-2         	       1	         0 ns/op	        11.5 conv-p99-ms
BenchmarkSimCluster/N=10-2          	       1	         0 ns/op	        10.2 conv-p99-ms
PASS`, wantN: []int{10, 100}, wantP99: []float64{10.2, 11.5}},
		{name: "a later row of a size wins", in: `BenchmarkSimCluster/N=10 1 0 ns/op 1 conv-p99-ms
BenchmarkSimCluster/N=10 1 0 ns/op 2 conv-p99-ms`, wantN: []int{10}, wantP99: []float64{2}},
		{name: "no rows", in: "PASS\n", wantErr: true},
		{name: "bad value", in: "BenchmarkSimCluster/N=10 1 x conv-p99-ms\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := Parse(strings.NewReader(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if len(rows) != len(tc.wantN) {
				t.Fatalf("%d rows, want %d", len(rows), len(tc.wantN))
			}
			for k, r := range rows {
				if r.N != tc.wantN[k] || r.Metrics["conv-p99-ms"] != tc.wantP99[k] {
					t.Errorf("row %d = N %d p99 %v, want N %d p99 %v", k, r.N, r.Metrics["conv-p99-ms"], tc.wantN[k], tc.wantP99[k])
				}
			}
		})
	}
}

func TestSVGDrawsEveryPanel(t *testing.T) {
	rows := []Row{{N: 10, Metrics: map[string]float64{"conv-p99-ms": 11, "detect-s": 7}}, {N: 100, Metrics: map[string]float64{"conv-p99-ms": 20}}}
	svg := SVG(rows)
	for _, p := range panels {
		if !strings.Contains(svg, p.title) {
			t.Errorf("panel %q missing", p.title)
		}
	}
	if strings.Count(svg, "<circle") != 3 {
		t.Errorf("want 3 points (the metrics present), got %d", strings.Count(svg, "<circle"))
	}
}
