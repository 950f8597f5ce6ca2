package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestNormalizeArgs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"get -endpoint 1.2.3.4:5 /k", "get --endpoint 1.2.3.4:5 /k"},
		{"get -endpoint=1.2.3.4:5 -print-value-only /k", "get --endpoint=1.2.3.4:5 --print-value-only /k"},
		{"get -o json /k", "get -o json /k"},         // a shorthand stays
		{"put /k -not-a-flag", "put /k -not-a-flag"}, // no such flag: left for pflag to refuse
		{"put -- -endpoint v", "put -- -endpoint v"}, // after --: values
		{"agent -data-dir d -sync-interval -1s", "agent --data-dir d --sync-interval -1s"},
		{"member add -name n2 ID", "member add --name n2 ID"}, // a subcommand's flags
		{"frobnicate -x", "frobnicate -x"},
	} {
		root := newRootCmd(&cmdIO{})
		if got := strings.Join(normalizeArgs(root, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("normalizeArgs(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestCheckEndpoint(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		ok       bool
	}{
		{"127.0.0.1:7379", true},
		{"localhost:7379", true},
		{"[::1]:7379", true},
		{"dns:///node-1:7379", true},
		{"unix:///run/chorus.sock", true},
		{"127.0.0.1", false},
		{"localhost", false},
		{"localhost:", false},
		{"", false},
	} {
		err := checkEndpoint(tc.endpoint)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, errUsage) {
			t.Errorf("checkEndpoint(%q) = %v; want ok=%v (a usage error otherwise)", tc.endpoint, err, tc.ok)
		}
	}
}

func TestDescribeErr(t *testing.T) {
	const ep = "127.0.0.1:7379"
	wrapped := func(err error) error { return fmt.Errorf("chorus get: %w", err) }
	for _, tc := range []struct {
		name string
		err  error
		want []string
	}{
		{"refused", wrapped(status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:7379: connect: connection refused"`)),
			[]string{"no Chorus node answers at " + ep + " (connection refused)", "is the agent running"}},
		{"etcd port", wrapped(status.Error(codes.Unimplemented, "unknown service chorus.kv.v1.KVService")),
			[]string{ep + " does not serve Chorus' client API (unknown service chorus.kv.v1.KVService)", "etcd API's port"}},
		{"deadline", wrapped(status.Error(codes.DeadlineExceeded, "context deadline exceeded")), []string{"no answer from " + ep + " within --timeout"}},
		{"other", wrapped(status.Error(codes.Internal, "boom")), []string{"boom (Internal, from " + ep + ")"}},
	} {
		got := describeErr(tc.err, ep)
		for _, want := range tc.want {
			if !strings.Contains(got.Error(), want) {
				t.Errorf("%s: %q lacks %q", tc.name, got, want)
			}
		}
		if strings.Contains(got.Error(), "chorus get:") || strings.Contains(got.Error(), "rpc error") {
			t.Errorf("%s: %q repeats a prefix", tc.name, got)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: the described error does not wrap the original", tc.name)
		}
	}
	plain := errors.New("plain")
	if got := describeErr(plain, ep); got != plain {
		t.Errorf("a non-gRPC error: %v; want it as it is", got)
	}
	if describeErr(nil, ep) != nil {
		t.Error("describeErr(nil) is not nil")
	}
}

func TestReadValue(t *testing.T) {
	ctx := context.Background()
	if v, err := readValue(ctx, strings.NewReader("v\x00\n"), false); err != nil || string(v) != "v\x00\n" {
		t.Errorf("readValue: %q, %v", v, err)
	}
	if _, err := readValue(ctx, strings.NewReader(""), false); !errors.Is(err, errUsage) {
		t.Errorf("empty without --allow-empty: %v; want a usage error", err)
	}
	if v, err := readValue(ctx, strings.NewReader(""), true); err != nil || len(v) != 0 {
		t.Errorf("empty with --allow-empty: %q, %v", v, err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(null) {
		t.Error("isTerminal(/dev/null) = true; scripts give it as stdin")
	}
	// A reader that never ends: the context ends the wait.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	defer r.Close()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := readValue(cctx, r, false); !errors.Is(err, context.Canceled) {
		t.Errorf("readValue after cancel: %v; want context.Canceled", err)
	}
}

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		code         int
		stdout, errs string
	}{
		{[]string{"--help"}, exitOK, "Keys:", ""},
		{[]string{"version"}, exitOK, "chorus " + version, ""},
		{[]string{}, exitUsage, "", "chorus: no command given"},
		{[]string{"nope"}, exitUsage, "", `chorus: unknown command "nope"`},
		{[]string{"get"}, exitUsage, "", "chorus get: get KEY [--prefix]\nRun 'chorus get --help' for usage."},
		{[]string{"get", "/k", "--bad"}, exitUsage, "", "chorus get: unknown flag: --bad"},
		{[]string{"member", "frob"}, exitUsage, "", `chorus member: unknown subcommand "frob"`},
		{[]string{"get", "/k", "--endpoint", "nohost"}, exitUsage, "", `--endpoint "nohost": want HOST:PORT`},
	} {
		var stdout, stderr bytes.Buffer
		code := runContext(context.Background(), tc.args, strings.NewReader(""), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.errs) {
			t.Errorf("chorus %q: exit %d, stdout %q, stderr %q; want exit %d, %q and %q", tc.args, code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.errs)
		}
	}
}
