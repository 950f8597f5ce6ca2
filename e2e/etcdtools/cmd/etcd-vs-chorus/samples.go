package main

import (
	"math"
	"slices"
)

// samples collects every figure measured: by row of the table (workload and
// metric) and by system ("etcd", "chorus", or "disk" for the raw disk
// probe), one value per run, in the order of the runs.
type samples struct {
	order []*series // rows in the order first measured
	by    map[[2]string]*series
}

type series struct {
	workload, metric, unit string
	vals                   map[string][]float64 // by system
}

func (s *samples) add(system, workload, metric, unit string, v float64) {
	k := [2]string{workload, metric}
	if s.by == nil {
		s.by = map[[2]string]*series{}
	}
	sr := s.by[k]
	if sr == nil {
		sr = &series{workload: workload, metric: metric, unit: unit, vals: map[string][]float64{}}
		s.by[k] = sr
		s.order = append(s.order, sr)
	}
	sr.vals[system] = append(sr.vals[system], v)
}

// median returns the median of xs (the mean of the two middle values for an
// even count), NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// advantage is how many times better Chorus's figure c is than etcd's e
// (> 1: Chorus is better): c ÷ e where higher is better, e ÷ c otherwise.
// NaN when the divisor is not positive.
func advantage(e, c float64, higherBetter bool) float64 {
	if higherBetter {
		e, c = c, e
	}
	if c <= 0 {
		return math.NaN()
	}
	return e / c
}

// higherBetter tells whether a larger figure in unit is better.
func higherBetter(unit string) bool { return unit == "req/s" }

// row is one line of the table: a metric measured on both systems.
type row struct {
	workload, metric string
	unit             string
	etcd, chorus     float64 // medians over the runs
	// Chorus's advantage per pair of runs (etcd's and Chorus's figures of
	// the same run): its median, min and max; NaN when no pair could be
	// formed.
	adv, advMin, advMax float64
	runs                int // pairs of runs
}

// rows returns the table: every series measured on both etcd and Chorus.
func (s *samples) rows() []row {
	var out []row
	for _, sr := range s.order {
		e, c := sr.vals["etcd"], sr.vals["chorus"]
		if len(e) == 0 || len(c) == 0 {
			continue
		}
		out = append(out, newRow(sr.workload, sr.metric, sr.unit, e, c))
	}
	return out
}

// newRow summarizes per-run figures e and c (run i of each forms a pair).
func newRow(workload, metric, unit string, e, c []float64) row {
	r := row{workload: workload, metric: metric, unit: unit, etcd: median(e), chorus: median(c)}
	var advs []float64
	for i := range min(len(e), len(c)) {
		if a := advantage(e[i], c[i], higherBetter(unit)); !math.IsNaN(a) && !math.IsInf(a, 0) {
			advs = append(advs, a)
		}
	}
	r.runs = len(advs)
	r.adv, r.advMin, r.advMax = median(advs), math.NaN(), math.NaN()
	if len(advs) > 0 {
		r.advMin, r.advMax = slices.Min(advs), slices.Max(advs)
	}
	return r
}

// find returns the row of workload and metric, or false.
func find(rs []row, workload, metric string) (row, bool) {
	for _, r := range rs {
		if r.workload == workload && r.metric == metric {
			return r, true
		}
	}
	return row{}, false
}
