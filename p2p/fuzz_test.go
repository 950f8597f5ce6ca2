package p2p

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// FuzzDecodeBatch feeds arbitrary bytes to the gossip and push decoder: it
// must never panic, and what it accepts must satisfy every rule it checks.
func FuzzDecodeBatch(f *testing.F) {
	signer := peer.ID("signer")
	good, _ := EncodeBatch([]crdt.Entry{{Key: []byte("k"), Value: []byte("v"), HLC: crdt.NewTimestamp(1_000_000, 1), Origin: []byte(signer)}})
	tomb, _ := EncodeBatch([]crdt.Entry{{Key: []byte("k"), HLC: crdt.NewTimestamp(999_000, 0), Origin: []byte(signer), Tombstone: true}})
	f.Add(good)
	f.Add(tomb)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	limits := crdt.Limits{MaxKeyBytes: 64, MaxValueBytes: 256}
	v := &Validator{
		Limits:          limits,
		Clock:           crdt.NewClock(func() int64 { return 1_000_000 }, 500*time.Millisecond),
		MaxMessageBytes: 4096,
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := v.DecodeBatch(data, signer, true)
		if err != nil {
			return
		}
		if len(entries) == 0 {
			t.Fatal("accepted an empty batch")
		}
		for i := range entries {
			e := &entries[i]
			if err := limits.CheckEntry(e); err != nil {
				t.Fatalf("accepted entry %d: %v", i, err)
			}
			if peer.ID(e.Origin) != signer {
				t.Fatalf("accepted a foreign entry %d", i)
			}
			if e.HLC.Physical() > 1_000_500 {
				t.Fatalf("accepted a timestamp beyond the offset: %v", e.HLC)
			}
		}
		// Re-encoding what was accepted is accepted again, unchanged.
		again, err := EncodeBatch(entries)
		if err != nil {
			t.Fatal(err)
		}
		back, err := v.DecodeBatch(again, signer, true)
		if err != nil || len(back) != len(entries) {
			t.Fatalf("round trip: %v", err)
		}
		for i := range back {
			if crdt.Compare(&back[i], &entries[i]) != 0 {
				t.Fatalf("round trip changed entry %d", i)
			}
		}
	})
}

// FuzzReadFrame: the push framing never panics, never returns more than
// its limit, and round-trips what writeFrame wrote.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0x03, 'a', 'b', 'c'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		frame, err := readFrame(bufio.NewReader(bytes.NewReader(data)), 1024)
		if err == nil && len(frame) > 1024 {
			t.Fatalf("frame of %d bytes over the limit", len(frame))
		}
		var buf bytes.Buffer
		if len(data) <= 1024 {
			if err := writeFrame(&buf, data); err != nil {
				t.Fatal(err)
			}
			back, err := readFrame(bufio.NewReader(&buf), 1024)
			if err != nil || !bytes.Equal(back, data) {
				t.Fatalf("round trip: %v", err)
			}
		}
	})
}

func TestReadFrameTruncated(t *testing.T) {
	// A frame that claims more than it carries fails, and is not a frame.
	var buf bytes.Buffer
	if err := writeFrame(&buf, bytes.Repeat([]byte("x"), 100)); err != nil {
		t.Fatal(err)
	}
	truncated := buf.Bytes()[:50]
	if _, err := readFrame(bufio.NewReader(bytes.NewReader(truncated)), 1024); err == nil {
		t.Fatal("a truncated frame was accepted")
	}
	// A claimed length over the limit fails before anything is read.
	var big bytes.Buffer
	if err := writeFrame(&big, make([]byte, 2000)); err != nil {
		t.Fatal(err)
	}
	if _, err := readFrame(bufio.NewReader(&big), 1024); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("an oversized frame: %v; want ErrTooLarge", err)
	}
}

// FuzzDecodeMemberUpdates feeds arbitrary membership messages, as a member
// could publish them, to the decoder: it must never panic, and what it
// accepts must convert to detector updates.
func FuzzDecodeMemberUpdates(f *testing.F) {
	good, _ := proto.Marshal(&replicationv1.MemberUpdates{Updates: []*replicationv1.MemberUpdate{{
		Id: "12D3KooWGRUVh8kfwzNr2jTJDXVU2mQ5BRwqNUWqGFfD2GsqR9mN", State: replicationv1.MemberUpdate_STATE_ALIVE, Incarnation: 3,
		From: "12D3KooWGRUVh8kfwzNr2jTJDXVU2mQ5BRwqNUWqGFfD2GsqR9mN", Addrs: [][]byte{{0x04, 127, 0, 0, 1, 0x06, 0x1c, 0xd4}},
	}}})
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x10, 0x09})
	f.Fuzz(func(t *testing.T, data []byte) {
		us, err := decodeMemberUpdates(data)
		if err != nil {
			return
		}
		for _, u := range us.GetUpdates() {
			if _, ok := fromProtoUpdate(u); !ok {
				t.Fatalf("accepted an update the detector cannot take: %v", u)
			}
		}
	})
}
