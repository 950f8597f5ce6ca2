package main

import (
	"fmt"
	"html"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// row is one line of the table: a metric measured on both systems.
type row struct {
	workload, metric string
	etcd, chorus     float64
	unit             string
	higherBetter     bool
	// adv, when set, is the advantage as printed in a table read back
	// (computed from unrounded figures).
	adv float64
}

// advantage is how many times better Chorus is (> 1: Chorus is better).
func (r row) advantage() float64 {
	if r.adv != 0 {
		return r.adv
	}
	if r.higherBetter {
		return r.chorus / r.etcd
	}
	return r.etcd / r.chorus
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func rows(e, c *result) []row {
	var out []row
	add := func(workload string, pe, pc phase, withThroughput bool) {
		if withThroughput {
			out = append(out, row{workload, "throughput", pe.throughput(), pc.throughput(), "req/s", true, 0})
		}
		out = append(out,
			row{workload, "p50", ms(pe.pct(0.5)), ms(pc.pct(0.5)), "ms", false, 0},
			row{workload, "p99", ms(pe.pct(0.99)), ms(pc.pct(0.99)), "ms", false, 0})
	}
	add("put, 1 client", e.put1, c.put1, true)
	add("put, 100 clients", e.put100, c.put100, true)
	out = append(out, row{"put, 100 clients", "server CPU per put (3 servers)", us(e.cpuPerPut), us(c.cpuPerPut), "µs", false, 0})
	add("range (serializable), 100 clients", e.range100, c.range100, true)
	out = append(out,
		row{"watch latency (put on one member, event on the others)", "p50", ms(percentile(e.watch, 0.5)), ms(percentile(c.watch, 0.5)), "ms", false, 0},
		row{"watch latency (put on one member, event on the others)", "p99", ms(percentile(e.watch, 0.99)), ms(percentile(c.watch, 0.99)), "ms", false, 0})
	return out
}

func format(v float64, unit string) string {
	switch unit {
	case "req/s":
		return fmt.Sprintf("%.0f req/s", v)
	case "µs":
		return fmt.Sprintf("%.0f µs", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func report(cfg config, results []*result) error {
	if len(results) != 2 {
		for _, r := range results {
			fmt.Printf("%s: put 1 client %.0f req/s p50 %v; put 100 clients %.0f req/s p50 %v p99 %v; range %.0f req/s; watch p50 %v p99 %v\n",
				r.system, r.put1.throughput(), r.put1.pct(0.5), r.put100.throughput(), r.put100.pct(0.5), r.put100.pct(0.99),
				r.range100.throughput(), percentile(r.watch, 0.5), percentile(r.watch, 0.99))
		}
		return nil
	}
	rs := rows(results[0], results[1])
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on one machine (%d CPUs, %s/%s), one run: 3 etcd members and 3 Chorus nodes on loopback, driven by the same go.etcd.io/etcd/client/v3 code; keys %d B, values %d B; %v per throughput phase; 100 clients share 10 connections; watch latency over %d puts at one every %v, 2 watchers; phases interleaved (each on etcd, then on Chorus); load average %s before the run, %s after.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, keyBytes, valueBytes, cfg.duration, cfg.watchPuts, cfg.watchInterval, cfg.loadBefore, cfg.loadAfter)
	b.WriteString("| workload | metric | etcd | Chorus | Chorus's advantage |\n| --- | --- | --- | --- | --- |\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f× |\n", r.workload, r.metric, format(r.etcd, r.unit), format(r.chorus, r.unit), r.advantage())
	}
	b.WriteString("\nChorus's advantage: throughput Chorus ÷ etcd, latency etcd ÷ Chorus; above 1 means Chorus is better.\n\nTargets:\n\n")
	target := func(what string, got, want float64) {
		verdict := "met"
		if got < want {
			verdict = "missed"
		}
		fmt.Fprintf(&b, "- %s: %.2f× (target %g×): **%s**\n", what, got, want, verdict)
	}
	target("put throughput at 100 clients, Chorus ÷ etcd", rs[3].advantage(), 10)
	target("put p50 at 1 client, etcd ÷ Chorus", rs[1].advantage(), 4)
	target("watch p99, etcd ÷ Chorus", rs[len(rs)-1].advantage(), 1)
	fmt.Print(b.String())

	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.out, "etcd-vs-chorus.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cfg.out, "etcd-vs-chorus.svg"), []byte(svg(rs)), 0o644)
}

// svg draws the table as horizontal bars: per metric, etcd's and Chorus's
// values scaled to the larger of the two, labelled with the figures.
func svg(rs []row) string {
	const (
		width, left, barMax = 900, 330, 420
		rowH, barH, top     = 46, 16, 60
	)
	height := top + rowH*len(rs) + 20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">etcd vs Chorus, 3 members each, same machine, same etcd client</text>`+"\n", 10)
	fmt.Fprintf(&b, `<rect x="%d" y="34" width="12" height="12" fill="#9e9e9e"/><text x="%d" y="45">etcd</text>`+"\n", left, left+16)
	fmt.Fprintf(&b, `<rect x="%d" y="34" width="12" height="12" fill="#1e6fd9"/><text x="%d" y="45">Chorus</text>`+"\n", left+70, left+86)
	fmt.Fprintf(&b, `<text x="%d" y="45" fill="#555">bars scaled per row; advantage &gt; 1 = Chorus better</text>`+"\n", left+160)
	for i, r := range rs {
		y := top + i*rowH
		m := max(r.etcd, r.chorus)
		if m <= 0 {
			m = 1
		}
		workload := r.workload
		if len(workload) > 44 {
			workload = workload[:41] + "…"
		}
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`+"\n", y+barH-2, html.EscapeString(workload))
		fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555">%s · advantage %.2f×</text>`+"\n", y+barH+14, html.EscapeString(r.metric), r.advantage())
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
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// rowsFromTable reads the rows back from a Markdown table this program
// wrote, so that the chart can be redrawn without measuring again.
func rowsFromTable(md string) ([]row, error) {
	var out []row
	for _, line := range strings.Split(md, "\n") {
		f := strings.Split(line, "|")
		if len(f) != 7 || strings.TrimSpace(f[1]) == "workload" || strings.HasPrefix(strings.TrimSpace(f[1]), "---") {
			continue
		}
		r := row{workload: strings.TrimSpace(f[1]), metric: strings.TrimSpace(f[2])}
		var err error
		if r.etcd, r.unit, err = parseValue(f[3]); err != nil {
			return nil, err
		}
		if r.chorus, _, err = parseValue(f[4]); err != nil {
			return nil, err
		}
		r.higherBetter = r.unit == "req/s"
		if r.adv, err = strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(f[5]), "×"), 64); err != nil {
			return nil, fmt.Errorf("bad advantage %q: %w", f[5], err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no table rows found")
	}
	return out, nil
}

func parseValue(s string) (float64, string, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, "", fmt.Errorf("bad table value %q", s)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, f[1], err
}
