package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chorus-kv/chorus/client"
)

// defaultEndpoint is the client API's address when neither --endpoint nor
// $CHORUS_ENDPOINT says otherwise (the agent's default --listen-client).
const defaultEndpoint = "127.0.0.1:7379"

// cliError is an error described for the person at the terminal; it still
// wraps the original for errors.Is.
type cliError struct {
	msg string
	err error
}

func (e *cliError) Error() string { return e.msg }
func (e *cliError) Unwrap() error { return e.err }

// describeErr turns an error of a call to endpoint into one message, with no
// repeated prefix, naming the endpoint and hinting at the usual mistakes:
// no node running there, the wrong port, the etcd API's port.
func describeErr(err error, endpoint string) error {
	var done *cliError
	if err == nil || errors.As(err, &done) {
		return err // nothing to describe, or described already
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		return &cliError{msg: ce.Message, err: err}
	}
	if errors.Is(err, errUsage) || errors.Is(err, context.Canceled) {
		return err
	}
	// The status itself, not status.FromError's: for a wrapped error that
	// one's message is the whole chain, prefixes included.
	var grpcErr interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &grpcErr) {
		return err
	}
	st := grpcErr.GRPCStatus()
	var msg string
	switch st.Code() {
	case codes.Unavailable:
		msg = fmt.Sprintf("no Chorus node answers at %s (%s): is the agent running, and is this its --listen-client address (default %s)? The p2p port (--listen-p2p) and the HTTP port do not serve clients",
			endpoint, lastCause(st.Message()), defaultEndpoint)
	case codes.Unimplemented:
		if strings.Contains(st.Message(), "unknown service") {
			msg = fmt.Sprintf("%s does not serve Chorus' client API (%s): is it the etcd API's port (--listen-etcd; use etcdctl there)? The client API is the agent's --listen-client (default %s)",
				endpoint, st.Message(), defaultEndpoint)
		} else {
			msg = fmt.Sprintf("%s: %s (is the node an older version?)", endpoint, st.Message())
		}
	case codes.DeadlineExceeded:
		msg = fmt.Sprintf("no answer from %s within --timeout", endpoint)
	case codes.Canceled:
		msg = "interrupted"
	default:
		msg = fmt.Sprintf("%s (%s, from %s)", st.Message(), st.Code(), endpoint)
	}
	return &cliError{msg: msg, err: err}
}

// lastCause shortens a gRPC transport message ("connection error: desc =
// \"transport: Error while dialing: dial tcp ...: connect: connection
// refused\"") to its last clause ("connection refused"), for display only.
func lastCause(msg string) string {
	msg = strings.TrimRight(msg, `"`)
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// checkEndpoint refuses an endpoint gRPC would misread: without a port,
// "host" is dialled on port 443.
func checkEndpoint(endpoint string) error {
	if strings.Contains(endpoint, "://") || strings.HasPrefix(endpoint, "unix:") {
		return nil // a gRPC target with a scheme, taken as it is
	}
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil || port == "" {
		return fmt.Errorf("%w: --endpoint %q: want HOST:PORT, e.g. %s (the client API's default port is 7379)", errUsage, endpoint, defaultEndpoint)
	}
	_ = host
	return nil
}

// readValue reads a put's value from stdin. It refuses a terminal (a person
// who forgot the value would otherwise wait on a silent prompt), an empty
// value unless allowEmpty (a forgotten value would blank the key), and ends
// when ctx does (Ctrl-C).
func readValue(ctx context.Context, stdin io.Reader, allowEmpty bool) ([]byte, error) {
	if isTerminal(stdin) {
		return nil, fmt.Errorf("%w: put KEY without VALUE reads the value from standard input, which is a terminal; give the value as an argument (chorus put KEY VALUE) or pipe it in (printf %%s VALUE | chorus put KEY, or chorus put KEY < FILE)", errUsage)
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(stdin)
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("read the value from stdin: %w", r.err)
		}
		if len(r.b) == 0 && !allowEmpty {
			return nil, fmt.Errorf("%w: the value read from standard input is empty; pass --allow-empty to write an empty value, or give the value as an argument", errUsage)
		}
		return r.b, nil
	case <-ctx.Done():
		// The reading goroutine stays blocked on stdin; the process exits.
		return nil, fmt.Errorf("interrupted while reading the value from stdin: %w", ctx.Err())
	}
}

// isTerminal reports whether s (a standard stream) is a terminal: a
// character device other than /dev/null (which scripts and service managers
// give as stdin or stdout). Other character devices are rare there; this
// needs no terminal library.
func isTerminal(s any) bool {
	f, ok := s.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return false
	}
	return true
}
