package lab

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/internal/testutil"
)

// TestLab runs five containers through partitions, a pause, a kill and a
// rolling restart (see doc.go). The steps share one cluster and run in
// order; each logs its convergence time.
func TestLab(t *testing.T) {
	requireDocker(t)
	l := newLab(t, 5)
	nodes := l.nodes
	start := time.Now()
	for _, n := range nodes {
		n.start(t)
	}
	took := testutil.EventuallyWhy(t, 2*time.Minute, labPoll, "five nodes are alive, admitted and converged on every node", func() (bool, string) {
		return allAliveConverged(nodes)
	})
	t.Logf("FIGURE formation: 5 containers started, all alive, admitted and converged on every node %v after the first docker run (%v of it waiting)",
		time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
	for _, n := range nodes {
		if !n.ready() {
			t.Fatalf("%s: chorus health fails after convergence", n.alias)
		}
	}

	// acked holds every acknowledged write and the value every node must end with.
	acked := map[string]string{}

	t.Run("write on every node, read everywhere", func(t *testing.T) {
		for i, n := range nodes {
			for j := range 20 {
				k, v := fmt.Sprintf("/lab/every/n%d/%d", i+1, j), fmt.Sprintf("v%d.%d", i+1, j)
				if err := n.put(k, v); err != nil {
					t.Fatal(err)
				}
				acked[k] = v
			}
		}
		d := testutil.EventuallyWhy(t, time.Minute, labPoll, "every node holds the 100 writes", func() (bool, string) { return allHave(nodes, "/lab/", acked) })
		t.Logf("FIGURE replication: 100 writes spread over 5 nodes were on every node %v after the last acknowledgement", d.Round(time.Millisecond))
	})

	t.Run("partition of two while both sides write, then heal", func(t *testing.T) {
		majority, minority := nodes[:3], nodes[3:]
		for _, n := range minority {
			mustDocker(t, "network", "disconnect", l.network, n.name)
		}
		reconnected := false
		reconnect := func() {
			if reconnected {
				return
			}
			reconnected = true
			for _, n := range minority {
				mustDocker(t, "network", "connect", "--alias", n.alias, l.network, n.name)
			}
		}
		defer reconnect()
		// The minority is reachable only from inside its containers now.
		minorityPut := func(n *node, k, v string) {
			t.Helper()
			if _, err := n.cli("put", k, v); err != nil {
				t.Fatal(err)
			}
			acked[k] = v
		}
		for j := range 10 {
			k := fmt.Sprintf("/lab/partition/major/%d", j)
			if err := majority[j%3].put(k, "major"); err != nil {
				t.Fatal(err)
			}
			acked[k] = "major"
			minorityPut(minority[j%2], fmt.Sprintf("/lab/partition/minor/%d", j), "minor")
		}
		// Conflicts: both sides write the same key; the later write (by the
		// HLC, and here by the shared wall clock) must win everywhere.
		for j := range 6 {
			k := fmt.Sprintf("/lab/partition/conflict/%d", j)
			first, second := "major", "minor"
			if j%2 == 0 {
				first, second = "minor", "major"
			}
			for _, side := range []string{first, second} {
				if side == "major" {
					if err := majority[0].put(k, "major-"+k); err != nil {
						t.Fatal(err)
					}
					acked[k] = "major-" + k
				} else {
					minorityPut(minority[0], k, "minor-"+k)
					acked[k] = "minor-" + k
				}
				time.Sleep(20 * time.Millisecond) // keeps the two writes' wall clocks apart: the later must win
			}
		}
		// The partition is real: the majority's writes have not reached the minority.
		testutil.EventuallyWhy(t, time.Minute, labPoll, "the majority holds its own partition writes", func() (bool, string) {
			want := map[string]string{}
			for j := range 10 {
				want[fmt.Sprintf("/lab/partition/major/%d", j)] = "major"
			}
			return allHave(majority, "/lab/partition/", want)
		})
		// get of an absent key exits 1 with "key … not found" on stderr.
		if out, err := minority[0].cli("get", "/lab/partition/major/0"); err == nil || out != "" || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("a majority write reached the minority during the partition (%q, %v)", out, err)
		}
		reconnect()
		for _, n := range minority {
			n.closeClient() // its published port is looked up again
		}
		d := testutil.EventuallyWhy(t, 2*time.Minute, labPoll, "every acknowledged write is on every node with the LWW winners", func() (bool, string) {
			return allHave(nodes, "/lab/", acked)
		})
		d2 := testutil.EventuallyWhy(t, 2*time.Minute, labPoll, "all five alive and converged again", func() (bool, string) { return allAliveConverged(nodes) })
		t.Logf("FIGURE partition heal: every acknowledged write (26 during a 3+2 partition, 6 of them conflicts) on every node with the LWW winners %v after reconnecting; all alive and converged %v after that",
			d.Round(time.Millisecond), d2.Round(time.Millisecond))
	})

	t.Run("pause: suspect, then alive after unpause", func(t *testing.T) {
		target := nodes[2]
		observer := nodes[0]
		mustDocker(t, "pause", target.name)
		paused := true
		defer func() {
			if paused {
				_, _ = docker("unpause", target.name)
			}
		}()
		var seen string
		d := testutil.EventuallyWhy(t, time.Minute, labPoll, "n1 suspects the paused n3", func() (bool, string) {
			st, err := stateOf(observer, target.alias)
			if err != nil {
				return false, err.Error()
			}
			seen = st
			return st == "suspect" || st == "dead", "n3 is " + st
		})
		mustDocker(t, "unpause", target.name)
		paused = false
		d2 := testutil.EventuallyWhy(t, time.Minute, labPoll, "every node sees n3 alive again", func() (bool, string) {
			for _, o := range nodes {
				if o == target {
					continue
				}
				st, err := stateOf(o, target.alias)
				if err != nil {
					return false, err.Error()
				}
				if st != "alive" {
					return false, o.alias + " sees n3 " + st
				}
			}
			return true, ""
		})
		t.Logf("FIGURE pause: n1 saw the paused n3 %s %v after docker pause; every node saw it alive %v after docker unpause", seen, d.Round(time.Millisecond), d2.Round(time.Millisecond))
	})

	t.Run("kill and restart: data kept, caught up", func(t *testing.T) {
		target := nodes[1]
		before, err := target.status()
		if err != nil {
			t.Fatal(err)
		}
		// The revisions are the node's own: a node that lost its data and
		// caught up again would hold the same keys at other revisions.
		held, err := target.list("/lab/")
		if err != nil {
			t.Fatal(err)
		}
		mustDocker(t, "kill", target.name)
		target.closeClient()
		for j := range 20 {
			k := fmt.Sprintf("/lab/kill/%d", j)
			if err := nodes[j%5].put(k, "while-down"); err != nil && j%5 != 1 {
				t.Fatal(err)
			} else if err == nil {
				acked[k] = "while-down"
			}
		}
		restarted := time.Now()
		mustDocker(t, "start", target.name)
		var after *struct {
			id  string
			rev int64
		}
		testutil.EventuallyWhy(t, time.Minute, labPoll, "the killed node serves again", func() (bool, string) {
			st, err := target.status()
			if err != nil {
				return false, err.Error()
			}
			after = &struct {
				id  string
				rev int64
			}{st.NodeID, st.Revision}
			return true, ""
		})
		if after.id != before.NodeID || after.rev < before.Revision {
			t.Fatalf("after the restart: node %s at revision %d; before the kill: node %s at revision %d (identity or data lost)", after.id, after.rev, before.NodeID, before.Revision)
		}
		again, err := target.list("/lab/")
		if err != nil {
			t.Fatal(err)
		}
		revs := map[string]int64{}
		for _, kv := range again {
			revs[kv.Key] = kv.ModRevision
		}
		for _, kv := range held {
			if revs[kv.Key] != kv.ModRevision {
				t.Fatalf("%s is at revision %d after the restart, %d before the kill: the node's data was not kept", kv.Key, revs[kv.Key], kv.ModRevision)
			}
		}
		testutil.EventuallyWhy(t, time.Minute, labPoll, "the restarted node caught up", func() (bool, string) { return allHave(nodes, "/lab/", acked) })
		caughtUp := time.Since(restarted)
		d2 := testutil.EventuallyWhy(t, time.Minute, labPoll, "all five alive and converged again", func() (bool, string) { return allAliveConverged(nodes) })
		t.Logf("FIGURE kill: n2 came back with its identity and its %d keys at their revisions (revision %d, %d before the kill); every acknowledged write on every node %v after docker start, all alive and converged %v after that",
			len(held), after.rev, before.Revision, caughtUp.Round(time.Millisecond), d2.Round(time.Millisecond))
	})

	t.Run("rolling restart under continuous writes", func(t *testing.T) {
		var (
			mu       sync.Mutex
			rolling  = map[string]string{}
			failures atomic.Int64
			stop     = make(chan struct{})
			wg       sync.WaitGroup
		)
		for w := range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := 0; ; seq++ {
					select {
					case <-stop:
						return
					default:
					}
					n := nodes[(w+seq)%5]
					k := fmt.Sprintf("/lab/rolling/w%d/%d", w, seq)
					if err := n.put(k, n.alias); err != nil {
						failures.Add(1)
						time.Sleep(50 * time.Millisecond) // a node restarting: back off a little before the next one
						continue
					}
					mu.Lock()
					rolling[k] = n.alias
					mu.Unlock()
				}
			}()
		}
		defer func() {
			select {
			case <-stop:
			default:
				close(stop)
			}
			wg.Wait()
		}()
		rollStart := time.Now()
		for _, n := range nodes {
			t0 := time.Now()
			mustDocker(t, "restart", "-t", "10", n.name) // SIGTERM: a graceful stop, then start
			n.closeClient()
			testutil.EventuallyWhy(t, time.Minute, labPoll, n.alias+" is ready again", func() (bool, string) { return n.ready(), "not ready" })
			t.Logf("%s restarted and ready in %v", n.alias, time.Since(t0).Round(time.Millisecond))
		}
		close(stop)
		wg.Wait()
		rollTook := time.Since(rollStart)
		mu.Lock()
		for k, v := range rolling {
			acked[k] = v
		}
		n := len(rolling)
		mu.Unlock()
		if n == 0 {
			t.Fatal("no write was acknowledged during the rolling restart")
		}
		d := testutil.EventuallyWhy(t, 2*time.Minute, labPoll, "every acknowledged write is on every node after the rolling restart", func() (bool, string) {
			return allHave(nodes, "/lab/", acked)
		})
		t.Logf("FIGURE rolling restart: 5 nodes restarted one by one in %v under 5 writers; %d writes acknowledged (%d refused while a node was down), none lost: all on every node %v after the last restart",
			rollTook.Round(time.Millisecond), n, failures.Load(), d.Round(time.Millisecond))
	})
}
