package p2p

import (
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/chorus-kv/chorus/internal/netsim"
)

// Tests on virtual time run inside netsim.Run (a testing/synctest bubble)
// on hosts of a simulated network: the libp2p stack, the stores and the
// components are the real ones, only the links are simulated, and every
// timer (probe intervals, suspicion timeouts, sync intervals, backoffs)
// runs on the bubble's clock. A wait of 20 s costs what the work in it
// costs. waitFor works unchanged: its sleeps advance the virtual clock.

// simNet is a simulated network for one test, with 1 ms links (loopback
// is faster, but a link with no delay is not a network) and no loss.
type simNet struct {
	net  *netsim.Network
	mu   sync.Mutex
	next int // the index of the next host
}

// startSimNet starts a simulated network, closed when the test ends (after
// the hosts). Call it inside netsim.Run.
func startSimNet(t testing.TB) *simNet {
	t.Helper()
	return &simNet{net: netsim.Start(t, netsim.LinkConfig{Latency: time.Millisecond}, 1)}
}

// newHost starts a host with id on the network at the next index (the
// order of the calls gives the indexes Partition takes), closed when the
// test ends.
func (s *simNet) newHost(t testing.TB, id Identity, cfg HostConfig) host.Host {
	t.Helper()
	return s.newHostAt(t, s.reserve(), id, cfg)
}

// reserve returns the index of a host not started yet.
func (s *simNet) reserve() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.next
	s.next++
	return i
}

// newHostAt starts a host with id at index i (from reserve: a host that
// comes up, or comes back, at a known address), closed when the test ends.
func (s *simNet) newHostAt(t testing.TB, i int, id Identity, cfg HostConfig) host.Host {
	t.Helper()
	cfg.Listen = []string{netsim.ListenAddr(i)}
	h, err := NewHostWith(id, cfg, s.net.HostOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// hostMaker returns how startTestNodeOn makes a node's host: on the
// network when sn is set, else on loopback TCP.
func hostMaker(sn *simNet) func(testing.TB, Identity) host.Host {
	return func(t testing.TB, id Identity) host.Host {
		t.Helper()
		if sn != nil {
			return sn.newHost(t, id, HostConfig{})
		}
		h, err := NewHost(id, []string{"/ip4/127.0.0.1/tcp/0"})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
}
