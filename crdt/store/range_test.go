package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/chorus-kv/chorus/crdt"
)

// rangeAll pages through a range with After/NextKey and returns every record.
// It fails the test on a page over the limit, a key out of order or seen
// twice, or a page that makes no progress.
func rangeAll(tb testing.TB, s *Store, opts RangeOptions) []Record {
	tb.Helper()
	var out []Record
	for page := 0; ; page++ {
		if page > 100_000 {
			tb.Fatalf("range %+v: no end after %d pages", opts, page)
		}
		res, err := s.Range(opts)
		if err != nil {
			tb.Fatalf("Range(%+v): %v", opts, err)
		}
		limit := opts.Limit
		if limit == 0 {
			limit = DefaultPageLimit
		}
		if len(res.Records) > limit {
			tb.Fatalf("page of %d records; the limit is %d", len(res.Records), limit)
		}
		if res.More && len(res.Records) == 0 {
			tb.Fatalf("empty page with More set")
		}
		for _, r := range res.Records {
			if n := len(out); n > 0 && bytes.Compare(out[n-1].Key, r.Key) >= 0 {
				tb.Fatalf("key %q after %q: not in strictly increasing order", r.Key, out[n-1].Key)
			}
			out = append(out, r)
		}
		if !res.More {
			if res.NextKey != nil {
				tb.Errorf("last page has NextKey %q", res.NextKey)
			}
			return out
		}
		if !bytes.Equal(res.NextKey, res.Records[len(res.Records)-1].Key) {
			tb.Fatalf("NextKey %q is not the page's last key %q", res.NextKey, res.Records[len(res.Records)-1].Key)
		}
		opts.After = res.NextKey
	}
}

func keysOf(rs []Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r.Key)
	}
	return out
}

// rangeKeys are arbitrary bytes: "/" separators, 0x00 and 0xff included.
var rangeKeys = []string{
	"\x00", "\x00\x00", "\x01",
	"a", "a\x00", "a\x00\xff", "a/", "a/b", "a/b/c", "a/\xff", "a/\xff\xff", "a0", "a\xff", "a\xff\xff", "a\xff\xff\x00",
	"ab", "b", "b/", "ba",
	"\xfe\xff", "\xff", "\xff\x00", "\xff\xff", "\xff\xff\x00", "\xff\xff\xff",
}

// deadKeys are written then deleted: tombstones that Range must skip.
var deadKeys = []string{"\x00\x01", "a/dead", "a\xff\x00", "a/\xff\xff\xff", "az", "zz", "\xff\xff\xff\xff"}

func fillRangeStore(tb testing.TB, cfg Config) (*Store, []string) {
	tb.Helper()
	s := openStore(tb, cfg)
	ctx := context.Background()
	for _, k := range append(slices.Clone(rangeKeys), deadKeys...) {
		if _, err := s.Put(ctx, []byte(k), []byte("value of "+k)); err != nil {
			tb.Fatal(err)
		}
	}
	for _, k := range deadKeys {
		if _, err := s.Delete(ctx, []byte(k)); err != nil {
			tb.Fatal(err)
		}
	}
	live := slices.Clone(rangeKeys)
	slices.Sort(live) // Go string order is byte order
	return s, live
}

// refRange is the reference: the live keys in [start, end) (end nil: no bound).
func refRange(live []string, start, end []byte) []string {
	var out []string
	for _, k := range live {
		if bytes.Compare([]byte(k), start) >= 0 && (end == nil || bytes.Compare([]byte(k), end) < 0) {
			out = append(out, k)
		}
	}
	return out
}

