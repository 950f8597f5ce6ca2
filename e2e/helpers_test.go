//go:build unix

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
)

// Deadlines. They are generous on purpose: the tests must not flake on a
// loaded two-core machine, and a test that passes never waits for them.
const (
	startTimeout = 20 * time.Second // an agent's "chorus node started" line
	exitTimeout  = 30 * time.Second // a process's exit after a signal
	cliTimeout   = 60 * time.Second // one CLI command
	lineTimeout  = 20 * time.Second // one expected watch line
	rpcTimeout   = 20 * time.Second // one SDK call
)

// pollInterval is how often a wait re-checks its condition: most checks run
// a CLI command or an RPC, so they are not polled faster.
const pollInterval = 100 * time.Millisecond

// The binaries TestMain builds: agentBin runs the agents, and chorusBin the
// client commands (watches included). They are the same
// binary, except under `go test -race` (raceEnabled, set in race_test.go):
// agentBin is then built with -race too, so that the node runs with the race
// detector; the client commands stay without it, as a race-enabled binary
// takes about a second to start on some machines.
var (
	chorusBin   string
	agentBin    string
	raceEnabled bool
)

// agentP2PArgs are added to every agent's flags: when the agent has a
// --listen-p2p flag, its libp2p host listens on ports the system picks
// rather than on the fixed default, so that test agents neither collide
// with each other nor with anything else on the machine.
var agentP2PArgs []string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "chorus-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	chorusBin = filepath.Join(dir, "chorus")
	agentBin = chorusBin
	builds := [][]string{{"-o", chorusBin}}
	if raceEnabled {
		agentBin = filepath.Join(dir, "race", "chorus")
		builds = append(builds, []string{"-race", "-o", agentBin})
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, flags := range builds {
		wg.Go(func() {
			// The test runs in the package folder: the module root is its
			// parent. -buildvcs=false: the binary's VCS stamp is of no use
			// here, and asking git for it fails in some checkouts.
			args := append(append([]string{"build", "-buildvcs=false"}, flags...), "./cmd/chorus")
			build := exec.Command("go", args...)
			build.Dir = ".."
			if out, err := build.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	help, _ := exec.Command(chorusBin, "agent", "-h").CombinedOutput()
	if bytes.Contains(help, []byte("-listen-p2p")) {
		agentP2PArgs = []string{"--listen-p2p", "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	return m.Run()
}

// lineLog is an io.Writer that splits what it receives into lines, which
// readers wait for with a deadline. A process's stdout or stderr goes to one.
type lineLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	closed  bool
	changed chan struct{} // closed and replaced whenever lines or closed change
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		added = true
	}
	if added {
		l.notifyLocked()
	}
	return len(p), nil
}

func (l *lineLog) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// close marks the end of the output (the process has exited); a last line
// without a newline becomes a line.
func (l *lineLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.lines = append(l.lines, string(l.partial))
		l.partial = nil
	}
	l.closed = true
	l.notifyLocked()
}

// String returns everything written so far.
func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, line := range l.lines {
		b.WriteString(line)
		b.WriteByte('\n')
	}
	b.Write(l.partial)
	return b.String()
}

var (
	errTimeout = errors.New("no line before the deadline")
	errEOF     = errors.New("the output ended (the process exited)")
)

// line waits until the log has line i and returns it.
func (l *lineLog) line(i int, timeout time.Duration) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		if i < len(l.lines) {
			line := l.lines[i]
			l.mu.Unlock()
			return line, nil
		}
		closed, changed := l.closed, l.changed
		l.mu.Unlock()
		if closed {
			return "", errEOF
		}
		select {
		case <-changed:
		case <-timer.C:
			return "", errTimeout
		}
	}
}

// lineReader reads a lineLog's lines in order.
type lineReader struct {
	log  *lineLog
	next int
}

// Next returns the next line, waiting up to timeout for it.
func (r *lineReader) Next(timeout time.Duration) (string, error) {
	line, err := r.log.line(r.next, timeout)
	if err == nil {
		r.next++
	}
	return line, err
}

