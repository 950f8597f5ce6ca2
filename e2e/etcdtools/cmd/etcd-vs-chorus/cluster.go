package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// cluster is the server processes of one system (one, or three) and their
// etcd client endpoints.
type cluster struct {
	procs     []*proc
	endpoints []string
	stopping  atomic.Bool // set by stop: the servers' logs are dropped from then on
}

// logWriter passes a server's log on to stderr until the cluster is being
// stopped (etcd logs errors about its closed listeners when it stops).
type logWriter struct{ c *cluster }

func (w logWriter) Write(p []byte) (int, error) {
	if w.c.stopping.Load() {
		return len(p), nil
	}
	return os.Stderr.Write(p)
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
}

func (c *cluster) start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	c.procs = append(c.procs, p)
	return nil
}

// cpu returns the CPU time (user and system) the server processes have used
// so far, from /proc (zero where it cannot be read).
func (c *cluster) cpu() time.Duration {
	var total time.Duration
	for _, p := range c.procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which ends with ")"): utime and
		// stime are the 12th and 13th, in clock ticks (100 per second).
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		for _, s := range f[11:13] {
			if ticks, err := strconv.ParseInt(s, 10, 64); err == nil {
				total += time.Duration(ticks) * 10 * time.Millisecond
			}
		}
	}
	return total
}

// exited reports whether a server process has exited.
func (c *cluster) exited() bool {
	for _, p := range c.procs {
		select {
		case <-p.done:
			return true
		default:
		}
	}
	return false
}

func (c *cluster) stop() {
	c.stopping.Store(true)
	for _, p := range c.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range c.procs {
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startEtcd starts an etcd cluster of n members on loopback with etcd's
// defaults (fsync on every commit); n = 1 is a lone member.
func startEtcd(ctx context.Context, bin, dir string, n int) (*cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%d", i, ports[n+i]))
	}
	c := &cluster{}
	for i := range n {
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[i])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[n+i])
		cmd := exec.Command(bin,
			"--name", fmt.Sprintf("e%d", i),
			"--data-dir", filepath.Join(dir, fmt.Sprint(i)),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", "bench",
			"--log-level", "error")
		cmd.Stdout, cmd.Stderr = logWriter{c}, logWriter{c}
		if err := c.start(cmd); err != nil {
			c.stop()
			return nil, err
		}
		c.endpoints = append(c.endpoints, fmt.Sprintf("127.0.0.1:%d", ports[i]))
	}
	if err := c.waitReady(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

var (
	bootstrapRE = regexp.MustCompile(`msg="bootstrap from" addr=(\S+/tcp/\S+)`)
	etcdAPIRE   = regexp.MustCompile(`msg="etcd API started" addr=(\S+)`)
	clientAPIRE = regexp.MustCompile(`msg="chorus node started" .*client_api=(\S+)`)
)

// chorusOpts are what the command line adds to every Chorus agent.
type chorusOpts struct {
	args []string // extra agent flags, after the command's own
	env  []string // extra environment variables (KEY=VALUE)
}

// startChorus starts n Chorus agents with their defaults and the etcd API,
// the 2nd and later bootstrapped from the 1st and admitted as an operator
// does (`chorus id` on the new node's data folder, `chorus member add` on
// the 1st); n = 1 is a lone agent, with no bootstrap and no peers.
func startChorus(ctx context.Context, bin, dir string, n int, opts chorusOpts) (*cluster, error) {
	c := &cluster{}
	var boot, firstClient string
	for i := range n {
		dataDir := filepath.Join(dir, fmt.Sprint(i))
		if i > 0 {
			id, err := exec.CommandContext(ctx, bin, "id", "--data-dir", dataDir).Output()
			if err != nil {
				c.stop()
				return nil, fmt.Errorf("chorus id: %w", err)
			}
			add := exec.CommandContext(ctx, bin, "member", "add", strings.TrimSpace(string(id)),
				"--name", fmt.Sprintf("c%d", i), "--endpoint", firstClient)
			if out, err := add.CombinedOutput(); err != nil {
				c.stop()
				return nil, fmt.Errorf("chorus member add: %w: %s", err, out)
			}
		}
		args := []string{"agent", "--data-dir", dataDir, "--name", fmt.Sprintf("c%d", i),
			"--listen-client", "127.0.0.1:0", "--listen-etcd", "127.0.0.1:0",
			"--listen-p2p", "/ip4/127.0.0.1/tcp/0", "--log-level", "info"}
		if boot != "" {
			args = append(args, "--bootstrap", boot)
		}
		cmd := exec.Command(bin, append(args, opts.args...)...)
		if len(opts.env) > 0 {
			cmd.Env = append(os.Environ(), opts.env...)
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			c.stop()
			return nil, err
		}
		if err := c.start(cmd); err != nil {
			c.stop()
			return nil, err
		}
		found := map[*regexp.Regexp]string{}
		var seen []string // the log so far, shown if the agent fails to start
		lines := bufio.NewScanner(stderr)
		for len(found) < 3 && lines.Scan() {
			seen = append(seen, lines.Text())
			for _, re := range []*regexp.Regexp{bootstrapRE, etcdAPIRE, clientAPIRE} {
				if m := re.FindStringSubmatch(lines.Text()); m != nil && found[re] == "" {
					found[re] = m[1]
				}
			}
		}
		if len(found) < 3 {
			c.stop()
			return nil, fmt.Errorf("chorus agent %d did not log its addresses; its log:\n%s", i, strings.Join(seen, "\n"))
		}
		go func() { _, _ = io.Copy(io.Discard, stderr) }() // keep draining the log
		if boot == "" {
			boot, firstClient = found[bootstrapRE], found[clientAPIRE]
		}
		c.endpoints = append(c.endpoints, found[etcdAPIRE])
	}
	if err := c.waitReady(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// waitReady waits until every member lists all the members and a put on each
// member is seen on every other (Chorus's gossip is ready then).
func (c *cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	clients := make([]*clientv3.Client, len(c.endpoints))
	for i, ep := range c.endpoints {
		cl, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer cl.Close()
		clients[i] = cl
	}
	for round := 0; ; round++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cluster not ready: %w", err)
		}
		if c.exited() {
			return errors.New("a server exited during start (its log is above)")
		}
		if ready(ctx, clients, round) {
			return nil
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
}

func ready(ctx context.Context, clients []*clientv3.Client, round int) bool {
	for i, cl := range clients {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ml, err := cl.MemberList(cctx)
		if err == nil {
			_, err = cl.Put(cctx, fmt.Sprintf("/ready/%d", i), fmt.Sprint(round))
		}
		cancel()
		if err != nil || len(ml.Members) != len(clients) {
			return false
		}
	}
	var mu sync.Mutex
	ok := true
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Go(func() {
			for i := range clients {
				deadline := time.Now().Add(2 * time.Second)
				for {
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					g, err := cl.Get(cctx, fmt.Sprintf("/ready/%d", i), clientv3.WithSerializable())
					cancel()
					if err == nil && len(g.Kvs) == 1 && string(g.Kvs[0].Value) == fmt.Sprint(round) {
						break
					}
					if time.Now().After(deadline) {
						mu.Lock()
						ok = false
						mu.Unlock()
						return
					}
					time.Sleep(20 * time.Millisecond) // polling interval
				}
			}
		})
	}
	wg.Wait()
	return ok
}
