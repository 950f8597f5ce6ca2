package main

import (
	"bufio"
	"bytes"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/chorus-kv/chorus/internal/node"
)

// faultPartition is a test-only fault injector (agent --fault-partition
// FILE): the peer ids listed in FILE, one per line, are cut off from this
// node as a network partition would cut them: connections to and from them
// are refused and the open ones closed. FILE is read again every 100 ms, so
// a test partitions and heals processes on loopback by writing it. Processes
// on one machine share the loopback interface: without this, a partition
// needs network namespaces or containers (see e2e/lab).
type faultPartition struct {
	file    string
	blocked atomic.Pointer[map[peer.ID]bool]
	stop    chan struct{}
	done    sync.WaitGroup
}

func newFaultPartition(file string) *faultPartition {
	f := &faultPartition{file: file, stop: make(chan struct{})}
	f.blocked.Store(&map[peer.ID]bool{})
	f.read()
	return f
}

func (f *faultPartition) read() {
	b, err := os.ReadFile(f.file)
	if err != nil {
		b = nil // no file: no partition
	}
	set := map[peer.ID]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if id, err := peer.Decode(string(bytes.TrimSpace(sc.Bytes()))); err == nil {
			set[id] = true
		}
	}
	f.blocked.Store(&set)
}

func (f *faultPartition) isBlocked(p peer.ID) bool { return (*f.blocked.Load())[p] }

// run re-reads the file and closes connections to blocked peers until
// close.
func (f *faultPartition) run(n *node.Node) {
	f.done.Add(1)
	go func() {
		defer f.done.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
			}
			f.read()
			for _, p := range n.Host().Network().Peers() {
				if f.isBlocked(p) {
					_ = n.Host().Network().ClosePeer(p)
				}
			}
		}
	}()
}

func (f *faultPartition) close() {
	close(f.stop)
	f.done.Wait()
}

// The connmgr.ConnectionGater methods.

func (f *faultPartition) InterceptPeerDial(p peer.ID) bool                 { return !f.isBlocked(p) }
func (f *faultPartition) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return !f.isBlocked(p) }
func (f *faultPartition) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (f *faultPartition) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !f.isBlocked(p)
}
func (f *faultPartition) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}
