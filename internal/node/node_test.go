package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// waitTimeout bounds every wait for something that must happen; a healthy run
// never comes close, even under the race detector.
const waitTimeout = 15 * time.Second

// start starts a node with cfg, filling in a fresh DataDir, a free port and a
// silent logger; the node is closed when the test ends.
func start(tb testing.TB, cfg node.Config) *node.Node {
	tb.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	if cfg.ListenClient == "" {
		cfg.ListenClient = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testutil.QuietLogger()
	}
	n, err := node.Start(cfg)
	if err != nil {
		tb.Fatalf("node.Start: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("node.Close: %v", err)
		}
	})
	return n
}

func dial(tb testing.TB, n *node.Node) *client.Client {
	tb.Helper()
	c, err := client.Dial(n.ClientAddr().String())
	if err != nil {
		tb.Fatalf("client.Dial: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	tb.Cleanup(cancel)
	return ctx
}

func mustPut(tb testing.TB, c *client.Client, key, value string, opts ...client.OpOption) *client.PutResult {
	tb.Helper()
	r, err := c.Put(testCtx(tb), key, []byte(value), opts...)
	if err != nil {
		tb.Fatalf("Put(%q): %v", key, err)
	}
	return r
}

func mustDelete(tb testing.TB, c *client.Client, key string, opts ...client.OpOption) *client.DeleteResult {
	tb.Helper()
	r, err := c.Delete(testCtx(tb), key, opts...)
	if err != nil {
		tb.Fatalf("Delete(%q): %v", key, err)
	}
	return r
}

func mustStatus(tb testing.TB, c *client.Client) *client.Status {
	tb.Helper()
	s, err := c.Status(testCtx(tb))
	if err != nil {
		tb.Fatalf("Status: %v", err)
	}
	return s
}

func kvString(kv *client.KeyValue) string {
	if kv == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%q=%q create=%d mod=%d ver=%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
}

func TestPutGetDeleteRoundTrip(t *testing.T) {
	n := start(t, node.Config{})
	c := dial(t, n)
	ctx := testCtx(t)
	st := mustStatus(t, c)
	if st.NodeID != n.ID() || st.NodeID == "" {
		t.Fatalf("Status NodeID %q; want the node's id %q", st.NodeID, n.ID())
	}
	if st.Version != node.Version || st.Revision != 0 || st.OldestRevision != 1 ||
		st.MaxKeyBytes != crdt.DefaultMaxKeyBytes || st.MaxValueBytes != crdt.DefaultMaxValueBytes {
		t.Fatalf("Status of a new node %+v", *st)
	}

	type step struct {
		name string
		do   func() (rev int64, kv, prev *client.KeyValue, deleted bool, err error)
		// want
		rev     int64
		kv      string // kvString of the result's KV ("" for a delete)
		prev    string // kvString of Prev
		deleted bool
	}
	put := func(k, v string, opts ...client.OpOption) func() (int64, *client.KeyValue, *client.KeyValue, bool, error) {
		return func() (int64, *client.KeyValue, *client.KeyValue, bool, error) {
			r, err := c.Put(ctx, k, []byte(v), opts...)
			if err != nil {
				return 0, nil, nil, false, err
			}
			return r.Revision, r.KV, r.Prev, false, nil
		}
	}
	del := func(k string, opts ...client.OpOption) func() (int64, *client.KeyValue, *client.KeyValue, bool, error) {
		return func() (int64, *client.KeyValue, *client.KeyValue, bool, error) {
			r, err := c.Delete(ctx, k, opts...)
			if err != nil {
				return 0, nil, nil, false, err
			}
			return r.Revision, nil, r.Prev, r.Deleted, nil
		}
	}
	prevKV := client.WithPrevKV()
	steps := []step{
		{"create a", put("a", "1"), 1, `"a"="1" create=1 mod=1 ver=1`, "<nil>", false},
		{"overwrite a with prev", put("a", "2", prevKV), 2, `"a"="2" create=1 mod=2 ver=2`, `"a"="1" create=1 mod=1 ver=1`, false},
		{"create b with prev: none", put("b", "x", prevKV), 3, `"b"="x" create=3 mod=3 ver=1`, "<nil>", false},
		{"overwrite a without prev", put("a", "3"), 4, `"a"="3" create=1 mod=4 ver=3`, "<nil>", false},
		{"delete a with prev", del("a", prevKV), 5, "", `"a"="3" create=1 mod=4 ver=3`, true},
		{"delete a again", del("a", prevKV), 6, "", "<nil>", false},
		{"delete never-written", del("never", prevKV), 7, "", "<nil>", false},
		{"re-create a over its tombstone", put("a", "4", prevKV), 8, `"a"="4" create=8 mod=8 ver=1`, "<nil>", false},
		{"delete b without prev", del("b"), 9, "", "<nil>", true},
		{"empty value", put("e", ""), 10, `"e"="" create=10 mod=10 ver=1`, "<nil>", false},
	}
	for _, s := range steps {
		rev, kv, prev, deleted, err := s.do()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if rev != s.rev {
			t.Errorf("%s: header revision %d; want %d", s.name, rev, s.rev)
		}
		if kv != nil || s.kv != "" {
			if got := kvString(kv); got != s.kv {
				t.Errorf("%s: KV %s; want %s", s.name, got, s.kv)
			}
		}
		if got := kvString(prev); got != s.prev {
			t.Errorf("%s: Prev %s; want %s", s.name, got, s.prev)
		}
		if deleted != s.deleted {
			t.Errorf("%s: Deleted %v; want %v", s.name, deleted, s.deleted)
		}
		if kv != nil {
			if kv.Origin != n.ID() {
				t.Errorf("%s: Origin %q; want %q", s.name, kv.Origin, n.ID())
			}
			if d := time.Since(kv.Time()); d < -time.Minute || d > time.Minute {
				t.Errorf("%s: HLC time %v is not now", s.name, kv.Time())
			}
		}
	}

	gets := map[string]string{"a": `"a"="4" create=8 mod=8 ver=1`, "e": `"e"="" create=10 mod=10 ver=1`}
	for k, want := range gets {
		kv, err := c.Get(ctx, k)
		if err != nil {
			t.Fatalf("Get(%q): %v", k, err)
		}
		if got := kvString(kv); got != want {
			t.Errorf("Get(%q) = %s; want %s", k, got, want)
		}
	}
	for _, k := range []string{"b", "never", "missing"} {
		kv, err := c.Get(ctx, k)
		if !errors.Is(err, client.ErrNotFound) {
			t.Errorf("Get(%q) = %s, %v; want ErrNotFound", k, kvString(kv), err)
		}
	}
	if st := mustStatus(t, c); st.Revision != 10 {
		t.Errorf("Status revision %d; want 10", st.Revision)
	}
}

func TestRange(t *testing.T) {
	n := start(t, node.Config{})
	c := dial(t, n)
	ctx := testCtx(t)
	var kKeys []string
	for i := range 10 {
		kKeys = append(kKeys, fmt.Sprintf("k/%02d", i))
	}
	others := []string{"k0", "j", "/a/b", "/a/c", "/b", "\xfe", "\xff", "\xff\x01", "\xffa", "a\xff", "a\xffb", "b", "gone/1"}
	all := append(slices.Clone(kKeys), others...)
	// Written out of order: Range must sort.
	for _, i := range []int{7, 3, 9, 0, 5, 1, 8, 2, 6, 4} {
		mustPut(t, c, kKeys[i], "v"+kKeys[i])
	}
	for _, k := range others {
		mustPut(t, c, k, "v"+k)
	}
	mustDelete(t, c, "gone/1")
	all = slices.DeleteFunc(all, func(k string) bool { return k == "gone/1" })
	slices.Sort(all)
	rev := mustStatus(t, c).Revision

	sel := func(pred func(string) bool) []string {
		var out []string
		for _, k := range all {
			if pred(k) {
				out = append(out, k)
			}
		}
		return out
	}
	tests := []struct {
		name string
		req  client.RangeRequest
		want []string
	}{
		{"prefix k/", client.RangeRequest{Prefix: "k/"}, kKeys},
		{"prefix /", client.RangeRequest{Prefix: "/"}, []string{"/a/b", "/a/c", "/b"}},
		{"prefix /a/", client.RangeRequest{Prefix: "/a/"}, []string{"/a/b", "/a/c"}},
		{"prefix \\xff", client.RangeRequest{Prefix: "\xff"}, []string{"\xff", "\xff\x01", "\xffa"}},
		{"prefix a\\xff", client.RangeRequest{Prefix: "a\xff"}, []string{"a\xff", "a\xffb"}},
		{"prefix of a deleted key", client.RangeRequest{Prefix: "gone/"}, nil},
		{"prefix matching nothing", client.RangeRequest{Prefix: "zzz"}, nil},
		{"start/end", client.RangeRequest{Start: "k/03", End: "k/06"}, []string{"k/03", "k/04", "k/05"}},
		{"start only", client.RangeRequest{Start: "\xfe"}, []string{"\xfe", "\xff", "\xff\x01", "\xffa"}},
		{"end only", client.RangeRequest{End: "/b"}, []string{"/a/b", "/a/c"}},
		{"everything", client.RangeRequest{}, all},
		{"after", client.RangeRequest{Prefix: "k/", After: "k/07"}, []string{"k/08", "k/09"}},
		{"keys only", client.RangeRequest{Prefix: "k/", KeysOnly: true}, kKeys},
		{"all >= k", client.RangeRequest{Start: "k"}, sel(func(k string) bool { return k >= "k" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := c.Range(ctx, tt.req)
			if err != nil {
				t.Fatalf("Range(%+v): %v", tt.req, err)
			}
			var got []string
			for _, kv := range page.KVs {
				got = append(got, kv.Key)
				if tt.req.KeysOnly {
					if len(kv.Value) != 0 {
						t.Errorf("KeysOnly: %q has value %q", kv.Key, kv.Value)
					}
				} else if string(kv.Value) != "v"+kv.Key {
					t.Errorf("%q has value %q; want %q", kv.Key, kv.Value, "v"+kv.Key)
				}
				if kv.ModRevision == 0 || kv.CreateRevision == 0 || kv.Version != 1 {
					t.Errorf("%s: metadata missing", kvString(kv))
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("keys %q; want %q", got, tt.want)
			}
			if page.More || page.NextKey != "" {
				t.Errorf("More %v NextKey %q on the only page", page.More, page.NextKey)
			}
			if page.Revision != rev {
				t.Errorf("page revision %d; want %d", page.Revision, rev)
			}
		})
	}

	t.Run("pagination", func(t *testing.T) {
		req := client.RangeRequest{Prefix: "k/", Limit: 3}
		var got []string
		var sizes []int
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("pagination does not end")
			}
			page, err := c.Range(ctx, req)
			if err != nil {
				t.Fatalf("Range(%+v): %v", req, err)
			}
			sizes = append(sizes, len(page.KVs))
			for _, kv := range page.KVs {
				got = append(got, kv.Key)
			}
			if !page.More {
				if page.NextKey != "" {
					t.Errorf("last page has NextKey %q", page.NextKey)
				}
				break
			}
			if last := page.KVs[len(page.KVs)-1].Key; page.NextKey != last {
				t.Errorf("NextKey %q; want the page's last key %q", page.NextKey, last)
			}
			req.After = page.NextKey
		}
		if !slices.Equal(sizes, []int{3, 3, 3, 1}) {
			t.Errorf("page sizes %v; want [3 3 3 1]", sizes)
		}
		if !slices.Equal(got, kKeys) {
			t.Errorf("paged keys %q; want %q", got, kKeys)
		}
	})

	t.Run("list", func(t *testing.T) {
		var got []string
		for kv, err := range c.List(ctx, "k/") {
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			got = append(got, kv.Key)
		}
		if !slices.Equal(got, kKeys) {
			t.Errorf("List keys %q; want %q", got, kKeys)
		}
		got = got[:0]
		for kv, err := range c.List(ctx, "") {
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			got = append(got, kv.Key)
			if len(got) == 2 {
				break // an early break must be honoured
			}
		}
		if !slices.Equal(got, all[:2]) {
			t.Errorf("List with break: %q; want %q", got, all[:2])
		}
	})
}

// clientErr asserts that err is a *client.Error of kind with code.
func clientErr(tb testing.TB, what string, err, kind error, code codes.Code) *client.Error {
	tb.Helper()
	if !errors.Is(err, kind) {
		tb.Fatalf("%s: error %v; want %v", what, err, kind)
	}
	var ce *client.Error
	if !errors.As(err, &ce) {
		tb.Fatalf("%s: error %v (%T) is not a *client.Error", what, err, err)
	}
	if ce.Code != code {
		tb.Errorf("%s: code %v; want %v", what, ce.Code, code)
	}
	if ce.Message == "" {
		tb.Errorf("%s: empty message", what)
	}
	return ce
}

func TestLimitErrors(t *testing.T) {
	n := start(t, node.Config{})
	c := dial(t, n)
	ctx := testCtx(t)
	key4097 := strings.Repeat("k", 4097)
	key4096 := strings.Repeat("k", 4096)
	big := make([]byte, 1<<20+1)

	type limitCase struct {
		name        string
		call        func() error
		kind        error
		code        codes.Code
		size, limit int64 // for size errors
	}
	put := func(k string, v []byte) func() error {
		return func() error { _, err := c.Put(ctx, k, v); return err }
	}
	tests := []limitCase{
		{"put empty key", put("", []byte("v")), client.ErrKeyEmpty, codes.InvalidArgument, 0, 0},
		{"get empty key", func() error { _, err := c.Get(ctx, ""); return err }, client.ErrKeyEmpty, codes.InvalidArgument, 0, 0},
		{"delete empty key", func() error { _, err := c.Delete(ctx, ""); return err }, client.ErrKeyEmpty, codes.InvalidArgument, 0, 0},
		{"put 4097-byte key", put(key4097, []byte("v")), client.ErrKeyTooLarge, codes.InvalidArgument, 4097, 4096},
		{"get 4097-byte key", func() error { _, err := c.Get(ctx, key4097); return err }, client.ErrKeyTooLarge, codes.InvalidArgument, 4097, 4096},
		{"delete 4097-byte key", func() error { _, err := c.Delete(ctx, key4097); return err }, client.ErrKeyTooLarge, codes.InvalidArgument, 4097, 4096},
		{"put 1 MiB+1 value", put("k", big), client.ErrValueTooLarge, codes.InvalidArgument, 1<<20 + 1, 1 << 20},
		{"range prefix and start", func() error {
			_, err := c.Range(ctx, client.RangeRequest{Prefix: "a", Start: "b"})
			return err
		}, client.ErrBadRange, codes.InvalidArgument, 0, 0},
		{"range prefix and end", func() error {
			_, err := c.Range(ctx, client.RangeRequest{Prefix: "a", End: "b"})
			return err
		}, client.ErrBadRange, codes.InvalidArgument, 0, 0},
		{"range negative limit", func() error {
			_, err := c.Range(ctx, client.RangeRequest{Prefix: "a", Limit: -1})
			return err
		}, client.ErrBadRange, codes.InvalidArgument, 0, 0},
		{"range start after end", func() error {
			_, err := c.Range(ctx, client.RangeRequest{Start: "b", End: "a"})
			return err
		}, client.ErrBadRange, codes.InvalidArgument, 0, 0},
		{"range 4097-byte prefix", func() error {
			_, err := c.Range(ctx, client.RangeRequest{Prefix: key4097})
			return err
		}, client.ErrKeyTooLarge, codes.InvalidArgument, 4097, 4096},
		{"range 4097-byte start", func() error {
			_, err := c.Range(ctx, client.RangeRequest{Start: key4097})
			return err
		}, client.ErrKeyTooLarge, codes.InvalidArgument, 4097, 4096},
		{"range 4097-byte after", func() error {
			_, err := c.Range(ctx, client.RangeRequest{Prefix: "k", After: key4097})
			return err
		}, client.ErrKeyTooLarge, codes.InvalidArgument, 4097, 4096},
		{"range 4098-byte end", func() error {
			_, err := c.Range(ctx, client.RangeRequest{Start: "a", End: key4097 + "k"})
			return err
		}, client.ErrKeyTooLarge, codes.InvalidArgument, 4098, 4097},
		{"watch 4097-byte key", func() error {
			w, err := c.Watch(ctx, key4097)
			if w != nil {
				w.Close()
			}
			return err
		}, client.ErrKeyTooLarge, codes.InvalidArgument, 4097, 4096},
		{"watch 4097-byte prefix", func() error {
			w, err := c.Watch(ctx, key4097, client.WithPrefix())
			if w != nil {
				w.Close()
			}
			return err
		}, client.ErrKeyTooLarge, codes.InvalidArgument, 4097, 4096},
		{"watch negative start revision", func() error {
			w, err := c.Watch(ctx, "k", client.WithStartRevision(-1))
			if w != nil {
				w.Close()
			}
			return err
		}, client.ErrBadRequest, codes.InvalidArgument, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ce := clientErr(t, tt.name, tt.call(), tt.kind, tt.code)
			if tt.limit != 0 {
				if ce.Limit != tt.limit || ce.Size != tt.size {
					t.Errorf("Limit %d Size %d; want %d %d", ce.Limit, ce.Size, tt.limit, tt.size)
				}
				for _, num := range []int64{tt.size, tt.limit} {
					if !strings.Contains(ce.Message, fmt.Sprint(num)) {
						t.Errorf("message %q does not name %d", ce.Message, num)
					}
				}
			}
		})
	}
	// The limits themselves are allowed.
	if _, err := c.Put(ctx, key4096, []byte("v")); err != nil {
		t.Errorf("Put with a 4096-byte key: %v", err)
	}
	if p, err := c.Range(ctx, client.RangeRequest{Prefix: key4096}); err != nil || len(p.KVs) != 1 {
		t.Errorf("Range with a 4096-byte prefix: %v, %v; want the key", err, p)
	}
	if p, err := c.Range(ctx, client.RangeRequest{Start: "k", End: key4096 + "\x00"}); err != nil || len(p.KVs) != 1 {
		t.Errorf("Range ending just after a 4096-byte key: %v, %v; want the key", err, p)
	}
	if w, err := c.Watch(ctx, key4096, client.WithPrefix()); err != nil {
		t.Errorf("Watch of a 4096-byte prefix: %v", err)
	} else {
		w.Close()
	}
	if _, err := c.Put(ctx, "max-value", big[:1<<20]); err != nil {
		t.Errorf("Put with a 1 MiB value: %v", err)
	}
	if kv, err := c.Get(ctx, "max-value"); err != nil || len(kv.Value) != 1<<20 {
		t.Errorf("Get of the 1 MiB value: %v", err)
	}
	// Nothing rejected reached the store.
	if st := mustStatus(t, c); st.Revision != 2 {
		t.Errorf("revision %d after two accepted writes; want 2", st.Revision)
	}
}

func TestConfiguredLimitsAreReported(t *testing.T) {
	n := start(t, node.Config{Limits: crdt.Limits{MaxKeyBytes: 16, MaxValueBytes: 100}})
	c := dial(t, n)
	ctx := testCtx(t)
	st := mustStatus(t, c)
	if st.MaxKeyBytes != 16 || st.MaxValueBytes != 100 {
		t.Errorf("Status limits %d/%d; want 16/100", st.MaxKeyBytes, st.MaxValueBytes)
	}
	tests := []struct {
		name        string
		key         string
		value       []byte
		kind        error
		size, limit int64
	}{
		{"key", strings.Repeat("k", 17), nil, client.ErrKeyTooLarge, 17, 16},
		{"value", "k", make([]byte, 101), client.ErrValueTooLarge, 101, 100},
	}
	for _, tt := range tests {
		_, err := c.Put(ctx, tt.key, tt.value)
		ce := clientErr(t, tt.name, err, tt.kind, codes.InvalidArgument)
		if ce.Size != tt.size || ce.Limit != tt.limit {
			t.Errorf("%s: Size %d Limit %d; want %d %d", tt.name, ce.Size, ce.Limit, tt.size, tt.limit)
		}
		if !strings.Contains(ce.Message, fmt.Sprint(tt.limit)) {
			t.Errorf("%s: message %q does not name the limit %d", tt.name, ce.Message, tt.limit)
		}
	}
	if _, err := c.Put(ctx, strings.Repeat("k", 16), make([]byte, 100)); err != nil {
		t.Errorf("Put at the configured limits: %v", err)
	}
}

// readEvents reads events from w until it has n (or fails on an error; the
// watch's context bounds the wait).
func readEvents(tb testing.TB, w *client.Watcher, n int) []client.Event {
	tb.Helper()
	var out []client.Event
	for len(out) < n {
		evs, err := w.Next()
		if err != nil {
			tb.Fatalf("watch Next after %d of %d events: %v", len(out), n, err)
		}
		out = append(out, evs...)
	}
	if len(out) > n {
		tb.Fatalf("got %d events; want %d", len(out), n)
	}
	return out
}

func evString(ev client.Event) string {
	s := fmt.Sprintf("%v %q=%q @%d", ev.Type, ev.KV.Key, ev.KV.Value, ev.KV.ModRevision)
	if ev.Prev != nil {
		s += fmt.Sprintf(" prev=%q@%d", ev.Prev.Value, ev.Prev.ModRevision)
	}
	return s
}

func evStrings(evs []client.Event) []string {
	out := make([]string, len(evs))
	for i := range evs {
		out[i] = evString(evs[i])
	}
	return out
}

func TestWatch(t *testing.T) {
	n := start(t, node.Config{})
	c := dial(t, n)
	ctx := testCtx(t)
	mustPut(t, c, "w/a", "0") // 1
	mustPut(t, c, "w/b", "0") // 2
	mustPut(t, c, "x", "0")   // 3

	exact, err := c.Watch(ctx, "w/a")
	if err != nil {
		t.Fatal(err)
	}
	defer exact.Close()
	prefix, err := c.Watch(ctx, "w/", client.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	defer prefix.Close()
	withPrev, err := c.Watch(ctx, "w/a", client.WithWatchPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	defer withPrev.Close()
	fromRev, err := c.Watch(ctx, "w/", client.WithPrefix(), client.WithStartRevision(2), client.WithWatchPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	defer fromRev.Close()
	for _, w := range []*client.Watcher{exact, prefix, withPrev} {
		if w.StartedAfter() != 3 {
			t.Errorf("StartedAfter %d; want 3 (the current revision)", w.StartedAfter())
		}
	}
	if fromRev.StartedAfter() != 1 {
		t.Errorf("StartedAfter of a watch from revision 2 is %d; want 1", fromRev.StartedAfter())
	}

	mustPut(t, c, "w/a", "1")   // 4
	mustPut(t, c, "w/ab", "1")  // 5: prefix only
	mustPut(t, c, "x/w/a", "1") // 6: nobody
	mustDelete(t, c, "w/a")     // 7
	mustPut(t, c, "w/a", "2")   // 8
	mustDelete(t, c, "w/zz")    // 9: a tombstone over nothing: nobody
	mustPut(t, c, "w/b", "1")   // 10

	tests := []struct {
		name string
		w    *client.Watcher
		want []string
	}{
		{"exact", exact, []string{`PUT "w/a"="1" @4`, `DELETE "w/a"="" @7`, `PUT "w/a"="2" @8`}},
		{"prefix", prefix, []string{`PUT "w/a"="1" @4`, `PUT "w/ab"="1" @5`, `DELETE "w/a"="" @7`, `PUT "w/a"="2" @8`, `PUT "w/b"="1" @10`}},
		{"prevkv", withPrev, []string{`PUT "w/a"="1" @4 prev="0"@1`, `DELETE "w/a"="" @7 prev="1"@4`, `PUT "w/a"="2" @8`}},
		{"from revision 2", fromRev, []string{`PUT "w/b"="0" @2`, `PUT "w/a"="1" @4 prev="0"@1`, `PUT "w/ab"="1" @5`,
			`DELETE "w/a"="" @7 prev="1"@4`, `PUT "w/a"="2" @8`, `PUT "w/b"="1" @10 prev="0"@2`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := evStrings(readEvents(t, tt.w, len(tt.want)))
			if !slices.Equal(got, tt.want) {
				t.Errorf("events\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	// The events iterator ends with the error once the watch is closed.
	exact.Close()
	var last error
	for _, err := range exact.Events() {
		last = err
		if err != nil {
			break
		}
	}
	if last == nil {
		t.Errorf("Events after Close ended without an error")
	}
}

func TestWatchCompactedStart(t *testing.T) {
	n := start(t, node.Config{RetainRevisions: 10})
	c := dial(t, n)
	ctx := testCtx(t)
	for i := range 50 {
		mustPut(t, c, fmt.Sprintf("k%d", i%5), fmt.Sprint(i))
	}
	st := mustStatus(t, c)
	if st.OldestRevision <= 1 {
		t.Fatalf("OldestRevision %d after 50 writes retaining 10", st.OldestRevision)
	}
	w, err := c.Watch(ctx, "k", client.WithPrefix(), client.WithStartRevision(1))
	if err == nil {
		w.Close()
		t.Fatalf("Watch from compacted revision 1 succeeded")
	}
	ce := clientErr(t, "compacted watch", err, client.ErrCompacted, codes.OutOfRange)
	if ce.OldestRevision != st.OldestRevision {
		t.Errorf("error OldestRevision %d; Status says %d", ce.OldestRevision, st.OldestRevision)
	}
	// Resuming from the advertised oldest revision works.
	w, err = c.Watch(ctx, "k", client.WithPrefix(), client.WithStartRevision(ce.OldestRevision))
	if err != nil {
		t.Fatalf("Watch from the oldest revision %d: %v", ce.OldestRevision, err)
	}
	defer w.Close()
	evs := readEvents(t, w, int(50-ce.OldestRevision+1))
	if evs[0].KV.ModRevision != ce.OldestRevision || evs[len(evs)-1].KV.ModRevision != 50 {
		t.Errorf("replayed %d..%d; want %d..50", evs[0].KV.ModRevision, evs[len(evs)-1].KV.ModRevision, ce.OldestRevision)
	}
}

func TestSlowWatcherGetsErrWatcherTooSlow(t *testing.T) {
	const writers, perWriter = 16, 125 // 2000 writes of 1 KiB
	n := start(t, node.Config{WatchBuffer: 4})
	c := dial(t, n)
	ctx := testCtx(t)
	w, err := c.Watch(ctx, "slow/", client.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// Write without reading the watch. gRPC flow control and socket buffers
	// absorb some events; the rest pile up in the node's watcher buffer.
	value := bytes.Repeat([]byte("v"), 1024)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if _, err := c.Put(ctx, fmt.Sprintf("slow/%02d/%03d", g, i), value); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Put: %v", err)
	}

	got := 0
	for {
		evs, err := w.Next()
		if err != nil {
			ce := clientErr(t, "slow watch", err, client.ErrWatcherTooSlow, codes.ResourceExhausted)
			if !strings.Contains(ce.Message, "limit is 4") {
				t.Errorf("message %q does not name the buffer limit 4", ce.Message)
			}
			if got >= writers*perWriter {
				t.Errorf("the watcher received all %d events and still failed", got)
			}
			t.Logf("watcher received %d of %d events before %v", got, writers*perWriter, err)
			break
		}
		got += len(evs)
		if got >= writers*perWriter {
			t.Fatalf("the slow watcher received all %d events: it was never cancelled", got)
		}
	}
}

func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	n1, err := node.Start(node.Config{DataDir: dir, ListenClient: "127.0.0.1:0", Logger: testutil.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c1, err := client.Dial(n1.ClientAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	id1 := mustStatus(t, c1).NodeID

	const writers, perWriter = 16, 20
	var mu sync.Mutex
	acked := map[string]int64{} // key -> mod revision
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				k := fmt.Sprintf("r/%02d/%02d", g, i)
				r, err := c1.Put(ctx, k, []byte(k))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acked[k] = r.KV.ModRevision
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Put: %v", err)
	}
	mustDelete(t, c1, "r/00/00")
	delete(acked, "r/00/00")
	rev1 := mustStatus(t, c1).Revision
	if rev1 != writers*perWriter+1 {
		t.Errorf("revision %d; want %d", rev1, writers*perWriter+1)
	}
	_ = c1.Close()
	if err := n1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	n2 := start(t, node.Config{DataDir: dir})
	c2 := dial(t, n2)
	st := mustStatus(t, c2)
	if st.NodeID != id1 {
		t.Errorf("node id changed across restart: %q -> %q", id1, st.NodeID)
	}
	if st.Revision != rev1 {
		t.Errorf("revision %d after restart; want %d", st.Revision, rev1)
	}
	for k, mod := range acked {
		kv, err := c2.Get(ctx, k)
		if err != nil {
			t.Errorf("Get(%q) after restart: %v", k, err)
			continue
		}
		if string(kv.Value) != k || kv.ModRevision != mod {
			t.Errorf("after restart %s; want value %q mod %d", kvString(kv), k, mod)
		}
	}
	if _, err := c2.Get(ctx, "r/00/00"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("deleted key after restart: %v; want ErrNotFound", err)
	}
	// A write after the restart continues the revision sequence.
	if r := mustPut(t, c2, "after", "x"); r.KV.ModRevision != rev1+1 {
		t.Errorf("first write after restart at revision %d; want %d", r.KV.ModRevision, rev1+1)
	}
}

func TestCloseWithOpenWatch(t *testing.T) {
	const shutdown = 10 * time.Second
	n, err := node.Start(node.Config{DataDir: t.TempDir(), ListenClient: "127.0.0.1:0", Logger: testutil.QuietLogger(), ShutdownTimeout: shutdown})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, n)
	ctx := testCtx(t)
	mustPut(t, c, "k", "v")
	w, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	res := make(chan error, 1)
	go func() {
		evs, err := w.Next()
		if err == nil {
			err = fmt.Errorf("Next returned %d events and no error", len(evs))
		}
		res <- err
	}()

	began := time.Now()
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	took := time.Since(began)
	if took > shutdown/2 {
		t.Errorf("Close with an open watch took %v; ShutdownTimeout is %v", took, shutdown)
	}
	select {
	case err := <-res:
		clientErr(t, "watch at shutdown", err, client.ErrUnavailable, codes.Unavailable)
	case <-time.After(waitTimeout):
		t.Fatalf("the watcher's Next still blocked %v after Close", waitTimeout)
	}

	// Close is idempotent.
	began = time.Now()
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("second Close took %v", d)
	}
	// The node is gone: calls fail as unavailable.
	if _, err := c.Put(ctx, "k", []byte("v")); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Put after Close: %v; want ErrUnavailable", err)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	baseline := runtime.NumGoroutine()
	n, err := node.Start(node.Config{DataDir: t.TempDir(), ListenClient: "127.0.0.1:0", Logger: testutil.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(n.ClientAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for i := range 20 {
		if _, err := c.Put(ctx, fmt.Sprintf("k%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Range(ctx, client.RangeRequest{Prefix: "k"}); err != nil {
		t.Fatal(err)
	}
	// One watch closed by the client, one left open for the node to end.
	w1, err := c.Watch(ctx, "k", client.WithPrefix(), client.WithStartRevision(1))
	if err != nil {
		t.Fatal(err)
	}
	readEvents(t, w1, 20)
	w1.Close()
	w2, err := c.Watch(ctx, "k", client.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if during := runtime.NumGoroutine(); during <= baseline {
		t.Fatalf("goroutines %d with a node running; baseline %d: the check below would be vacuous", during, baseline)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Next(); err == nil {
		t.Errorf("open watch survived Close")
	}
	w2.Close()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	const slack = 2
	deadline := time.Now().Add(waitTimeout)
	for {
		now := runtime.NumGoroutine()
		if now <= baseline+slack {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines %v after closing client and node; baseline %d (+%d slack):\n%s",
				now, waitTimeout, baseline, slack, buf)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

func TestConfigValidate(t *testing.T) {
	bad := node.Config{
		ListenClient:    "no-port",
		Limits:          crdt.Limits{MaxKeyBytes: -1, MaxValueBytes: -2},
		MaxClockOffset:  -time.Second,
		RetainRevisions: -3,
		WatchBuffer:     -4,
		ShutdownTimeout: -time.Millisecond,
		Cluster:         "no spaces allowed",
		Bootstrap:       []string{"not-a-multiaddr"},
	}
	tests := []struct {
		name string
		cfg  node.Config
		want []string // every one must be in the error; nil means valid
	}{
		{"defaults", node.Config{}.WithDefaults(), nil},
		{"port 0", node.Config{ListenClient: "127.0.0.1:0"}.WithDefaults(), nil},
		{"ipv6", node.Config{ListenClient: "[::1]:7379"}.WithDefaults(), nil},
		{"bad address", node.Config{ListenClient: "127.0.0.1"}.WithDefaults(), []string{`listen-client "127.0.0.1"`}},
		{"all at once", bad, []string{`listen-client "no-port"`, "MaxKeyBytes is -1", "MaxValueBytes is -2",
			"max clock offset is -1s", "retained revisions is -3", "watch buffer is -4", "shutdown timeout is -1ms",
			`cluster name "no spaces allowed"`, `bootstrap address "not-a-multiaddr"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil; want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q; missing %q", err, w)
				}
			}
		})
	}

	// Start refuses a bad config before touching the data folder.
	bad.DataDir = filepath.Join(t.TempDir(), "never-created")
	bad.Logger = testutil.QuietLogger()
	if n, err := node.Start(bad); err == nil {
		_ = n.Close()
		t.Fatalf("Start with a bad config succeeded")
	}
	if _, err := os.Stat(bad.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start with a bad config created %s (stat: %v)", bad.DataDir, err)
	}
}

// A node that cannot listen releases its store, so the same DataDir can be
// started again.
func TestStartListenFailureReleasesStore(t *testing.T) {
	taken := start(t, node.Config{})
	dir := t.TempDir()
	if n, err := node.Start(node.Config{DataDir: dir, ListenClient: taken.ClientAddr().String(), Logger: testutil.QuietLogger()}); err == nil {
		_ = n.Close()
		t.Fatalf("Start on a port in use succeeded")
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Start on a port in use: %v; want an error wrapping EADDRINUSE", err)
	}
	n := start(t, node.Config{DataDir: dir})
	mustPut(t, dial(t, n), "k", "v")
}

// TestRangeLimitAboveThePageBound: a limit above the page bound is lowered
// to it (10,000 keys), with more and next_key leading to the rest, as a
// page bounded by bytes returns fewer keys than asked; a negative limit is
// refused with a message naming both.
func TestRangeLimitAboveThePageBound(t *testing.T) {
	n := start(t, node.Config{})
	c := dial(t, n)
	ctx := testCtx(t)
	const keys = store.MaxPageLimit + 5
	entries := make([]crdt.Entry, keys)
	for i := range entries {
		entries[i] = crdt.Entry{Key: fmt.Appendf(nil, "p/%05d", i), Value: []byte("v")}
	}
	if _, err := n.Store().WriteBatch(ctx, entries); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		limit    int64
		want     int
		wantMore bool
	}{
		{0, store.DefaultPageLimit, true},
		{7, 7, true},
		{store.MaxPageLimit, store.MaxPageLimit, true},
		{store.MaxPageLimit + 1, store.MaxPageLimit, true},
		{50_000, store.MaxPageLimit, true},
	} {
		p, err := c.Range(ctx, client.RangeRequest{Prefix: "p/", Limit: tt.limit, KeysOnly: true})
		if err != nil {
			t.Fatalf("limit %d: %v", tt.limit, err)
		}
		if len(p.KVs) != tt.want || p.More != tt.wantMore {
			t.Fatalf("limit %d: %d keys, more %v; want %d keys, more %v", tt.limit, len(p.KVs), p.More, tt.want, tt.wantMore)
		}
		if tt.limit > store.MaxPageLimit {
			rest, err := c.Range(ctx, client.RangeRequest{Prefix: "p/", Limit: tt.limit, After: p.NextKey, KeysOnly: true})
			if err != nil {
				t.Fatalf("limit %d, second page: %v", tt.limit, err)
			}
			if len(rest.KVs) != keys-store.MaxPageLimit || rest.More {
				t.Fatalf("limit %d, second page: %d keys, more %v; want the last %d keys", tt.limit, len(rest.KVs), rest.More, keys-store.MaxPageLimit)
			}
		}
	}
	_, err := c.Range(ctx, client.RangeRequest{Prefix: "p/", Limit: -1})
	ce := clientErr(t, "limit -1", err, client.ErrBadRange, codes.InvalidArgument)
	for _, want := range []string{"-1", fmt.Sprint(store.MaxPageLimit)} {
		if !strings.Contains(ce.Message, want) {
			t.Errorf("message %q does not name %s", ce.Message, want)
		}
	}
}

// TestMaxWatches: the node holds at most MaxWatches watches; one more fails
// with ErrTooManyWatches (ResourceExhausted) naming the limit, and closing
// one frees its slot.
func TestMaxWatches(t *testing.T) {
	n := start(t, node.Config{MaxWatches: 2})
	c := dial(t, n)
	ctx := testCtx(t)
	w1, err := c.Watch(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	w2, err := c.Watch(ctx, "b", client.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	_, err = c.Watch(ctx, "c")
	ce := clientErr(t, "a third watch", err, client.ErrTooManyWatches, codes.ResourceExhausted)
	if !strings.Contains(ce.Message, "the limit is 2") || !strings.Contains(ce.Message, "--max-watches") {
		t.Errorf("message %q does not name the limit and its flag", ce.Message)
	}
	w1.Close()
	// The server ends the stream's watcher once it sees the cancel.
	deadline := time.Now().Add(waitTimeout)
	for {
		w3, err := c.Watch(ctx, "c")
		if err == nil {
			defer w3.Close()
			mustPut(t, c, "c", "1")
			if evs := readEvents(t, w3, 1); evs[0].KV.Key != "c" {
				t.Errorf("event %v; want a put of c", evs[0])
			}
			break
		}
		if !errors.Is(err, client.ErrTooManyWatches) || time.Now().After(deadline) {
			t.Fatalf("a watch after one closed: %v", err)
		}
		<-time.After(20 * time.Millisecond) // the server closes the watcher on its own goroutine: poll
	}
}
