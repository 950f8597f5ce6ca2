package testutil

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as the real one does, so that a test can check how a helper
// fails. Logf records too.
type fatalRecorder struct {
	testing.TB
	mu    sync.Mutex
	fatal string
	logs  []string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *fatalRecorder) Log(args ...any) {
	r.mu.Lock()
	r.logs = append(r.logs, fmt.Sprint(args...))
	r.mu.Unlock()
}

// run calls f with r on a goroutine of its own (Fatalf ends it) and waits
// for it.
func (r *fatalRecorder) run(f func(tb testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
}

func TestEventually(t *testing.T) {
	tests := []struct {
		name      string
		holdsFrom int // the check from which cond holds; 0 never
		why       string
		wantFatal string
	}{
		{"holds at once", 1, "", ""},
		{"holds later", 4, "", ""},
		{"never holds", 0, "", "timed out after 1s waiting until the thing is done"},
		{"never holds, says why", 0, "2 of 3", "timed out after 1s waiting until the thing is done: 2 of 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// In a bubble, each poll's sleep advances the virtual clock: the
			// second of waiting takes no real time.
			synctest.Test(t, func(t *testing.T) {
				r := &fatalRecorder{TB: t}
				checks := 0
				cond := func() (bool, string) {
					checks++
					return tt.holdsFrom > 0 && checks >= tt.holdsFrom, tt.why
				}
				var took time.Duration
				start := time.Now()
				r.run(func(tb testing.TB) {
					if tt.why == "" {
						Eventually(tb, time.Second, "the thing is done", func() bool { ok, _ := cond(); return ok })
						took = time.Since(start)
					} else {
						took = EventuallyWhy(tb, time.Second, PollInterval, "the thing is done", cond)
					}
				})
				if r.fatal != tt.wantFatal {
					t.Fatalf("Fatalf(%q); want %q", r.fatal, tt.wantFatal)
				}
				if tt.wantFatal != "" {
					// cond was checked up to and just past the deadline.
					if want := int(time.Second/PollInterval) + 1; checks < want {
						t.Errorf("%d checks before failing; want at least %d", checks, want)
					}
					return
				}
				if want := time.Duration(tt.holdsFrom-1) * PollInterval; took != want || checks != tt.holdsFrom {
					t.Errorf("returned after %v and %d checks; want %v and %d", took, checks, want, tt.holdsFrom)
				}
			})
		})
	}
}

func TestTestLoggerWritesLinesAtLevel(t *testing.T) {
	r := &fatalRecorder{TB: t}
	log := TestLogger(r, slog.LevelWarn)
	log.Info("dropped")
	log.Warn("kept", "k", 1)
	if len(r.logs) != 1 || !strings.Contains(r.logs[0], "msg=kept k=1") || strings.HasSuffix(r.logs[0], "\n") {
		t.Fatalf("logged %q; want one line with the warning, without its newline", r.logs)
	}
}

func TestFakeWall(t *testing.T) {
	w := NewFakeWall(1000)
	if got := w.Now(); got != 1000 {
		t.Fatalf("Now = %d; want 1000", got)
	}
	w.Set(500)
	w.Add(-3)
	if got := w.Now(); got != 497 {
		t.Fatalf("Now after Set(500), Add(-3) = %d; want 497", got)
	}
}
