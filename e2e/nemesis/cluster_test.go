//go:build linux

package nemesis

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/chorus-kv/chorus/client"
)

// Ports every node uses inside its own namespace.
const (
	clientPort = 7379
	p2pPort    = 7380
	debugPort  = 7390 // Go's profiles (--listen-debug), on the lab's private network
)

// Deadlines, generous for a loaded two-core machine; a run that goes well
// never waits for them.
const (
	startTimeout = 60 * time.Second // an agent's "chorus node started" line
	exitTimeout  = 30 * time.Second // a process's exit after SIGKILL
)

// node is one member of the cluster: its namespace, its data folder, and its
// current process (a new one after each restart).
type node struct {
	i      int
	ns, ip string
	dir    string
	log    *os.File // every run of the agent appends its stderr here
	args   []string

	mu      sync.Mutex
	client  *client.Client // to its client API; a new one at each start
	proc    *agentProc
	stopped bool // SIGSTOPped
	offset  time.Duration
	starts  int
}

// agentProc is one run of the agent.
type agentProc struct {
	cmd     *exec.Cmd
	started chan struct{} // closed on the "chorus node started" line
	done    chan struct{} // closed once it has exited
}

// startedWriter passes the agent's stderr to the node's log and closes
// started at the "chorus node started" line.
type startedWriter struct {
	log     *os.File
	started chan struct{}
	seen    bool
	skewed  bool // the agent logged its test-only clock offset (before started)
	partial []byte
}

func (w *startedWriter) Write(p []byte) (int, error) {
	if !w.seen {
		w.partial = append(w.partial, p...)
		if bytes.Contains(w.partial, []byte(`msg="test-only clock offset in effect`)) {
			w.skewed = true
		}
		if bytes.Contains(w.partial, []byte(`msg="chorus node started"`)) {
			w.seen = true
			close(w.started)
			w.partial = nil
		} else if i := bytes.LastIndexByte(w.partial, '\n'); i >= 0 {
			w.partial = w.partial[i+1:]
		}
	}
	return w.log.Write(p)
}

// newNode prepares node i: its data folder under dir, its log in logDir.
func newNode(i int, l *lab, dir, logDir, bin, secret string) (*node, error) {
	n := &node{i: i, ns: l.ns[i], ip: l.ips[i], dir: filepath.Join(dir, fmt.Sprintf("n%d", i))}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return nil, err
	}
	var err error
	if n.log, err = os.Create(filepath.Join(logDir, fmt.Sprintf("n%d.log", i))); err != nil {
		return nil, err
	}
	var peers []string
	for j, ip := range l.ips {
		if j != i {
			peers = append(peers, fmt.Sprintf("/ip4/%s/tcp/%d", ip, p2pPort))
		}
	}
	n.args = []string{"netns", "exec", n.ns, bin, "agent",
		"--data-dir", n.dir,
		"--name", fmt.Sprintf("n%d", i),
		"--listen-client", fmt.Sprintf("%s:%d", n.ip, clientPort),
		"--listen-p2p", fmt.Sprintf("/ip4/%s/tcp/%d", n.ip, p2pPort),
		"--bootstrap", strings.Join(peers, ","),
		"--join-secret", secret,
		"--listen-debug", fmt.Sprintf("%s:%d", n.ip, debugPort),
	}
	return n, nil
}

// dial returns a new client of the node's API. A connection that failed
// while the node was down retries with backoff (here at most a second, not
// gRPC's two minutes); start replaces the client, so that the time to
// converge after a restart does not include a client's backoff.
func (n *node) dial() (*client.Client, error) {
	bo := backoff.DefaultConfig
	bo.MaxDelay = time.Second
	return client.Dial(fmt.Sprintf("%s:%d", n.ip, clientPort),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 2 * time.Second}))
}

// cli returns the current client of the node's API.
func (n *node) cli() *client.Client {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.client
}

