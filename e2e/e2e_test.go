//go:build unix

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
)

// randomBytes returns n reproducible pseudo-random bytes (seeded by seed).
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// jsonKV is a key as the CLI prints it with -o json.
type jsonKV struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	ValueBase64    string `json:"value_base64"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
	Origin         string `json:"origin"`
}

func (kv *jsonKV) value(t testing.TB) []byte {
	t.Helper()
	if kv.ValueBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(kv.ValueBase64)
		if err != nil {
			t.Fatalf("key %q: value_base64: %v", kv.Key, err)
		}
		return b
	}
	return []byte(kv.Value)
}

func TestCLISession(t *testing.T) {
	a := startAgent(t, t.TempDir())

	// put with the value as an argument.
	if r := a.mustCLI(t, nil, "put", "/s/m", "first"); string(r.stdout) != "OK\n" {
		t.Errorf("put: stdout %q, want \"OK\\n\"", r.stdout)
	}
	if r := a.mustCLI(t, nil, "put", "/s/m", "second", "--prev-kv"); string(r.stdout) != "OK\n/s/m\nfirst\n" {
		t.Errorf("put --prev-kv: stdout %q, want the previous key and value after OK", r.stdout)
	}
	// Flags may come before the positional arguments too.
	a.mustCLI(t, nil, "put", "-o", "text", "/s/a", "alpha")
	a.mustCLI(t, nil, "put", "/s/space", "hello world")
	a.mustCLI(t, nil, "put", "/t/outside", "not under /s/")

	// put with the value from stdin: binary, and large.
	bin := []byte{0x00, 0xff, 'a', '\n', 0x00, 0x80, 0xfe, '\r', 0xff}
	big := randomBytes(512<<10, 1)
	a.mustCLI(t, bin, "put", "/s/bin")
	a.mustCLI(t, big, "put", "/s/big")
	a.mustCLI(t, []byte{}, "put", "/s/empty", "--allow-empty") // an empty value is a value, when asked for

	// get prints the key line, then the value line.
	if r := a.mustCLI(t, nil, "get", "/s/a"); string(r.stdout) != "/s/a\nalpha\n" {
		t.Errorf("get: stdout %q, want %q", r.stdout, "/s/a\nalpha\n")
	}
	if r := a.mustCLI(t, nil, "get", "/s/bin"); string(r.stdout) != "/s/bin\n"+string(bin)+"\n" {
		t.Errorf("get /s/bin: stdout %q", r.stdout)
	}
	if r := a.mustCLI(t, nil, "get", "/s/empty"); string(r.stdout) != "/s/empty\n\n" {
		t.Errorf("get /s/empty: stdout %q, want the key and an empty line", r.stdout)
	}
	// --print-value-only gives back the exact bytes, with no newline added.
	for key, want := range map[string][]byte{"/s/bin": bin, "/s/big": big, "/s/m": []byte("second"), "/s/empty": {}} {
		r := a.mustCLI(t, nil, "get", "--print-value-only", key)
		if !bytes.Equal(r.stdout, want) {
			t.Errorf("get --print-value-only %s: %d bytes differ from the %d put; starts %q", key, len(r.stdout), len(want), shortBytes(r.stdout))
		}
	}
	// A missing key: exit 1 with the reason, nothing on stdout (etcdctl
	// exits 0 here; README says why Chorus does not).
	if r := a.cli(t, nil, "get", "/s/missing"); r.code != 1 || len(r.stdout) != 0 || string(r.stderr) != "chorus get: key /s/missing not found\n" {
		t.Errorf("get of a missing key: want exit 1 and one line on stderr: %v", r)
	}

	// ls lists the keys under the prefix, in key order.
	wantKeys := []string{"/s/a", "/s/big", "/s/bin", "/s/empty", "/s/m", "/s/space"}
	if r := a.mustCLI(t, nil, "ls", "/s/"); string(r.stdout) != strings.Join(wantKeys, "\n")+"\n" {
		t.Errorf("ls /s/: stdout %q, want %q", r.stdout, wantKeys)
	}
	if r := a.mustCLI(t, nil, "ls", "/s/a", "--values"); string(r.stdout) != "/s/a\nalpha\n" {
		t.Errorf("ls /s/a --values: stdout %q", r.stdout)
	}
	if r := a.mustCLI(t, nil, "ls"); !strings.Contains(string(r.stdout), "/t/outside\n") || !strings.HasPrefix(string(r.stdout), "/s/a\n") {
		t.Errorf("ls with no prefix should list every key: stdout %q", shortBytes(r.stdout))
	}
	// ls -o json: one object per line, binary values in value_base64.
	r := a.mustCLI(t, nil, "ls", "/s/", "-o", "json")
	lines := strings.Split(strings.TrimSuffix(string(r.stdout), "\n"), "\n")
	if len(lines) != len(wantKeys) {
		t.Fatalf("ls -o json: %d lines, want %d: %q", len(lines), len(wantKeys), shortBytes(r.stdout))
	}
	wantValues := map[string][]byte{"/s/a": []byte("alpha"), "/s/big": big, "/s/bin": bin, "/s/empty": {}, "/s/m": []byte("second"), "/s/space": []byte("hello world")}
	for i, line := range lines {
		var kv jsonKV
		if err := json.Unmarshal([]byte(line), &kv); err != nil {
			t.Fatalf("ls -o json line %d does not parse: %v: %q", i, err, shortBytes([]byte(line)))
		}
		if kv.Key != wantKeys[i] {
			t.Errorf("ls -o json line %d: key %q, want %q", i, kv.Key, wantKeys[i])
		}
		if kv.Key == "/s/bin" && kv.ValueBase64 == "" {
			t.Errorf("ls -o json: the value of /s/bin is not UTF-8 and should be in value_base64: %s", line)
		}
		if got := kv.value(t); !bytes.Equal(got, wantValues[kv.Key]) {
			t.Errorf("ls -o json: key %q has a %d-byte value, want the %d bytes put", kv.Key, len(got), len(wantValues[kv.Key]))
		}
		if kv.ModRevision <= 0 || kv.CreateRevision <= 0 || kv.Version <= 0 || kv.Origin != a.nodeID {
			t.Errorf("ls -o json: key %q: bad metadata %+v (origin should be %s)", kv.Key, kv, a.nodeID)
		}
	}
	if kv := lines[4]; !strings.Contains(kv, `"version":2`) {
		t.Errorf("ls -o json: /s/m was put twice, want version 2: %s", kv)
	}

	// del prints how many keys it deleted.
	if r := a.mustCLI(t, nil, "del", "/s/a"); string(r.stdout) != "1\n" {
		t.Errorf("del: stdout %q, want \"1\\n\"", r.stdout)
	}
	if r := a.mustCLI(t, nil, "del", "/s/a"); string(r.stdout) != "0\n" {
		t.Errorf("second del: stdout %q, want \"0\\n\"", r.stdout)
	}
	if r := a.cli(t, nil, "get", "/s/a"); r.code != 1 || len(r.stdout) != 0 {
		t.Errorf("get after del: want exit 1 and nothing on stdout: %v", r)
	}
	if r := a.mustCLI(t, nil, "del", "/s/m", "--prev-kv"); string(r.stdout) != "1\n/s/m\nsecond\n" {
		t.Errorf("del --prev-kv: stdout %q", r.stdout)
	}

	// status names the node.
	r = a.mustCLI(t, nil, "status")
	for _, want := range []string{"node:            " + a.nodeID + "\n", "max key bytes:   4096\n", "max value bytes: 1048576\n"} {
		if !strings.Contains(string(r.stdout), want) {
			t.Errorf("status: stdout %q lacks %q", r.stdout, want)
		}
	}
	var st struct {
		NodeID     string `json:"node_id"`
		Revision   int64  `json:"revision"`
		MerkleRoot string `json:"merkle_root"`
	}
	if err := json.Unmarshal(a.mustCLI(t, nil, "status", "-o", "json").stdout, &st); err != nil || st.NodeID != a.nodeID || st.Revision < 9 || len(st.MerkleRoot) != 16 {
		t.Errorf("status -o json: %+v, %v; want node %s, revision >= 9 and a 16-hex-digit root", st, err, a.nodeID)
	} else if !strings.Contains(string(r.stdout), "merkle root:     "+st.MerkleRoot+"\n") {
		t.Errorf("status: text %q and JSON (%s) show different roots", r.stdout, st.MerkleRoot)
	}
	// The endpoint may come from $CHORUS_ENDPOINT.
	if r := runCLI(t, nil, []string{"CHORUS_ENDPOINT=" + a.addr}, "get", "/s/space", "--print-value-only"); r.code != 0 || string(r.stdout) != "hello world" {
		t.Errorf("get with $CHORUS_ENDPOINT: %v", r)
	}

	// Errors: a message with the limit on stderr, a non-zero exit.
	errorCases := []struct {
		name  string
		stdin []byte
		args  []string
		code  int
		want  []string
	}{
		{"empty key", nil, []string{"put", "", "v"}, 1, []string{"key is empty"}},
		{"5000-byte key", nil, []string{"put", strings.Repeat("k", 5000), "v"}, 1, []string{"5000 bytes", "the limit is 4096"}},
		{"5000-byte key get", nil, []string{"get", strings.Repeat("k", 5000)}, 1, []string{"the limit is 4096"}},
		{"2,000,000-byte value", randomBytes(2_000_000, 2), []string{"put", "/s/big"}, 1, []string{"2000000 bytes", "the limit is 1048576"}},
		{"put without a key", nil, []string{"put"}, 2, []string{"usage"}},
		{"get with two keys", nil, []string{"get", "/a", "/b"}, 2, []string{"usage"}},
		{"bad output format", nil, []string{"get", "/a", "-o", "yaml"}, 2, []string{"want text or json"}},
	}
	for _, tc := range errorCases {
		r := a.cli(t, tc.stdin, tc.args...)
		if r.code != tc.code {
			t.Errorf("%s: exit code %d, want %d: %v", tc.name, r.code, tc.code, r)
		}
		for _, want := range tc.want {
			if !strings.Contains(string(r.stderr), want) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, shortBytes(r.stderr), want)
			}
		}
		if len(r.stdout) != 0 {
			t.Errorf("%s: stdout %q, want nothing", tc.name, shortBytes(r.stdout))
		}
	}
	// The refused value left the key as it was.
	if r := a.mustCLI(t, nil, "get", "/s/big", "--print-value-only"); !bytes.Equal(r.stdout, big) {
		t.Errorf("/s/big changed after a refused put (%d bytes)", len(r.stdout))
	}

	// An unknown command is a usage error: exit 2, with the command list.
	if r := runCLI(t, nil, nil, "frobnicate", "--endpoint", a.addr); r.code != 2 || !strings.Contains(string(r.stderr), `unknown command "frobnicate"`) || !strings.Contains(string(r.stderr), "Commands:") {
		t.Errorf("unknown command: want exit 2 and the usage: %v", r)
	}
	if r := runCLI(t, nil, nil); r.code != 2 || !strings.Contains(string(r.stderr), "no command given") || !strings.Contains(string(r.stderr), "  chorus [command]") {
		t.Errorf("no command: want exit 2 and the usage: %v", r)
	}
	if r := runCLI(t, nil, nil, "version"); r.code != 0 || !strings.HasPrefix(string(r.stdout), "chorus ") {
		t.Errorf("version: %v", r)
	}

	a.stopGraceful(t)
}

// watchWrite is a write a watch should report.
type watchWrite struct {
	typ, key string // typ is PUT or DELETE
	value    []byte
	rev      int64
	prev     []byte // the key's value before, nil if it had none
}

// line is the text line `chorus watch` prints for the write (with
// --prev-kv if withPrev): values and keys are quoted when they hold spaces,
// quotes or unprintable bytes.
func (w watchWrite) line(withPrev bool) string {
	q := func(b []byte) string {
		s := string(b)
		if s == "" || strings.ContainsAny(s, " \t") || strconv.Quote(s) != `"`+s+`"` {
			return strconv.Quote(s)
		}
		return s
	}
	line := fmt.Sprintf("%d %s %s", w.rev, w.typ, q([]byte(w.key)))
	if w.typ == "PUT" {
		line += " " + q(w.value)
	}
	if withPrev && w.prev != nil {
		line += " prev=" + q(w.prev)
	}
	return line
}

// startWatch starts `chorus watch ARGS --endpoint ADDR` as a long-running
// process and returns it with a reader of its stdout lines.
func startWatch(t testing.TB, a *agent, args ...string) (*process, *lineReader) {
	t.Helper()
	p := startProcess(t, "", append(append([]string{"watch"}, args...), "--endpoint", a.addr)...)
	return p, &lineReader{log: p.stdout}
}

// waitWatchReady makes sure a watch that started "from now" is in place: the
// CLI prints nothing when the watch is created, so it writes probe values to
// key until one shows up, then waits for the last one, so that no probe line
// is left to read.
func waitWatchReady(t testing.TB, c *client.Client, w *process, r *lineReader, key string) {
	t.Helper()
	deadline := time.Now().Add(lineTimeout)
	seen := false
	last := ""
	for i := 0; ; i++ {
		if !seen {
			last = fmt.Sprintf("probe-%d", i)
			if _, err := c.Put(rpcContext(t), key, []byte(last)); err != nil {
				t.Fatalf("put probe: %v", err)
			}
		}
		wait := time.Until(deadline)
		if !seen {
			// Until a probe shows up, a missing line only means that the
			// watch was not there yet for this probe: write another.
			wait = min(wait, 500*time.Millisecond)
		}
		line, err := r.Next(wait)
		switch {
		case errors.Is(err, errTimeout) && time.Now().Before(deadline):
			continue
		case err != nil:
			w.logOutput(t)
			t.Fatalf("watch not ready after %v: %v", lineTimeout, err)
		}
		fields := strings.Fields(line)
		if len(fields) != 4 || fields[1] != "PUT" || fields[2] != key || !strings.HasPrefix(fields[3], "probe-") {
			t.Fatalf("watch printed %q while only probes were written", line)
		}
		seen = true
		if fields[3] == last {
			return
		}
	}
}

// expectLines reads the next lines and requires them to be want, in order.
func expectLines(t testing.TB, w *process, r *lineReader, want []string) {
	t.Helper()
	for i, wantLine := range want {
		line, err := r.Next(lineTimeout)
		if err != nil {
			w.logOutput(t)
			t.Fatalf("%s: line %d: %v; want %q", w.name, i, err, wantLine)
		}
		if line != wantLine {
			t.Fatalf("%s: line %d is %q, want %q", w.name, i, line, wantLine)
		}
	}
}

// interrupt sends SIGINT to a watch, which must exit 0 having printed no
// more lines.
func interrupt(t testing.TB, w *process, r *lineReader) {
	t.Helper()
	if code := w.stop(t, syscall.SIGINT); code != 0 {
		w.logOutput(t)
		t.Fatalf("%s: exit code %d after SIGINT, want 0", w.name, code)
	}
	if line, err := r.Next(time.Second); !errors.Is(err, errEOF) {
		t.Errorf("%s: unexpected line after the last expected one: %q (%v)", w.name, line, err)
	}
	if s := w.stderr.String(); s != "" {
		t.Errorf("%s: stderr %q, want nothing", w.name, s)
	}
}

func TestCLIWatch(t *testing.T) {
	a := startAgent(t, t.TempDir())
	c := a.dial(t)

	w, wr := startWatch(t, a, "/w/")
	waitWatchReady(t, c, w, wr, "/w/probe")

	// A mix of CLI and SDK writes; their revisions come from -o json and the
	// SDK's results.
	var writes []watchWrite
	values := map[string][]byte{} // each key's live value, for prev
	record := func(typ, key string, value []byte, rev int64) {
		writes = append(writes, watchWrite{typ: typ, key: key, value: value, rev: rev, prev: values[key]})
		if typ == "PUT" {
			values[key] = value
		} else {
			delete(values, key)
		}
	}
	cliPut := func(key, value string) {
		t.Helper()
		var out struct {
			Revision int64  `json:"revision"`
			KV       jsonKV `json:"kv"`
		}
		r := a.mustCLI(t, nil, "put", key, value, "-o", "json")
		if err := json.Unmarshal(r.stdout, &out); err != nil || out.KV.ModRevision == 0 || out.KV.Key != key {
			t.Fatalf("put -o json: %q: %v", r.stdout, err)
		}
		record("PUT", key, []byte(value), out.KV.ModRevision)
	}
	cliDel := func(key string) {
		t.Helper()
		var out struct {
			Revision int64 `json:"revision"`
			Deleted  int   `json:"deleted"`
		}
		r := a.mustCLI(t, nil, "del", key, "-o", "json")
		if err := json.Unmarshal(r.stdout, &out); err != nil || out.Deleted != 1 {
			t.Fatalf("del -o json: %q: %v", r.stdout, err)
		}
		record("DELETE", key, nil, out.Revision) // the only writer: the header's revision is the delete's
	}
	sdkPut := func(key string, value []byte) {
		t.Helper()
		res, err := c.Put(rpcContext(t), key, value)
		if err != nil {
			t.Fatalf("Put %q: %v", key, err)
		}
		record("PUT", key, value, res.KV.ModRevision)
	}
	sdkDel := func(key string) {
		t.Helper()
		res, err := c.Delete(rpcContext(t), key)
		if err != nil || !res.Deleted {
			t.Fatalf("Delete %q: %+v, %v", key, res, err)
		}
		record("DELETE", key, nil, res.Revision)
	}

	cliPut("/w/a", "1")
	cliPut("/w/b", "hello world")             // quoted: a space
	sdkPut("/w/c", []byte("x\x00y\n"))        // quoted: unprintable bytes
	sdkPut("/w/key with spaces", []byte("v")) // the key quoted too
	sdkPut("/w/bin", []byte{0xff, 0xfe})      // not UTF-8
	a.mustCLI(t, nil, "put", "/other/z", "not watched")
	cliPut("/w/a", "2")
	cliDel("/w/a")
	sdkDel("/w/b")
	if res, err := c.Delete(rpcContext(t), "/w/never-existed"); err != nil || res.Deleted {
		t.Fatalf("Delete of a missing key: %+v, %v", res, err)
	} // deleting a missing key is no event
	sdkPut("/w/end", []byte("done"))

	var want, wantPrev []string // without and with --prev-kv
	for i, wr := range writes {
		if i > 0 && wr.rev <= writes[i-1].rev {
			t.Fatalf("revisions do not increase: %+v", writes)
		}
		want = append(want, wr.line(false))
		wantPrev = append(wantPrev, wr.line(true))
	}
	if want[1] != fmt.Sprintf(`%d PUT /w/b "hello world"`, writes[1].rev) ||
		want[2] != fmt.Sprintf(`%d PUT /w/c "x\x00y\n"`, writes[2].rev) ||
		want[3] != fmt.Sprintf(`%d PUT "/w/key with spaces" v`, writes[3].rev) ||
		wantPrev[7] != fmt.Sprintf(`%d DELETE /w/b prev="hello world"`, writes[7].rev) {
		t.Fatalf("test bug: the expected lines are not as documented: %q", wantPrev)
	}
	first := strconv.FormatInt(writes[0].rev, 10)

	t.Run("live", func(t *testing.T) {
		expectLines(t, w, wr, want)
		interrupt(t, w, wr)
	})

	// Replays use --prev-kv: without it, replayed deletes are lost (see
	// TestKnownBugWatchReplayDropsDeletes).
	t.Run("replay --rev --prev-kv", func(t *testing.T) {
		w, r := startWatch(t, a, "/w/", "--rev", first, "--prev-kv")
		expectLines(t, w, r, wantPrev)
		interrupt(t, w, r)
	})

	t.Run("replay --exact --prev-kv", func(t *testing.T) {
		w, r := startWatch(t, a, "/w/a", "--exact", "--prev-kv", "--rev", first)
		expectLines(t, w, r, []string{
			fmt.Sprintf("%d PUT /w/a 1", writes[0].rev),
			fmt.Sprintf("%d PUT /w/a 2 prev=1", writes[5].rev),
			fmt.Sprintf("%d DELETE /w/a prev=2", writes[6].rev),
		})
		interrupt(t, w, r)
	})

	t.Run("json", func(t *testing.T) {
		w, r := startWatch(t, a, "/w/", "-o", "json", "--prev-kv", "--rev", first)
		for i, wantW := range writes {
			line, err := r.Next(lineTimeout)
			if err != nil {
				t.Fatalf("json line %d: %v", i, err)
			}
			var ev struct {
				Type     string  `json:"type"`
				Revision int64   `json:"revision"`
				KV       *jsonKV `json:"kv"`
				PrevKV   *jsonKV `json:"prev_kv"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("json line %d does not parse: %v: %s", i, err, line)
			}
			ok := ev.Type == wantW.typ && ev.Revision == wantW.rev && ev.KV != nil && ev.KV.Key == wantW.key &&
				ev.KV.ModRevision == wantW.rev && bytes.Equal(ev.KV.value(t), wantW.value)
			if wantW.prev == nil {
				ok = ok && ev.PrevKV == nil
			} else {
				ok = ok && ev.PrevKV != nil && ev.PrevKV.Key == wantW.key && bytes.Equal(ev.PrevKV.value(t), wantW.prev)
			}
			if !ok {
				t.Errorf("json line %d: %s\nwant type %s, revision %d, key %q, value %q, prev %q", i, line, wantW.typ, wantW.rev, wantW.key, wantW.value, wantW.prev)
			}
		}
		interrupt(t, w, r)
	})

	// Last: it adds an event to the history the other watches replay.
	t.Run("replay then live", func(t *testing.T) {
		w, r := startWatch(t, a, "/w/", "--rev", strconv.FormatInt(writes[len(writes)-1].rev, 10))
		expectLines(t, w, r, want[len(want)-1:])
		res, err := c.Put(rpcContext(t), "/w/after", []byte("live"))
		if err != nil {
			t.Fatal(err)
		}
		expectLines(t, w, r, []string{fmt.Sprintf("%d PUT /w/after live", res.KV.ModRevision)})
		interrupt(t, w, r)
	})

	// A watch from a bad revision fails at once.
	t.Run("bad --rev", func(t *testing.T) {
		r := a.cli(t, nil, "watch", "/w/", "--rev", "-1")
		if r.code == 0 || !strings.Contains(string(r.stderr), "start_revision is -1") {
			t.Errorf("watch --rev -1: want a non-zero exit and the reason: %v", r)
		}
	})

	a.stopGraceful(t)
}

