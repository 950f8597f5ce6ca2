//go:build linux

package nemesis

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// lab is the run's network: a hub namespace holding a bridge, one namespace
// per node with a veth to the bridge, and a veth from the test's own
// namespace to the bridge, through which the writers and watchers reach the
// nodes' client APIs. The bridge sits in a namespace of its own so that no
// rule of the host's firewall (a FORWARD policy of DROP with br_netfilter, as
// Docker sets) sees the cluster's traffic, and the host's rules are never
// touched. Every name carries the run's random id, so a run never meets a
// crashed run's leftovers; close deletes everything it made.
type lab struct {
	id     string   // random hex, in every name
	hub    string   // the bridge's namespace
	hostIf string   // the test namespace's end of its veth to the bridge
	hostIP string   // its address
	ns     []string // per node
	ips    []string // per node
	made   []func() error
}

// run runs a command and returns its combined output in the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// freeSubnet picks a 10.x.y.0/24 that no address or route of the test's
// namespace mentions.
func freeSubnet() (string, error) {
	addrs, err := exec.Command("ip", "-o", "addr").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip -o addr: %v: %s", err, addrs)
	}
	routes, err := exec.Command("ip", "route").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip route: %v: %s", err, routes)
	}
	used := string(addrs) + string(routes)
	for range 100 {
		x, _ := rand.Int(rand.Reader, big.NewInt(50))
		y, _ := rand.Int(rand.Reader, big.NewInt(256))
		prefix := fmt.Sprintf("10.%d.%d.", 200+x.Int64(), y.Int64())
		if !strings.Contains(used, prefix) && !strings.Contains(used, fmt.Sprintf("10.%d.0.0/", 200+x.Int64())) {
			return prefix, nil
		}
	}
	return "", errors.New("no free 10.x.y.0/24 subnet found")
}

// nsPrefix starts the name of every namespace a run makes, followed by the
// test process's id.
const nsPrefix = "chorus-nemesis-"

// sweepStale deletes the namespaces of earlier runs whose test process no
// longer exists (a run killed before its cleanup). Their agents died with
// the test process (Pdeathsig); deleting a namespace deletes its links.
func sweepStale(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], nsPrefix) {
			continue
		}
		pidText, _, _ := strings.Cut(strings.TrimPrefix(fields[0], nsPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // not ours to judge, or its run is alive
		}
		if err := run("ip", "netns", "del", fields[0]); err != nil {
			t.Logf("stale namespace of an earlier run: %v", err)
		} else {
			t.Logf("deleted namespace %s, left by an earlier run (pid %d) that ended before its cleanup", fields[0], pid)
		}
	}
}

// newLab makes the network of n nodes. It registers its own cleanup.
func newLab(t *testing.T, n int) *lab {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	prefix, err := freeSubnet()
	if err != nil {
		t.Fatal(err)
	}
	sweepStale(t)
	l := &lab{id: hex.EncodeToString(b), hostIP: prefix + "1"}
	// Namespace names carry the test process's id, for sweepStale.
	base := fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), l.id)
	l.hub = base + "-hub"
	l.hostIf = "cn" + l.id + "h" // interface names: at most 15 bytes
	t.Cleanup(func() {
		if err := l.close(); err != nil {
			t.Errorf("network cleanup: %v", err)
		}
	})
	br := "cn" + l.id + "br"
	steps := [][]string{
		{"netns", "add", l.hub},
		{"-n", l.hub, "link", "set", "lo", "up"},
		{"-n", l.hub, "link", "add", br, "type", "bridge"},
		{"-n", l.hub, "link", "set", br, "up"},
		{"link", "add", l.hostIf, "type", "veth", "peer", "name", l.hostIf + "p", "netns", l.hub},
		{"-n", l.hub, "link", "set", l.hostIf + "p", "master", br, "up"},
		{"addr", "add", l.hostIP + "/24", "dev", l.hostIf},
		{"link", "set", l.hostIf, "up"},
	}
	l.made = append(l.made, func() error { return run("ip", "netns", "del", l.hub) })
	l.made = append(l.made, func() error {
		// Deleting the hub deletes the veth's other end, and with it this
		// one; delete it anyway in case the hub was never made.
		if exec.Command("ip", "link", "show", l.hostIf).Run() == nil {
			return run("ip", "link", "del", l.hostIf)
		}
		return nil
	})
	for i := range n {
		ns := fmt.Sprintf("%s-n%d", base, i)
		ip := fmt.Sprintf("%s%d", prefix, 10+i)
		veth := fmt.Sprintf("cn%sn%d", l.id, i)
		l.ns, l.ips = append(l.ns, ns), append(l.ips, ip)
		l.made = append(l.made, func() error { return run("ip", "netns", "del", ns) })
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", veth, "netns", l.hub},
			[]string{"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
			[]string{"-n", l.hub, "link", "set", veth, "master", br, "up"},
		)
	}
	for _, s := range steps {
		if err := run("ip", s...); err != nil {
			t.Fatalf("network setup: %v", err)
		}
	}
	return l
}

// close deletes every namespace and link the lab made, in reverse order.
func (l *lab) close() error {
	var errs []error
	for i := len(l.made) - 1; i >= 0; i-- {
		if err := l.made[i](); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
	}
	l.made = nil
	return errors.Join(errs...)
}

// partition drops every packet between side and the other nodes, in both
// directions, with nftables rules in each node's namespace. The test's own
// address is never dropped: clients keep reaching every node, as clients
// on each side of a real partition would.
func (l *lab) partition(side []int) error {
	in := map[int]bool{}
	for _, i := range side {
		in[i] = true
	}
	for i := range l.ns {
		var others []string
		for j := range l.ns {
			if in[i] != in[j] {
				others = append(others, l.ips[j])
			}
		}
		set := strings.Join(others, ", ")
		rules := fmt.Sprintf(`table inet nemesis {
	chain in { type filter hook input priority 0; ip saddr { %s } drop; }
	chain out { type filter hook output priority 0; ip daddr { %s } drop; }
}
`, set, set)
		cmd := exec.Command("ip", "netns", "exec", l.ns[i], "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("partition %v: node n%d: nft: %v: %s", side, i, err, out)
		}
	}
	return nil
}

// heal removes every partition rule.
func (l *lab) heal() error {
	var errs []error
	for i, ns := range l.ns {
		if err := run("ip", "netns", "exec", ns, "nft", "flush", "ruleset"); err != nil {
			errs = append(errs, fmt.Errorf("heal node n%d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}
