//go:build unix

package e2e

import (
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestCLIHelpAndCompletion checks that help goes to stdout with exit 0, the
// command list is aligned, and shell completion is generated for bash, zsh
// and fish, with flag values completed by the binary itself.
func TestCLIHelpAndCompletion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"help", "put"}, {"put", "--help"}, {"member", "add", "--help"}} {
		r := runCLI(t, nil, nil, args...)
		if r.code != 0 || len(r.stdout) == 0 || len(r.stderr) != 0 {
			t.Errorf("help: want exit 0, the help on stdout and nothing on stderr: %v", r)
		}
	}
	// The command list: every summary starts in the same column.
	r := runCLI(t, nil, nil, "--help")
	lineRE := regexp.MustCompile(`(?m)^  ([a-z][a-z-]*)( +)\S`)
	col := -1
	var names []string
	for _, m := range lineRE.FindAllStringSubmatch(string(r.stdout), -1) {
		if m[1] == "chorus" {
			continue // a usage line
		}
		names = append(names, m[1])
		if c := len(m[1]) + len(m[2]); col == -1 {
			col = c
		} else if c != col {
			t.Errorf("--help: command %q's summary starts at column %d, others at %d", m[1], c, col)
		}
		if len(m[2]) < 2 {
			t.Errorf("--help: command %q is followed by %d space(s), want at least 2", m[1], len(m[2]))
		}
	}
	for _, want := range []string{"agent", "put", "get", "del", "ls", "watch", "status", "members", "member", "sync", "id", "swarm-key", "join-secret", "health", "version", "completion"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("--help does not list %q: %q", want, names)
		}
	}

	for shell, want := range map[string]string{"bash": "__start_chorus", "zsh": "#compdef chorus", "fish": "complete -c chorus"} {
		r := runCLI(t, nil, nil, "completion", shell)
		if r.code != 0 || !strings.Contains(string(r.stdout), want) {
			t.Errorf("completion %s: want exit 0 and %q in the script: %v", shell, want, r)
		}
	}
	// The scripts call the binary back: commands, and the values of -o.
	if r := runCLI(t, nil, nil, "__complete", "me"); !strings.Contains(string(r.stdout), "member\t") || !strings.Contains(string(r.stdout), "members\t") {
		t.Errorf("completing \"me\": %v", r)
	}
	if r := runCLI(t, nil, nil, "__complete", "get", "/k", "-o", ""); !strings.Contains(string(r.stdout), "text\njson\n") {
		t.Errorf("completing get -o: %v", r)
	}
}

// TestCLIErrors checks that an error has one prefix, names the endpoint,
// and hints at the usual mistakes; and that single-dash long flags of
// earlier versions still work.
func TestCLIErrors(t *testing.T) {
	a := startAgent(t, t.TempDir(), "--listen-etcd", "127.0.0.1:0")
	etcd := a.etcdAddr(t)

	// Flags of Go's flag package style (-endpoint X) still parse.
	if r := runCLI(t, nil, nil, "put", "-endpoint", a.addr, "/e/a", "1"); r.code != 0 || string(r.stdout) != "OK\n" {
		t.Errorf("put -endpoint ADDR: %v", r)
	}
	if r := runCLI(t, nil, nil, "get", "-endpoint="+a.addr, "/e/a", "-print-value-only"); r.code != 0 || string(r.stdout) != "1" {
		t.Errorf("get -endpoint=ADDR -print-value-only: %v", r)
	}

	// A port nothing listens on: take one from an agent that stopped.
	dead := startAgent(t, t.TempDir())
	dead.stopGraceful(t)

	for _, tc := range []struct {
		name  string
		stdin []byte
		args  []string
		code  int
		want  []string
	}{
		{"no port", nil, []string{"get", "/e/a", "--endpoint", "127.0.0.1"}, 2, []string{`chorus get: --endpoint "127.0.0.1": want HOST:PORT`}},
		{"node not running", nil, []string{"put", "/e/b", "v", "--endpoint", dead.addr}, 1, []string{"chorus put: no Chorus node answers at " + dead.addr, "connection refused", "is the agent running"}},
		{"the etcd port", nil, []string{"status", "--endpoint", etcd}, 1, []string{"chorus status: " + etcd + " does not serve Chorus' client API", "etcd API's port"}},
		{"reserved key", nil, []string{"put", "/chorus/members/x", "v", "--endpoint", a.addr}, 1, []string{"chorus put: key \"/chorus/members/x\" is under /chorus/"}},
		{"value too large", make([]byte, 1<<20+1), []string{"put", "/e/c", "--endpoint", a.addr}, 1, []string{"chorus put: ", "the limit is 1048576"}},
		{"absent key", nil, []string{"get", "/e/none", "--endpoint", a.addr}, 1, []string{"chorus get: key /e/none not found"}},
	} {
		r := runCLI(t, tc.stdin, nil, tc.args...)
		if r.code != tc.code {
			t.Errorf("%s: exit code %d, want %d: %v", tc.name, r.code, tc.code, r)
		}
		stderr := string(r.stderr)
		for _, want := range tc.want {
			if !strings.Contains(stderr, want) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, stderr, want)
			}
		}
		// One prefix: "chorus CMD: " once, and no "chorus:" of the SDK's.
		if n := strings.Count(stderr, "chorus "+tc.args[0]+":"); n != 1 || strings.Contains(stderr, "chorus:") || strings.Contains(stderr, "rpc error") {
			t.Errorf("%s: want one prefix and no SDK or gRPC prefix: %q", tc.name, stderr)
		}
	}
}