// process is a chorus process started by a test. It is killed and reaped
// when the test ends, and its output is logged if the test failed.
type process struct {
	name   string
	cmd    *exec.Cmd
	stdout *lineLog
	stderr *lineLog
	done   chan struct{} // closed once the process has exited and its output is read

	// Valid once done is closed.
	exitCode int // -1 if a signal ended it
	waitErr  error
}

// startProcess runs chorus with args, in folder dir ("" for the test's own).
func startProcess(t testing.TB, dir string, args ...string) *process {
	t.Helper()
	return startProcessWith(t, dir, nil, args...)
}

// startProcessStdin is startProcess with stdin (in the test's folder).
func startProcessStdin(t testing.TB, stdin *os.File, args ...string) *process {
	t.Helper()
	return startProcessWith(t, "", stdin, args...)
}

func startProcessWith(t testing.TB, dir string, stdin *os.File, args ...string) *process {
	t.Helper()
	bin := chorusBin
	if len(args) > 0 && args[0] == "agent" {
		bin = agentBin
		if !slices.Contains(args, "--listen-p2p") {
			args = slices.Concat(args[:1], agentP2PArgs, args[1:])
		}
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = stdin
	}
	p := &process{
		name:   "chorus " + strings.Join(args, " "),
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
		p.waitErr = cmd.Wait() // returns once stdout and stderr are copied
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
		if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("%s: the race detector reported a data race", p.name)
		}
		if t.Failed() {
			p.logOutput(t)
		}
	})
	return p
}

func (p *process) logOutput(t testing.TB) {
	t.Helper()
	t.Logf("--- %s (pid %d) stderr:\n%s", p.name, p.cmd.Process.Pid, p.stderr.String())
	if out := p.stdout.String(); out != "" {
		t.Logf("--- %s (pid %d) stdout:\n%s", p.name, p.cmd.Process.Pid, out)
	}
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its exit code (-1 if a
// signal ended it).
func (p *process) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.exitCode
	case <-time.After(timeout):
		p.logOutput(t)
		t.Fatalf("%s did not exit within %v", p.name, timeout)
		return 0
	}
}

// stop sends sig and waits for the process to exit; it returns the exit code.
func (p *process) stop(t testing.TB, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		t.Fatalf("%s: send %v: %v", p.name, sig, err)
	}
	return p.wait(t, exitTimeout)
}

// stopGraceful sends SIGTERM and requires a clean exit (code 0).
func (p *process) stopGraceful(t testing.TB) {
	t.Helper()
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		p.logOutput(t)
		t.Fatalf("%s: exit code %d after SIGTERM, want 0 (%v)", p.name, code, p.waitErr)
	}
}

// kill sends SIGKILL and waits for the process to die.
func (p *process) kill(t testing.TB) {
	t.Helper()
	if code := p.stop(t, syscall.SIGKILL); code != -1 {
		t.Logf("%s: exit code %d after SIGKILL (it exited before the signal?)", p.name, code)
	}
}

// agent is a running `chorus agent`.
type agent struct {
	*process
	dataDir string
	addr    string // its client API, host:port
	nodeID  string
	// startRevision is the revision it logged at start.
	startRevision string
}

var (
	startedRE = regexp.MustCompile(`msg="chorus node started" .*\bnode_id=(\S+) .*\bclient_api=(\S+) .*\brevision=(\d+)`)
	stoppedRE = regexp.MustCompile(`msg="chorus node stopped" .*\bnode_id=(\S+) .*\brevision=(\d+)`)
)

// startAgent starts an agent on dataDir with its client API on a free
// loopback port and waits until it serves. extra are more agent flags.
func startAgent(t testing.TB, dataDir string, extra ...string) *agent {
	t.Helper()
	args := append([]string{"agent", "--data-dir", dataDir, "--listen-client", "127.0.0.1:0"}, extra...)
	return startAgentIn(t, "", args...)
}

