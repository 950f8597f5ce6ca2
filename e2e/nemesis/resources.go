package nemesis

import (
	"fmt"
	"slices"
	"time"
)

// Sample is one reading of a node process's resources.
type Sample struct {
	Elapsed time.Duration // since the run began
	Node    int
	PID     int
	RSSKiB  int64 // VmRSS from /proc/PID/status
	FDs     int   // entries of /proc/PID/fd
}

// FlatCriterion bounds a process's growth. A process's life (its samples,
// first to last) is cut in quarters; the first quarter is warm-up (caches,
// connections and the change log filling). Its curve is flat when, over the
// last quarter compared with the second:
//
//	median RSS(last) ≤ median RSS(second) × RSSFactor + RSSSlackKiB
//	max FDs(last)    ≤ max FDs(second) × FDFactor + FDSlack
//
// Medians for memory, as Go's heap saws up and down between collections;
// maxima for descriptors, which are counted exactly. Only processes that
// lived at least MinLife are judged: a node restarted by the schedule starts
// a new curve.
type FlatCriterion struct {
	MinLife     time.Duration
	RSSFactor   float64
	RSSSlackKiB int64
	FDFactor    float64
	FDSlack     int
}

// DefaultFlatCriterion is the soak's criterion: over a 30-minute run, a leak
// of 1 KiB per write at 250 writes/s would add about 100 MiB between the
// second and the last quarter and fail it.
var DefaultFlatCriterion = FlatCriterion{
	MinLife:     10 * time.Minute,
	RSSFactor:   1.25,
	RSSSlackKiB: 16 << 10,
	FDFactor:    1.25,
	FDSlack:     16,
}

// Growth is one process's judged curve.
type Growth struct {
	Node, PID                int
	Life                     time.Duration
	RSSSecondKiB, RSSLastKiB int64 // medians
	FDSecond, FDLast         int   // maxima
	Flat                     bool
}

func (g Growth) String() string {
	verdict := "flat"
	if !g.Flat {
		verdict = "GROWING"
	}
	return fmt.Sprintf("n%d pid %d over %v: RSS median %.1f → %.1f MiB, descriptors max %d → %d: %s",
		g.Node, g.PID, g.Life.Round(time.Second), float64(g.RSSSecondKiB)/1024, float64(g.RSSLastKiB)/1024, g.FDSecond, g.FDLast, verdict)
}

// Judge applies the criterion to every process in samples that lived long
// enough, in node and then start order.
func (c FlatCriterion) Judge(samples []Sample) []Growth {
	type proc struct{ node, pid int }
	byProc := map[proc][]Sample{}
	var order []proc
	for _, s := range samples {
		p := proc{s.Node, s.PID}
		if _, ok := byProc[p]; !ok {
			order = append(order, p)
		}
		byProc[p] = append(byProc[p], s)
	}
	slices.SortStableFunc(order, func(a, b proc) int { return a.node - b.node })
	var out []Growth
	for _, p := range order {
		ss := byProc[p]
		life := ss[len(ss)-1].Elapsed - ss[0].Elapsed
		if life < c.MinLife || len(ss) < 8 {
			continue
		}
		q := len(ss) / 4
		second, last := ss[q:2*q], ss[len(ss)-q:]
		g := Growth{Node: p.node, PID: p.pid, Life: life,
			RSSSecondKiB: medianRSS(second), RSSLastKiB: medianRSS(last),
			FDSecond: maxFDs(second), FDLast: maxFDs(last)}
		g.Flat = float64(g.RSSLastKiB) <= float64(g.RSSSecondKiB)*c.RSSFactor+float64(c.RSSSlackKiB) &&
			float64(g.FDLast) <= float64(g.FDSecond)*c.FDFactor+float64(c.FDSlack)
		out = append(out, g)
	}
	return out
}

func medianRSS(ss []Sample) int64 {
	v := make([]int64, len(ss))
	for i, s := range ss {
		v[i] = s.RSSKiB
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func maxFDs(ss []Sample) int {
	m := 0
	for _, s := range ss {
		m = max(m, s.FDs)
	}
	return m
}
