// Command simchart draws the figures of BenchmarkSimCluster against the
// cluster size as an SVG: it reads `go test -bench BenchmarkSimCluster`
// output and writes four small charts (convergence, gossip cost, crash
// detection, heal after a partition), the x axis logarithmic in N.
//
//	simchart -in testdata/bench.txt -out scale.svg
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func main() {
	in := flag.String("in", "testdata/bench.txt", "benchmark output to read")
	out := flag.String("out", "scale.svg", "SVG to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "simchart:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := Parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	return os.WriteFile(out, []byte(SVG(rows)), 0o644)
}

// Row is one sub-benchmark's metrics, by unit.
type Row struct {
	N       int
	Metrics map[string]float64
}

var benchLine = regexp.MustCompile(`^BenchmarkSimCluster/N=(\d+)(?:-\d+)?\s+\d+\s+(.*)$`)

// Parse reads the rows of BenchmarkSimCluster from benchmark output; a
// size that appears twice keeps its last row.
func Parse(r io.Reader) ([]Row, error) {
	byN := map[int]Row{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		row := Row{N: n, Metrics: map[string]float64{}}
		fields := strings.Fields(m[2])
		for k := 0; k+1 < len(fields); k += 2 {
			v, err := strconv.ParseFloat(fields[k], 64)
			if err != nil {
				return nil, fmt.Errorf("row of %d nodes: value %q: %w", n, fields[k], err)
			}
			row.Metrics[fields[k+1]] = v
		}
		byN[n] = row
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(byN) == 0 {
		return nil, errors.New("no BenchmarkSimCluster rows")
	}
	var rows []Row
	for _, r := range byN {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b Row) int { return a.N - b.N })
	return rows, nil
}

// series is one line of a panel: a metric and its colour.
type series struct{ unit, label, colour string }

type panel struct {
	title  string
	series []series
	target float64 // a dashed line, 0 for none
	tlabel string
}

var panels = []panel{
	{title: "convergence, ms (put ack → on every node)", series: []series{
		{"conv-p50-ms", "p50", "#1f77b4"}, {"conv-p99-ms", "p99", "#d62728"}, {"conv-max-ms", "max", "#7f7f7f"}},
		target: 60, tlabel: "target p99 60 ms"},
	{title: "gossip bytes sent per node per write", series: []series{
		{"gossip-B/node/write", "writes topic", "#1f77b4"}},
	},
	{title: "crash detection, s (every observer marks it dead)", series: []series{
		{"detect-s", "measured", "#1f77b4"}, {"detect-bound-s", "detector bound", "#7f7f7f"}}},
	{title: "heal of a 50/50 partition, s", series: []series{
		{"heal-s", "writes everywhere", "#1f77b4"}}},
}

const (
	pw, ph     = 360, 220 // panel size
	ml, mr     = 56, 16   // margins
	mt, mb     = 28, 40
	cols, gapX = 2, 20
)

// SVG draws the panels for rows.
func SVG(rows []Row) string {
	var b strings.Builder
	nrows := (len(panels) + cols - 1) / cols
	w, h := cols*pw+(cols-1)*gapX, nrows*ph+20
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="4" y="%d" fill="#555">BenchmarkSimCluster: links 5 ms ± 1 ms, 1 %% loss; x: nodes (log scale)</text>`+"\n", h-6)
	for k, p := range panels {
		x0, y0 := (k%cols)*(pw+gapX), (k/cols)*ph
		drawPanel(&b, p, rows, x0, y0)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func drawPanel(b *strings.Builder, p panel, rows []Row, x0, y0 int) {
	left, top := float64(x0+ml), float64(y0+mt)
	width, height := float64(pw-ml-mr), float64(ph-mt-mb)
	fmt.Fprintf(b, `<text x="%g" y="%g" font-weight="bold">%s</text>`+"\n", left-40, top-10, p.title)
	ymax := p.target
	for _, r := range rows {
		for _, s := range p.series {
			ymax = max(ymax, r.Metrics[s.unit])
		}
	}
	ymax = niceCeil(ymax * 1.1)
	nmin, nmax := float64(rows[0].N), float64(rows[len(rows)-1].N)
	if nmax == nmin {
		nmax = nmin * 10
	}
	x := func(n int) float64 {
		return left + width*(math.Log10(float64(n))-math.Log10(nmin))/(math.Log10(nmax)-math.Log10(nmin))
	}
	y := func(v float64) float64 { return top + height - height*v/ymax }
	fmt.Fprintf(b, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#bbb"/>`+"\n", left, top, width, height)
	for k := 0; k <= 4; k++ {
		v := ymax * float64(k) / 4
		fmt.Fprintf(b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#eee"/>`+"\n", left, y(v), left+width, y(v))
		fmt.Fprintf(b, `<text x="%g" y="%.1f" text-anchor="end">%s</text>`+"\n", left-4, y(v)+4, label(v))
	}
	for _, r := range rows {
		fmt.Fprintf(b, `<text x="%.1f" y="%g" text-anchor="middle">%d</text>`+"\n", x(r.N), top+height+14, r.N)
	}
	if p.target > 0 {
		fmt.Fprintf(b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#2ca02c" stroke-dasharray="4 3"/>`+"\n", left, y(p.target), left+width, y(p.target))
		fmt.Fprintf(b, `<text x="%g" y="%.1f" fill="#2ca02c" text-anchor="end">%s</text>`+"\n", left+width-4, y(p.target)-4, p.tlabel)
	}
	for k, s := range p.series {
		var pts []string
		for _, r := range rows {
			v, ok := r.Metrics[s.unit]
			if !ok {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(r.N), y(v)))
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(r.N), y(v), s.colour)
		}
		fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5"/>`+"\n", strings.Join(pts, " "), s.colour)
		fmt.Fprintf(b, `<text x="%g" y="%g" fill="%s">%s</text>`+"\n", left+6, top+14+float64(k)*13, s.colour, s.label)
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func label(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'g', 3, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