// startAgentIn runs chorus with args (an agent command line) in folder dir
// and waits for its "chorus node started" line.
func startAgentIn(t testing.TB, dir string, args ...string) *agent {
	t.Helper()
	p := startProcess(t, dir, args...)
	deadline := time.Now().Add(startTimeout)
	for i := 0; ; i++ {
		line, err := p.stderr.line(i, time.Until(deadline))
		if err != nil {
			p.logOutput(t)
			t.Fatalf("%s: no \"chorus node started\" line: %v", p.name, err)
		}
		if m := startedRE.FindStringSubmatch(line); m != nil {
			a := &agent{process: p, nodeID: m[1], addr: m[2], startRevision: m[3]}
			for j, arg := range args {
				if arg == "--data-dir" && j+1 < len(args) {
					a.dataDir = args[j+1]
				}
			}
			return a
		}
	}
}

// stoppedRevision returns the revision from the agent's "chorus node
// stopped" line, after a graceful stop.
func (a *agent) stoppedRevision(t testing.TB) string {
	t.Helper()
	for i := 0; ; i++ {
		line, err := a.stderr.line(i, time.Second) // the process has exited: no waiting
		if err != nil {
			t.Fatalf("agent log has no \"chorus node stopped\" line: %v\n%s", err, a.stderr.String())
		}
		if m := stoppedRE.FindStringSubmatch(line); m != nil {
			if m[1] != a.nodeID {
				t.Errorf("stopped line names node %s, started as %s", m[1], a.nodeID)
			}
			return m[2]
		}
	}
}

// dial returns an SDK client for the agent, closed when the test ends.
func (a *agent) dial(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.Dial(a.addr)
	if err != nil {
		t.Fatalf("client.Dial(%s): %v", a.addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// cliResult is what one CLI command did.
type cliResult struct {
	args   []string
	stdout []byte
	stderr []byte
	code   int
}

func (r cliResult) String() string {
	return fmt.Sprintf("chorus %s: exit %d\nstdout: %q\nstderr: %q", strings.Join(shorten(r.args), " "), r.code, shortBytes(r.stdout), shortBytes(r.stderr))
}

// cli runs `chorus ARGS --endpoint ADDR` against the agent; stdin may be nil.
func (a *agent) cli(t testing.TB, stdin []byte, args ...string) cliResult {
	t.Helper()
	return runCLI(t, stdin, nil, append(args, "--endpoint", a.addr)...)
}

// mustCLI is cli that requires exit code 0.
func (a *agent) mustCLI(t testing.TB, stdin []byte, args ...string) cliResult {
	t.Helper()
	r := a.cli(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("want exit 0: %v", r)
	}
	return r
}

// runCLI runs chorus with args and waits for it (at most cliTimeout). env,
// when not nil, is added to the test's environment.
func runCLI(t testing.TB, stdin []byte, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, chorusBin, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{args: args, stdout: stdout.Bytes(), stderr: stderr.Bytes()}
	if ctx.Err() != nil {
		t.Fatalf("chorus %s: no exit within %v (killed)\nstderr: %s", strings.Join(shorten(args), " "), cliTimeout, stderr.Bytes())
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("chorus %s: %v", strings.Join(shorten(args), " "), err)
	}
	r.code = cmd.ProcessState.ExitCode()
	return r
}

// shorten keeps long arguments (oversized keys) out of failure messages.
func shorten(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if len(a) > 80 {
			a = fmt.Sprintf("%s…(%d bytes)", a[:40], len(a))
		}
		out[i] = a
	}
	return out
}

func shortBytes(b []byte) []byte {
	if len(b) > 400 {
		return append(b[:400:400], fmt.Sprintf("…(%d bytes)", len(b))...)
	}
	return b
}

// rpcContext is a context for one SDK call.
func rpcContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	t.Cleanup(cancel)
	return ctx
}
