package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/internal/testutil"
)

var bootstrapRE = regexp.MustCompile(`msg="bootstrap from" addr=(\S+/tcp/\S+)`)

// p2pAddr returns the agent's TCP multiaddr with its peer id, from its log.
func (a *agent) p2pAddr(t testing.TB) string {
	t.Helper()
	for i := 0; ; i++ {
		line, err := a.stderr.line(i, startTimeout)
		if err != nil {
			t.Fatalf("agent log has no \"bootstrap from\" line: %v\n%s", err, a.stderr.String())
		}
		if m := bootstrapRE.FindStringSubmatch(line); m != nil {
			return m[1]
		}
	}
}

// admitNew makes a data folder, prints its peer id with `chorus id` and
// admits it with `chorus member add` on member, as an operator does before
// a node's first start; it returns the folder.
func admitNew(t *testing.T, member *agent) string {
	t.Helper()
	dir := t.TempDir()
	id := strings.TrimSpace(string(runCLIOK(t, "id", "--data-dir", dir).stdout))
	member.mustCLI(t, nil, "member", "add", id, "--name", filepath.Base(dir))
	return dir
}

// runCLIOK runs the CLI without an endpoint and requires exit code 0.
func runCLIOK(t *testing.T, args ...string) cliResult {
	t.Helper()
	r := runCLI(t, nil, nil, args...)
	if r.code != 0 {
		t.Fatalf("want exit 0: %v", r)
	}
	return r
}

// startCluster starts n agents, every one after the first bootstrapped from
// the first, and waits until a probe write on each reaches all the others
// (GossipSub drops what a node publishes before its streams to its peers
// are open: see README, "Replication").
func startCluster(t *testing.T, n int) ([]*agent, []*client.Client) {
	t.Helper()
	agents := []*agent{startAgent(t, t.TempDir())}
	boot := agents[0].p2pAddr(t)
	for range n - 1 {
		agents = append(agents, startAgent(t, admitNew(t, agents[0]), "--bootstrap", boot))
	}
	clients := make([]*client.Client, n)
	for i, a := range agents {
		clients[i] = a.dial(t)
	}
	waitGossip(t, clients)
	return agents, clients
}

func waitGossip(t *testing.T, clients []*client.Client) {
	t.Helper()
	round := 0 // each check re-publishes the probes: a new version is a new message
	testutil.EventuallyWhy(t, 60*time.Second, pollInterval, "probe writes reach every node", func() (bool, string) {
		ctx := rpcContext(t) // per round: the whole wait may take longer than one call's timeout
		for i, c := range clients {
			if _, err := c.Put(ctx, fmt.Sprintf("/probe/%d", i), fmt.Appendf(nil, "%d", round)); err != nil {
				t.Fatal(err)
			}
		}
		round++
		return everyNodeHas(ctx, clients, len(clients)), ""
	})
}

func everyNodeHas(ctx context.Context, clients []*client.Client, probes int) bool {
	for _, c := range clients {
		for i := range probes {
			if _, err := c.Get(ctx, fmt.Sprintf("/probe/%d", i)); err != nil {
				return false
			}
		}
	}
	return true
}

// snapshot lists every key under prefix with its value and origin.
func snapshot(ctx context.Context, t *testing.T, c *client.Client, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for kv, err := range c.List(ctx, prefix) {
		if err != nil {
			t.Fatal(err)
		}
		out[kv.Key] = string(kv.Value) + "@" + kv.Origin
	}
	return out
}

// waitSame waits until every node lists the same keys, values and origins
// under prefix, and at least want keys.
func waitSame(t *testing.T, clients []*client.Client, prefix string, want int) map[string]string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx := rpcContext(t) // per round, as in waitGossip
		ref := snapshot(ctx, t, clients[0], prefix)
		same := len(ref) >= want
		for _, c := range clients[1:] {
			if !same {
				break
			}
			same = maps.Equal(ref, snapshot(ctx, t, c, prefix))
		}
		if same {
			return ref
		}
		if time.Now().After(deadline) {
			for i, c := range clients {
				t.Logf("node %d: %d keys", i, len(snapshot(ctx, t, c, prefix)))
			}
			t.Fatalf("nodes did not converge on %s within 60 s", prefix)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

func TestClusterConverges(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			agents, clients := startCluster(t, n)
			ctx := rpcContext(t)

			// chorus watch on the last node, started before the writes.
			last := agents[n-1]
			watch := startProcess(t, "", "watch", "/data/", "--endpoint", last.addr)
			// Readiness: a write on the watched node itself shows up.
			waitWatchLine(t, watch, func() {
				last.mustCLI(t, nil, "put", "/data/ready", "1")
			}, "PUT /data/ready 1")

			// Every node writes its own keys and races on shared ones.
			var wg sync.WaitGroup
			for i, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range 30 {
						if _, err := c.Put(ctx, fmt.Sprintf("/data/own/%d/%02d", i, j), fmt.Appendf(nil, "n%d", i)); err != nil {
							t.Error(err)
							return
						}
						if _, err := c.Put(ctx, fmt.Sprintf("/data/shared/%d", j%5), fmt.Appendf(nil, "n%d-%d", i, j)); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			state := waitSame(t, clients, "/data/", 1+n*30+5)
			for i := range n {
				for j := range 30 {
					if v := state[fmt.Sprintf("/data/own/%d/%02d", i, j)]; !strings.HasPrefix(v, fmt.Sprintf("n%d@%s", i, agents[i].nodeID)) {
						t.Fatalf("own key of node %d: %q", i, v)
					}
				}
			}

			// The watch on the last node sees a write made on the first.
			waitWatchLine(t, watch, func() {
				agents[0].mustCLI(t, nil, "put", "/data/from-first", "hello")
			}, "PUT /data/from-first hello")
			watch.stop(t, 2) // SIGINT
		})
	}
}

