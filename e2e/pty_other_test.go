//go:build unix && !linux

package e2e

import (
	"os"
	"testing"
)

func openPTY(t *testing.T) *os.File {
	t.Skip("pseudo-terminals are opened on Linux only")
	return nil
}

func waitReadingStdin(t *testing.T, _ int) { t.Skip("needs Linux's /proc") }
