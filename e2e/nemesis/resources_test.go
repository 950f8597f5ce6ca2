package nemesis

import (
	"testing"
	"time"
)

func TestFlatCriterionJudge(t *testing.T) {
	crit := FlatCriterion{MinLife: time.Minute, RSSFactor: 1.25, RSSSlackKiB: 1024, FDFactor: 1.25, FDSlack: 4}
	// curve makes 40 samples, 5 s apart, of one process.
	curve := func(node, pid int, rss func(i int) int64, fds func(i int) int) []Sample {
		var out []Sample
		for i := range 40 {
			out = append(out, Sample{Elapsed: time.Duration(i) * 5 * time.Second, Node: node, PID: pid, RSSKiB: rss(i), FDs: fds(i)})
		}
		return out
	}
	flatRSS := func(i int) int64 { return 50_000 + int64(i%3)*2_000 } // a sawtooth
	flatFDs := func(int) int { return 20 }
	tests := []struct {
		name    string
		samples []Sample
		want    []bool // Flat per judged process
	}{
		{"flat after warm-up", curve(0, 10, func(i int) int64 {
			if i < 10 {
				return 10_000 + int64(i)*4_000 // warm-up growth is forgiven
			}
			return flatRSS(i)
		}, flatFDs), []bool{true}},
		{"memory keeps growing", curve(0, 10, func(i int) int64 { return 50_000 + int64(i)*2_000 }, flatFDs), []bool{false}},
		{"descriptors keep growing", curve(1, 11, flatRSS, func(i int) int { return 20 + i }), []bool{false}},
		{"a short-lived process is not judged", curve(0, 10, flatRSS, flatFDs)[:10], nil},
		{"processes judged apart", append(curve(0, 10, flatRSS, flatFDs), curve(1, 11, flatRSS, func(i int) int { return 20 + i })...), []bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := crit.Judge(tt.samples)
			if len(got) != len(tt.want) {
				t.Fatalf("Judge = %v, want %d processes judged", got, len(tt.want))
			}
			for i, g := range got {
				if g.Flat != tt.want[i] {
					t.Errorf("process %d: %v, want flat = %v", i, g, tt.want[i])
				}
			}
		})
	}
}
