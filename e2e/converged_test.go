//go:build unix

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// startConvergedCluster starts three agents, each with a --fault-partition
// file (absent: no partition), and waits until gossip flows and every node
// knows every member's frontier (its lag is known).
func startConvergedCluster(t *testing.T) (agents []*agent, clients []*client.Client, faults []string) {
	t.Helper()
	dir := t.TempDir()
	for i := range 3 {
		faults = append(faults, filepath.Join(dir, "partition-"+string(rune('a'+i))))
	}
	agents = []*agent{startAgent(t, t.TempDir(), "--fault-partition", faults[0])}
	boot := agents[0].p2pAddr(t)
	for i := 1; i < 3; i++ {
		agents = append(agents, startAgent(t, admitNew(t, agents[0]), "--bootstrap", boot, "--fault-partition", faults[i]))
	}
	for _, a := range agents {
		clients = append(clients, a.dial(t))
	}
	waitGossip(t, clients)
	for _, c := range clients {
		waitMember(t, c, "every member announced its frontier", func(ms []client.Member) bool {
			n := 0
			for _, m := range ms {
				if m.LagKnown && m.State == "alive" {
					n++
				}
			}
			return n == 3
		})
	}
	return agents, clients, faults
}

// waitMember polls c's member list until ok holds (at most a minute).
func waitMember(t *testing.T, c *client.Client, what string, ok func([]client.Member) bool) []client.Member {
	t.Helper()
	var ms []client.Member
	testutil.EventuallyWhy(t, 60*time.Second, pollInterval, what, func() (bool, string) {
		var err error
		_, ms, err = c.Members(rpcContext(t))
		return err == nil && ok(ms), fmt.Sprintf("last members %+v, err %v", ms, err)
	})
	return ms
}

// memberState returns id's state and whether it is connected, in c's view.
func memberState(t *testing.T, c *client.Client, id string) (state string, connected bool) {
	t.Helper()
	_, ms, err := c.Members(rpcContext(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.PeerID == id {
			return m.State, m.StatusError != "not connected"
		}
	}
	return "absent", false
}

// holdBack waits until the converged watch prints a line holding want, and
// checks on the way that it does not while member is live (alive or
// suspect) in viewer's view, unless released says the hold is over (the
// member resumed or the partition healed). The watch's output is read
// before the state: a member live after the line was printed was live when
// it was printed (nothing brings a paused or cut-off member back). It
// returns the member's state when the line appeared.
func holdBack(t *testing.T, watch *process, viewer *client.Client, member, want string, released func() bool) string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		printed := strings.Contains(watch.stdout.String(), want)
		state, _ := memberState(t, viewer, member)
		if printed {
			if (state == "alive" || state == "suspect") && !released() {
				t.Fatalf("the converged watch printed %q while %s was still %s and held it back", want, member, state)
			}
			return state
		}
		if time.Now().After(deadline) {
			t.Fatalf("the converged watch never printed %q (member %s is %s); output:\n%s", want, member, state, watch.stdout.String())
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not synchronization
	}
}

