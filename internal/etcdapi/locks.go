package etcdapi

import (
	"hash/maphash"
	"slices"
	"sync"
)

// keyLocks serializes the etcd API's writes with the reads they depend on.
//
// A write or Txn on single keys holds all for reading and the stripes of its
// keys; one that spans a key range (DeleteRange with range_end, a Txn with a
// range compare or delete) holds all for writing. So a Txn's compares and
// writes are atomic against every other etcd-API writer on this node, while
// writers of different keys proceed together (and share group commits).
// Writes through the Chorus API and from other nodes do not take these
// locks: see the package doc.
type keyLocks struct {
	all     sync.RWMutex
	seed    maphash.Seed
	stripes [nStripes]sync.Mutex
}

const nStripes = 4096

func newKeyLocks() *keyLocks { return &keyLocks{seed: maphash.MakeSeed()} }

// lockKeys locks the stripes of keys (shared all) and returns the unlock.
func (l *keyLocks) lockKeys(keys ...[]byte) (unlock func()) {
	idx := make([]int, 0, len(keys))
	for _, k := range keys {
		idx = append(idx, int(maphash.Bytes(l.seed, k)%nStripes))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx) // a stripe once, in order: no deadlock
	l.all.RLock()
	for _, i := range idx {
		l.stripes[i].Lock()
	}
	return func() {
		for _, i := range idx {
			l.stripes[i].Unlock()
		}
		l.all.RUnlock()
	}
}

// lockAll excludes every other etcd-API writer and returns the unlock.
func (l *keyLocks) lockAll() (unlock func()) {
	l.all.Lock()
	return l.all.Unlock
}
