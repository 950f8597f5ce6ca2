// Command etcd-vs-chorus measures etcd and Chorus side by side on this
// machine, with the same etcd client code (go.etcd.io/etcd/client/v3) and
// the same workload, and prints one table with both results and their
// ratio; it also writes the table as Markdown and as an SVG bar chart.
//
// It measures a lone etcd member against a lone Chorus agent (no peers), a
// 3-member etcd cluster against a 3-node Chorus cluster, and the disk under
// both (a raw append + fsync), each phase several times, interleaved, and
// reports the medians and the spread of the per-run ratios, and the
// targets of issue 12 as met or missed. -h lists the phases and the flags.
//
// Run it from the repository root (it builds etcd from this module, pinned in
// go.mod, and chorus from the main module):
//
//	go run -C e2e/etcdtools ./cmd/etcd-vs-chorus
//
// Both systems acknowledge a write only once it is fsynced (etcd by default,
// Chorus always), their data folders are on the same file system (a
// temporary folder), and all servers and the client share the machine.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "etcd-vs-chorus:", err)
		os.Exit(1)
	}
}

type config struct {
	duration      time.Duration // of each throughput phase
	runs          int           // of every phase
	phases        map[string]bool
	fsyncs        int           // appends + fsyncs per disk probe
	watchPuts     int           // puts in the watch-latency phase
	watchInterval time.Duration // between them
	out           string        // folder for the Markdown table and the SVG
	only          string        // "etcd" or "chorus": measure one system (for quick checks)
	dir           string        // parent of the work folder
	work          string        // the folder holding the data folders and the probe's file
	etcdBin       string        // prebuilt etcd, or "" to build it
	chorusBin     string        // prebuilt chorus, or "" to build it
	chorus        chorusOpts

	loadBefore, loadAfter string // the machine's load averages around the run
}

// phaseNames are the groups -phases chooses from, in the order they run.
var phaseNames = []string{"fsync", "lone", "cluster"}

func parsePhases(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(phaseNames, p) {
			return nil, fmt.Errorf("-phases: unknown phase group %q; want a comma-separated list of %s", p, strings.Join(phaseNames, ", "))
		}
		out[p] = true
	}
	return out, nil
}

const usageHead = `Usage: go run -C e2e/etcdtools ./cmd/etcd-vs-chorus [flags]

Measures etcd and Chorus side by side on this machine, with the same etcd
client code and workload, and prints one table: per metric, the median of
each system over the runs and the median and spread (min - max) of the
per-run ratio (Chorus's advantage: throughput Chorus / etcd, latency and CPU
etcd / Chorus), then the targets of issue 12 as met or missed. It writes the
table and a chart to -out (etcd-vs-chorus.md, etcd-vs-chorus.svg) when both
systems ran.

Phase groups (-phases), in this order; every phase runs -runs times,
interleaved (in each run, each phase on etcd, then on Chorus):
  fsync    the raw disk probe: -fsyncs appends of 400 B to a file next to the
           data folders, each followed by fsync (p50, p99); at the start of
           each run of the first server group, or alone
  lone     1 etcd member vs 1 Chorus agent with no bootstrap and no peers:
           put from 1 client; put from 100 clients over 10 connections, with
           the server CPU per put (/proc utime + stime)
  cluster  3 etcd members vs 3 Chorus nodes: the same two puts; serializable
           range from 100 clients; watch latency (put on one member, event
           on the two others)
Each server group starts its servers (each system with its defaults), warms
up, runs, and stops them before the next group.

Targets: lone 1-client put p50 <= raw fsync p50 + 0.25 ms; lone 100-client
server CPU per put <= 0.4x etcd's; 3 nodes: 100-client put throughput >= 3x
etcd's, 1-client put p50 <= 1/2 etcd's, serializable range throughput >=
etcd's, watch p99 <= etcd's.

Paths are relative to e2e/etcdtools. Flags:
`

