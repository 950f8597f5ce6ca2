//go:build linux

package e2e

import (
	"bytes"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDelPrefixProgressBar: `del --prefix` over many keys draws a progress
// bar on standard error when it is a terminal, clears it at the end, and
// draws nothing when standard error is a pipe; standard output holds the
// count either way.
func TestDelPrefixProgressBar(t *testing.T) {
	const keys = 3000
	a := startAgent(t, t.TempDir())
	c := a.dial(t)
	fill(t, c, "/tty/", keys)
	fill(t, c, "/pipe/", keys)

	ptmx, tty := openPTYPair(t)
	cmd := exec.Command(chorusBin, "del", "--prefix", "/tty/", "--endpoint", a.addr)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child holds the terminal side now: once it exits, reading the
	// controlling side ends (EIO).
	_ = tty.Close()
	screen := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(ptmx)
		screen <- b
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("del --prefix: %v; stdout %q", err, stdout.String())
	}
	var drawn string
	select {
	case b := <-screen:
		drawn = string(b)
	case <-time.After(cliTimeout):
		t.Fatal("the terminal's output never ended")
	}
	if got := stdout.String(); got != "3000\n" {
		t.Errorf("stdout %q; want the count", got)
	}
	if !strings.Contains(drawn, "\r\033[Kdeleting [") || !strings.Contains(drawn, "/3000 keys") {
		t.Errorf("the terminal shows %q; want a bar of deleting N/3000 keys", drawn)
	}
	if !strings.HasSuffix(drawn, "\r\033[K") {
		t.Errorf("the terminal shows %q at the end; want the bar cleared", drawn)
	}

	r := a.mustCLI(t, nil, "del", "--prefix", "/pipe/")
	if string(r.stdout) != "3000\n" || len(r.stderr) != 0 {
		t.Errorf("del --prefix into pipes: %v; want the count and nothing on stderr", r)
	}
}
