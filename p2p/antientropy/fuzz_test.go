package antientropy_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/p2p/antientropy"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// fuzzConfig gives the fuzzed side small caps, so that sequences reach
// them; cap is the per-level cap.
func fuzzConfig(cap byte) antientropy.Config {
	return antientropy.Config{
		MaxDiffNodes: 1 + int(cap%32), MaxDigests: 64, MaxEntries: 64,
		DigestsPerFrame: 8, EntryFrameBytes: 256, ApplyBatchEntries: 4, ApplyBatchBytes: 128, ReadBatch: 4,
	}
}

// fuzzEntries are the two replicas of the fuzz seeds: overlapping keys,
// newer versions on each side, a tombstone and an HLC tie.
func fuzzEntries() (x, y []crdt.Entry) {
	e := func(k string, hlc int64, origin string, tomb bool) crdt.Entry {
		en := crdt.Entry{Key: []byte(k), HLC: crdt.NewTimestamp(hlc, 0), Origin: []byte(origin), Tombstone: tomb}
		if !tomb {
			en.Value = []byte("value of " + k)
		}
		return en
	}
	for i := range 40 {
		k := fmt.Sprintf("k%d", i)
		switch {
		case i%4 == 0:
			x = append(x, e(k, 100, "x", false))
		case i%4 == 1:
			y = append(y, e(k, 100, "y", false))
		case i%4 == 2:
			x, y = append(x, e(k, 100, "x", false)), append(y, e(k, 200, "y", i%8 == 2))
		default:
			x, y = append(x, e(k, 300, "x", false)), append(y, e(k, 300, "y", false))
		}
	}
	return x, y
}

var fuzzReplicas = sync.OnceValues(func() (*memReplica, *memReplica) {
	x, y := fuzzEntries()
	return newMemReplica(x), newMemReplica(y)
})

// transcript runs a session between x (initiator when xInitiates) and y
// and returns the messages x received, framed as on the wire.
func transcript(t testing.TB, x, y *memReplica, xInitiates bool, cfg antientropy.Config) []byte {
	var mx, my *antientropy.Session
	if xInitiates {
		mx, my = antientropy.NewInitiator(cfg, x, x.local()), antientropy.NewResponder(antientropy.Config{}, y, y.local(), nil)
	} else {
		mx, my = antientropy.NewResponder(cfg, x, x.local(), nil), antientropy.NewInitiator(antientropy.Config{}, y, y.local())
	}
	var frames []byte
	var toX, toY []*replicationv1.SyncMessage
	outX, outY := mx.Start(), my.Start()
	for range 10_000 {
		toY = append(toY, outX.Send...)
		toX = append(toX, outY.Send...)
		switch {
		case outX.More:
			outX = mx.Continue()
		case outY.More:
			outY = my.Continue()
		case !outX.Done && len(toX) > 0:
			b, err := proto.Marshal(toX[0])
			if err != nil {
				t.Fatal(err)
			}
			frames = binary.AppendUvarint(frames, uint64(len(b)))
			frames = append(frames, b...)
			outX, toX = mx.Step(toX[0]), toX[1:]
		case !outY.Done && len(toY) > 0:
			outY, toY = my.Step(toY[0]), toY[1:]
		default:
			return frames
		}
	}
	t.Fatal("the seed session does not end")
	return nil
}