func TestRange(t *testing.T) {
	s, live := fillRangeStore(t, Config{})
	prefix := func(p string) (start, end []byte) { return []byte(p), PrefixEnd([]byte(p)) }
	type tc struct {
		name       string
		start, end []byte
		want       []string // nil: computed by refRange
	}
	var cases []tc
	for _, p := range []string{"", "\x00", "a", "a/", "a/b", "a/\xff", "a\x00", "a\xff", "a\xff\xff", "b", "\xff", "\xff\xff", "\xff\xff\xff", "c", "zz"} {
		st, en := prefix(p)
		cases = append(cases, tc{name: fmt.Sprintf("prefix %q", p), start: st, end: en})
	}
	cases = append(cases,
		// Hand-written expectations, so the reference is checked too.
		tc{name: "prefix a/ by hand", start: []byte("a/"), end: PrefixEnd([]byte("a/")),
			want: []string{"a/", "a/b", "a/b/c", "a/\xff", "a/\xff\xff"}},
		tc{name: "prefix a\\xff by hand", start: []byte("a\xff"), end: PrefixEnd([]byte("a\xff")),
			want: []string{"a\xff", "a\xff\xff", "a\xff\xff\x00"}},
		tc{name: "prefix \\xff\\xff by hand", start: []byte("\xff\xff"), end: PrefixEnd([]byte("\xff\xff")),
			want: []string{"\xff\xff", "\xff\xff\x00", "\xff\xff\xff"}},
		tc{name: "prefix \\x00 by hand", start: []byte("\x00"), end: PrefixEnd([]byte("\x00")),
			want: []string{"\x00", "\x00\x00"}},
		// "a\xff..." sorts after "ab": bytes, not characters.
		tc{name: "end is exclusive", start: []byte("a/b"), end: []byte("ab"),
			want: []string{"a/b", "a/b/c", "a/\xff", "a/\xff\xff", "a0"}},
		tc{name: "start is inclusive", start: []byte("b"), end: []byte("b\x00"), want: []string{"b"}},
		tc{name: "start equals end", start: []byte("a"), end: []byte("a"), want: []string{}},
		tc{name: "start between keys", start: []byte("a/a"), end: []byte("a/c")},
		tc{name: "no start", start: nil, end: []byte("a")},
		tc{name: "no end", start: []byte("b"), end: nil},
		tc{name: "only tombstones", start: []byte("y"), end: []byte("\xfe"), want: []string{}}, // "zz" is deleted
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := c.want
			if want == nil {
				want = refRange(live, c.start, c.end)
			}
			res, err := s.Range(RangeOptions{Start: c.start, End: c.end})
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(res.Records); !slices.Equal(got, want) {
				t.Errorf("keys %q; want %q", got, want)
			}
			if res.More || res.NextKey != nil {
				t.Errorf("More %v NextKey %q on a page under the limit", res.More, res.NextKey)
			}
			if res.Revision != s.Revision() {
				t.Errorf("page Revision %d; want %d", res.Revision, s.Revision())
			}
			for _, r := range res.Records {
				if r.Tombstone || string(r.Value) != "value of "+string(r.Key) || r.ModRevision == 0 || r.Version != 1 {
					t.Errorf("record %s", fmtRecord(&r))
				}
			}

			// Every limit pages through the same keys, each exactly once.
			for _, limit := range []int{1, 2, 3, 7, len(want), len(want) + 1} {
				if limit == 0 {
					continue
				}
				got := keysOf(rangeAll(t, s, RangeOptions{Start: c.start, End: c.end, Limit: limit}))
				if !slices.Equal(got, want) {
					t.Errorf("limit %d: paged keys %q; want %q", limit, got, want)
				}
			}
			// KeysOnly returns the same keys without values.
			ko, err := s.Range(RangeOptions{Start: c.start, End: c.end, KeysOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(ko.Records); !slices.Equal(got, want) {
				t.Errorf("KeysOnly keys %q; want %q", got, want)
			}
			for _, r := range ko.Records {
				if r.Value != nil {
					t.Errorf("KeysOnly record %q has value %q", r.Key, r.Value)
				}
			}
		})
	}
}

func TestRangePaging(t *testing.T) {
	s, live := fillRangeStore(t, Config{})
	t.Run("More is false when only tombstones remain", func(t *testing.T) {
		// "a/\xff\xff" is the last live key under "a/"; "a/\xff\xff\xff" after it is deleted.
		want := refRange(live, []byte("a/"), []byte("a0"))
		res, err := s.Range(RangeOptions{Start: []byte("a/"), End: []byte("a0"), Limit: len(want)})
		if err != nil {
			t.Fatal(err)
		}
		if res.More || !slices.Equal(keysOf(res.Records), want) {
			t.Errorf("Range = %q More %v; want %q More false", keysOf(res.Records), res.More, want)
		}
	})
	t.Run("After", func(t *testing.T) {
		cases := []struct {
			name         string
			start, after []byte
			end          []byte
			want         []string
		}{
			{name: "after a live key", after: []byte("a/b"), want: refRange(live, []byte("a/b\x00"), nil)},
			{name: "after a deleted key", after: []byte("a/dead"), want: refRange(live, []byte("a/dead\x00"), nil)},
			{name: "after a missing key", after: []byte("a/c"), end: []byte("b"), want: refRange(live, []byte("a/c"), []byte("b"))},
			{name: "after a key with 0xff", after: []byte("a\xff"), end: []byte("b"), want: []string{"a\xff\xff", "a\xff\xff\x00"}},
			{name: "after below start", start: []byte("b"), after: []byte("a"), want: refRange(live, []byte("b"), nil)},
			{name: "after at end", start: []byte("a"), after: []byte("b"), end: []byte("b"), want: []string{}},
			{name: "after past end", start: []byte("a"), after: []byte("c"), end: []byte("b"), want: []string{}},
			{name: "after the last key", after: []byte("\xff\xff\xff"), want: []string{}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				res, err := s.Range(RangeOptions{Start: c.start, End: c.end, After: c.after})
				if err != nil {
					t.Fatal(err)
				}
				if got := keysOf(res.Records); !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
					t.Errorf("keys %q; want %q", got, c.want)
				}
			})
		}
	})
	t.Run("bad options", func(t *testing.T) {
		cases := []struct {
			name string
			opts RangeOptions
		}{
			{name: "negative limit", opts: RangeOptions{Limit: -1}},
			{name: "very negative limit", opts: RangeOptions{Limit: -1 << 40}},
			{name: "start after end", opts: RangeOptions{Start: []byte("b"), End: []byte("a")}},
			{name: "start after end by one byte", opts: RangeOptions{Start: []byte("a\x00"), End: []byte("a")}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if _, err := s.Range(c.opts); !errors.Is(err, ErrBadRange) {
					t.Errorf("Range(%+v): %v; want ErrBadRange", c.opts, err)
				}
			})
		}
	})
}

