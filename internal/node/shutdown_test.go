package node

import (
	"net"
	"testing"
	"time"
)

// TestShutdownWithConnectionsStuckBeforeHandshake opens connections to both
// client APIs that never send the HTTP/2 preface, then closes the node with
// a 1 s shutdown timeout: Close returns long before gRPC's own handshake
// deadline (120 s), which it used to wait for.
func TestShutdownWithConnectionsStuckBeforeHandshake(t *testing.T) {
	cfg := quietConfig(t.TempDir(), nil)
	cfg.ShutdownTimeout = time.Second
	cfg.ListenEtcd = "127.0.0.1:0"
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		for _, addr := range []string{n.ClientAddr().String(), n.EtcdAddr().String()} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	// The bound is generous for a busy machine, and far below the 120 s
	// that Close took before the handshake deadline.
	const bound = 30 * time.Second
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
		t.Logf("Close returned after %v (shutdown timeout %v, handshake deadline %v)", time.Since(start), cfg.ShutdownTimeout, handshakeTimeout(cfg.ShutdownTimeout))
	case <-time.After(bound):
		t.Fatalf("Close did not return within %v with 40 connections stuck before their handshake", bound)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	for _, tc := range []struct{ shutdown, want time.Duration }{
		{0, time.Second},
		{500 * time.Millisecond, time.Second},
		{2 * time.Second, 2 * time.Second},
		{5 * time.Second, 5 * time.Second},
		{time.Minute, maxHandshakeTimeout},
	} {
		if got := handshakeTimeout(tc.shutdown); got != tc.want {
			t.Errorf("handshakeTimeout(%v) = %v; want %v", tc.shutdown, got, tc.want)
		}
	}
}
