package main

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func format(v float64, unit string) string {
	switch unit {
	case "req/s":
		return fmt.Sprintf("%.0f req/s", v)
	case "µs":
		return fmt.Sprintf("%.0f µs", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func formatAdv(a float64) string {
	if math.IsNaN(a) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", a)
}

func formatSpread(lo, hi float64) string {
	if math.IsNaN(lo) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f – %.2f×", lo, hi)
}

// disk is the raw disk probe's figures: medians over the runs, in ms (zero:
// not measured).
type disk struct {
	p50, p99       float64
	p50lo, p50hi   float64
	runs, perProbe int
}

func diskFigures(s *samples, perProbe int) disk {
	var d disk
	if sr := s.by[[2]string{wDisk, "p50"}]; sr != nil {
		v := sr.vals[systemDisk]
		d.p50, d.runs, d.perProbe = median(v), len(v), perProbe
		d.p50lo, d.p50hi = minMax(v)
	}
	if sr := s.by[[2]string{wDisk, "p99"}]; sr != nil {
		d.p99 = median(sr.vals[systemDisk])
	}
	return d
}

func minMax(v []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// diskLineRE reads the disk line back from a table this program wrote.
var diskLineRE = regexp.MustCompile(`(?m)^Raw disk.*: p50 ([0-9.]+) ms, p99 ([0-9.]+) ms`)

func (d disk) line() string {
	return fmt.Sprintf("Raw disk, the floor under a durable write (%d appends of %d B to a new file next to the data folders, each followed by fsync, per run): p50 %.2f ms, p99 %.2f ms (medians of %s; p50 from %.2f to %.2f ms).\n",
		d.perProbe, probeBytes, d.p50, d.p99, plural(d.runs, "run"), d.p50lo, d.p50hi)
}

func report(cfg config, s *samples) error {
	if cfg.only != "" {
		// One system: its medians, no ratios, no files.
		for _, sr := range s.order {
			for _, sys := range []string{systemDisk, "etcd", "chorus"} {
				v := sr.vals[sys]
				if len(v) == 0 {
					continue
				}
				lo, hi := minMax(v)
				fmt.Printf("%s: %s, %s: %s (%s – %s)\n", sys, sr.workload, sr.metric, format(median(v), sr.unit), format(lo, sr.unit), format(hi, sr.unit))
			}
		}
		return nil
	}
	md, rs, d := markdown(cfg, s, time.Now())
	fmt.Print(md)
	if len(rs) == 0 {
		return nil // nothing to chart (only the disk probe ran)
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.out, "etcd-vs-chorus.md"), []byte(md), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cfg.out, "etcd-vs-chorus.svg"), []byte(svg(rs, d.p50)), 0o644)
}

// markdown returns the report of the samples measured on the day of now,
// and its rows and disk figures.
func markdown(cfg config, s *samples, now time.Time) (string, []row, disk) {
	rs := s.rows()
	d := diskFigures(s, cfg.fsyncs)
	var lone, cluster bool
	for _, r := range rs {
		lone = lone || strings.HasPrefix(r.workload, labelLone+":")
		cluster = cluster || strings.HasPrefix(r.workload, labelCluster+":")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on one machine (%d CPUs, %s/%s): %s of every phase, interleaved (in each run, each phase on etcd, then on Chorus).",
		now.UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, plural(cfg.runs, "run"))
	if lone {
		b.WriteString(" Lone node: 1 etcd member vs 1 Chorus agent with no peers.")
	}
	if cluster {
		b.WriteString(" 3 nodes: 3 etcd members vs 3 Chorus nodes on loopback.")
	}
	fmt.Fprintf(&b, " Each system with its defaults, driven by the same go.etcd.io/etcd/client/v3 code; keys %d B, values %d B; %v per throughput phase; 100 clients share 10 connections;", keyBytes, valueBytes, cfg.duration)
	if cluster {
		fmt.Fprintf(&b, " watch latency over %d puts at one every %v, 2 watchers;", cfg.watchPuts, cfg.watchInterval)
	}
	fmt.Fprintf(&b, " load average %s before the run, %s after.\n\n", cfg.loadBefore, cfg.loadAfter)
	if d.runs > 0 {
		b.WriteString(d.line() + "\n")
	}
	if len(rs) > 0 {
		b.WriteString("| workload | metric | etcd | Chorus | Chorus's advantage | spread (min – max) |\n| --- | --- | --- | --- | --- | --- |\n")
		for _, r := range rs {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.workload, r.metric, format(r.etcd, r.unit), format(r.chorus, r.unit), formatAdv(r.adv), formatSpread(r.advMin, r.advMax))
		}
		b.WriteString("\netcd and Chorus: the medians of the runs. Chorus's advantage: throughput Chorus ÷ etcd, latency and CPU etcd ÷ Chorus, computed per pair of runs (etcd's and Chorus's figures of the same run); the median of the pairs and their spread. Above 1 means Chorus is better.\n")
	}
	b.WriteString("\nTargets (issue 12; met or missed on the medians):\n\n")
	b.WriteString(targets(rs, d))
	return b.String(), rs, d
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func verdict(met bool) string {
	if met {
		return "**met**"
	}
	return "**missed**"
}

// targets lists issue 12's targets, each met or missed with its figures.
func targets(rs []row, d disk) string {
	var b strings.Builder
	const notMeasured = ": not measured (its phases were not run)\n"

	what := "lone node, 1 client: Chorus's put p50 ≤ the raw append + fsync p50 + 0.25 ms"
	if r, ok := find(rs, workload(labelLone, wPut1), "p50"); ok && d.runs > 0 {
		limit := d.p50 + 0.25
		fmt.Fprintf(&b, "- %s: %.2f ms against %.2f + 0.25 = %.2f ms (etcd's: %.2f ms): %s\n", what, r.chorus, d.p50, limit, r.etcd, verdict(r.chorus <= limit))
	} else {
		b.WriteString("- " + what + notMeasured)
	}

	ratio := func(what, wl, metric string, want float64, how string) {
		r, ok := find(rs, wl, metric)
		if !ok {
			b.WriteString("- " + what + notMeasured)
			return
		}
		fmt.Fprintf(&b, "- %s: %s (spread %s; etcd %s, Chorus %s); target ≥ %g×%s: %s\n", what, formatAdv(r.adv), formatSpread(r.advMin, r.advMax),
			format(r.etcd, r.unit), format(r.chorus, r.unit), want, how, verdict(r.adv >= want))
	}
	ratio("lone node, 100 clients: server CPU per put, etcd ÷ Chorus", workload(labelLone, wPut100), cpuMetric(1), 2.5, " (Chorus ≤ 0.4× etcd's)")
	ratio("3 nodes, 100 clients: put throughput, Chorus ÷ etcd", workload(labelCluster, wPut100), "throughput", 3, "")
	ratio("3 nodes, 1 client: put p50, etcd ÷ Chorus", workload(labelCluster, wPut1), "p50", 2, " (Chorus ≤ ½ etcd's)")
	ratio("3 nodes, 100 clients: serializable range throughput, Chorus ÷ etcd", workload(labelCluster, wRange), "throughput", 1, "")
	ratio("3 nodes: watch p99, etcd ÷ Chorus", workload(labelCluster, wWatch), "p99", 1, "")
	return b.String()
}

// svg draws the table as horizontal bars: per metric, etcd's and Chorus's
// medians scaled to the larger of the two, labelled with the figures. A
// raw disk p50 (ms, zero: none) is marked on the lone node's 1-client put
// p50.
func svg(rs []row, diskP50 float64) string {
	const (
		width, left, barMax = 900, 330, 420
		rowH, barH, top     = 46, 16, 78
	)
	height := top + rowH*len(rs) + 20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">etcd vs Chorus, same machine, same etcd client (medians of the runs)</text>`+"\n", 10)
	fmt.Fprintf(&b, `<rect x="%d" y="34" width="12" height="12" fill="#9e9e9e"/><text x="%d" y="45">etcd</text>`+"\n", left, left+16)
	fmt.Fprintf(&b, `<rect x="%d" y="34" width="12" height="12" fill="#1e6fd9"/><text x="%d" y="45">Chorus</text>`+"\n", left+70, left+86)
	fmt.Fprintf(&b, `<text x="%d" y="45" fill="#555">bars scaled per row; advantage &gt; 1 = Chorus better</text>`+"\n", left+160)
	if diskP50 > 0 {
		fmt.Fprintf(&b, `<line x1="%d" y1="58" x2="%d" y2="70" stroke="#d9531e" stroke-width="2" stroke-dasharray="3,2"/><text x="%d" y="68" fill="#555">raw 400 B append + fsync p50, %.2f ms (on the lone node's 1-client put p50)</text>`+"\n", left+6, left+6, left+16, diskP50)
	}
	for i, r := range rs {
		y := top + i*rowH
		mark := 0.0
		if diskP50 > 0 && r.workload == workload(labelLone, wPut1) && r.metric == "p50" {
			mark = diskP50
		}
		m := max(r.etcd, r.chorus, mark)
		if m <= 0 {
			m = 1
		}
		wl := r.workload
		if len([]rune(wl)) > 44 {
			wl = string([]rune(wl)[:41]) + "…"
		}
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`+"\n", y+barH-2, html.EscapeString(wl))
		adv := "advantage " + formatAdv(r.adv)
		if !math.IsNaN(r.advMin) && r.runs > 1 {
			adv += " (" + strings.TrimSuffix(formatSpread(r.advMin, r.advMax), "×") + ")"
		}
		fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555">%s · %s</text>`+"\n", y+barH+14, html.EscapeString(r.metric), html.EscapeString(adv))
		for j, v := range []float64{r.etcd, r.chorus} {
			color := "#9e9e9e"
			if j == 1 {
				color = "#1e6fd9"
			}
			w := int(float64(barMax) * v / m)
			by := y + j*(barH+2)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, by, max(w, 1), barH, color)
			fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left+max(w, 1)+6, by+barH-3, format(v, r.unit))
		}
		if mark > 0 {
			x := left + int(float64(barMax)*mark/m)
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#d9531e" stroke-width="2" stroke-dasharray="3,2"/>`+"\n", x, y-2, x, y+2*barH+4)
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// rowsFromTable reads the rows and the raw disk p50 (ms; zero when absent)
// back from a Markdown table this program wrote, so that the chart can be
// redrawn without measuring again. It also reads the tables of one run that
// earlier versions wrote (no spread column).
func rowsFromTable(md string) ([]row, float64, error) {
	var out []row
	for _, line := range strings.Split(md, "\n") {
		f := strings.Split(line, "|")
		if (len(f) != 7 && len(f) != 8) || strings.TrimSpace(f[1]) == "workload" || strings.HasPrefix(strings.TrimSpace(f[1]), "---") {
			continue
		}
		r := row{workload: strings.TrimSpace(f[1]), metric: strings.TrimSpace(f[2]), advMin: math.NaN(), advMax: math.NaN(), runs: 1}
		var err error
		if r.etcd, r.unit, err = parseValue(f[3]); err != nil {
			return nil, 0, err
		}
		if r.chorus, _, err = parseValue(f[4]); err != nil {
			return nil, 0, err
		}
		if r.adv, err = parseAdv(f[5]); err != nil {
			return nil, 0, err
		}
		if len(f) == 8 {
			if lo, hi, ok := strings.Cut(f[6], "–"); ok {
				if r.advMin, err = parseAdv(lo); err != nil {
					return nil, 0, err
				}
				if r.advMax, err = parseAdv(hi); err != nil {
					return nil, 0, err
				}
				if r.advMin != r.advMax {
					r.runs = 2 // a spread to draw (the count is not in the table)
				}
			}
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, 0, fmt.Errorf("no table rows found")
	}
	var diskP50 float64
	if m := diskLineRE.FindStringSubmatch(md); m != nil {
		diskP50, _ = strconv.ParseFloat(m[1], 64)
	}
	return out, diskP50, nil
}

func parseAdv(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "n/a" {
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "×"), 64)
	if err != nil {
		return 0, fmt.Errorf("bad advantage %q: %w", s, err)
	}
	return v, nil
}

func parseValue(s string) (float64, string, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, "", fmt.Errorf("bad table value %q", s)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, f[1], err
}
