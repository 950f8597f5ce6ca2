package e2e

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

var debugStartedRE = regexp.MustCompile(`msg="debug listener started" addr=(\S+)`)

// TestDebugListenerServesProfiles starts an agent with --listen-debug and
// reads a goroutine profile and a short CPU profile from it; without the
// flag, nothing listens.
func TestDebugListenerServesProfiles(t *testing.T) {
	a := startAgent(t, t.TempDir(), "--listen-debug", "127.0.0.1:0")
	var addr string
	for i := 0; addr == ""; i++ {
		line, err := a.stderr.line(i, startTimeout)
		if err != nil {
			t.Fatalf("agent log has no \"debug listener started\" line: %v\n%s", err, a.stderr.String())
		}
		if m := debugStartedRE.FindStringSubmatch(line); m != nil {
			addr = m[1]
		}
	}
	get := func(path string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: read: %v", path, err)
		}
		return resp.StatusCode, string(body)
	}
	code, body := get("/debug/pprof/goroutine?debug=1")
	if code != http.StatusOK || !strings.Contains(body, "internal/node.") {
		t.Fatalf("goroutine profile: HTTP %d, %d bytes; want 200 listing the node's goroutines:\n%.500s", code, len(body), body)
	}
	code, body = get("/debug/pprof/profile?seconds=1")
	if code != http.StatusOK || len(body) == 0 {
		t.Fatalf("CPU profile: HTTP %d, %d bytes; want 200 and a profile", code, len(body))
	}
	for _, p := range []string{"block", "mutex"} {
		if code, _ := get("/debug/pprof/" + p + "?debug=1"); code != http.StatusOK {
			t.Errorf("%s profile: HTTP %d; want 200", p, code)
		}
	}
	a.stopGraceful(t)

	b := startAgent(t, t.TempDir())
	if strings.Contains(b.stderr.String(), "debug listener") {
		t.Errorf("an agent without --listen-debug started a debug listener:\n%s", b.stderr.String())
	}
}
