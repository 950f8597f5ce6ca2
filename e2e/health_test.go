package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var httpRE = regexp.MustCompile(`msg="chorus node started" .*\bhttp=(\S+)`)

// httpAddr returns the agent's HTTP listener address, from its log.
func (a *agent) httpAddr(t testing.TB) string {
	t.Helper()
	for i := 0; ; i++ {
		line, err := a.stderr.line(i, startTimeout)
		if err != nil {
			t.Fatalf("agent log has no started line with http=: %v", err)
		}
		if m := httpRE.FindStringSubmatch(line); m != nil {
			return m[1]
		}
	}
}

// TestJoinSecretAndHealth runs real processes: `chorus join-secret` writes
// a secret, two agents share it and the second bootstraps from the first's
// address alone (no peer id, no member add); `chorus health` exits 1 until
// the second has synced, then 0, and 1 against nothing.
func TestJoinSecretAndHealth(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "join-secret")
	if err := os.WriteFile(secret, runCLIOK(t, "join-secret").stdout, 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, t.TempDir(), "--join-secret", secret)
	if r := runCLI(t, nil, nil, "health", "--endpoint", a.httpAddr(t)); r.code != 0 || !strings.Contains(string(r.stdout), `"ready":true`) {
		t.Fatalf("a node alone: %v", r)
	}
	if r := runCLI(t, nil, nil, "health", "--endpoint", "http://"+a.httpAddr(t)+"/healthz"); r.code != 0 {
		t.Fatalf("/healthz: %v", r)
	}
	idLess := strings.Split(a.p2pAddr(t), "/p2p/")[0]
	// A node whose bootstrap peer is not up yet is alive but not ready.
	dead := startAgent(t, t.TempDir(), "--join-secret", secret, "--bootstrap", "/ip4/127.0.0.1/tcp/1")
	if r := runCLI(t, nil, nil, "health", "--endpoint", dead.httpAddr(t)); r.code != 1 || !strings.Contains(string(r.stdout), "anti-entropy") {
		t.Fatalf("a node not synced yet: want exit 1 and the reason: %v", r)
	}
	b := startAgent(t, t.TempDir(), "--join-secret", secret, "--bootstrap", idLess)
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := runCLI(t, nil, nil, "health", "--endpoint", b.httpAddr(t))
		if r.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never became ready: %v", r)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronization
	}
	for {
		out := string(a.mustCLI(t, nil, "members").stdout)
		if strings.Count(out, "alive") >= 2 && strings.Contains(out, b.nodeID[len(b.nodeID)-6:]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b is not an alive member on a:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronization
	}
	if r := runCLI(t, nil, nil, "health", "--endpoint", "127.0.0.1:1", "--timeout", "1s"); r.code != 1 {
		t.Fatalf("nothing listening: want exit 1: %v", r)
	}
	if r := runCLI(t, nil, nil, "health", "--endpoint", "ftp://x"); r.code != 2 {
		t.Fatalf("a bad URL: want exit 2: %v", r)
	}
}
