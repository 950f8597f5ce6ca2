//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nofileEnv, when set in this test binary's environment, makes it a
// wrapper: it lowers its RLIMIT_NOFILE (soft and hard) to the value and
// executes its arguments, so that the command starts under that limit.
const nofileEnv = "CHORUS_E2E_NOFILE"

func init() {
	v := os.Getenv(nofileEnv)
	if v == "" {
		return
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err == nil {
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n})
	}
	if err == nil && len(os.Args) > 1 {
		env := make([]string, 0, len(os.Environ()))
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, nofileEnv+"=") {
				env = append(env, e)
			}
		}
		err = syscall.Exec(os.Args[1], os.Args[1:], env)
	}
	fmt.Fprintf(os.Stderr, "%s=%s: %v\n", nofileEnv, v, err)
	os.Exit(2)
}

// startAgentWithNofile starts an agent (args after "agent") whose
// descriptor limit is nofile, soft and hard, and waits until it serves.
func startAgentWithNofile(t *testing.T, nofile int, args ...string) *agent {
	t.Helper()
	args = append(append([]string{agentBin, "agent"}, agentP2PArgs...), args...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", nofileEnv, nofile))
	p := &process{name: "chorus agent (nofile " + strconv.Itoa(nofile) + ")", cmd: cmd, stdout: newLineLog(), stderr: newLineLog(), done: make(chan struct{})}
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
		if !p.exited() {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.logOutput(t)
		}
	})
	deadline := time.Now().Add(startTimeout)
	for i := 0; ; i++ {
		line, err := p.stderr.line(i, time.Until(deadline))
		if err != nil {
			p.logOutput(t)
			t.Fatalf("%s: no \"chorus node started\" line: %v", p.name, err)
		}
		if m := startedRE.FindStringSubmatch(line); m != nil {
			return &agent{process: p, nodeID: m[1], addr: m[2], startRevision: m[3]}
		}
	}
}

var (
	etcdAddrRE = regexp.MustCompile(`msg="etcd API started" addr=(\S+)`)
	httpAddrRE = regexp.MustCompile(`msg="chorus node started" .*\bhttp=(\S+)`)
)

// procFigures returns the process's open descriptors and resident memory
// (kB), from /proc.
func procFigures(t *testing.T, pid int) (fds, rssKB int) {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("count descriptors: %v", err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			rssKB, _ = strconv.Atoi(f[1])
		}
	}
	return len(ents), rssKB
}

// http2Preface is what a gRPC client sends first: the HTTP/2 connection
// preface and an empty SETTINGS frame. A connection that sends it and then
// nothing has completed gRPC's handshake and idles.
var http2Preface = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)

// floodConn is one connection of a flood and what the server did with it.
type floodConn struct {
	c      net.Conn
	got    bytes.Buffer // what the server sent before closing
	closed chan struct{}
}

// flood opens n connections to addr, each sending hello (if any) and then
// idling; a goroutine per connection records what the server sends until
// it closes the connection (or the test ends).
func flood(t *testing.T, addr string, n int, hello []byte) []*floodConn {
	t.Helper()
	out := make([]*floodConn, 0, n)
	for range n {
		fc := &floodConn{closed: make(chan struct{})}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			close(fc.closed) // refused before connect returned (a reset)
			out = append(out, fc)
			continue
		}
		fc.c = c
		t.Cleanup(func() { _ = c.Close() })
		if len(hello) > 0 {
			_, _ = c.Write(hello) // a refused connection may fail here
		}
		go func() {
			defer close(fc.closed)
			buf := make([]byte, 4096)
			for {
				k, err := c.Read(buf)
				fc.got.Write(buf[:k])
				if err != nil {
					return
				}
			}
		}()
		out = append(out, fc)
	}
	return out
}