func TestSDKAgainstProcess(t *testing.T) {
	a := startAgent(t, t.TempDir())
	c := a.dial(t)
	ctx := rpcContext(t)

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.NodeID != a.nodeID || st.MaxKeyBytes != 4096 || st.MaxValueBytes != 1<<20 || st.Revision != 0 {
		t.Errorf("Status: %+v; want node %s, the default limits and revision 0", st, a.nodeID)
	}

	// Watch returns once the node has accepted the watch: no probe needed.
	w, err := c.Watch(ctx, "/sdk/", client.WithPrefix(), client.WithWatchPrevKV())
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer w.Close()
	if w.StartedAfter() != 0 {
		t.Errorf("StartedAfter = %d, want 0", w.StartedAfter())
	}

	// 25 keys, written in reverse order.
	const n = 25
	var revs []int64
	for i := n - 1; i >= 0; i-- {
		res, err := c.Put(ctx, fmt.Sprintf("/sdk/%02d", i), []byte(fmt.Sprintf("v%d", i)))
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
		if res.KV.Version != 1 || res.KV.CreateRevision != res.KV.ModRevision || res.KV.Origin != a.nodeID || res.Revision < res.KV.ModRevision {
			t.Errorf("Put result: %+v, KV %+v", res, res.KV)
		}
		revs = append(revs, res.KV.ModRevision)
	}
	res, err := c.Put(ctx, "/sdk/03", []byte("new"), client.WithPrevKV())
	if err != nil || res.Prev == nil || string(res.Prev.Value) != "v3" || res.KV.Version != 2 {
		t.Fatalf("Put WithPrevKV: %+v, %v", res, err)
	}
	overwrite := res.KV.ModRevision

	kv, err := c.Get(ctx, "/sdk/03")
	if err != nil || string(kv.Value) != "new" || kv.ModRevision != overwrite || kv.Version != 2 {
		t.Errorf("Get: %+v, %v", kv, err)
	}
	if _, err := c.Get(ctx, "/sdk/nope"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Get of a missing key: %v, want ErrNotFound", err)
	}

	var keys []string
	for kv, err := range c.List(ctx, "/sdk/") {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		keys = append(keys, kv.Key)
	}
	if len(keys) != n || keys[0] != "/sdk/00" || keys[n-1] != fmt.Sprintf("/sdk/%02d", n-1) {
		t.Errorf("List: %q", keys)
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			t.Errorf("List is not in key order: %q", keys)
		}
	}
	// Range pages.
	var paged []string
	req := client.RangeRequest{Prefix: "/sdk/", Limit: 10, KeysOnly: true}
	for pages := 0; ; pages++ {
		page, err := c.Range(ctx, req)
		if err != nil || pages > n {
			t.Fatalf("Range: %v (page %d)", err, pages)
		}
		for _, kv := range page.KVs {
			if len(kv.Value) != 0 {
				t.Errorf("Range KeysOnly returned a value for %q", kv.Key)
			}
			paged = append(paged, kv.Key)
		}
		if !page.More {
			break
		}
		req.After = page.NextKey
	}
	if strings.Join(paged, ",") != strings.Join(keys, ",") {
		t.Errorf("Range pages: %q, want %q", paged, keys)
	}

	del, err := c.Delete(ctx, "/sdk/00", client.WithPrevKV())
	if err != nil || !del.Deleted || del.Prev == nil || string(del.Prev.Value) != "v0" {
		t.Errorf("Delete: %+v, %v", del, err)
	}
	if del2, err := c.Delete(ctx, "/sdk/00"); err != nil || del2.Deleted {
		t.Errorf("second Delete: %+v, %v; want Deleted false", del2, err)
	}
	if _, err := c.Get(ctx, "/sdk/00"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}

	// The watch saw every change, in order.
	type seen struct {
		typ  client.EventType
		key  string
		rev  int64
		prev string
	}
	var want []seen
	for i, rev := range revs {
		want = append(want, seen{client.EventPut, fmt.Sprintf("/sdk/%02d", n-1-i), rev, ""})
	}
	want = append(want, seen{client.EventPut, "/sdk/03", overwrite, "v3"}, seen{client.EventDelete, "/sdk/00", del.Revision, "v0"})
	var got []seen
	for len(got) < len(want) {
		events, err := w.Next()
		if err != nil {
			t.Fatalf("watch Next after %d events: %v", len(got), err)
		}
		for _, ev := range events {
			s := seen{ev.Type, ev.KV.Key, ev.KV.ModRevision, ""}
			if ev.Prev != nil {
				s.prev = string(ev.Prev.Value)
			}
			got = append(got, s)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("watch events:\n got %v\nwant %v", got, want)
	}

	// Typed errors, with the sizes.
	var ce *client.Error
	if _, err := c.Put(ctx, "", []byte("v")); !errors.Is(err, client.ErrKeyEmpty) {
		t.Errorf("Put empty key: %v, want ErrKeyEmpty", err)
	}
	if _, err := c.Put(ctx, strings.Repeat("k", 5000), nil); !errors.Is(err, client.ErrKeyTooLarge) || !errors.As(err, &ce) || ce.Limit != 4096 || ce.Size != 5000 {
		t.Errorf("Put 5000-byte key: %v, want ErrKeyTooLarge with size 5000 and limit 4096", err)
	}
	if _, err := c.Put(ctx, "/sdk/big", make([]byte, 1<<20+1)); !errors.Is(err, client.ErrValueTooLarge) || !errors.As(err, &ce) || ce.Limit != 1<<20 || ce.Size != 1<<20+1 {
		t.Errorf("Put oversized value: %v, want ErrValueTooLarge with its size and the limit", err)
	}
	if _, err := c.Put(ctx, "/sdk/max", make([]byte, 1<<20)); err != nil {
		t.Errorf("Put of a value of exactly the limit: %v", err)
	}
	if _, err := c.Range(ctx, client.RangeRequest{Prefix: "/a", Start: "/a"}); !errors.Is(err, client.ErrBadRange) {
		t.Errorf("Range with prefix and start: %v, want ErrBadRange", err)
	}

	// A graceful stop ends open watches with ErrUnavailable (not a hang),
	// and the agent exits 0.
	watchErr := make(chan error, 1)
	go func() {
		for { // the put of /sdk/max is still to come
			if _, err := w.Next(); err != nil {
				watchErr <- err
				return
			}
		}
	}()
	a.stopGraceful(t)
	select {
	case err := <-watchErr:
		if !errors.Is(err, client.ErrUnavailable) {
			t.Errorf("watch after the node stopped: %v, want ErrUnavailable", err)
		}
	case <-time.After(lineTimeout):
		t.Fatalf("the watch did not end within %v of the node stopping", lineTimeout)
	}
	if _, err := c.Get(rpcContext(t), "/sdk/01"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Get from a stopped node: %v, want ErrUnavailable", err)
	}
}

