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
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// cluster is three server processes and their etcd client endpoints.
type cluster struct {
	procs     []*proc
	endpoints []string
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

// startEtcd starts a 3-member etcd cluster on loopback with etcd's defaults
// (fsync on every commit).
func startEtcd(ctx context.Context, bin, dir string) (*cluster, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%d", i, ports[3+i]))
	}
	c := &cluster{}
	for i := range 3 {
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[i])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[3+i])
		cmd := exec.Command(bin,
			"--name", fmt.Sprintf("e%d", i),
			"--data-dir", filepath.Join(dir, fmt.Sprint(i)),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", "bench",
			"--log-level", "error")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
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

// startChorus starts 3 Chorus agents with the etcd API, the 2nd and 3rd
// bootstrapped from the 1st and admitted as an operator does (`chorus id`
// on the new node's data folder, `chorus member add` on the 1st).
func startChorus(ctx context.Context, bin, dir string) (*cluster, error) {
	c := &cluster{}
	var boot, firstClient string
	for i := range 3 {
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
		cmd := exec.Command(bin, args...)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			return nil, err
		}
		if err := c.start(cmd); err != nil {
			c.stop()
			return nil, err
		}
		found := map[*regexp.Regexp]string{}
		lines := bufio.NewScanner(stderr)
		for len(found) < 3 && lines.Scan() {
			for _, re := range []*regexp.Regexp{bootstrapRE, etcdAPIRE, clientAPIRE} {
				if m := re.FindStringSubmatch(lines.Text()); m != nil && found[re] == "" {
					found[re] = m[1]
				}
			}
		}
		if len(found) < 3 {
			c.stop()
			return nil, errors.New("a chorus agent did not log its addresses")
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

// waitReady waits until every member lists 3 members and a put on each
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
