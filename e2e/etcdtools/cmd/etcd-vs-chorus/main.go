// Command etcd-vs-chorus measures a 3-member etcd cluster and a 3-node Chorus
// cluster side by side on this machine, with the same etcd client code
// (go.etcd.io/etcd/client/v3) and the same workload, and prints one table
// with both results and their ratio; it also writes the table as Markdown
// and as an SVG bar chart.
//
// Run it from the repository root (it builds etcd from this module, pinned in
// go.mod, and chorus from the main module):
//
//	go run -C e2e/etcdtools ./cmd/etcd-vs-chorus
//
// Both systems acknowledge a write only once it is fsynced (etcd by default,
// Chorus always), their data folders are on the same file system (a
// temporary folder), and all six servers and the client share the machine.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	watchPuts     int           // puts in the watch-latency phase
	watchInterval time.Duration // between them
	out           string        // folder for the Markdown table and the SVG
	only          string        // "etcd" or "chorus": measure one system (for quick checks)

	loadBefore, loadAfter string // the machine's load averages around the run
}

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
	flag.IntVar(&cfg.watchPuts, "watch-puts", 1000, "puts timed in the watch-latency phase")
	flag.DurationVar(&cfg.watchInterval, "watch-interval", 5*time.Millisecond, "pause between two puts of the watch-latency phase")
	flag.StringVar(&cfg.out, "out", "results", "folder (relative to e2e/etcdtools) for etcd-vs-chorus.md and etcd-vs-chorus.svg")
	flag.StringVar(&cfg.only, "only", "", `measure only "etcd" or "chorus"`)
	replot := flag.Bool("replot", false, "measure nothing: redraw the SVG from the Markdown table in -out")
	flag.Parse()
	if *replot {
		md, err := os.ReadFile(filepath.Join(cfg.out, "etcd-vs-chorus.md"))
		if err != nil {
			return err
		}
		rs, err := rowsFromTable(string(md))
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(cfg.out, "etcd-vs-chorus.svg"), []byte(svg(rs)), 0o644)
	}

	work, err := os.MkdirTemp("", "etcd-vs-chorus-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	etcdBin, chorusBin := filepath.Join(work, "bin", "etcd"), filepath.Join(work, "bin", "chorus")
	fmt.Fprintln(os.Stderr, "building etcd and chorus...")
	if err := gobuild(".", etcdBin, "go.etcd.io/etcd/server/v3"); err != nil {
		return err
	}
	if err := gobuild("../..", chorusBin, "./cmd/chorus"); err != nil {
		return err
	}

	ctx := context.Background()
	systems := []struct {
		name  string
		start func(context.Context, string, string) (*cluster, error)
		bin   string
	}{
		{"etcd", startEtcd, etcdBin},
		{"chorus", startChorus, chorusBin},
	}
	// Both clusters run side by side (idle but for the one measured), so
	// that the phases can be interleaved.
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
		fmt.Fprintf(os.Stderr, "starting a 3-member %s cluster...\n", sys.name)
		c, err := sys.start(ctx, sys.bin, filepath.Join(work, sys.name))
		if err != nil {
			return fmt.Errorf("%s: %w", sys.name, err)
		}
		b, err := newBench(sys.name, c)
		if err != nil {
			c.stop()
			return err
		}
		benches = append(benches, b)
	}
	cfg.loadBefore = loadAvg()
	if err := measure(ctx, benches, cfg); err != nil {
		return err
	}
	cfg.loadAfter = loadAvg()
	var results []*result
	for _, b := range benches {
		results = append(results, b.r)
	}
	return report(cfg, results)
}

func gobuild(dir, out, pkg string) error {
	cmd := exec.Command("go", "build", "-buildvcs=false", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}