// loadAvg returns the 1, 5 and 15-minute load averages, from /proc.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func run() error {
	var cfg config
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of each throughput phase")
	flag.IntVar(&cfg.runs, "runs", 3, "runs of every phase (the table shows medians)")
	phases := flag.String("phases", strings.Join(phaseNames, ","), "comma-separated phase groups to run: fsync, lone, cluster")
	flag.IntVar(&cfg.fsyncs, "fsyncs", 2000, "appends + fsyncs per run of the raw disk probe")
	flag.IntVar(&cfg.watchPuts, "watch-puts", 1000, "puts timed in the watch-latency phase")
	flag.DurationVar(&cfg.watchInterval, "watch-interval", 5*time.Millisecond, "pause between two puts of the watch-latency phase")
	flag.StringVar(&cfg.out, "out", "results", "folder for etcd-vs-chorus.md and etcd-vs-chorus.svg")
	flag.StringVar(&cfg.only, "only", "", `measure only "etcd" or "chorus" (no ratios, no files)`)
	flag.StringVar(&cfg.dir, "dir", os.TempDir(), "folder in which the work folder (data folders, probe file) is made; it decides the disk measured")
	flag.StringVar(&cfg.etcdBin, "etcd-bin", "", "a prebuilt etcd binary (default: build the one pinned in go.mod)")
	flag.StringVar(&cfg.chorusBin, "chorus-bin", "", "a prebuilt chorus binary, e.g. to compare two builds (default: build ../../cmd/chorus)")
	chorusArgs := flag.String("chorus-args", "", "extra flags for every Chorus agent, space-separated, e.g. \"--sync-interval 1m\"")
	chorusEnv := flag.String("chorus-env", "", "extra environment for every Chorus agent, space-separated KEY=VALUE, e.g. \"GOMAXPROCS=2 GOGC=200\"")
	replot := flag.Bool("replot", false, "measure nothing: redraw the SVG from the Markdown table in -out")
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), usageHead)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (-h lists the flags)", flag.Args())
	}
	if *replot {
		md, err := os.ReadFile(filepath.Join(cfg.out, "etcd-vs-chorus.md"))
		if err != nil {
			return err
		}
		rs, diskP50, err := rowsFromTable(string(md))
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(cfg.out, "etcd-vs-chorus.svg"), []byte(svg(rs, diskP50)), 0o644)
	}
	var err error
	if cfg.phases, err = parsePhases(*phases); err != nil {
		return err
	}
	switch {
	case cfg.runs < 1:
		return fmt.Errorf("-runs is %d; want at least 1", cfg.runs)
	case cfg.fsyncs < 1:
		return fmt.Errorf("-fsyncs is %d; want at least 1", cfg.fsyncs)
	case cfg.duration <= 0:
		return fmt.Errorf("-duration is %v; want more than 0", cfg.duration)
	case cfg.watchPuts < 1:
		return fmt.Errorf("-watch-puts is %d; want at least 1", cfg.watchPuts)
	case cfg.only != "" && cfg.only != "etcd" && cfg.only != "chorus":
		return fmt.Errorf(`-only is %q; want "etcd" or "chorus"`, cfg.only)
	}
	cfg.chorus.args = strings.Fields(*chorusArgs)
	for _, kv := range strings.Fields(*chorusEnv) {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("-chorus-env: %q is not KEY=VALUE", kv)
		}
		cfg.chorus.env = append(cfg.chorus.env, kv)
	}

	if cfg.work, err = os.MkdirTemp(cfg.dir, "etcd-vs-chorus-"); err != nil {
		return err
	}
	defer os.RemoveAll(cfg.work)
	if cfg.phases["lone"] || cfg.phases["cluster"] {
		if err := binaries(&cfg); err != nil {
			return err
		}
	}

	ctx := context.Background()
	s := &samples{}
	cfg.loadBefore = loadAvg()
	probe := cfg.phases["fsync"] // still to be run
	for _, g := range groups {
		if !cfg.phases[g.name] {
			continue
		}
		if err := runGroup(ctx, g, cfg, s, probe); err != nil {
			return err
		}
		probe = false
	}
	for run := 0; probe && run < cfg.runs; run++ {
		if err := probeDisk(cfg, s); err != nil {
			return err
		}
	}
	cfg.loadAfter = loadAvg()
	return report(cfg, s)
}

// binaries builds etcd and chorus into the work folder, but for those
// given prebuilt.
func binaries(cfg *config) error {
	if cfg.etcdBin == "" {
		cfg.etcdBin = filepath.Join(cfg.work, "bin", "etcd")
		fmt.Fprintln(os.Stderr, "building etcd...")
		if err := gobuild(".", cfg.etcdBin, "go.etcd.io/etcd/server/v3"); err != nil {
			return err
		}
	}
	if cfg.chorusBin == "" {
		cfg.chorusBin = filepath.Join(cfg.work, "bin", "chorus")
		fmt.Fprintln(os.Stderr, "building chorus...")
		if err := gobuild("../..", cfg.chorusBin, "./cmd/chorus"); err != nil {
			return err
		}
	}
	for _, p := range []*string{&cfg.etcdBin, &cfg.chorusBin} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return err
		}
		*p = abs
	}
	return nil
}

// runGroup starts the group's servers of each system (side by side, idle
// but for the one measured, so that the phases can be interleaved),
// measures them, stops them and removes their data folders.
func runGroup(ctx context.Context, g group, cfg config, s *samples, probe bool) error {
	systems := []struct {
		name  string
		start func(ctx context.Context, dir string, n int) (*cluster, error)
	}{
		{"etcd", func(ctx context.Context, dir string, n int) (*cluster, error) {
			return startEtcd(ctx, cfg.etcdBin, dir, n)
		}},
		{"chorus", func(ctx context.Context, dir string, n int) (*cluster, error) {
			return startChorus(ctx, cfg.chorusBin, dir, n, cfg.chorus)
		}},
	}
	dir := filepath.Join(cfg.work, g.name)
	defer os.RemoveAll(dir)
	var benches []*bench
	defer func() {
		for _, b := range benches {
			b.close()
			b.c.stop()
		}
	}()
	for _, sys := range systems {
		if cfg.only != "" && cfg.only != sys.name {
			continue
		}
		fmt.Fprintf(os.Stderr, "starting %s: %d %s server(s)...\n", g.label, g.n, sys.name)
		c, err := sys.start(ctx, filepath.Join(dir, sys.name), g.n)
		if err != nil {
			return fmt.Errorf("%s, %s: %w", sys.name, g.label, err)
		}
		b, err := newBench(sys.name, g.label, c, s)
		if err != nil {
			c.stop()
			return err
		}
		benches = append(benches, b)
	}
	return measureGroup(ctx, g, benches, cfg, probe)
}

func gobuild(dir, out, pkg string) error {
	cmd := exec.Command("go", "build", "-buildvcs=false", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}
