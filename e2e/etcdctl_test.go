package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// etcdctl is built once per test binary run, on first use, from the pinned
// module in etcdtools/ (a module of its own, so that the main go.mod does not
// pull in etcd's server and tools), into the folder TestMain removes.
var etcdctl struct {
	once sync.Once
	bin  string
	err  error
}

func etcdctlBin(t *testing.T) string {
	t.Helper()
	etcdctl.once.Do(func() {
		bin := filepath.Join(filepath.Dir(chorusBin), "etcdctl")
		build := exec.Command("go", "build", "-buildvcs=false", "-o", bin, "go.etcd.io/etcd/etcdctl/v3")
		build.Dir = "etcdtools"
		if out, err := build.CombinedOutput(); err != nil {
			etcdctl.err = fmt.Errorf("build etcdctl: %v\n%s", err, out)
			return
		}
		etcdctl.bin = bin
	})
	if etcdctl.err != nil {
		t.Fatal(etcdctl.err)
	}
	return etcdctl.bin
}

var etcdStartedRE = regexp.MustCompile(`msg="etcd API started" addr=(\S+)`)

// etcdAddr returns the agent's etcd API address, from its log.
func (a *agent) etcdAddr(t testing.TB) string {
	t.Helper()
	for i := 0; ; i++ {
		line, err := a.stderr.line(i, startTimeout)
		if err != nil {
			t.Fatalf("agent log has no \"etcd API started\" line: %v\n%s", err, a.stderr.String())
		}
		if m := etcdStartedRE.FindStringSubmatch(line); m != nil {
			return m[1]
		}
	}
}

// startEtcdctl runs etcdctl with args as a process of the test.
func startEtcdctl(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(etcdctlBin(t), args...)
	p := &process{
		name:   "etcdctl " + strings.Join(args, " "),
		cmd:    cmd,
		stdout: newLineLog(),
		stderr: newLineLog(),
		done:   make(chan struct{}),
	}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		p.exitCode = cmd.ProcessState.ExitCode()
		p.stdout.close()
		p.stderr.close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
		}
		select {
		case <-p.done:
		case <-time.After(exitTimeout):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, cmd.Process.Pid)
		}
		if t.Failed() {
			p.logOutput(t)
		}
	})
	return p
}

// runEtcdctl runs one etcdctl command to its end and returns its stdout; it
// fails the test on a non-zero exit.
func runEtcdctl(t *testing.T, args ...string) string {
	t.Helper()
	p := startEtcdctl(t, args...)
	if code := p.wait(t, cliTimeout); code != 0 {
		t.Fatalf("%s: exit code %d\nstdout: %s\nstderr: %s", p.name, code, p.stdout.String(), p.stderr.String())
	}
	return p.stdout.String()
}

// TestEtcdctlAgainstAChorusCluster drives a 3-node cluster with the real
// etcdctl: put on one node, get --prefix and watch --prefix on another, del,
// member list, endpoint status and endpoint health.
func TestEtcdctlAgainstAChorusCluster(t *testing.T) {
	etcdctlBin(t) // build it first: the cluster's start is not held up by it
	agents := []*agent{startAgent(t, t.TempDir(), "--listen-etcd", "127.0.0.1:0")}
	boot := agents[0].p2pAddr(t)
	for range 2 {
		agents = append(agents, startAgent(t, admitNew(t, agents[0]), "--listen-etcd", "127.0.0.1:0", "--bootstrap", boot))
	}
	clients := make([]*client.Client, len(agents))
	eps := make([]string, len(agents))
	for i, a := range agents {
		clients[i] = a.dial(t)
		eps[i] = a.etcdAddr(t)
	}
	waitGossip(t, clients)
	on := func(i int) string { return "--endpoints=" + eps[i] }

	// A watch on node 2 sees the puts and the delete made on node 0. It starts
	// at revision 1 of node 2 (revisions are per node), so the puts are seen
	// even if they reach node 2 before etcdctl has set its watch up.
	watch := startEtcdctl(t, on(2), "watch", "--prefix", "/etcdctl/", "--rev", "1")
	if got := runEtcdctl(t, on(0), "put", "/etcdctl/a", "1"); strings.TrimSpace(got) != "OK" {
		t.Fatalf("put printed %q; want OK", got)
	}
	runEtcdctl(t, on(0), "put", "/etcdctl/b", "2")
	runEtcdctl(t, on(0), "put", "/etcdctm", "outside the prefix")

	// get --prefix on node 1 (gossip is asynchronous: wait for both keys).
	testutil.EventuallyWhy(t, lineTimeout, 50*time.Millisecond, "get --prefix on node 1 prints both keys", func() (bool, string) {
		got := runEtcdctl(t, on(1), "get", "--prefix", "/etcdctl/")
		return got == "/etcdctl/a\n1\n/etcdctl/b\n2\n", fmt.Sprintf("it printed %q", got)
	})
	if got := runEtcdctl(t, on(0), "del", "/etcdctl/a"); strings.TrimSpace(got) != "1" {
		t.Errorf("del printed %q; want 1", got)
	}
	want := []string{"PUT", "/etcdctl/a", "1", "PUT", "/etcdctl/b", "2", "DELETE", "/etcdctl/a"}
	for i, w := range want {
		line, err := watch.stdout.line(i, lineTimeout)
		if err != nil {
			t.Fatalf("watch output line %d: %v (want %q)\n%s", i, err, w, watch.stdout.String())
		}
		if line != w {
			t.Fatalf("watch output line %d is %q; want %q\n%s", i, line, w, watch.stdout.String())
		}
	}

	// member list: the three nodes, started, each with its etcd client URL.
	testutil.EventuallyWhy(t, lineTimeout, 50*time.Millisecond, "member list prints the 3 nodes, started, with their client URLs", func() (bool, string) {
		got := runEtcdctl(t, on(1), "member", "list")
		ok := strings.Count(got, ", started, ") == 3
		for i, a := range agents {
			ok = ok && strings.Contains(got, a.nodeID) && strings.Contains(got, "http://"+eps[i])
		}
		return ok, "it printed:\n" + got
	})

	all := "--endpoints=" + strings.Join(eps, ",")
	status := runEtcdctl(t, all, "endpoint", "status")
	if strings.Count(status, "\n") != 3 {
		t.Errorf("endpoint status printed:\n%s\nwant a line per endpoint", status)
	}
	health := runEtcdctl(t, all, "endpoint", "health")
	if strings.Count(health, "is healthy") != 3 {
		t.Errorf("endpoint health printed:\n%s\nwant every endpoint healthy", health)
	}
}
