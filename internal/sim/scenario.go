package sim

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/chorus-kv/chorus/p2p/swim"
)

// Scenario is the benchmark's run on a cluster, in phases: warm-up, steady
// writes (convergence, gossip and anti-entropy cost, false suspicions),
// a crash (detection), and a 50/50 partition with writes on both sides
// (convergence after the heal). Zero values mean the defaults.
type Scenario struct {
	// Warmup lets the cluster connect and GossipSub form its mesh. Default
	// 10 s.
	Warmup time.Duration
	// WriteRate is the writes per second over the whole cluster, each on a
	// random live node. Default 20.
	WriteRate float64
	// WriteFor is how long the steady load lasts. Default 30 s.
	WriteFor time.Duration
	// ValueBytes is each write's value size. Default 100.
	ValueBytes int
	// ConvergeWithin bounds the wait for the steady writes to be on every
	// node once the load stops. Default 60 s.
	ConvergeWithin time.Duration
	// PartitionFor is how long the 50/50 partition lasts; PartitionWrites
	// are made during it, spread over both sides. Defaults 10 s and 20.
	PartitionFor    time.Duration
	PartitionWrites int
	// HealWithin bounds the wait for the partition's writes to be on every
	// node after the heal. Default 120 s.
	HealWithin time.Duration
	// SkipKill and SkipPartition leave those phases out.
	SkipKill, SkipPartition bool
	// Logf, when set, is told when each phase starts (virtual time).
	Logf func(format string, args ...any)
}

func (s Scenario) withDefaults() Scenario {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&s.Warmup, 10*time.Second)
	def(&s.WriteFor, 30*time.Second)
	def(&s.ConvergeWithin, 60*time.Second)
	def(&s.PartitionFor, 10*time.Second)
	def(&s.HealWithin, 120*time.Second)
	if s.WriteRate == 0 {
		s.WriteRate = 20
	}
	if s.ValueBytes == 0 {
		s.ValueBytes = 100
	}
	if s.PartitionWrites == 0 {
		s.PartitionWrites = 20
	}
	return s
}

// Result is what a Scenario measured, all durations in virtual time.
type Result struct {
	N      int
	Writes int // steady writes
	// Convergence of the steady writes: acknowledgement to the last live
	// node's commit. Unconverged counts writes not on every node within
	// ConvergeWithin (they are left out of the percentiles).
	ConvP50, ConvP99, ConvMax time.Duration
	Unconverged               int
	// Gossip sent per node per write during the steady phase: data
	// messages of the writes topic (a node's own and those it forwards)
	// and their bytes; GossipMsgBytes is a message's mean size; PubSubBytes
	// counts every GossipSub RPC (the membership and frontier topics and
	// the control messages included).
	GossipMsgs, GossipBytes, GossipMsgBytes, PubSubBytes float64
	// AEBytesPerMin is the anti-entropy bytes sent per node per minute
	// during the steady phase.
	AEBytesPerMin float64
	// FalseSuspicions counts suspicions the detectors raised or learned
	// during the steady phase (no node was down); FalseDead counts the
	// nodes some node marked dead while they were up.
	FalseSuspicions int64
	FalseDead       int
	// Detect is the time from a crash to the last of the nodes that had
	// the crashed node in their view marking it dead (Observers of them);
	// DetectBound is the detector's configured bound (see DetectorBound).
	Detect, DetectBound time.Duration
	Observers           int
	Detected            bool
	// Heal is the time from the end of the partition to every write made
	// during it being on every live node.
	Heal   time.Duration
	Healed bool
	// Virtual is the virtual time the whole run took.
	Virtual time.Duration
	// PacketsSent and PacketsDropped count the network's packets.
	PacketsSent, PacketsDropped int64
}

// DetectorBound is the failure detector's bound on detecting a crash: one
// probe interval to notice it, then the longest suspicion timeout,
// SuspicionMaxTimeoutMult × SuspicionMult × max(1, log10 n) × ProbeInterval
// (swim's Lifeguard stretch before any confirmation).
func DetectorBound(c swim.Config, n int) time.Duration {
	l := max(1, math.Log10(float64(n)))
	return c.ProbeInterval + time.Duration(float64(c.SuspicionMaxTimeoutMult*c.SuspicionMult)*l*float64(c.ProbeInterval))
}

