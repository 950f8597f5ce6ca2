package connlimit_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/internal/connlimit"
)

const waitTimeout = 10 * time.Second

// TestCapRefusesTheExcessAndFreesSlots: with a cap of 3, the fourth and
// fifth connections are closed at once by the server; closing an accepted
// one (twice) frees exactly one slot.
func TestCapRefusesTheExcessAndFreesSlots(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := connlimit.New(inner, 3, "test", nil)
	defer l.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			// A reset of a refused connection can reach the dialer before
			// connect returns.
			return nil
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	// closedByServer reports whether the server closed c (EOF or reset)
	// within the deadline; false if c is still open then.
	closedByServer := func(c net.Conn, within time.Duration) bool {
		if c == nil {
			return true
		}
		_ = c.SetReadDeadline(time.Now().Add(within))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	var server []net.Conn
	var clients []net.Conn
	for range 3 {
		c := dial()
		if c == nil {
			t.Fatal("a connection under the cap was refused")
		}
		clients = append(clients, c)
		server = append(server, <-accepted)
	}
	if l.Open() != 3 {
		t.Fatalf("Open = %d; want 3", l.Open())
	}
	extra := []net.Conn{dial(), dial()}
	for i, c := range extra {
		if !closedByServer(c, waitTimeout) {
			t.Fatalf("connection %d over the cap was not closed by the server", i+4)
		}
	}
	if l.Refused() != 2 {
		t.Errorf("Refused = %d; want 2", l.Refused())
	}
	for i, c := range clients {
		if closedByServer(c, 10*time.Millisecond) {
			t.Errorf("accepted connection %d was closed", i)
		}
	}
	// Closing twice frees one slot: one more connection gets in, the next
	// is refused.
	_ = server[0].Close()
	_ = server[0].Close()
	if l.Open() != 2 {
		t.Fatalf("Open after a close = %d; want 2", l.Open())
	}
	c := dial()
	if c == nil {
		t.Fatal("the connection given the freed slot was refused")
	}
	select {
	case s := <-accepted:
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
			t.Fatalf("the connection given the freed slot: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no connection accepted after a slot was freed")
	}
	if !closedByServer(dial(), waitTimeout) {
		t.Error("a connection over the cap after the slot was retaken was not closed")
	}
	if l.Refused() != 3 {
		t.Errorf("Refused = %d; want 3", l.Refused())
	}
}
