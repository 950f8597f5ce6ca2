//go:build linux

package nemesis

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/crdt"
)

var (
	flagDuration = flag.Duration("nemesis.duration", 2*time.Minute, "planned time of the fault schedule (heals and convergence waits come on top); with -nemesis.soak the default is 30m")
	flagSeed     = flag.Uint64("nemesis.seed", 0, "seed of the fault schedule and of the writers' keys (0: a random seed, printed)")
	flagSoak     = flag.Bool("nemesis.soak", false, "soak: run the schedule for 30 minutes (or -nemesis.duration), never restart nodes n0 and n1, sample every node's RSS and descriptors every 5 s into -nemesis.samples, and require n0's and n1's curves to stay flat")
	flagRate     = flag.Float64("nemesis.rate", 40, "writes per second of each of the five writers")
	flagKeys     = flag.Int("nemesis.keys", 500, "size of the key space the writers share")
	flagSamples  = flag.String("nemesis.samples", "", "CSV file for the RSS and descriptor samples (default with -nemesis.soak: chorus-nemesis-SEED.csv in the system's temporary folder)")
	flagRound    = flag.Duration("nemesis.round", 30*time.Second, "planned time of one round: each round ends with a full heal, a pause of the writers, and a measurement of the time to converge")
	flagConverge = flag.Duration("nemesis.converge-timeout", 2*time.Minute, "how long a round waits for the cluster to converge after its final heal before failing")
	flagLogs     = flag.String("nemesis.logs", "", "folder that keeps the agents' logs (nN.log, at --log-level debug) after the run; default: the logs are at info level and deleted with the run's temporary folder")
)

const nodes = 5

// requireNemesis skips the test, saying why, where it cannot run.
func requireNemesis(t *testing.T) {
	t.Helper()
	if os.Getenv("CHORUS_NEMESIS") == "0" {
		t.Skip("CHORUS_NEMESIS=0: the nemesis suite is skipped")
	}
	if testing.Short() {
		t.Skip("-short: the nemesis suite takes minutes; skipped")
	}
	if os.Geteuid() != 0 {
		t.Skip("the nemesis suite needs root: it makes network namespaces (ip netns) and nftables rules; run it as root (sudo -E go test ./e2e/nemesis); skipped")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the nemesis suite needs %s (iproute2, nftables) on PATH; skipped", tool)
		}
	}
}

// buildChorus builds the chorus binary into dir, without the race detector
// whatever the test's own build: five race-enabled agents on a small machine
// would measure the detector rather than the node.
func buildChorus(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "chorus")
	build := exec.Command("go", "build", "-buildvcs=false", "-o", bin, "./cmd/chorus")
	build.Dir = filepath.Join("..", "..") // the module root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/chorus: %v\n%s", err, out)
	}
	return bin
}

func durationSet() bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "nemesis.duration" })
	return set
}

func seedOrRandom() uint64 {
	if *flagSeed != 0 {
		return *flagSeed
	}
	return uint64(time.Now().UnixNano()) % 1_000_000_000
}

