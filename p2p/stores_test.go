package p2p

import "github.com/chorus-kv/chorus/crdt/store"

// *store.Store is what a node passes to each consumer in this package.
var (
	_ ReplicatorStore = (*store.Store)(nil)
	_ SyncStore       = (*store.Store)(nil)
	_ AdmissionStore  = (*store.Store)(nil)
)