// Run runs the scenario on c. It must run in c's synctest bubble.
func (s Scenario) Run(ctx context.Context, c *Cluster) (Result, error) {
	s = s.withDefaults()
	start := time.Now()
	res := Result{N: len(c.Nodes())}
	logf := s.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	logf("warm-up for %v", s.Warmup)
	time.Sleep(s.Warmup)
	logf("steady writes: %v writes/s for %v", s.WriteRate, s.WriteFor)

	// Steady writes, watched for false suspicions.
	stopWatch := make(chan struct{})
	var watched sync.WaitGroup
	falseDead := map[int]bool{}
	watched.Go(func() { c.watchDeaths(stopWatch, falseDead) })
	susp0 := c.suspicions()
	msgs0, bytes0, rpc0 := c.Gossip()
	ae0, _ := c.SyncBytes()
	phase := time.Now()
	keys, err := s.writeLoad(ctx, c, "s", int(s.WriteRate*s.WriteFor.Seconds()), s.WriteFor)
	if err != nil {
		return res, err
	}
	res.Writes = len(keys)
	logf("waiting for %d writes to converge", len(keys))
	c.waitConverged(keys, s.ConvergeWithin)
	time.Sleep(2 * time.Second) // gossip's last forwards and IHAVEs
	msgs1, bytes1, rpc1 := c.Gossip()
	ae1, _ := c.SyncBytes()
	elapsed := time.Since(phase)
	close(stopWatch)
	watched.Wait()
	res.FalseSuspicions = c.suspicions() - susp0
	res.FalseDead = len(falseDead)
	live := float64(len(c.Live()))
	perNodeWrite := live * float64(len(keys))
	res.GossipMsgs = float64(msgs1-msgs0) / perNodeWrite
	res.GossipBytes = float64(bytes1-bytes0) / perNodeWrite
	if msgs1 > msgs0 {
		res.GossipMsgBytes = float64(bytes1-bytes0) / float64(msgs1-msgs0)
	}
	res.PubSubBytes = float64(rpc1-rpc0) / perNodeWrite
	res.AEBytesPerMin = float64(ae1-ae0) / live / elapsed.Minutes()
	var conv []time.Duration
	liven := len(c.Live())
	for _, w := range c.Writes(keys...) {
		if w.Applied < liven {
			res.Unconverged++
			continue
		}
		conv = append(conv, max(w.Last.Sub(w.Acked), 0))
	}
	res.ConvP50, res.ConvP99, res.ConvMax = percentile(conv, 0.50), percentile(conv, 0.99), percentile(conv, 1)
	logf("steady phase: %+v", res)

	if !s.SkipKill {
		live := c.Live()
		victim := live[c.Rand(len(live))]
		res.DetectBound = DetectorBound(c.cfg.Detector, len(c.Nodes()))
		logf("killing node %d", victim)
		res.Detect, res.Observers, res.Detected, err = c.killAndDetect(victim, 3*res.DetectBound+10*time.Second)
		if err != nil {
			return res, err
		}
		logf("crash detected by all %d observers: %v after %v", res.Observers, res.Detected, res.Detect)
	}

	if !s.SkipPartition {
		live := c.Live()
		perm := c.pick(len(live), len(live))
		var side []int
		for _, k := range perm[:len(live)/2] {
			side = append(side, live[k])
		}
		logf("partition: %d nodes on one side, %d on the other, for %v", len(side), len(live)-len(side), s.PartitionFor)
		c.Partition(side)
		parted := time.Now()
		pkeys, err := s.writeLoad(ctx, c, "p", s.PartitionWrites, s.PartitionFor)
		if err != nil {
			return res, err
		}
		time.Sleep(time.Until(parted.Add(s.PartitionFor)))
		c.Heal()
		logf("healed")
		healed := time.Now()
		res.Healed = c.waitConverged(pkeys, s.HealWithin)
		var last time.Time
		for _, w := range c.Writes(pkeys...) {
			if w.Last.After(last) {
				last = w.Last
			}
		}
		res.Heal = max(last.Sub(healed), 0)
		if !res.Healed {
			res.Heal = time.Since(healed)
		}
	}
	res.PacketsSent, res.PacketsDropped = c.net.PacketStats()
	res.Virtual = time.Since(start)
	return res, nil
}

// writeLoad makes count writes, evenly spread over d, each on a random
// live node; it returns their keys once all are acknowledged.
func (s Scenario) writeLoad(ctx context.Context, c *Cluster, tag string, count int, d time.Duration) ([]string, error) {
	every := d / time.Duration(max(count, 1))
	value := make([]byte, s.ValueBytes)
	keys := make([]string, count)
	errs := make(chan error, count)
	var wg sync.WaitGroup
	tick := time.NewTicker(every)
	defer tick.Stop()
	for k := range count {
		if k > 0 {
			<-tick.C
		}
		live := c.Live()
		node := live[c.Rand(len(live))]
		keys[k] = fmt.Sprintf("%s%s/%06d", WritePrefix, tag, k)
		wg.Go(func() {
			if err := c.Put(ctx, node, keys[k], value); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return keys, nil
}

// waitConverged polls, every 100 ms of virtual time, until keys are on
// every live node or within has passed; it reports whether they are.
func (c *Cluster) waitConverged(keys []string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for !c.Converged(keys) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// suspicions sums the live detectors' suspicion counts.
func (c *Cluster) suspicions() int64 {
	var n int64
	for _, i := range c.Live() {
		n += c.nodes[i].Members.Stats().Suspicions
	}
	return n
}

// watchDeaths samples every live node's view every 500 ms of virtual time
// until stop is closed, and adds to dead every live node some node holds
// dead.
func (c *Cluster) watchDeaths(stop <-chan struct{}, dead map[int]bool) {
	byID := map[string]int{}
	for _, n := range c.nodes {
		byID[n.ID.String()] = n.Index
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, i := range c.Live() {
			for _, m := range c.nodes[i].Members.Members() {
				if j, ok := byID[m.ID]; ok && m.State == swim.Dead && c.IsLive(j) {
					dead[j] = true
				}
			}
		}
	}
}

// killAndDetect crashes victim and waits until every live node that had it
// in its view (alive or suspect) marks it dead; it returns how long that
// took and how many nodes had it.
func (c *Cluster) killAndDetect(victim int, within time.Duration) (time.Duration, int, bool, error) {
	var observers []int
	for _, i := range c.Live() {
		if i == victim {
			continue
		}
		if m, ok := c.View(i, victim); ok && (m.State == swim.Alive || m.State == swim.Suspect) {
			observers = append(observers, i)
		}
	}
	watchers := len(observers)
	killed := time.Now()
	if err := c.Kill(victim); err != nil {
		return 0, watchers, false, err
	}
	for {
		observers = slices.DeleteFunc(observers, func(i int) bool {
			m, ok := c.View(i, victim)
			return !c.IsLive(i) || !ok || m.State == swim.Dead
		})
		if len(observers) == 0 {
			return time.Since(killed), watchers, true, nil
		}
		if time.Since(killed) > within {
			return time.Since(killed), watchers, false, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// percentile returns the p quantile of ds (nearest rank), 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	k := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(k, 0), len(s)-1)]
}