// FuzzSession feeds a session arbitrary message sequences (uvarint-length
// frames of SyncMessage): it must never panic, never accept more than its
// caps, never send a level wider than its cap, and end in done or error
// or wait for a message, never loop.
//
//	go test ./p2p/antientropy -run '^$' -fuzz FuzzSession -fuzztime 1m
func FuzzSession(f *testing.F) {
	x, y := fuzzReplicas()
	for _, c := range []byte{31, 3, 0} {
		cfg := fuzzConfig(c)
		f.Add(true, c, transcript(f, x, y, true, cfg))
		f.Add(false, c, transcript(f, x, y, false, cfg))
	}
	f.Fuzz(func(t *testing.T, initiator bool, cap byte, frames []byte) {
		cfg := fuzzConfig(cap)
		var m *antientropy.Session
		if initiator {
			m = antientropy.NewInitiator(cfg, x, x.local())
		} else {
			m = antientropy.NewResponder(cfg, x, x.local(), nil)
		}
		applied := 0
		check := func(out antientropy.Output) {
			for _, b := range out.Apply {
				applied += len(b)
				size := 0
				for _, e := range b {
					size += len(e.Key) + len(e.Value)
				}
				if len(b) == 0 || len(b) > cfg.ApplyBatchEntries || len(b) > 1 && size > cfg.ApplyBatchBytes {
					t.Fatalf("an apply batch of %d entries, %d bytes", len(b), size)
				}
			}
			if applied > cfg.MaxEntries {
				t.Fatalf("%d entries to apply; the cap is %d", applied, cfg.MaxEntries)
			}
			for _, msg := range out.Send {
				if lv := msg.GetLevel(); lv != nil && len(lv.GetParents()) > cfg.MaxDiffNodes {
					t.Fatalf("sent a level of %d nodes; the cap is %d", len(lv.GetParents()), cfg.MaxDiffNodes)
				}
				if d := msg.GetDigests(); d != nil && len(d.GetKeyHashes()) > cfg.DigestsPerFrame {
					t.Fatalf("sent %d digests in a frame", len(d.GetKeyHashes()))
				}
			}
			if st := m.Stats(); st.DigestsReceived > cfg.MaxDigests || st.EntriesReceived > cfg.MaxEntries {
				t.Fatalf("stats over the caps: %+v", st)
			}
			if out.Done && out.Err != nil && !knownError(out.Err) {
				t.Fatalf("an error that wraps no sentinel: %v", out.Err)
			}
		}
		// drive runs the session's output until it needs a message.
		drive := func(out antientropy.Output) bool {
			for n := 0; ; n++ {
				check(out)
				if out.Done {
					return true
				}
				if !out.More {
					return false
				}
				if n > 1000 {
					t.Fatal("Continue does not end")
				}
				out = m.Continue()
			}
		}
		done := drive(m.Start())
		for len(frames) > 0 {
			n, k := binary.Uvarint(frames)
			if k <= 0 || n > uint64(len(frames)-k) {
				break
			}
			b := frames[k : k+int(n)]
			frames = frames[k+int(n):]
			msg := &replicationv1.SyncMessage{}
			if proto.Unmarshal(b, msg) != nil {
				continue // the driver's error: the machine never sees it
			}
			if done {
				if out := m.Step(msg); !out.Done || !errors.Is(out.Err, antientropy.ErrEnded) {
					t.Fatalf("Step after the end returned %+v", out)
				}
				return
			}
			done = drive(m.Step(msg))
		}
		if ended, _ := m.Ended(); ended != done {
			t.Fatalf("Ended() = %v after an output with Done %v", ended, done)
		}
	})
}

