//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pseudo-terminal and returns its terminal side, to
// stand for a person's terminal as a process's stdin.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	_, tty := openPTYPair(t)
	return tty
}

// openPTYPair opens a new pseudo-terminal and returns its controlling side
// (what a terminal emulator reads the process's output from) and its
// terminal side; both are closed when the test ends.
func openPTYPair(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { _ = ptmx.Close() })
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		t.Skipf("pseudo-terminal number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { _ = tty.Close() })
	return ptmx, tty
}

// waitReadingStdin waits until a thread of process pid is blocked in
// read(0, ...), from /proc/PID/task/*/syscall.
func waitReadingStdin(t *testing.T, pid int) {
	t.Helper()
	readNr := map[string]string{"amd64": "0", "arm64": "63", "386": "3", "arm": "3", "riscv64": "63"}[runtime.GOARCH]
	if readNr == "" {
		t.Skipf("read's syscall number on %s is not known here", runtime.GOARCH)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			fields := strings.Fields(string(b))
			if len(fields) >= 2 && fields[0] == readNr && fields[1] == "0x0" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d never blocked reading its stdin", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling /proc: there is nothing to wait on
	}
}