// ack is one acknowledged write.
type ack struct {
	key   string
	value []byte
	rev   int64
}

// load is 16 writers putting distinct keys, each until its first error.
type load struct {
	t        *testing.T
	mu       sync.Mutex
	acks     []ack
	faulted  atomic.Bool // errors are expected from now on
	stopping atomic.Bool
	wg       sync.WaitGroup
}

// startLoad starts the writers and returns once maxAcks writes are
// acknowledged or maxLoad has passed, whichever comes first; the writers go
// on writing.
func startLoad(t *testing.T, c *client.Client, prefix string, maxAcks int, maxLoad time.Duration) *load {
	t.Helper()
	const writers = 16
	l := &load{t: t}
	var (
		count  atomic.Int64
		enough = make(chan struct{})
		once   sync.Once
	)
	for g := range writers {
		l.wg.Go(func() {
			for i := 0; !l.stopping.Load(); i++ {
				key := fmt.Sprintf("%s%02d/%06d", prefix, g, i)
				value := fmt.Appendf(nil, "value of %s: %x", key, randomBytes(8, uint64(g)<<32|uint64(i)))
				ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
				res, err := c.Put(ctx, key, value)
				cancel()
				if err != nil {
					if !l.faulted.Load() {
						t.Errorf("writer %d: Put %s before the node was stopped: %v", g, key, err)
					}
					return
				}
				if res.KV.ModRevision <= 0 || res.KV.Key != key {
					t.Errorf("writer %d: Put %s: bad result %+v", g, key, res.KV)
				}
				l.mu.Lock()
				l.acks = append(l.acks, ack{key, value, res.KV.ModRevision})
				l.mu.Unlock()
				if count.Add(1) >= int64(maxAcks) {
					once.Do(func() { close(enough) })
				}
			}
		})
	}
	timer := time.NewTimer(maxLoad)
	defer timer.Stop()
	select {
	case <-enough:
	case <-timer.C:
	}
	return l
}