func knownError(err error) bool {
	for _, s := range []error{antientropy.ErrMalformed, antientropy.ErrTooLarge, antientropy.ErrStale,
		antientropy.ErrRefused, antientropy.ErrPeerRefused, antientropy.ErrPeerGaveUp} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// TestSessionsConverge: between two random replicas (random keys, versions,
// tombstones and ties, random per-level caps), sessions repeated until one
// is complete leave both replicas equal, entry by entry, and both sides
// agree on whether a session was partial. Prints the seed.
func TestSessionsConverge(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	x, y := newMemReplica(nil), newMemReplica(nil)
	for round := range 20 {
		var ex, ey []crdt.Entry
		keys := 1 + rng.IntN(300)
		for i := range keys {
			k := fmt.Sprintf("key/%d/%d", round, rng.IntN(keys))
			en := crdt.Entry{Key: []byte(k), HLC: crdt.NewTimestamp(int64(1+rng.IntN(5)), 0), Origin: []byte{byte('a' + rng.IntN(3))}, Tombstone: rng.IntN(5) == 0}
			if !en.Tombstone {
				en.Value = fmt.Appendf(nil, "v%d", rng.IntN(3))
			}
			switch i % 3 {
			case 0:
				ex = append(ex, en)
			case 1:
				ey = append(ey, en)
			default:
				ex, ey = append(ex, en), append(ey, en)
			}
		}
		x.reset(ex)
		y.reset(ey)
		cfgX := antientropy.Config{MaxDiffNodes: 1 + rng.IntN(64), ReadBatch: 1 + rng.IntN(16), EntryFrameBytes: 1 + rng.IntN(2000)}
		cfgY := antientropy.Config{MaxDiffNodes: 1 + rng.IntN(64), DigestsPerFrame: 1 + rng.IntN(16)}
		sessions := 0
		for {
			sessions++
			if sessions > 1000 {
				t.Fatalf("round %d: no convergence after 1000 sessions", round)
			}
			mx, my := antientropy.NewInitiator(cfgX, x, x.local()), antientropy.NewResponder(cfgY, y, y.local(), nil)
			errX, errY := runMem(t, mx, my, x, y)
			if errX != nil || errY != nil {
				t.Fatalf("round %d: %v, %v", round, errX, errY)
			}
			if !mx.Stats().Partial {
				break
			}
			if !my.Stats().Partial {
				t.Fatalf("round %d: partial for the initiator only", round)
			}
		}
		if x.tree.Root() != y.tree.Root() || len(x.entries) != len(y.entries) {
			t.Fatalf("round %d: replicas differ after %d sessions", round, sessions)
		}
		for kh, e := range x.entries {
			o := y.entries[kh]
			if crdt.Compare(&e, &o) != 0 {
				t.Fatalf("round %d: %q differs", round, e.Key)
			}
		}
	}
}

// runMem runs a session between two memReplicas and applies what each
// side receives (unless x or y is nil: then nothing is applied on that side).
func runMem(t testing.TB, mx, my *antientropy.Session, x, y *memReplica) (errX, errY error) {
	type end struct {
		m     *antientropy.Session
		r     *memReplica
		out   antientropy.Output
		inbox []*replicationv1.SyncMessage
	}
	a, b := &end{m: mx, r: x}, &end{m: my, r: y}
	a.out, b.out = mx.Start(), my.Start()
	for range 100_000 {
		for _, e := range []*end{a, b} {
			peer := b
			if e == b {
				peer = a
			}
			if e.r != nil {
				for _, batch := range e.out.Apply {
					e.r.Apply(batch)
				}
			}
			e.out.Apply = nil
			peer.inbox = append(peer.inbox, e.out.Send...)
			e.out.Send = nil
		}
		switch {
		case a.out.Done && b.out.Done:
			return a.out.Err, b.out.Err
		case a.out.More:
			a.out = a.m.Continue()
		case b.out.More:
			b.out = b.m.Continue()
		case !a.out.Done && len(a.inbox) > 0:
			a.out, a.inbox = a.m.Step(a.inbox[0]), a.inbox[1:]
		case !b.out.Done && len(b.inbox) > 0:
			b.out, b.inbox = b.m.Step(b.inbox[0]), b.inbox[1:]
		default:
			t.Fatalf("the session is stuck: initiator %+v, responder %+v", a.out, b.out)
		}
	}
	t.Fatal("the session does not end")
	return nil, nil
}

// BenchmarkSession measures the CPU cost of a session's logic alone (no
// stream, no store): two in-memory replicas of 10,000 keys, d of them
// differing (half new on one side, half newer versions), one session
// stepped message by message. Nothing is applied, so every iteration
// repairs the same difference.
//
//	go test ./p2p/antientropy -run '^$' -bench BenchmarkSession
func BenchmarkSession(b *testing.B) {
	const n = 10_000
	var shared []crdt.Entry
	for i := range n {
		shared = append(shared, crdt.Entry{Key: fmt.Appendf(nil, "/r/shared/%022d", i), Value: make([]byte, 256), HLC: crdt.NewTimestamp(100, 0), Origin: []byte("o")})
	}
	x, y := newMemReplica(shared), newMemReplica(shared)
	for _, d := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			x.reset(shared)
			y.reset(shared)
			var diff []crdt.Entry
			for i := range d {
				e := shared[(i*7919)%n]
				e.HLC = crdt.NewTimestamp(200, 0)
				if i%2 == 0 {
					e.Key = fmt.Appendf(nil, "/r/new/%025d", i)
				}
				diff = append(diff, e)
			}
			y.Apply(diff)
			b.ReportAllocs()
			for b.Loop() {
				mx, my := antientropy.NewInitiator(antientropy.Config{}, x, x.local()), antientropy.NewResponder(antientropy.Config{}, y, y.local(), nil)
				if errX, errY := runMem(b, mx, my, nil, nil); errX != nil || errY != nil {
					b.Fatal(errX, errY)
				}
				if got := mx.Stats().EntriesReceived; got != d {
					b.Fatalf("received %d entries; want %d", got, d)
				}
			}
		})
	}
}