func TestRangeLimits(t *testing.T) {
	s := openStore(t, Config{})
	const n = MaxPageLimit + 5
	entries := make([]crdt.Entry, n)
	for i := range entries {
		entries[i] = crdt.Entry{Key: fmt.Appendf(nil, "key/%06d", i), Value: []byte("v"), HLC: crdt.NewTimestamp(testWall-1000, 0), Origin: []byte("node-b")}
	}
	if _, err := s.Apply(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		limit, want int
	}{
		{0, DefaultPageLimit},
		{1, 1},
		{MaxPageLimit, MaxPageLimit},
		{MaxPageLimit + 1, MaxPageLimit},
		{1 << 30, MaxPageLimit},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.limit), func(t *testing.T) {
			res, err := s.Range(RangeOptions{Limit: c.limit, KeysOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Records) != c.want || !res.More {
				t.Errorf("Limit %d: %d records More %v; want %d More true", c.limit, len(res.Records), res.More, c.want)
			}
		})
	}
	if got := len(rangeAll(t, s, RangeOptions{Limit: MaxPageLimit})); got != n {
		t.Errorf("paging with the largest limit read %d keys; want %d", got, n)
	}
}

func TestRangeMaxPageBytes(t *testing.T) {
	s := openStore(t, Config{MaxPageBytes: 10})
	ctx := context.Background()
	values := map[string]int{ // key -> value size; key+value bytes in the comment
		"k1": 4,   // 6
		"k2": 4,   // 6: 12 with k1, over the cap
		"k3": 100, // 102: alone over the cap, still returned
		"k4": 0,   // 2
		"k5": 3,   // 5: 7 with k4
		"k6": 3,   // 5: 12 with k4 and k5
		"k7": 8,   // 10: exactly the cap
	}
	for k, n := range values {
		if _, err := s.Put(ctx, []byte(k), bytes.Repeat([]byte{'v'}, n)); err != nil {
			t.Fatal(err)
		}
	}
	wantPages := [][]string{{"k1"}, {"k2"}, {"k3"}, {"k4", "k5"}, {"k6"}, {"k7"}}
	var pages [][]string
	opts := RangeOptions{}
	for {
		res, err := s.Range(opts)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, keysOf(res.Records))
		size := 0
		for _, r := range res.Records {
			size += len(r.Key) + len(r.Value)
		}
		if len(res.Records) > 1 && size > 10 {
			t.Errorf("page %q holds %d bytes; the cap is 10", keysOf(res.Records), size)
		}
		if !res.More || len(pages) > len(values) {
			break
		}
		opts.After = res.NextKey
	}
	if fmt.Sprint(pages) != fmt.Sprint(wantPages) {
		t.Errorf("pages %q; want %q", pages, wantPages)
	}
}

func TestPrefixEnd(t *testing.T) {
	cases := []struct {
		prefix, want []byte
	}{
		{nil, nil},
		{[]byte{}, nil},
		{[]byte("a"), []byte("b")},
		{[]byte("a/"), []byte("a0")},
		{[]byte("ab"), []byte("ac")},
		{[]byte("a\xff"), []byte("b")},
		{[]byte("a\xff\xff"), []byte("b")},
		{[]byte("a\x00"), []byte("a\x01")},
		{[]byte("\x00"), []byte("\x01")},
		{[]byte("\xfe"), []byte("\xff")},
		{[]byte("\xfe\xff"), []byte("\xff")},
		{[]byte("\xff"), nil},
		{[]byte("\xff\xff"), nil},
		{[]byte("\xff\xfe"), []byte("\xff\xff")},
	}
	for _, c := range cases {
		in := slices.Clone(c.prefix)
		got := PrefixEnd(c.prefix)
		if !bytes.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("PrefixEnd(%q) = %q (nil %v); want %q (nil %v)", c.prefix, got, got == nil, c.want, c.want == nil)
		}
		if !bytes.Equal(in, c.prefix) {
			t.Errorf("PrefixEnd(%q) modified its argument to %q", in, c.prefix)
		}
		// Every key with the prefix sorts below the end.
		if got != nil {
			for _, suffix := range []string{"", "\x00", "\xff", "\xff\xff\xff"} {
				k := append(slices.Clone(c.prefix), suffix...)
				if bytes.Compare(k, got) >= 0 {
					t.Errorf("PrefixEnd(%q) = %q is not above %q", c.prefix, got, k)
				}
			}
		}
	}
}
