package antientropy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/merkle"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p/antientropy"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// TestDataDriven replays the scripts in testdata/: each builds small real
// stores (LevelDB in memory, a fake wall clock), steps sessions between
// them message by message and prints every message, every applied batch
// and the outcome. Rewrite the expected output after a deliberate change
// with
//
//	go test ./p2p/antientropy -run TestDataDriven -rewrite
//
// Commands:
//
//	replica name=A [wall=MS] [grace=DURATION]
//	KEY HLC_MS ORIGIN VALUE|del    (one entry a line)
//	    opens a store (if new) and applies the entries.
//	gen name=A n=N [prefix=P] [hlc=MS] [origin=O] [every=K]
//	    applies keys P0..P(N-1), each with a value; with every=K only
//	    every K-th.
//	advance name=A by=DURATION     moves A's wall clock.
//	delete name=A key=K            deletes K locally.
//	purge name=A                   purges A's tombstones past its grace.
//	show name=A                    prints A's keys (tombstones marked).
//	session from=A to=B [cap-A=N] [cap-B=N] [max-digests-B=N]
//	    [max-entries-B=N] [frame-bytes=N] [read-batch=N] [refuse=REASON]
//	    [replace=I] [quiet]
//	(a message, as below, when replace is set)
//	    runs one session; A initiates. replace=I puts the input's message
//	    in place of the I-th message sent (counting from 1). quiet prints
//	    the outcome only.
//	repeat from=A to=B [cap-A=N] [cap-B=N] [max=N]
//	    runs sessions until one is complete, one summary line each.
//	feed name=A role=initiator|responder [root=mine]
//	(messages, one a line)
//	    steps A's session with the given messages.
//
// Messages: hello [root=N|mine|other] [fanout=N] [depth=N] [contact=MS]
// [purged=MS] [cap=N] [error=TEXT]; level L parents=P,.. [hashes=N]
// [partial]; digests buckets=B,.. [keys=KEY,..] [last] [partial]; entries
// [keys=KEY@HLC,..] [want=KEY,..] [last]; done [error=TEXT]; empty.
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		w := &world{t: t, replicas: map[string]*replica{}}
		datadriven.RunTest(t, path, w.run)
	})
}

type replica struct {
	name  string
	store *store.Store
	wall  *testutil.FakeWall
}

type world struct {
	t        *testing.T
	replicas map[string]*replica
}

const startWall = int64(1_000_000)

