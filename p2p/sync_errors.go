package p2p

import (
	"errors"

	"github.com/chorus-kv/chorus/p2p/antientropy"
)

// ErrStale is returned when a session is refused because one side has been
// out of contact longer than the other's tombstone grace period. Use
// errors.As with *StaleError.
var ErrStale = antientropy.ErrStale

// StaleError says which side is stale and why.
type StaleError = antientropy.StaleError

// errSyncerClosed: a session asked for after Close.
var errSyncerClosed = errors.New("the syncer is closed")