// TestCLIPutValueSource checks where put takes its value from: refused from
// a terminal and when stdin is empty (unless --allow-empty), and ended by
// Ctrl-C while it waits on stdin.
func TestCLIPutValueSource(t *testing.T) {
	a := startAgent(t, t.TempDir())
	a.mustCLI(t, nil, "put", "/v/k", "kept")

	// Empty stdin (a forgotten value) leaves the key alone.
	if r := a.cli(t, []byte{}, "put", "/v/k"); r.code != 2 || !strings.Contains(string(r.stderr), "--allow-empty") {
		t.Errorf("put with empty stdin: want exit 2 and the --allow-empty hint: %v", r)
	}
	if r := a.cli(t, nil, "put", "/v/k"); r.code != 2 { // stdin is /dev/null
		t.Errorf("put with /dev/null as stdin: want exit 2: %v", r)
	}
	if r := a.mustCLI(t, nil, "get", "/v/k", "--print-value-only"); string(r.stdout) != "kept" {
		t.Errorf("a refused put changed the key: %q", r.stdout)
	}
	a.mustCLI(t, []byte{}, "put", "/v/k", "--allow-empty")
	if r := a.mustCLI(t, nil, "get", "/v/k", "-o", "json"); !strings.Contains(string(r.stdout), `"value":""`) {
		t.Errorf("put --allow-empty: %s", r.stdout)
	}

	// A terminal as stdin: refused at once, with how to pipe a value.
	tty := openPTY(t)
	p := startProcessStdin(t, tty, "put", "/v/k", "--endpoint", a.addr)
	if code := p.wait(t, exitTimeout); code != 2 || !strings.Contains(p.stderr.String(), "is a terminal") || !strings.Contains(p.stderr.String(), "| chorus put KEY") {
		t.Errorf("put from a terminal: exit %d, want 2 and how to pipe a value; stderr %q", code, p.stderr.String())
	}

	// A pipe that never ends: SIGINT (Ctrl-C) ends the wait.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p = startProcessStdin(t, r, "put", "/v/k", "--endpoint", a.addr)
	r.Close()
	// The signal must come once the process handles it: wait until it
	// blocks reading its stdin.
	waitReadingStdin(t, p.cmd.Process.Pid)
	if code := p.stop(t, syscall.SIGINT); code != 1 || !strings.Contains(p.stderr.String(), "interrupted while reading the value") {
		t.Errorf("put waiting on stdin, then SIGINT: exit %d, want 1; stderr %q", code, p.stderr.String())
	}
	if r := a.mustCLI(t, nil, "get", "/v/k", "-o", "json"); !strings.Contains(string(r.stdout), `"value":""`) {
		t.Errorf("an interrupted put changed the key: %s", r.stdout)
	}
}

// TestCLIDelPrefixAndLsReserved checks del --prefix, and that ls leaves the
// reserved /chorus/ keys out unless asked.
func TestCLIDelPrefixAndLsReserved(t *testing.T) {
	a := startAgent(t, t.TempDir())
	for _, k := range []string{"/d/a", "/d/b", "/d/c/1", "/dd"} {
		a.mustCLI(t, nil, "put", k, "v")
	}
	if r := a.mustCLI(t, nil, "del", "/d/", "--prefix"); string(r.stdout) != "3\n" {
		t.Errorf("del /d/ --prefix: stdout %q, want 3", r.stdout)
	}
	if r := a.mustCLI(t, nil, "ls"); string(r.stdout) != "/dd\n" {
		t.Errorf("ls after del --prefix: %q, want only /dd", r.stdout)
	}
	if r := a.cli(t, nil, "del", "", "--prefix"); r.code != 2 {
		t.Errorf("del --prefix of everything: want a usage error: %v", r)
	}

	// Founding a cluster writes the member list under /chorus/.
	id := strings.TrimSpace(string(runCLIOK(t, "id", "--data-dir", t.TempDir()).stdout))
	a.mustCLI(t, nil, "member", "add", id, "--name", "n2")
	if r := a.mustCLI(t, nil, "ls"); string(r.stdout) != "/dd\n" {
		t.Errorf("ls: %q, want the reserved keys left out", r.stdout)
	}
	for _, args := range [][]string{{"ls", "--all"}, {"ls", "-a"}, {"ls", "/chorus/"}} {
		if r := a.mustCLI(t, nil, args...); !strings.Contains(string(r.stdout), "/chorus/members/"+id+"\n") {
			t.Errorf("%s: %q, want the member keys", strings.Join(args, " "), r.stdout)
		}
	}
}