// waitWatchLine runs act until the watch process prints a line ending with
// want, re-running act (a new version each time) every 200 ms.
func waitWatchLine(t *testing.T, watch *process, act func(), want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	next := 0
	for time.Now().Before(deadline) {
		act()
		until := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(until) {
			line, err := watch.stdout.line(next, time.Until(until))
			if err != nil {
				break
			}
			next++
			if strings.HasSuffix(line, want) {
				return
			}
		}
	}
	t.Fatalf("watch never printed a line ending %q; output:\n%s", want, watch.stdout.String())
}

// TestNodeKilledDuringLoad kills one node of three with SIGKILL while all
// three take writes, restarts it on its data folder, and checks that it
// kept every write it acknowledged and is back in step for writes made after
// it rejoined. Writes made on other nodes while it was down reach it only by
// anti-entropy (not in this build): this test does not count on them.
//
// The victim applies the others' writes from gossip without an fsync of its
// own (store.ApplyBuffered): after a crash of the process, the OS still
// holds them, so every such change a watcher saw on the victim is there
// after the restart with the revision the watcher saw, and no revision is
// skipped (that happens only after a crash of the machine).
func TestNodeKilledDuringLoad(t *testing.T) {
	agents, clients := startCluster(t, 3)
	victim := agents[2]
	boot := agents[0].p2pAddr(t)

	// What a watcher on the victim sees of node 0's writes (gossip).
	seen := map[string]int64{} // key -> mod revision
	var seenMu sync.Mutex
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	w, err := clients[2].Watch(watchCtx, "/load/0/", client.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		defer w.Close()
		for ev, err := range w.Events() {
			if err != nil {
				return // the victim died
			}
			seenMu.Lock()
			seen[ev.KV.Key] = ev.KV.ModRevision
			seenMu.Unlock()
		}
	}()

	type acked struct{ key, value string }
	var mu sync.Mutex
	var victimAcks []acked
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := context.Background()
				for j := 0; ; j++ {
					select {
					case <-stop:
						return
					default:
					}
					key := fmt.Sprintf("/load/%d/%d/%d", i, w, j)
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_, err := c.Put(cctx, key, []byte(key))
					cancel()
					if err != nil {
						if i == 2 {
							return // the victim died mid-write
						}
						t.Error(err)
						return
					}
					if i == 2 {
						mu.Lock()
						victimAcks = append(victimAcks, acked{key, key})
						mu.Unlock()
					}
				}
			}()
		}
	}
	// Let the victim acknowledge a good number of writes, then kill it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(victimAcks)
		mu.Unlock()
		if n >= 300 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	victim.kill(t)
	close(stop)
	wg.Wait()
	stopWatch()
	<-watchDone
	if len(victimAcks) == 0 {
		t.Fatal("the victim acknowledged no write before it was killed")
	}
	if len(seen) == 0 {
		t.Fatal("the watcher on the victim saw none of node 0's writes before the kill")
	}

	restarted := startAgent(t, victim.dataDir, "--bootstrap", boot)
	if restarted.nodeID != victim.nodeID {
		t.Fatalf("node id changed across the restart: %s then %s", victim.nodeID, restarted.nodeID)
	}
	rc := restarted.dial(t)
	ctx := rpcContext(t)
	for _, a := range victimAcks {
		kv, err := rc.Get(ctx, a.key)
		if err != nil || string(kv.Value) != a.value {
			t.Fatalf("acknowledged write %s lost across SIGKILL: %v", a.key, err)
		}
	}
	for key, rev := range seen {
		kv, err := rc.Get(ctx, key)
		if err != nil || kv.ModRevision != rev {
			t.Fatalf("gossiped change %s, seen by a watcher at revision %d before SIGKILL: after restart %+v, %v", key, rev, kv, err)
		}
	}
	if strings.Contains(restarted.stderr.String(), "skipped the revisions") {
		t.Errorf("the restarted agent skipped revisions after a crash of the process alone:\n%s", restarted.stderr.String())
	}
	clients[2] = rc
	waitGossip(t, clients)
	// Back in step: new writes on every node reach every node.
	ctx = rpcContext(t)
	for i, c := range clients {
		for j := range 10 {
			if _, err := c.Put(ctx, fmt.Sprintf("/after/%d/%d", i, j), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitSame(t, clients, "/after/", 30)
	if _, err := rc.Get(rpcContext(t), "/missing"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	t.Logf("victim acknowledged %d writes and its watcher saw %d gossiped changes before SIGKILL; all present after restart", len(victimAcks), len(seen))
}

func TestMembersCLI(t *testing.T) {
	agents, _ := startCluster(t, 3)
	out := string(agents[0].mustCLI(t, nil, "members").stdout)
	for _, a := range agents {
		if !strings.Contains(out, a.nodeID) {
			t.Fatalf("members output lacks %s:\n%s", a.nodeID, out)
		}
	}
	selfLine := regexp.MustCompile(regexp.QuoteMeta(agents[0].nodeID) + `\s+\S+\s+alive\s+self\s`)
	if !strings.Contains(out, "cluster default") || !selfLine.MatchString(out) {
		t.Fatalf("members output:\n%s", out)
	}
	// min_replicas from the CLI: 2 peers confirm; 3 cannot.
	agents[0].mustCLI(t, nil, "put", "/acked", "v", "--min-replicas", "2")
	if res := agents[0].cli(t, nil, "put", "/short", "v", "--min-replicas", "3"); res.code == 0 || !strings.Contains(string(res.stderr), "reached 2 of 3 replicas") {
		t.Fatalf("put --min-replicas 3 with 2 peers: %s", res)
	}
}