// TestConvergedWatchAndPutAcrossAPartition: on a healthy cluster a put with
// --wait converged succeeds and a converged watch prints it; a partition
// (agent --fault-partition) makes such a put fail naming the member cut
// off, and holds converged events back until that member is declared dead;
// once the partition heals, puts converge again.
func TestConvergedWatchAndPutAcrossAPartition(t *testing.T) {
	agents, clients, faults := startConvergedCluster(t)
	a, c := agents[0], agents[2]
	watch := startProcess(t, "", "watch", "/conv/", "--converged", "--endpoint", a.addr)
	waitConvergedLine(t, watch, func() {
		a.mustCLI(t, nil, "put", "/conv/ready", "1")
	}, " PUT /conv/ready 1 converged=")

	r := a.mustCLI(t, nil, "put", "/conv/healthy", "v", "--wait", "converged", "--timeout", "30s")
	if strings.TrimSpace(string(r.stdout)) != "OK" {
		t.Fatalf("put --wait converged: %v", r)
	}
	// A write made on another node converges too, and every line says when.
	agents[1].mustCLI(t, nil, "put", "/conv/from-b", "w", "--wait", "converged", "--timeout", "30s")
	line := waitLine(t, watch, " PUT /conv/from-b w")
	if !strings.Contains(line, " converged=") {
		t.Fatalf("converged event without its time: %q", line)
	}
	members := a.mustCLI(t, nil, "members")
	if !strings.Contains(string(members.stdout), "LAG") {
		t.Fatalf("chorus members has no LAG column:\n%s", members.stdout)
	}

	// Cut C off from A and B.
	if err := os.WriteFile(faults[2], []byte(a.nodeID+"\n"+agents[1].nodeID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitMember(t, clients[0], "A no longer connected to C", func(ms []client.Member) bool {
		for _, m := range ms {
			if m.PeerID == c.nodeID {
				return m.StatusError == "not connected"
			}
		}
		return false
	})
	// C stays alive or suspect for at least the suspicion timeout (4 s on
	// three nodes) after its first failed probe: the put cannot converge.
	r = a.cli(t, nil, "put", "/conv/cut", "x", "--wait", "converged", "--timeout", "2500ms")
	if r.code == 0 || !strings.Contains(string(r.stderr), c.nodeID) || !strings.Contains(string(r.stderr), "did not confirm") {
		t.Fatalf("put --wait converged across a partition: want a failure naming %s: %v", c.nodeID, r)
	}
	if strings.Contains(string(r.stderr), agents[1].nodeID) {
		t.Fatalf("the failure names B, which holds the write: %v", r)
	}
	// The write is held back until C is declared dead.
	if state := holdBack(t, watch, clients[0], c.nodeID, " PUT /conv/cut x", func() bool { return false }); state != "dead" {
		t.Fatalf("released with C %s", state)
	}

	// Heal: C comes back, catches up, and puts converge on every member again.
	if err := os.Remove(faults[2]); err != nil {
		t.Fatal(err)
	}
	waitMember(t, clients[0], "C alive again with its frontier", func(ms []client.Member) bool {
		for _, m := range ms {
			if m.PeerID == c.nodeID {
				return m.State == "alive" && m.LagKnown && m.StatusError == ""
			}
		}
		return false
	})
	a.mustCLI(t, nil, "put", "/conv/healed", "h", "--wait", "converged", "--timeout", "60s")
	waitLine(t, watch, " PUT /conv/healed h")
	if got, err := clients[2].Get(rpcContext(t), "/conv/cut"); err != nil || string(got.Value) != "x" {
		t.Fatalf("C after the heal: /conv/cut = %v, %v", got, err)
	}
	watch.stop(t, syscall.SIGINT)
}

// TestConvergedWatchWaitsForPausedMember: a member paused with SIGSTOP
// holds converged events back until it resumes (SIGCONT) or is declared
// dead.
func TestConvergedWatchWaitsForPausedMember(t *testing.T) {
	agents, clients, _ := startConvergedCluster(t)
	a, c := agents[0], agents[2]
	watch := startProcess(t, "", "watch", "/stop/", "--converged", "--endpoint", a.addr)
	waitConvergedLine(t, watch, func() {
		a.mustCLI(t, nil, "put", "/stop/ready", "1")
	}, " PUT /stop/ready 1 converged=")
	resumed := false
	cont := func() {
		if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		resumed = true
	}
	t.Cleanup(func() { _ = c.cmd.Process.Signal(syscall.SIGCONT) })

	// Paused, then resumed once A suspects it: held until it resumes (or,
	// on a slow machine, until it was declared dead meanwhile).
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	a.mustCLI(t, nil, "put", "/stop/held", "1")
	waitMember(t, clients[0], "A suspects the paused C", func(ms []client.Member) bool {
		for _, m := range ms {
			if m.PeerID == c.nodeID {
				return m.State == "suspect" || m.State == "dead"
			}
		}
		return false
	})
	if strings.Contains(watch.stdout.String(), "/stop/held") {
		if state, _ := memberState(t, clients[0], c.nodeID); state != "dead" {
			t.Fatalf("/stop/held converged while C was paused and %s", state)
		}
	}
	cont()
	holdBack(t, watch, clients[0], c.nodeID, " PUT /stop/held 1", func() bool { return resumed })
	waitMember(t, clients[0], "C alive again", func(ms []client.Member) bool {
		for _, m := range ms {
			if m.PeerID == c.nodeID {
				return m.State == "alive"
			}
		}
		return false
	})

	// Paused for good: held until C is declared dead, then released.
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed = false
	a.mustCLI(t, nil, "put", "/stop/dead", "1")
	if state := holdBack(t, watch, clients[0], c.nodeID, " PUT /stop/dead 1", func() bool { return false }); state != "dead" {
		t.Fatalf("released with C %s", state)
	}
	// With C dead, new writes converge on the live members alone.
	a.mustCLI(t, nil, "put", "/stop/after", "1", "--wait", "converged", "--timeout", "30s")
	cont()
	watch.stop(t, syscall.SIGINT)
}

// waitConvergedLine runs act until the watch prints a line holding want,
// re-running it every 2 s (the watch may not be registered yet at first).
func waitConvergedLine(t *testing.T, watch *process, act func(), want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	next := 0
	for time.Now().Before(deadline) {
		act()
		until := time.Now().Add(2 * time.Second)
		for time.Now().Before(until) {
			line, err := watch.stdout.line(next, time.Until(until))
			if err != nil {
				break
			}
			next++
			if strings.Contains(line, want) {
				return
			}
		}
	}
	t.Fatalf("watch never printed a line holding %q; output:\n%s", want, watch.stdout.String())
}

// waitLine waits until the watch printed a line holding want and returns it.
func waitLine(t *testing.T, watch *process, want string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		line, err := watch.stdout.line(i, time.Until(deadline))
		if err != nil {
			t.Fatalf("the watch never printed %q: %v; output:\n%s", want, err, watch.stdout.String())
		}
		if strings.Contains(line, want) {
			return line
		}
	}
}