// fault says that the node is about to be stopped: from now on a failed
// write ends its writer without failing the test.
func (l *load) fault() { l.faulted.Store(true) }

// finish waits for the writers to return (they fail once the node is gone)
// and returns every acknowledged write.
func (l *load) finish() []ack {
	l.t.Helper()
	l.stopping.Store(true)
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(exitTimeout):
		l.t.Fatalf("writers did not return within %v", exitTimeout)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acks
}

// checkAcks requires every acknowledged write to be on the node, with its
// value and revision, and the node's revision to be past them all.
func checkAcks(t *testing.T, c *client.Client, prefix string, acks []ack) {
	t.Helper()
	var maxRev int64
	for _, a := range acks {
		maxRev = max(maxRev, a.rev)
	}
	st, err := c.Status(rpcContext(t))
	if err != nil {
		t.Fatalf("Status after restart: %v", err)
	}
	if st.Revision < maxRev {
		t.Errorf("revision after restart is %d, below the highest acknowledged one, %d", st.Revision, maxRev)
	}

	// Every acknowledged write, by Get (8 readers).
	var missing, wrong atomic.Int64
	var wg sync.WaitGroup
	const readers = 8
	for r := range readers {
		wg.Go(func() {
			for i := r; i < len(acks); i += readers {
				a := acks[i]
				ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
				kv, err := c.Get(ctx, a.key)
				cancel()
				switch {
				case errors.Is(err, client.ErrNotFound):
					if missing.Add(1) <= 5 {
						t.Errorf("acknowledged write lost: %s (revision %d)", a.key, a.rev)
					}
				case err != nil:
					t.Errorf("Get %s: %v", a.key, err)
				case !bytes.Equal(kv.Value, a.value) || kv.ModRevision != a.rev:
					if wrong.Add(1) <= 5 {
						t.Errorf("%s: value %q at revision %d, acknowledged %q at revision %d", a.key, kv.Value, kv.ModRevision, a.value, a.rev)
					}
				}
			}
		})
	}
	wg.Wait()
	if missing.Load()+wrong.Load() > 0 {
		t.Errorf("of %d acknowledged writes, %d are lost and %d differ", len(acks), missing.Load(), wrong.Load())
	}

	// And by List, which pages (1,000 keys a page): at least the acknowledged
	// keys (a write in flight at the crash may or may not be there).
	listed := 0
	for kv, err := range c.List(rpcContext(t), prefix) {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if kv.ModRevision > st.Revision {
			t.Errorf("%s has revision %d, above the node's %d", kv.Key, kv.ModRevision, st.Revision)
		}
		listed++
	}
	if listed < len(acks) {
		t.Errorf("List %s: %d keys, fewer than the %d acknowledged", prefix, listed, len(acks))
	}

	// Revisions never go back: a new write gets one above everything before.
	res, err := c.Put(rpcContext(t), prefix+"after-restart", []byte("x"))
	if err != nil {
		t.Fatalf("Put after restart: %v", err)
	}
	if res.KV.ModRevision <= st.Revision || res.KV.ModRevision <= maxRev {
		t.Errorf("first write after restart got revision %d; the node was at %d, acknowledged up to %d", res.KV.ModRevision, st.Revision, maxRev)
	}
	t.Logf("%d acknowledged writes (up to revision %d) all present; %d keys listed; revision %d after restart", len(acks), maxRev, listed, st.Revision)
}

