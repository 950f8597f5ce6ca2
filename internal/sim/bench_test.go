package sim

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// simNodes lists the cluster sizes BenchmarkSimCluster runs.
var simNodes = flag.String("sim.nodes", "10,100,300", "cluster sizes BenchmarkSimCluster runs, comma-separated (add 1000 for the large run)")

// simFrontier is the nodes' frontier announcement interval (0: the agent's).
var simFrontier = flag.Duration("sim.frontier", 0, "frontier announcement interval of the simulated nodes (0: the agent's default, 100ms)")

// Environment of the scenario run in a child process (see
// BenchmarkSimCluster).
const (
	envScenarioN   = "CHORUS_SIM_N"
	envScenarioOut = "CHORUS_SIM_OUT"
	envFrontier    = "CHORUS_SIM_FRONTIER"
	// envBandwidth overrides the links' bandwidth, bits per second (an
	// experiment: is a tail queueing behind bursts?).
	envBandwidth = "CHORUS_SIM_BPS"
	// envLoss overrides the links' loss, 0 to 1 (an experiment).
	envLoss = "CHORUS_SIM_LOSS"
)

// BenchmarkSimCluster runs Scenario on clusters of each size in -sim.nodes
// (links 5 ms ± 1 ms, 1 % loss, 20 writes/s over random nodes) and reports
// what it measured, in virtual time, and the wall time of the run.
//
// synctest.Test needs a *testing.T, which a benchmark does not have: each
// run is TestSimScenario in a child process of this test binary, which
// writes its Result as JSON. The child also keeps each size's memory to
// itself. Profile one size directly:
//
//	CHORUS_SIM_N=1000 go test -run '^TestSimScenario$' -cpuprofile cpu.out ./internal/sim/
func BenchmarkSimCluster(b *testing.B) {
	for _, f := range strings.Split(*simNodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			b.Fatalf("-sim.nodes: %q is not a cluster size", f)
		}
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			var res Result
			var wall, cpu time.Duration
			for range b.N {
				start := time.Now()
				res, cpu = runChild(b, n)
				wall = time.Since(start)
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(ms(res.ConvP50), "conv-p50-ms")
			b.ReportMetric(ms(res.ConvP99), "conv-p99-ms")
			b.ReportMetric(ms(res.ConvMax), "conv-max-ms")
			b.ReportMetric(float64(res.Unconverged), "unconverged")
			b.ReportMetric(res.GossipMsgs, "gossip-msgs/node/write")
			b.ReportMetric(res.GossipBytes, "gossip-B/node/write")
			b.ReportMetric(res.GossipMsgBytes, "gossip-msg-B")
			b.ReportMetric(res.PubSubBytes, "pubsub-B/node/write")
			b.ReportMetric(res.AEBytesPerMin, "ae-B/node/min")
			b.ReportMetric(res.Detect.Seconds(), "detect-s")
			b.ReportMetric(res.DetectBound.Seconds(), "detect-bound-s")
			b.ReportMetric(float64(res.Observers), "observers")
			b.ReportMetric(float64(res.FalseSuspicions), "false-suspicions")
			b.ReportMetric(float64(res.FalseDead), "false-dead")
			b.ReportMetric(res.Heal.Seconds(), "heal-s")
			b.ReportMetric(res.Virtual.Seconds(), "virtual-s")
			b.ReportMetric(wall.Seconds(), "wall-s")
			b.ReportMetric(cpu.Seconds(), "cpu-s")
			b.ReportMetric(float64(*simFrontier)/float64(time.Millisecond), "frontier-ms")
			if !res.Detected || !res.Healed {
				b.Errorf("N=%d: crash detected %v, partition healed %v: %+v", n, res.Detected, res.Healed, res)
			}
		})
	}
}

// runChild runs TestSimScenario for n nodes in a child process.
// It returns the child's Result and the CPU time it used.
func runChild(b *testing.B, n int) (Result, time.Duration) {
	b.Helper()
	out := filepath.Join(b.TempDir(), "result.json")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSimScenario$", "-test.timeout=60m")
	cmd.Env = append(os.Environ(), envScenarioN+"="+strconv.Itoa(n), envScenarioOut+"="+out, envFrontier+"="+simFrontier.String())
	msg, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("scenario with %d nodes: %v\n%s", n, err, msg)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	data, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	var res Result
	if err := json.Unmarshal(data, &res); err != nil {
		b.Fatal(err)
	}
	return res, cpu
}

// benchConfig is the benchmark's cluster and scenario for n nodes, with
// frontier announcements every frontier (0: the agent's default).
func benchConfig(n int, frontier time.Duration) (Config, Scenario) {
	return Config{N: n, Seed: 1, Link: LinkConfig{Latency: 5 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.01},
			FrontierInterval: frontier},
		Scenario{}
}

// TestSimScenario is BenchmarkSimCluster's run in a child process; it is
// skipped unless CHORUS_SIM_N is set.
func TestSimScenario(t *testing.T) {
	nv := os.Getenv(envScenarioN)
	if nv == "" {
		t.Skip("run by BenchmarkSimCluster (set " + envScenarioN + " to run one size)")
	}
	n, err := strconv.Atoi(nv)
	if err != nil {
		t.Fatalf("%s=%q: %v", envScenarioN, nv, err)
	}
	var frontier time.Duration
	if v := os.Getenv(envFrontier); v != "" {
		if frontier, err = time.ParseDuration(v); err != nil {
			t.Fatalf("%s=%q: %v", envFrontier, v, err)
		}
	}
	cfg, sc := benchConfig(n, frontier)
	if v := os.Getenv(envLoss); v != "" {
		if cfg.Link.Loss, err = strconv.ParseFloat(v, 64); err != nil {
			t.Fatalf("%s=%q: %v", envLoss, v, err)
		}
	}
	if v := os.Getenv(envBandwidth); v != "" {
		if cfg.Link.BitsPerSecond, err = strconv.Atoi(v); err != nil {
			t.Fatalf("%s=%q: %v", envBandwidth, v, err)
		}
	}
	sc.Logf = t.Logf // go test -v stamps nothing: the phases show progress
	Run(t, cfg, func(t *testing.T, c *Cluster) {
		res, err := sc.Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", res)
		if path := os.Getenv(envScenarioOut); path != "" {
			data, err := json.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
}