// start runs the agent (with the node's clock offset) and waits until it
// serves.
func (n *node) start() error {
	n.mu.Lock()
	cmd := exec.Command("ip", n.args...)
	cmd.Env = os.Environ()
	if n.offset != 0 {
		cmd.Env = append(cmd.Env, "CHORUS_TEST_CLOCK_OFFSET="+n.offset.String())
	}
	// The agent dies with the test process, even one killed before its
	// cleanup (a timeout's panic, a ^C), rather than living on in a
	// namespace nobody will delete.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &agentProc{cmd: cmd, started: make(chan struct{}), done: make(chan struct{})}
	n.starts++
	fmt.Fprintf(n.log, "=== nemesis: start #%d, clock offset %v\n", n.starts, n.offset)
	w := &startedWriter{log: n.log, started: p.started}
	cmd.Stdout, cmd.Stderr = n.log, w
	// ip netns exec execs the agent: the process is the agent itself.
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		return fmt.Errorf("n%d: start: %w", n.i, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	n.proc = p
	n.stopped = false
	offset := n.offset
	n.mu.Unlock()
	select {
	case <-p.started:
		if (offset != 0) != w.skewed {
			return fmt.Errorf("n%d: started with clock offset %v, but the agent's log says otherwise (skew logged: %v); see %s", n.i, offset, w.skewed, n.log.Name())
		}
		c, err := n.dial()
		if err != nil {
			return err
		}
		n.mu.Lock()
		old := n.client
		n.client = c
		n.mu.Unlock()
		if old != nil {
			_ = old.Close() // calls under way on it fail: the process they went to is gone
		}
		return nil
	case <-p.done:
		return fmt.Errorf("n%d: the agent exited before serving (%v); see %s", n.i, cmd.ProcessState, n.log.Name())
	case <-time.After(startTimeout):
		return fmt.Errorf("n%d: no \"chorus node started\" within %v; see %s", n.i, startTimeout, n.log.Name())
	}
}

// pid is the current process's id, 0 if none runs.
func (n *node) pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return 0
	}
	select {
	case <-n.proc.done:
		return 0
	default:
		return n.proc.cmd.Process.Pid
	}
}

// kill sends SIGKILL and waits for the process to exit.
func (n *node) kill() error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		return fmt.Errorf("n%d: pid %d did not exit after SIGKILL", n.i, p.cmd.Process.Pid)
	}
	n.mu.Lock()
	n.proc, n.stopped = nil, false
	n.mu.Unlock()
	return nil
}

// signal sends SIGSTOP or SIGCONT.
func (n *node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return fmt.Errorf("n%d: no process to send %v to", n.i, sig)
	}
	if err := n.proc.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("n%d: %v: %w", n.i, sig, err)
	}
	n.stopped = sig == syscall.SIGSTOP
	return nil
}

// restart kills the node and starts it with the given clock offset.
func (n *node) restart(offset time.Duration) error {
	if err := n.kill(); err != nil {
		return err
	}
	n.mu.Lock()
	n.offset = offset
	n.mu.Unlock()
	return n.start()
}

// saveProfile saves one of the agent's Go profiles (heap, goroutine...) to
// path, for a soak whose curves grew.
func (n *node) saveProfile(name, path string) error {
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s:%d/debug/pprof/%s", n.ip, debugPort, name))
	if err != nil {
		return fmt.Errorf("n%d: %s profile: %w", n.i, name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("n%d: %s profile: %s", n.i, name, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("n%d: %s profile: %w", n.i, name, err)
	}
	return os.WriteFile(path, b, 0o644)
}

// close kills the process and closes the client and the log.
func (n *node) close() error {
	err := n.kill()
	if c := n.cli(); c != nil {
		err = errors.Join(err, c.Close())
	}
	return errors.Join(err, n.log.Close())
}

// tail returns the last lines of the node's log.
func (n *node) tail(lines int) string {
	b, err := os.ReadFile(n.log.Name())
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