func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	const (
		maxAcks = 2000
		maxLoad = 3 * time.Second
	)
	t.Run("SIGKILL", func(t *testing.T) {
		dir := t.TempDir()
		a := startAgent(t, dir)
		c := a.dial(t)
		l := startLoad(t, c, "/crash/", maxAcks, maxLoad)
		l.fault()
		a.kill(t) // the writers are still writing
		acks := l.finish()
		if len(acks) == 0 {
			t.Fatal("no write was acknowledged before the kill")
		}

		b := startAgent(t, dir) // a new port is fine
		if b.nodeID != a.nodeID {
			t.Errorf("node id changed across the restart: %s, then %s", a.nodeID, b.nodeID)
		}
		checkAcks(t, b.dial(t), "/crash/", acks)
		b.stopGraceful(t)
	})

	t.Run("SIGTERM", func(t *testing.T) {
		dir := t.TempDir()
		a := startAgent(t, dir)
		c := a.dial(t)
		l := startLoad(t, c, "/graceful/", maxAcks, maxLoad)
		l.fault()
		a.stopGraceful(t) // under load: in-flight writes finish or fail, exit 0
		acks := l.finish()
		if len(acks) == 0 {
			t.Fatal("no write was acknowledged before the stop")
		}
		stoppedAt := a.stoppedRevision(t)

		b := startAgent(t, dir)
		if b.nodeID != a.nodeID {
			t.Errorf("node id changed across the restart: %s, then %s", a.nodeID, b.nodeID)
		}
		if b.startRevision != stoppedAt {
			t.Errorf("the node stopped at revision %s and restarted at %s", stoppedAt, b.startRevision)
		}
		checkAcks(t, b.dial(t), "/graceful/", acks)
		b.stopGraceful(t)
	})
}