// TestNemesis runs five agents, each in its own network namespace, under a
// random schedule of faults drawn from a seed, with a writer and a watcher
// per node. See doc.go.
func TestNemesis(t *testing.T) {
	requireNemesis(t)
	seed := seedOrRandom()
	cfg := ScheduleConfig{Nodes: nodes, Duration: *flagDuration, RoundLength: *flagRound}
	if *flagSoak {
		if !durationSet() {
			cfg.Duration = 30 * time.Minute
		}
		cfg.Protected = []int{0, 1}
	}
	sched := NewSchedule(seed, cfg)
	t.Logf("nemesis: seed %d (rerun with -nemesis.seed=%d), %d rounds, planned %v of faults", seed, seed, len(sched.Rounds), cfg.Duration)
	for i, r := range sched.Rounds {
		for _, st := range r.Steps {
			t.Logf("  round %d: %v", i+1, st)
		}
	}

	dir := t.TempDir()
	bin := buildChorus(t, dir)
	secret := filepath.Join(dir, "secret")
	out, err := exec.Command(bin, "join-secret").Output()
	if err != nil {
		t.Fatalf("chorus join-secret: %v", err)
	}
	if err := os.WriteFile(secret, out, 0o600); err != nil {
		t.Fatal(err)
	}
	logDir := dir
	if *flagLogs != "" {
		if err := os.MkdirAll(*flagLogs, 0o755); err != nil {
			t.Fatal(err)
		}
		logDir = *flagLogs
		t.Logf("nemesis: the agents' debug logs go to %s", logDir)
	}
	lab := newLab(t, nodes)
	cl := make([]*node, nodes)
	for i := range cl {
		if cl[i], err = newNode(i, lab, dir, logDir, bin, secret); err != nil {
			t.Fatal(err)
		}
		if *flagLogs != "" {
			cl[i].args = append(cl[i].args, "--log-level", "debug")
		}
	}
	t.Cleanup(func() {
		for _, n := range cl {
			if t.Failed() {
				t.Logf("--- n%d (%s) log, last lines:\n%s", n.i, n.ip, n.tail(40))
			}
			if err := n.close(); err != nil {
				t.Errorf("n%d: %v", n.i, err)
			}
		}
	})
	if err := parallel(cl, func(n *node) error { return n.start() }); err != nil {
		t.Fatal(err)
	}

	begin := time.Now()
	sampleEvery := 2 * time.Second
	if *flagSoak {
		sampleEvery = 5 * time.Second
	}
	bg, stopBg := context.WithCancel(context.Background())
	defer stopBg()
	csvPath := *flagSamples
	if csvPath == "" && *flagSoak {
		csvPath = filepath.Join(os.TempDir(), fmt.Sprintf("chorus-nemesis-%d.csv", seed))
	}
	var csv *os.File
	if csvPath != "" {
		if csv, err = os.Create(csvPath); err != nil {
			t.Fatal(err)
		}
		t.Logf("nemesis: RSS and descriptor samples go to %s", csvPath)
	}
	smp := startSampler(bg, cl, sampleEvery, begin, csv)
	watchers := make([]*watcher, nodes)
	for i, n := range cl {
		watchers[i] = startWatcher(bg, n)
	}
	wctx, stopWriters := context.WithCancel(context.Background())
	defer stopWriters()
	wr := startWriters(wctx, cl, seed, *flagKeys, *flagRate)

	r := &runner{t: t, lab: lab, nodes: cl}
	var convergence []time.Duration
	var networkBound []time.Duration // the rounds without a clock wait
	var clockBound []string          // the others
	var problems []Problem
	for ri, round := range sched.Rounds {
		var h *History
		for si, st := range round.Steps {
			last := si == len(round.Steps)-1
			r.apply(st.Faults)
			hold(st.Hold)
			if last {
				// The history is final once the writers pause: build it
				// before the heal, so that the time to converge does not
				// include it (a second for 200,000 writes on a busy machine).
				wr.pause()
				h = NewHistory(wr.writes())
			}
			r.heal(st.Faults)
			if !last {
				hold(st.Pause)
			}
		}
		healed := time.Now()
		d, states, lastWait, err := r.converge(healed, h, *flagConverge)
		// Writes stamped ahead (a clock that ran fast) are refused by the
		// peers until their clocks catch up: such a round cannot converge
		// sooner, and is reported apart.
		clockWait := h.ClockWait(healed, crdt.DefaultMaxOffset)
		if err != nil {
			t.Errorf("round %d: %v", ri+1, err)
		} else {
			convergence = append(convergence, d)
			if clockWait > 0 {
				clockBound = append(clockBound, fmt.Sprintf("round %d: %v, of which %v waiting for the peers' clocks", ri+1, d.Round(10*time.Millisecond), clockWait.Round(10*time.Millisecond)))
			} else {
				networkBound = append(networkBound, d)
			}
		}
		if clockWait > 0 {
			t.Logf("round %d: acknowledged writes stamped up to %v past the heal: the peers refuse them (--max-clock-offset %v) for the first %v",
				ri+1, (clockWait + crdt.DefaultMaxOffset).Round(time.Millisecond), crdt.DefaultMaxOffset, clockWait.Round(time.Millisecond))
		}
		ps := append(h.Lost(states), h.LWW(states)...)
		problems = appendNew(problems, ps)
		t.Logf("round %d: converged %v after the heal (last wait: %s); %d acknowledged writes so far, %d lost, %d LWW violations",
			ri+1, d.Round(time.Millisecond), lastWait, h.Acked, count(ps, "lost"), count(ps, "lww"))
		if ri < len(sched.Rounds)-1 {
			wr.resume()
		}
	}
	stopWriters()
	wr.resume()
	wr.wg.Wait()

	// Watch continuity: each watcher must have caught up with its node and
	// hold exactly the node's change log over the revisions it covered.
	resumes := 0
	for i, w := range watchers {
		if err := w.catchUp(*flagConverge); err != nil {
			t.Errorf("n%d: %v", i, err)
		}
	}
	stopBg()
	for i, w := range watchers {
		<-w.done
		resumes += w.resumes
		for _, e := range w.errs {
			t.Errorf("n%d watcher: unexpected error: %s", i, e)
		}
		if len(w.events) == 0 {
			t.Errorf("n%d watcher received no event", i)
			continue
		}
		log, err := replay(cl[i], w.events[0].Revision, w.events[len(w.events)-1].Revision)
		if err != nil {
			t.Errorf("n%d: replaying the change log: %v", i, err)
			continue
		}
		problems = append(problems, CheckStream(i, w.events, log)...)
	}
	<-smp.done

	// The figures.
	h := NewHistory(wr.writes())
	faults := sched.Faults()
	t.Logf("nemesis: seed %d", seed)
	t.Logf("nemesis: writes acknowledged %d, unknown outcome %d (timeouts and errors: they may or may not have been applied)", h.Acked, h.Unknown)
	t.Logf("nemesis: faults %d (kill %d, stop %d, partition %d, skew %d) in %d rounds over %v",
		faults[Kill]+faults[Stop]+faults[Partition]+faults[Skew], faults[Kill], faults[Stop], faults[Partition], faults[Skew], len(sched.Rounds), time.Since(begin).Round(time.Second))
	t.Logf("nemesis: lost acknowledged writes %d (node, key pairs), LWW violations %d, watch problems %d (%d resumes)",
		count(problems, "lost"), count(problems, "lww"), count(problems, "watch"), resumes)
	t.Logf("nemesis: convergence after heal p50 %v, max %v, all %v", Percentile(convergence, 50).Round(time.Millisecond),
		Percentile(convergence, 100).Round(time.Millisecond), roundAll(convergence))
	t.Logf("nemesis: convergence after heal without a clock wait (%d rounds) p50 %v, max %v; with one (writes stamped more than --max-clock-offset past the heal): %d %v",
		len(networkBound), Percentile(networkBound, 50).Round(time.Millisecond), Percentile(networkBound, 100).Round(time.Millisecond), len(clockBound), clockBound)
	for i, p := range problems {
		if i == 30 {
			t.Errorf("... and %d more", len(problems)-i)
			break
		}
		t.Errorf("%v", p)
	}
	r.reportResources(smp.all())
	if *flagSoak && csvPath != "" {
		// The long-lived nodes' heap and goroutine profiles, next to the
		// curves: what to look at if they grew.
		for _, i := range cfg.Protected {
			for _, prof := range []string{"heap", "goroutine"} {
				path := strings.TrimSuffix(csvPath, ".csv") + fmt.Sprintf("-n%d.%s.pprof", i, prof)
				if err := cl[i].saveProfile(prof, path); err != nil {
					t.Logf("soak: %v", err)
				} else {
					t.Logf("soak: n%d's %s profile saved to %s (go tool pprof %s)", i, prof, path, path)
				}
			}
		}
	}
}

// hold waits d: the schedule's hold and pause times, and the poll interval
// of the convergence wait (which checks a condition with a deadline).
func hold(d time.Duration) { <-time.After(d) }

// parallel runs f on every node at once and joins the errors.
func parallel(nodes []*node, f func(*node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = f(n) })
	}
	wg.Wait()
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return nil
}

func same(roots []uint64) bool {
	for _, r := range roots[1:] {
		if r != roots[0] {
			return false
		}
	}
	return true
}

// appendNew appends the problems of ps not already in problems (by check,
// node and key): a write lost in one round is counted once, not again at
// every later round.
func appendNew(problems, ps []Problem) []Problem {
	type id struct {
		check string
		node  int
		key   string
	}
	seen := map[id]bool{}
	for _, p := range problems {
		seen[id{p.Check, p.Node, p.Key}] = true
	}
	for _, p := range ps {
		if k := (id{p.Check, p.Node, p.Key}); !seen[k] {
			seen[k] = true
			problems = append(problems, p)
		}
	}
	return problems
}

func count(ps []Problem, check string) int {
	n := 0
	for _, p := range ps {
		if p.Check == check {
			n++
		}
	}
	return n
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}
