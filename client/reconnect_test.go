package client

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// TestReconnectsWithinMaxDelay: against an endpoint whose connections all
// fail (a listener that accepts and closes at once), the client dials again
// at least every reconnectBackoff.MaxDelay (plus jitter), not at gRPC's
// default of up to 120 s. Over 25 s, gRPC's default backoff would leave a
// gap of more than 9 s (attempts at about 0, 1, 2.6, 5.2, 9.3, 15.8, 26 s).
func TestReconnectsWithinMaxDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("25 s of failing connections")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var attempts []time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			attempts = append(attempts, time.Now())
			mu.Unlock()
			_ = c.Close()
		}
	}()
	c, err := Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const window = 25 * time.Second
	start := time.Now()
	for time.Since(start) < window {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		if _, err := c.Get(ctx, "k"); err == nil || !errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
			t.Fatalf("Get against a failing endpoint: %v; want unavailable", err)
		}
		<-ctx.Done()
		cancel()
	}
	end := time.Now()
	_ = ln.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) < 2 {
		t.Fatalf("%d connection attempts in %v", len(attempts), window)
	}
	limit := time.Duration(float64(reconnectBackoff.Backoff.MaxDelay)*(1+reconnectBackoff.Backoff.Jitter)) + 2*time.Second
	prev := attempts[0]
	for _, at := range append(attempts[1:], end) {
		if gap := at.Sub(prev); gap > limit {
			t.Fatalf("%v without a connection attempt (attempts at %v); want at most %v", gap.Round(time.Millisecond), offsets(start, attempts), limit)
		}
		prev = at
	}
	t.Logf("%d attempts in %v: %v", len(attempts), window, offsets(start, attempts))
}

func offsets(start time.Time, ts []time.Time) []time.Duration {
	var out []time.Duration
	for _, t := range ts {
		out = append(out, t.Sub(start).Round(10*time.Millisecond))
	}
	return out
}
