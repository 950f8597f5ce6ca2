//go:build linux

package nemesis

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
)

// runner applies and heals faults.
type runner struct {
	t     *testing.T
	lab   *lab
	nodes []*node
}

// mark writes a line into every node's log, so that the agents' lines can
// be read against the schedule.
func (r *runner) mark(what string, faults []Fault) {
	line := fmt.Sprintf("=== nemesis: %s %s %v\n", time.Now().UTC().Format("15:04:05.000"), what, faults)
	for _, n := range r.nodes {
		_, _ = n.log.WriteString(line)
	}
}

func (r *runner) apply(faults []Fault) {
	r.t.Helper()
	r.mark("apply", faults)
	defer r.mark("applied", faults)
	for _, f := range faults {
		var err error
		switch f.Kind {
		case Kill:
			err = r.nodes[f.Nodes[0]].kill()
		case Stop:
			err = r.nodes[f.Nodes[0]].signal(syscall.SIGSTOP)
		case Partition:
			err = r.lab.partition(f.Nodes)
		case Skew:
			err = r.nodes[f.Nodes[0]].restart(f.Offset)
		}
		if err != nil {
			r.t.Fatalf("apply %v: %v", f, err)
		}
	}
}

func (r *runner) heal(faults []Fault) {
	r.t.Helper()
	r.mark("heal", faults)
	defer r.mark("healed", faults)
	for _, f := range faults {
		var err error
		switch f.Kind {
		case Kill:
			err = r.nodes[f.Nodes[0]].start()
		case Stop:
			err = r.nodes[f.Nodes[0]].signal(syscall.SIGCONT)
		case Partition:
			err = r.lab.heal()
		case Skew:
			err = r.nodes[f.Nodes[0]].restart(0)
		}
		if err != nil {
			r.t.Fatalf("heal %v: %v", f, err)
		}
	}
}

// converge waits until every node has the same Merkle root and holds every
// acknowledged write (h), and returns how long after healed that was, with
// the nodes' states then, and what it waited for last ("none" if nothing).
func (r *runner) converge(healed time.Time, h *History, timeout time.Duration) (time.Duration, []map[string]Version, string, error) {
	deadline := healed.Add(timeout)
	var states []map[string]Version
	why := "none"
	for {
		at := time.Now()
		roots, err := r.roots()
		if err == nil {
			if same(roots) {
				states, err = r.states()
				if err == nil {
					lost := h.Lost(states)
					if len(lost) == 0 {
						return at.Sub(healed), states, why, nil
					}
					why = fmt.Sprintf("equal roots but %d acknowledged writes missing, first: %v", len(lost), lost[0])
				}
			} else {
				why = fmt.Sprintf("Merkle roots differ: %016x", roots)
			}
		}
		if err != nil {
			why = err.Error()
		}
		if time.Now().After(deadline) {
			if states == nil {
				states, _ = r.states()
			}
			return 0, states, why, fmt.Errorf("no convergence within %v of the heal: %s", timeout, why)
		}
		hold(100 * time.Millisecond)
	}
}

func (r *runner) roots() ([]uint64, error) {
	roots := make([]uint64, len(r.nodes))
	err := parallel(r.nodes, func(n *node) error {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		st, err := n.cli().Status(ctx)
		if err != nil {
			return fmt.Errorf("n%d status: %w", n.i, err)
		}
		roots[n.i] = st.MerkleRoot
		return nil
	})
	return roots, err
}

func (r *runner) states() ([]map[string]Version, error) {
	states := make([]map[string]Version, len(r.nodes))
	err := parallel(r.nodes, func(n *node) error {
		var err error
		states[n.i], _, err = readState(n)
		return err
	})
	return states, err
}

// readState lists the node's keys; maxRev is the greatest mod revision.
func readState(n *node) (map[string]Version, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := map[string]Version{}
	var maxRev int64
	for kv, err := range n.cli().List(ctx, keyPrefix) {
		if err != nil {
			return nil, 0, fmt.Errorf("n%d list: %w", n.i, err)
		}
		st[kv.Key] = Version{Value: string(kv.Value), HLC: kv.HLC, Origin: rawOrigin(kv.Origin)}
		maxRev = max(maxRev, kv.ModRevision)
	}
	return st, maxRev, nil
}

// catchUp waits until the watcher has received its node's latest change.
func (w *watcher) catchUp(timeout time.Duration) error {
	_, want, err := readState(w.n)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for w.last() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("watcher at revision %d, node at %d after %v", w.last(), want, timeout)
		}
		hold(50 * time.Millisecond)
	}
	return nil
}

// replay reads the node's change log under keyPrefix from revision from (or
// the oldest retained) to revision to.
func replay(n *node, from, to int64) ([]Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := n.cli().Status(ctx)
	if err != nil {
		return nil, err
	}
	from = max(from, st.OldestRevision)
	if from > to {
		return nil, nil
	}
	w, err := n.cli().Watch(ctx, keyPrefix, client.WithPrefix(), client.WithStartRevision(from))
	if err != nil {
		return nil, err
	}
	defer w.Close()
	var out []Event
	for len(out) == 0 || out[len(out)-1].Revision < to {
		evs, err := w.Next()
		if err != nil {
			return nil, fmt.Errorf("after %d events: %w", len(out), err)
		}
		for _, ev := range evs {
			if ev.KV.ModRevision <= to {
				out = append(out, Event{Revision: ev.KV.ModRevision, Key: ev.KV.Key, HLC: ev.KV.HLC})
			} else {
				return out, nil
			}
		}
	}
	return out, nil
}

// reportResources prints each node's RSS and descriptor range and, in a
// soak, judges the long-lived processes' curves.
func (r *runner) reportResources(samples []Sample) {
	t := r.t
	for i := range r.nodes {
		var minR, maxR int64
		var minF, maxF, procs int
		seen := map[int]bool{}
		for _, s := range samples {
			if s.Node != i {
				continue
			}
			if !seen[s.PID] {
				seen[s.PID] = true
				procs++
			}
			if minR == 0 || s.RSSKiB < minR {
				minR = s.RSSKiB
			}
			if minF == 0 || s.FDs < minF {
				minF = s.FDs
			}
			maxR, maxF = max(maxR, s.RSSKiB), max(maxF, s.FDs)
		}
		t.Logf("nemesis: n%d: %d processes, RSS %.0f–%.0f MiB, descriptors %d–%d", i, procs, float64(minR)/1024, float64(maxR)/1024, minF, maxF)
	}
	if !*flagSoak {
		return
	}
	crit := DefaultFlatCriterion
	judged := crit.Judge(samples)
	if len(judged) == 0 {
		t.Errorf("soak: no process lived %v to judge its curves", crit.MinLife)
	}
	for _, g := range judged {
		t.Logf("soak: %v", g)
		if !g.Flat {
			t.Errorf("soak: n%d's resources grew beyond the criterion (RSS ≤ ×%.2f + %d MiB, descriptors ≤ ×%.2f + %d): %v",
				g.Node, crit.RSSFactor, crit.RSSSlackKiB>>10, crit.FDFactor, crit.FDSlack, g)
		}
	}
}
