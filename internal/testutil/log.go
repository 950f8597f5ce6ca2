package testutil

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

// QuietLogger returns a logger that formats its records as text and throws
// them away: for a component whose log a test does not read.
func QuietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestLogger returns a logger that writes each record at level or above as
// a line of tb's log, so that a failing test shows what the component saw.
// It must not be used after the test has ended (tb.Log panics then): close
// the component first.
func TestLogger(tb testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{tb}, &slog.HandlerOptions{Level: level}))
}

// logWriter sends what is written to it to a test's log, a line per Write.
type logWriter struct{ tb testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