func TestAgentDefaultsAndFlags(t *testing.T) {
	t.Run("help", func(t *testing.T) {
		r := runCLI(t, nil, nil, "agent", "-h")
		if r.code != 0 {
			t.Errorf("agent -h: exit code %d, want 0", r.code)
		}
		help := string(r.stdout) + string(r.stderr)
		for _, want := range []string{"-data-dir", `(default "chorus.data")`, "-listen-client", `(default "127.0.0.1:7379")`, "-max-key-bytes", "-max-value-bytes", "-shutdown-timeout", "-log-level"} {
			if !strings.Contains(help, want) {
				t.Errorf("agent -h lacks %q:\n%s", want, help)
			}
		}
		if r := runCLI(t, nil, nil, "agent", "--help"); r.code != 0 || !strings.Contains(string(r.stdout), "--data-dir") || len(r.stderr) != 0 {
			t.Errorf("agent --help: %v", r)
		}
	})

	t.Run("bad flags", func(t *testing.T) {
		// A flag that does not exist fails with a message, before starting
		// anything. (The exit code should be 2, the usage code: see
		// TestKnownBugBadFlagExitCode.)
		r := runCLI(t, nil, nil, "agent", "--no-such-flag")
		if r.code == 0 || !strings.Contains(string(r.stderr), "unknown flag: --no-such-flag") {
			t.Errorf("agent --no-such-flag: want a non-zero exit and the reason: %v", r)
		}
		for _, args := range [][]string{
			{"agent", "--data-dir", t.TempDir(), "extra-argument"},
			{"agent", "--data-dir", t.TempDir(), "--log-level", "loud"},
		} {
			if r := runCLI(t, nil, nil, args...); r.code != 2 {
				t.Errorf("want exit 2 (usage): %v", r)
			}
		}
		if r := runCLI(t, nil, nil, "agent", "--data-dir", t.TempDir(), "--listen-client", "no-port"); r.code != 1 || !strings.Contains(string(r.stderr), "not host:port") {
			t.Errorf("agent --listen-client no-port: want exit 1 and the reason: %v", r)
		}
	})

	t.Run("default data dir", func(t *testing.T) {
		wd := t.TempDir()
		a := startAgentIn(t, wd, "agent", "--listen-client", "127.0.0.1:0")
		a.mustCLI(t, nil, "put", "/k", "v")
		a.stopGraceful(t)
		for _, p := range []string{"chorus.data/identity.key", "chorus.data/db"} {
			if _, err := os.Stat(filepath.Join(wd, p)); err != nil {
				t.Errorf("default data folder: %v", err)
			}
		}
	})

	t.Run("port or data dir in use", func(t *testing.T) {
		dir := t.TempDir()
		a := startAgent(t, dir)
		// Another agent on the same client port fails clearly.
		r := startProcess(t, "", "agent", "--data-dir", t.TempDir(), "--listen-client", a.addr)
		if code := r.wait(t, exitTimeout); code != 1 || !strings.Contains(r.stderr.String(), "listen for clients on "+a.addr) || !strings.Contains(r.stderr.String(), "address already in use") {
			t.Errorf("second agent on %s: exit code %d, want 1 and the reason; stderr:\n%s", a.addr, code, r.stderr.String())
		}
		// Another agent on the same data folder fails: LevelDB is locked.
		r = startProcess(t, "", "agent", "--data-dir", dir, "--listen-client", "127.0.0.1:0")
		if code := r.wait(t, exitTimeout); code != 1 || !strings.Contains(r.stderr.String(), "is another chorus agent using this data folder") {
			t.Errorf("second agent on the same data folder: exit code %d, want 1 and the reason; stderr:\n%s", code, r.stderr.String())
		}
		// The first agent still serves.
		if r := a.mustCLI(t, nil, "status"); !strings.Contains(string(r.stdout), a.nodeID) {
			t.Errorf("status: %v", r)
		}
		a.stopGraceful(t)
		// A client of a stopped node fails, quickly, with the cause.
		if r := a.cli(t, nil, "status", "--timeout", "10s"); r.code != 1 || !strings.Contains(string(r.stderr), "no Chorus node answers at "+a.addr) {
			t.Errorf("status of a stopped node: want exit 1 and the endpoint that did not answer: %v", r)
		}
	})

	t.Run("flags take effect", func(t *testing.T) {
		a := startAgent(t, t.TempDir(), "--max-key-bytes", "16", "--max-value-bytes", "100", "--retain-revisions", "5", "--log-level", "debug")
		st := a.mustCLI(t, nil, "status")
		for _, want := range []string{"max key bytes:   16\n", "max value bytes: 100\n"} {
			if !strings.Contains(string(st.stdout), want) {
				t.Errorf("status lacks %q: %s", want, st.stdout)
			}
		}
		if r := a.cli(t, nil, "put", strings.Repeat("k", 17), "v"); r.code != 1 || !strings.Contains(string(r.stderr), "the limit is 16") {
			t.Errorf("17-byte key: %v", r)
		}
		if r := a.cli(t, make([]byte, 101), "put", "/v"); r.code != 1 || !strings.Contains(string(r.stderr), "the limit is 100") {
			t.Errorf("101-byte value: %v", r)
		}
		c := a.dial(t)
		for i := range 20 {
			if _, err := c.Put(rpcContext(t), fmt.Sprintf("/r/%d", i), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		// Only the last 5 revisions are kept for watches.
		_, err := c.Watch(rpcContext(t), "/r/", client.WithPrefix(), client.WithStartRevision(1))
		var ce *client.Error
		if !errors.Is(err, client.ErrCompacted) || !errors.As(err, &ce) || ce.OldestRevision != 16 {
			t.Errorf("Watch from revision 1 with 5 revisions retained: %v; want ErrCompacted, oldest revision 16", err)
		}
		if r := a.cli(t, nil, "watch", "/r/", "--rev", "1"); r.code != 1 || !strings.Contains(string(r.stderr), "compacted") {
			t.Errorf("chorus watch --rev 1: want exit 1 and \"compacted\": %v", r)
		}
		a.stopGraceful(t)
	})
}
