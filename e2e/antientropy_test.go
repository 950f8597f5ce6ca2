package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// TestRestartedNodeCatchesUp stops one agent of three, writes and deletes
// on the others, restarts it, and checks that anti-entropy (gossip does not
// resend what a node missed while down) brings it to the same state, that
// `chorus members` shows the convergence, and `chorus sync` works.
func TestRestartedNodeCatchesUp(t *testing.T) {
	fast := []string{"--sync-interval", "300ms"}
	first := startAgent(t, t.TempDir(), fast...)
	boot := first.p2pAddr(t)
	agents := []*agent{first}
	for range 2 {
		agents = append(agents, startAgent(t, admitNew(t, first), append([]string{"--bootstrap", boot}, fast...)...))
	}
	c0, c1 := agents[0].dial(t), agents[1].dial(t)
	ctx := rpcContext(t)
	if _, err := c0.Put(ctx, "/before", []byte("v")); err != nil {
		t.Fatal(err)
	}

	down := agents[2]
	down.stopGraceful(t)
	for i := range 300 {
		c := c0
		if i%2 == 1 {
			c = c1
		}
		if _, err := c.Put(rpcContext(t), fmt.Sprintf("/while-down/%03d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c0.Delete(rpcContext(t), "/before"); err != nil {
		t.Fatal(err)
	}

	agents[2] = startAgent(t, down.dataDir, append([]string{"--bootstrap", boot}, fast...)...)
	if agents[2].nodeID != down.nodeID {
		t.Fatalf("restarted agent has id %s; want %s", agents[2].nodeID, down.nodeID)
	}
	c2 := agents[2].dial(t)
	waitSame(t, []*client.Client{c0, c1, c2}, "/while-down/", 300)
	if _, err := c2.Get(rpcContext(t), "/before"); err == nil {
		t.Fatal("the delete made while the node was down did not reach it")
	}

	// members shows every node converged.
	testutil.EventuallyWhy(t, 60*time.Second, pollInterval, "members shows 3 converged nodes", func() (bool, string) {
		out := string(agents[0].mustCLI(t, nil, "members").stdout)
		return strings.Count(out, " yes ") == 3 && strings.Count(out, " alive ") == 3 && strings.Contains(out, "MERKLE ROOT"), "members printed:\n" + out
	})
	st0 := string(agents[0].mustCLI(t, nil, "status").stdout)
	st2 := string(agents[2].mustCLI(t, nil, "status").stdout)
	if root := rootLine(st0); root == "" || root != rootLine(st2) {
		t.Fatalf("status roots differ:\n%s\n%s", st0, st2)
	}

	// An on-demand session finds nothing left to repair.
	out := agents[2].mustCLI(t, nil, "sync", "--peer", agents[0].nodeID)
	if !strings.Contains(string(out.stdout), "synced with "+agents[0].nodeID) || !strings.Contains(string(out.stdout), "sent 0 entries") {
		t.Fatalf("sync output: %s", out)
	}
	// A valid peer id that never started: surely not connected (two of the
	// agents may have connected to each other through the failure detector).
	stranger := strings.TrimSpace(string(runCLI(t, nil, nil, "id", "--data-dir", t.TempDir()).stdout))
	if r := agents[2].cli(t, nil, "sync", "--peer", stranger); r.code != 1 || !strings.Contains(string(r.stderr), "is not connected to this node") {
		t.Fatalf("sync with a peer that is not connected: %s", r)
	}
	if r := agents[2].cli(t, nil, "sync"); r.code != 2 {
		t.Fatalf("sync without --peer: %s; want exit 2", r)
	}
	if r := agents[2].cli(t, nil, "sync", "--peer", "not-a-peer"); r.code == 0 || !strings.Contains(string(r.stderr), "is not a libp2p peer id") {
		t.Fatalf("sync with a bad peer id: %s", r)
	}
}

func rootLine(status string) string {
	for _, l := range strings.Split(status, "\n") {
		if strings.HasPrefix(l, "merkle root:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "merkle root:"))
		}
	}
	return ""
}
