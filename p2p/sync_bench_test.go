package p2p

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

var syncBenchKeys = flag.String("sync.keys", "100000,1000000", "comma-separated store sizes for BenchmarkSyncRepair")

// benchEntry is an entry of the benchmark's shape: a 32-byte key and a
// 256-byte value.
func benchEntry(prefix string, i int, hlc crdt.Timestamp, origin []byte) crdt.Entry {
	key := fmt.Appendf(nil, "/r/%s/%0*d", prefix, 32-4-len(prefix), i) // 32 bytes
	return crdt.Entry{Key: key, Value: make([]byte, 256), HLC: hlc, Origin: origin}
}

// wireSize is an entry's size as the sync protocol sends it.
func wireSize(e crdt.Entry) int {
	return proto.Size(&replicationv1.Entry{Key: e.Key, Value: e.Value, Hlc: uint64(e.HLC), Origin: e.Origin, Tombstone: e.Tombstone})
}

// BenchmarkSyncRepair measures what one anti-entropy session costs to repair
// d differing keys between two real stores of n keys over real libp2p hosts
// on loopback: bytes on the wire both ways, round trips and time, beside the
// bytes of the differing entries and of the whole state. Half of the
// differing keys are new on one side, half are newer versions of shared keys.
//
//	go test -run '^$' -bench BenchmarkSyncRepair -benchtime 3x -timeout 60m ./p2p/
//
// Filling two stores with 1,000,000 keys takes a few minutes; -sync.keys
// picks the sizes.
func BenchmarkSyncRepair(b *testing.B) {
	var sizes []int
	for _, s := range strings.Split(*syncBenchKeys, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			b.Fatalf("-sync.keys: %v", err)
		}
		sizes = append(sizes, n)
	}
	ctx := context.Background()
	for _, n := range sizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			a := startSyncNode(b, syncNodeOpts{})
			c := startSyncNode(b, syncNodeOpts{})
			connect(b, a.host, c.host)
			origin := []byte(a.host.ID())
			base := crdt.NewTimestamp(time.Now().Add(-time.Hour).UnixMilli(), 0)
			fillStart := time.Now()
			batch := make([]crdt.Entry, 0, 4096)
			entryBytes := 0
			for i := range n {
				e := benchEntry("shared", i, base, origin)
				entryBytes += wireSize(e)
				batch = append(batch, e)
				if len(batch) == cap(batch) || i == n-1 {
					seed(b, a.store, batch)
					seed(b, c.store, batch)
					batch = batch[:0]
				}
			}
			for _, s := range []*syncNode{a, c} {
				if err := s.store.CompactDisk(); err != nil {
					b.Fatal(err)
				}
			}
			b.Logf("filled two stores with %d keys in %v; the whole state is %d bytes on the wire", n, time.Since(fillStart).Round(time.Second), entryBytes)
			round := 0
			for _, d := range []int{1, 100, 1000, 10000} {
				b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
					var bytes, diffBytes, rtts, sessions int64
					var dur time.Duration
					for range b.N {
						b.StopTimer()
						round++
						ts := crdt.NewTimestamp(time.Now().Add(-time.Minute).UnixMilli(), uint16(round))
						var diff []crdt.Entry
						for i := range d {
							var e crdt.Entry
							if i%2 == 0 {
								e = benchEntry(fmt.Sprintf("new-%d", round), i, ts, origin)
							} else {
								e = benchEntry("shared", (round*7919+i*104729)%n, ts, origin) // a newer version
							}
							if len(e.Key) != 32 {
								b.Fatalf("key %q is not 32 bytes", e.Key)
							}
							diff = append(diff, e)
							diffBytes += int64(wireSize(e))
						}
						seed(b, a.store, diff)
						b.StartTimer()
						received := 0
						for {
							st, err := c.sync.SyncWith(ctx, a.host.ID())
							if err != nil {
								b.Fatal(err)
							}
							sessions++
							received += st.EntriesReceived
							bytes += st.BytesSent + st.BytesReceived
							rtts += int64(st.RoundTrips)
							dur += st.Duration
							if !st.Partial {
								break
							}
						}
						b.StopTimer()
						if a.store.MerkleRoot() != c.store.MerkleRoot() || received != d {
							b.Fatalf("sessions received %d entries; want exactly the %d differing", received, d)
						}
						b.StartTimer()
					}
					N := float64(b.N)
					b.ReportMetric(float64(bytes)/N, "wire-B/op")
					b.ReportMetric(float64(diffBytes)/N, "diff-entry-B/op")
					b.ReportMetric(float64(bytes)/float64(diffBytes), "wire/diff")
					b.ReportMetric(float64(entryBytes)/(float64(bytes)/N), "full-state/wire")
					b.ReportMetric(float64(rtts)/N, "round-trips/op")
					b.ReportMetric(float64(sessions)/N, "sessions/op")
					b.ReportMetric(float64(dur.Milliseconds())/N, "ms/op")
					target := 3*float64(diffBytes)/N + 64<<10
					b.Logf("n=%d d=%d: %.0f bytes (target ≤ %.0f: %v), %.1f round trips, %v per session",
						n, d, float64(bytes)/N, target, float64(bytes)/N <= target, float64(rtts)/N, (dur / time.Duration(b.N)).Round(time.Microsecond))
				})
			}
		})
	}
}