// TestConnectionFloodUnderALowDescriptorLimit: an agent limited to 2,048
// descriptors, with caps of 64 connections per gRPC listener and 16 on
// HTTP, gets 2,600 connections that complete their handshake and idle:
// it refuses those over the caps at once, keeps its descriptors bounded,
// takes 40 MiB of writes meanwhile (a LevelDB journal switch and a table
// written: files opened under the flood), closes the idle connections it
// accepted after the idle timeout, and serves new clients afterwards.
func TestConnectionFloodUnderALowDescriptorLimit(t *testing.T) {
	const (
		nofile   = 2048
		capConns = 64
		capHTTP  = 16
		perGRPC  = 1000 // connections per gRPC listener
		perHTTP  = 600
		idle     = 5 * time.Second
	)
	a := startAgentWithNofile(t, nofile, "--data-dir", t.TempDir(), "--listen-client", "127.0.0.1:0", "--listen-etcd", "127.0.0.1:0",
		"--max-client-conns", strconv.Itoa(capConns), "--max-http-conns", strconv.Itoa(capHTTP), "--client-idle-timeout", idle.String())
	logText := a.stderr.String()
	em, hm := etcdAddrRE.FindStringSubmatch(logText), httpAddrRE.FindStringSubmatch(logText)
	if em == nil || hm == nil {
		t.Fatalf("no etcd or HTTP address in the log:\n%s", logText)
	}
	etcdAddr, httpAddr := em[1], hm[1]
	pid := a.cmd.Process.Pid
	c := a.dial(t)
	if _, err := c.Put(rpcContext(t), "before", []byte("x")); err != nil {
		t.Fatal(err)
	}
	fds0, rss0 := procFigures(t, pid)

	grpcFlood := flood(t, a.addr, perGRPC, http2Preface)
	etcdFlood := flood(t, etcdAddr, perGRPC, http2Preface)
	httpFlood := flood(t, httpAddr, perHTTP, nil)
	fds1, rss1 := procFigures(t, pid)
	// Every descriptor beyond the baseline is a connection under a cap (or
	// one being refused at this instant, or a store file: a small slack).
	if limit := fds0 + 2*capConns + capHTTP + 32; fds1 > limit {
		t.Errorf("%d descriptors under the flood (%d before); want at most %d", fds1, fds0, limit)
	}

	// Writes go on under the flood, through files opened meanwhile: 40
	// values of 1 MiB fill LevelDB's 32 MiB write buffer, so it switches
	// its journal and writes a table.
	value := bytes.Repeat([]byte("v"), 1<<20-64)
	for i := range 40 {
		if _, err := c.Put(rpcContext(t), fmt.Sprintf("big/%02d", i), value); err != nil {
			t.Fatalf("put %d under the flood: %v", i, err)
		}
	}
	fds2, rss2 := procFigures(t, pid)
	if a.exited() {
		t.Fatalf("the agent exited under the flood")
	}

	// The server closes every flood connection: those over a cap at once
	// (nothing sent), those it accepted once idle (gRPC: a GOAWAY whose
	// debug data says max_idle; HTTP: the header timeout, silently, so the
	// two cannot be told apart there).
	// Idle connections close within the idle timeout and gRPC's 5 s
	// GOAWAY grace; the rest is room for a loaded machine.
	deadline := time.Now().Add(idle + 5*time.Second + 2*time.Minute)
	check := func(name string, conns []*floodConn, maxAccepted int, goaway bool) {
		accepted, refused := 0, 0
		for i, fc := range conns {
			select {
			case <-fc.closed:
			case <-time.After(time.Until(deadline)):
				t.Fatalf("%s: connection %d still open at the deadline", name, i)
			}
			if fc.got.Len() > 0 {
				accepted++
				if goaway && !bytes.Contains(fc.got.Bytes(), []byte("max_idle")) {
					t.Errorf("%s: accepted connection %d closed without a max_idle GOAWAY", name, i)
				}
			} else {
				refused++
			}
		}
		t.Logf("%s: %d connections accepted and closed when idle, %d refused", name, accepted, refused)
		if accepted > maxAccepted || refused < len(conns)-maxAccepted {
			t.Errorf("%s: %d accepted, %d refused; want at most %d accepted", name, accepted, refused, maxAccepted)
		}
		if goaway && accepted == 0 {
			t.Errorf("%s: no connection accepted", name)
		}
	}
	check("client API", grpcFlood, capConns-1, true) // the SDK client holds one slot
	check("etcd API", etcdFlood, capConns, true)
	check("HTTP", httpFlood, capHTTP, false)

	// The descriptors come back, and new clients are served.
	var fds3, rss3 int
	for end := time.Now().Add(rpcTimeout); ; {
		if fds3, rss3 = procFigures(t, pid); fds3 <= fds0+8 || time.Now().After(end) {
			break
		}
		<-time.After(50 * time.Millisecond) // polling /proc: nothing to wait on
	}
	if fds3 > fds0+8 {
		t.Errorf("%d descriptors after the flood; want about %d, as before it", fds3, fds0)
	}
	c2 := a.dial(t)
	if _, err := c2.Put(rpcContext(t), "after", []byte("y")); err != nil {
		t.Fatalf("put from a new client after the flood: %v", err)
	}
	if kv, err := c2.Get(rpcContext(t), "big/39"); err != nil || len(kv.Value) != len(value) {
		t.Fatalf("get of the last write made under the flood: %v", err)
	}
	if !strings.Contains(a.stderr.String(), "connection limit reached") {
		t.Error("no warning about the connection limit in the log")
	}
	t.Logf("descriptors (limit %d): %d before the flood, %d under it, %d after 40 MiB of writes under it, %d after; RSS %d, %d, %d, %d MiB",
		nofile, fds0, fds1, fds2, fds3, rss0>>10, rss1>>10, rss2>>10, rss3>>10)
	a.stopGraceful(t)
}
