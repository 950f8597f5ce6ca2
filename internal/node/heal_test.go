package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/p2p/swim"
)

// TestHealReadmitsAndRepairsQuickly partitions a node from two others long
// enough for each side to mark the other dead and back its probes off, with
// writes on both sides, then heals it: every member must hold every other
// alive again, and hold the same data, soon after (the figures are logged;
// the deadline is generous for a busy machine). Before, a member marked dead
// was probed again only after its backoff (up to 60 s on LAN timing), and the
// healed side waited for the next periodic session.
func TestHealReadmitsAndRepairsQuickly(t *testing.T) {
	fd := swim.LoopbackConfig()
	// Dead members probed rarely, as after a long partition on LAN timing:
	// re-admission must not wait for those probes.
	fd.DeadRetryMin, fd.DeadRetryMax, fd.ReapAfter = 20*time.Second, 20*time.Second, time.Hour
	groups := []int{0, 0, 1}
	nodes, clients, part := startMeshNodes(t, aeNodeOpts{groups: groups, fd: fd})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	part.set(true)
	for i, a := range nodes {
		for j, b := range nodes {
			if groups[i] != groups[j] {
				_ = a.Host().Network().ClosePeer(b.Host().ID())
			}
		}
	}
	// allState reports whether every node holds every other (for which want
	// is not -1) in the state want says.
	allState := func(want func(i, j int) swim.State) bool {
		for i, n := range nodes {
			for j, o := range nodes {
				if i == j || want(i, j) == -1 {
					continue
				}
				found := false
				for _, m := range n.members.Members() {
					if m.ID == o.ID() {
						found = m.State == want(i, j)
					}
				}
				if !found {
					return false
				}
			}
		}
		return true
	}
	// Under -race beside the e2e suite, suspicion and death take a while.
	eventually(t, 2*time.Minute, "each side holds the other dead", func() bool {
		return allState(func(i, j int) swim.State {
			if groups[i] != groups[j] {
				return swim.Dead
			}
			return -1 // on a busy machine a member of one's own side may be suspected a moment
		})
	})
	for i, c := range clients {
		for k := range 50 {
			if _, err := c.Put(ctx, fmt.Sprintf("side/%d/%d", i, k), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if converged(nodes) {
		t.Fatal("converged across the partition: it is not up")
	}

	healed := time.Now()
	part.set(false)
	eventually(t, 15*time.Second, "every member holds every other alive", func() bool {
		return allState(func(i, j int) swim.State { return swim.Alive })
	})
	alive := time.Since(healed)
	eventually(t, 15*time.Second, "every node has the same Merkle root", func() bool { return converged(nodes) })
	t.Logf("after the heal: every member alive in %v, data converged in %v",
		alive.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
}