func (w *world) run(t *testing.T, d *datadriven.TestData) string {
	var b strings.Builder
	switch d.Cmd {
	case "replica":
		r := w.replica(t, d)
		w.apply(t, r, parseEntries(t, d.Input))
		fmt.Fprintf(&b, "%s: %d keys, root %s\n", r.name, r.store.Keys(), root(r.store.MerkleRoot()))
	case "gen":
		r := w.get(t, d)
		n := intArg(t, d, "n", 0)
		every := intArg(t, d, "every", 1)
		prefix, origin := strArg(d, "prefix", "k"), strArg(d, "origin", r.name)
		hlc := crdt.NewTimestamp(int64(intArg(t, d, "hlc", 100)), 0)
		var es []crdt.Entry
		for i := 0; i < n; i += every {
			k := fmt.Sprintf("%s%d", prefix, i)
			es = append(es, crdt.Entry{Key: []byte(k), Value: []byte("v-" + k), HLC: hlc, Origin: []byte(origin)})
		}
		w.apply(t, r, es)
		fmt.Fprintf(&b, "%s: %d keys, root %s\n", r.name, r.store.Keys(), root(r.store.MerkleRoot()))
	case "advance":
		r := w.get(t, d)
		by, err := time.ParseDuration(strArg(d, "by", "0s"))
		if err != nil {
			t.Fatal(err)
		}
		r.wall.Add(by.Milliseconds())
		fmt.Fprintf(&b, "%s: wall %d\n", r.name, r.wall.Now())
	case "delete":
		r := w.get(t, d)
		if _, err := r.store.Delete(context.Background(), []byte(strArg(d, "key", ""))); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s: %d keys, root %s\n", r.name, r.store.Keys(), root(r.store.MerkleRoot()))
	case "purge":
		r := w.get(t, d)
		n, err := r.store.PurgeTombstones(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s: purged %d, purged through %s\n", r.name, n, ts(r.store.PurgedThrough()))
	case "show":
		r := w.get(t, d)
		b.WriteString(show(t, r))
	case "session":
		w.session(t, d, &b)
	case "repeat":
		w.repeat(t, d, &b)
	case "feed":
		w.feed(t, d, &b)
	default:
		t.Fatalf("unknown command %q", d.Cmd)
	}
	return b.String()
}

func (w *world) replica(t *testing.T, d *datadriven.TestData) *replica {
	name := strArg(d, "name", "")
	if r, ok := w.replicas[name]; ok {
		return r
	}
	r := &replica{name: name, wall: testutil.NewFakeWall(int64(intArg(t, d, "wall", int(startWall))))}
	grace, err := time.ParseDuration(strArg(d, "grace", "24h"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(store.Config{NodeID: []byte(name), Clock: crdt.NewClock(r.wall.Now, 0), TombstoneGrace: grace})
	if err != nil {
		t.Fatal(err)
	}
	w.t.Cleanup(func() { _ = s.Close() })
	r.store = s
	w.replicas[name] = r
	return r
}

func (w *world) get(t *testing.T, d *datadriven.TestData) *replica {
	r, ok := w.replicas[strArg(d, "name", "")]
	if !ok {
		t.Fatalf("%s: no replica %q", d.Pos, strArg(d, "name", ""))
	}
	return r
}

func (w *world) apply(t *testing.T, r *replica, es []crdt.Entry) {
	for len(es) > 0 {
		n := min(len(es), 1000)
		if _, err := r.store.Apply(context.Background(), es[:n]); err != nil {
			t.Fatal(err)
		}
		es = es[n:]
	}
}

// side is one replica's end of a session the script runs.
type side struct {
	r       *replica
	m       *antientropy.Session
	role    string
	inbox   []*replicationv1.SyncMessage
	more    bool
	done    bool
	err     error
	applied int
	contact crdt.Timestamp
}

func (w *world) config(t *testing.T, d *datadriven.TestData, name, peer string) antientropy.Config {
	return antientropy.Config{
		Peer:            peer,
		MaxDiffNodes:    intArg(t, d, "cap-"+name, 0),
		MaxDigests:      intArg(t, d, "max-digests-"+name, 0),
		MaxEntries:      intArg(t, d, "max-entries-"+name, 0),
		EntryFrameBytes: intArg(t, d, "frame-bytes", 0),
		DigestsPerFrame: intArg(t, d, "digests-per-frame", 0),
		ReadBatch:       intArg(t, d, "read-batch", 0),
	}
}

func local(s *store.Store) antientropy.Local {
	return antientropy.Local{Root: s.MerkleRoot(), LastContact: s.LastContact(), PurgedThrough: s.PurgedThrough()}
}

// pair starts a session between from (initiator) and to.
func (w *world) pair(t *testing.T, d *datadriven.TestData) (a, b *side) {
	from, to := w.replicas[strArg(d, "from", "")], w.replicas[strArg(d, "to", "")]
	if from == nil || to == nil {
		t.Fatalf("%s: from and to must name replicas", d.Pos)
	}
	var refuse error
	if r := strArg(d, "refuse", ""); r != "" {
		refuse = errors.New(r)
	}
	a = &side{r: from, role: "initiator", contact: from.store.Clock().Now(),
		m: antientropy.NewInitiator(w.config(t, d, from.name, to.name), from.store, local(from.store))}
	b = &side{r: to, role: "responder", contact: to.store.Clock().Now(),
		m: antientropy.NewResponder(w.config(t, d, to.name, from.name), to.store, local(to.store), refuse)}
	return a, b
}

// pump runs a session to its end, delivering messages one at a time. It
// prints what it does unless out is nil; replace swaps a message sent.
func pump(t *testing.T, a, b *side, out *strings.Builder, replace int, with *replicationv1.SyncMessage) {
	sent := 0
	handle := func(s, peer *side, o antientropy.Output) {
		for _, batch := range o.Apply {
			changes, err := s.r.store.Apply(context.Background(), batch)
			if err != nil {
				t.Fatalf("%s applies: %v", s.r.name, err)
			}
			s.applied += len(changes)
			if out != nil {
				fmt.Fprintf(out, "%s applies %s: %d changed\n", s.r.name, entryList(batch), len(changes))
			}
		}
		for _, m := range o.Send {
			sent++
			note := ""
			if sent == replace {
				m, note = with, " (replaced)"
			}
			if out != nil {
				fmt.Fprintf(out, "%s → %s  %s%s\n", s.r.name, peer.r.name, format(m), note)
			}
			peer.inbox = append(peer.inbox, m)
		}
		s.more = o.More
		if o.Done {
			s.done, s.err = true, o.Err
		}
	}
	handle(a, b, a.m.Start())
	handle(b, a, b.m.Start())
	for steps := 0; ; steps++ {
		if steps > 1_000_000 {
			t.Fatal("the session does not end")
		}
		progressed := false
		for _, s := range []*side{a, b} {
			peer := b
			if s == b {
				peer = a
			}
			switch {
			case s.done:
			case s.more:
				handle(s, peer, s.m.Continue())
				progressed = true
			case len(s.inbox) > 0:
				m := s.inbox[0]
				s.inbox = s.inbox[1:]
				handle(s, peer, s.m.Step(m))
				progressed = true
			}
		}
		if !progressed {
			break
		}
	}
	// A side left waiting reads the end of the stream: the other side
	// ended (with an error, it resets the stream).
	for _, s := range []*side{a, b} {
		if !s.done {
			s.done, s.err = true, errors.New("the peer ended the stream")
		}
	}
}

func (w *world) outcome(t *testing.T, s *side) string {
	st := s.m.Stats()
	if s.err != nil {
		return fmt.Sprintf("%s (%s): error: %v\n", s.r.name, s.role, s.err)
	}
	partial := ""
	if st.Partial {
		partial = ", partial"
	} else if err := s.r.store.SetLastContact(s.contact); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s (%s): completed%s; sent %d, received %d, applied %d entries; %d buckets, digests %d out, %d in\n",
		s.r.name, s.role, partial, st.EntriesSent, st.EntriesReceived, s.applied, st.DifferingBuckets, st.DigestsSent, st.DigestsReceived)
}

func (w *world) session(t *testing.T, d *datadriven.TestData, b *strings.Builder) {
	a, c := w.pair(t, d)
	replace := intArg(t, d, "replace", 0)
	var with *replicationv1.SyncMessage
	if replace > 0 {
		with = parseMessage(t, strings.TrimSpace(d.Input), c.r.store)
	}
	var trace *strings.Builder
	if !d.HasArg("quiet") {
		trace = b
	}
	pump(t, a, c, trace, replace, with)
	b.WriteString(w.outcome(t, a))
	b.WriteString(w.outcome(t, c))
	fmt.Fprintf(b, "roots: %s\n", rootsEqual(a.r.store, c.r.store))
}

func (w *world) repeat(t *testing.T, d *datadriven.TestData, b *strings.Builder) {
	maxSessions := intArg(t, d, "max", 100)
	for i := 1; i <= maxSessions; i++ {
		a, c := w.pair(t, d)
		pump(t, a, c, nil, 0, nil)
		if a.err != nil || c.err != nil {
			fmt.Fprintf(b, "session %d: errors %v, %v\n", i, a.err, c.err)
			return
		}
		st := a.m.Stats()
		w.outcome(t, a)
		w.outcome(t, c)
		fmt.Fprintf(b, "session %d: partial %v; %s sent %d, received %d; %d buckets; roots %s\n",
			i, st.Partial, a.r.name, st.EntriesSent, st.EntriesReceived, st.DifferingBuckets, rootsEqual(a.r.store, c.r.store))
		if !st.Partial {
			return
		}
	}
	fmt.Fprintf(b, "still partial after %d sessions\n", maxSessions)
}

func (w *world) feed(t *testing.T, d *datadriven.TestData, b *strings.Builder) {
	r := w.get(t, d)
	cfg := w.config(t, d, r.name, "peer")
	var m *antientropy.Session
	role := strArg(d, "role", "responder")
	var refuse error
	if x := strArg(d, "refuse", ""); x != "" {
		refuse = errors.New(x)
	}
	if role == "initiator" {
		m = antientropy.NewInitiator(cfg, r.store, local(r.store))
	} else {
		m = antientropy.NewResponder(cfg, r.store, local(r.store), refuse)
	}
	print := func(o antientropy.Output) bool {
		for _, batch := range o.Apply {
			fmt.Fprintf(b, "%s would apply %s\n", r.name, entryList(batch))
		}
		for _, msg := range o.Send {
			fmt.Fprintf(b, "%s →  %s\n", r.name, format(msg))
		}
		if o.More {
			fmt.Fprintf(b, "%s: more to send\n", r.name)
		}
		if o.Done {
			if o.Err != nil {
				fmt.Fprintf(b, "%s: error: %v\n", r.name, o.Err)
			} else {
				fmt.Fprintf(b, "%s: completed\n", r.name)
			}
		}
		return o.Done
	}
	if print(m.Start()) {
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
		msg := parseMessage(t, line, r.store)
		fmt.Fprintf(b, "%s ←  %s\n", r.name, format(msg))
		o := m.Step(msg)
		for !o.Done && o.More {
			print(o)
			o = m.Continue()
		}
		if print(o) {
			return
		}
	}
	fmt.Fprintf(b, "%s: waiting for the next message\n", r.name)
}

// format prints a message in the scripts' notation.
func format(m *replicationv1.SyncMessage) string {
	switch body := m.GetBody().(type) {
	case *replicationv1.SyncMessage_Hello:
		h := body.Hello
		s := fmt.Sprintf("hello root=%s contact=%s purged=%s cap=%d", root(h.GetRoot()), ts(crdt.Timestamp(h.GetLastContact())), ts(crdt.Timestamp(h.GetPurgedThrough())), h.GetMaxDiffNodes())
		if h.GetFanout() != merkle.Fanout || h.GetDepth() != merkle.Depth {
			s += fmt.Sprintf(" fanout=%d depth=%d", h.GetFanout(), h.GetDepth())
		}
		if h.GetError() != "" {
			s += fmt.Sprintf(" error=%q", h.GetError())
		}
		return s
	case *replicationv1.SyncMessage_Level:
		l := body.Level
		return fmt.Sprintf("level %d parents=%s hashes=%d%s", l.GetLevel(), list(l.GetParents()), len(l.GetHashes()), flag(l.GetPartial(), " partial"))
	case *replicationv1.SyncMessage_Digests:
		g := body.Digests
		s := "digests"
		if len(g.GetBuckets()) > 0 {
			s += " buckets=" + list(g.GetBuckets())
		}
		return s + fmt.Sprintf(" n=%d%s%s", len(g.GetKeyHashes()), flag(g.GetLast(), " last"), flag(g.GetPartial(), " partial"))
	case *replicationv1.SyncMessage_Entries:
		e := body.Entries
		var es []crdt.Entry
		for _, x := range e.GetEntries() {
			es = append(es, crdt.Entry{Key: x.GetKey(), HLC: crdt.Timestamp(x.GetHlc()), Tombstone: x.GetTombstone()})
		}
		s := "entries " + entryList(es)
		if len(e.GetWant()) > 0 {
			s += fmt.Sprintf(" want=%d", len(e.GetWant()))
		}
		return s + flag(e.GetLast(), " last")
	case *replicationv1.SyncMessage_Done:
		if e := body.Done.GetError(); e != "" {
			return fmt.Sprintf("done error=%q", e)
		}
		return "done"
	default:
		return "empty"
	}
}

func flag(b bool, s string) string {
	if b {
		return s
	}
	return ""
}

// list prints up to 8 numbers, and how many beyond.
func list(xs []uint32) string {
	if len(xs) > 8 {
		return fmt.Sprintf("(%d nodes)", len(xs))
	}
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatUint(uint64(x), 10)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// entryList prints up to 8 entries as KEY@MS (del for tombstones), and
// how many beyond.
func entryList(es []crdt.Entry) string {
	if len(es) > 8 {
		return fmt.Sprintf("(%d entries)", len(es))
	}
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = fmt.Sprintf("%s@%s%s", e.Key, ts(e.HLC), flag(e.Tombstone, "(del)"))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func ts(t crdt.Timestamp) string {
	if t.Logical() == 0 {
		return strconv.FormatInt(t.Physical(), 10)
	}
	return fmt.Sprintf("%d.%d", t.Physical(), t.Logical())
}

func root(r uint64) string { return fmt.Sprintf("%016x", r) }

func rootsEqual(a, b *store.Store) string {
	if a.MerkleRoot() == b.MerkleRoot() {
		return "equal"
	}
	return "differ"
}

func show(t *testing.T, r *replica) string {
	var b strings.Builder
	var keys []string
	digests, err := r.store.BucketDigests(allBuckets(r.store))
	if err != nil {
		t.Fatal(err)
	}
	var hashes []uint64
	for _, d := range digests {
		hashes = append(hashes, d.KeyHash)
	}
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	if err := r.store.EntriesByKeyHash(hashes, func(e *crdt.Entry) error {
		keys = append(keys, fmt.Sprintf("%s@%s/%s%s", e.Key, ts(e.HLC), e.Origin, flag(e.Tombstone, "(del)")))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	fmt.Fprintf(&b, "%s: %s\n", r.name, strings.Join(keys, " "))
	return b.String()
}

// allBuckets lists the buckets holding r's keys, found by walking the
// tree down from the root.
func allBuckets(s *store.Store) []uint32 {
	nodes := []uint32{0}
	for level := range merkle.Depth {
		hashes := s.MerkleChildren(nil, level, nodes)
		var next []uint32
		for i, h := range hashes {
			if h != 0 {
				next = append(next, nodes[i/merkle.Fanout]*merkle.Fanout+uint32(i%merkle.Fanout))
			}
		}
		nodes = next
	}
	return nodes
}

// parseEntries reads "KEY HLC_MS ORIGIN VALUE|del" lines.
func parseEntries(t *testing.T, input string) []crdt.Entry {
	var es []crdt.Entry
	for _, line := range strings.Split(input, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 4 {
			t.Fatalf("entry %q: want KEY HLC_MS ORIGIN VALUE|del", line)
		}
		e := crdt.Entry{Key: []byte(f[0]), HLC: parseTS(t, f[1]), Origin: []byte(f[2])}
		if f[3] == "del" {
			e.Tombstone = true
		} else {
			e.Value = []byte(f[3])
		}
		es = append(es, e)
	}
	return es
}

func parseTS(t *testing.T, s string) crdt.Timestamp {
	phys, logical, _ := strings.Cut(s, ".")
	p, err := strconv.ParseInt(phys, 10, 64)
	if err != nil {
		t.Fatalf("timestamp %q: %v", s, err)
	}
	var l uint64
	if logical != "" {
		if l, err = strconv.ParseUint(logical, 10, 16); err != nil {
			t.Fatalf("timestamp %q: %v", s, err)
		}
	}
	return crdt.NewTimestamp(p, uint16(l))
}

// parseMessage reads a message in the scripts' notation; own is the store
// of the side that receives it (root=mine copies its root).
func parseMessage(t *testing.T, line string, own *store.Store) *replicationv1.SyncMessage {
	f := strings.Fields(line)
	if len(f) == 0 {
		t.Fatal("empty message line")
	}
	args := map[string]string{}
	var pos []string
	for _, x := range f[1:] {
		if k, v, ok := strings.Cut(x, "="); ok {
			args[k] = v
		} else {
			pos = append(pos, x)
		}
	}
	has := func(s string) bool { return slices.Contains(pos, s) }
	num := func(k string, def uint64) uint64 {
		v, ok := args[k]
		if !ok {
			return def
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", k, v, err)
		}
		return n
	}
	nums := func(k string) []uint32 {
		var out []uint32
		for _, v := range strings.Split(args[k], ",") {
			if v != "" {
				out = append(out, uint32(num2(t, v)))
			}
		}
		return out
	}
	keyHashes := func(k string) []uint64 {
		var out []uint64
		for _, v := range strings.Split(args[k], ",") {
			if v != "" {
				out = append(out, merkle.KeyHash([]byte(v)))
			}
		}
		slices.Sort(out)
		return out
	}
	switch f[0] {
	case "hello":
		h := &replicationv1.SyncHello{Fanout: uint32(num("fanout", merkle.Fanout)), Depth: uint32(num("depth", merkle.Depth)),
			LastContact: uint64(parseTS(t, valueOr(args, "contact", strconv.FormatInt(startWall, 10)))), MaxDiffNodes: uint32(num("cap", 0)),
			Error: strings.ReplaceAll(args["error"], "_", " ")}
		if p, ok := args["purged"]; ok {
			h.PurgedThrough = uint64(parseTS(t, p))
		}
		switch r := valueOr(args, "root", "other"); r {
		case "mine":
			h.Root = own.MerkleRoot()
		case "other":
			h.Root = own.MerkleRoot() + 1
		default:
			h.Root = num("root", 0)
		}
		return &replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Hello{Hello: h}}
	case "level":
		if len(pos) == 0 {
			t.Fatalf("%q: level needs its number", line)
		}
		parents := nums("parents")
		hashes := make([]uint64, num("hashes", uint64(len(parents)*merkle.Fanout)))
		return &replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Level{Level: &replicationv1.SyncLevel{
			Level: uint32(num2(t, pos[0])), Parents: parents, Hashes: hashes, Partial: has("partial")}}}
	case "digests":
		g := &replicationv1.SyncDigests{Buckets: nums("buckets"), Last: has("last"), Partial: has("partial")}
		for _, kh := range keyHashes("keys") {
			g.KeyHashes, g.Hlcs, g.EntryHashes = append(g.KeyHashes, kh), append(g.Hlcs, 1), append(g.EntryHashes, kh)
		}
		return &replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Digests{Digests: g}}
	case "entries":
		e := &replicationv1.SyncEntries{Want: keyHashes("want"), Last: has("last")}
		for _, v := range strings.Split(args["keys"], ",") {
			if v == "" {
				continue
			}
			k, at, ok := strings.Cut(v, "@")
			if !ok {
				at = "100"
			}
			e.Entries = append(e.Entries, &replicationv1.Entry{Key: []byte(k), Value: []byte("v"), Hlc: uint64(parseTS(t, at)), Origin: []byte("x")})
		}
		return &replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Entries{Entries: e}}
	case "done":
		return &replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Done{Done: &replicationv1.SyncDone{Error: strings.ReplaceAll(args["error"], "_", " ")}}}
	case "empty":
		return &replicationv1.SyncMessage{}
	}
	t.Fatalf("unknown message %q", line)
	return nil
}

func num2(t *testing.T, s string) uint64 {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

func valueOr(m map[string]string, k, def string) string {
	if v, ok := m[k]; ok && v != "" {
		return v
	}
	return def
}

func strArg(d *datadriven.TestData, key, def string) string {
	for _, a := range d.CmdArgs {
		if a.Key == key && len(a.Vals) > 0 {
			return a.Vals[0]
		}
	}
	return def
}

func intArg(t *testing.T, d *datadriven.TestData, key string, def int) int {
	s := strArg(d, key, "")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s: %s=%q: %v", d.Pos, key, s, err)
	}
	return n
}
