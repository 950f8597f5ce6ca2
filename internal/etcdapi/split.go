package etcdapi

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"time"
)

// http2Preface is what every HTTP/2 connection (so every gRPC one) starts
// with; an HTTP/1.x request never does.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// classifyTimeout bounds how long a new connection may take to send the
// bytes that tell gRPC from HTTP/1.x.
const classifyTimeout = 5 * time.Second

// splitListener serves gRPC and HTTP/1.x JSON on one port, as etcd does: it
// accepts every connection on root and hands it to grpc when it starts with
// the HTTP/2 preface, else to http.
type splitListener struct {
	root       net.Listener
	grpc, http *chanListener
	done       chan struct{}
	wg         sync.WaitGroup // the accept loop and classifiers
	closeOnce  sync.Once
}

func newSplitListener(root net.Listener) *splitListener {
	s := &splitListener{root: root, done: make(chan struct{})}
	s.grpc = newChanListener(root.Addr(), s.done)
	s.http = newChanListener(root.Addr(), s.done)
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

func (s *splitListener) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.root.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.close()
			return
		}
		s.wg.Add(1)
		go s.classify(c)
	}
}

// classify reads until the bytes differ from the HTTP/2 preface or match all
// of it, then hands the connection, with those bytes put back, on.
func (s *splitListener) classify(c net.Conn) {
	defer s.wg.Done()
	_ = c.SetReadDeadline(time.Now().Add(classifyTimeout))
	var got []byte
	buf := make([]byte, len(http2Preface))
	for len(got) < len(http2Preface) && bytes.HasPrefix([]byte(http2Preface), got) {
		n, err := c.Read(buf[:len(http2Preface)-len(got)])
		got = append(got, buf[:n]...)
		if err != nil {
			_ = c.Close()
			return
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	to := s.http
	if string(got) == http2Preface {
		to = s.grpc
	}
	select {
	case to.conns <- &prefixConn{Conn: c, prefix: got}:
	case <-to.closed:
		_ = c.Close()
	case <-s.done:
		_ = c.Close()
	}
}

// close stops accepting: the root listener closes and the child listeners'
// Accept fails.
func (s *splitListener) close() {
	s.closeOnce.Do(func() {
		close(s.done)
		_ = s.root.Close()
	})
}

// Close closes the root listener and waits for the accept loop and the
// classifiers.
func (s *splitListener) Close() {
	s.close()
	s.wg.Wait()
}

// chanListener is a net.Listener fed by a splitListener. Its Close ends its
// Accept (the server on it stops) but leaves the socket, which the
// splitListener owns, open.
type chanListener struct {
	addr      net.Addr
	conns     chan net.Conn
	done      <-chan struct{} // the splitListener closed
	closed    chan struct{}
	closeOnce sync.Once
}

func newChanListener(addr net.Addr, done <-chan struct{}) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: done, closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
