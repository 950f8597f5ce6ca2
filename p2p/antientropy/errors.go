package antientropy

import (
	"errors"
	"fmt"
	"time"

	"github.com/chorus-kv/chorus/crdt"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// Why a session ends in an error. Each error a Session returns wraps one of
// these (or a Replica's error); check them with errors.Is.
var (
	// ErrMalformed: the peer sent a message that breaks the protocol: the
	// wrong kind for the session's state, or one whose content is
	// inconsistent (a tree of another shape, a node or bucket outside what
	// this side asked about, an entry nobody asked for).
	ErrMalformed = errors.New("antientropy: malformed or unexpected message")
	// ErrTooLarge: the peer's message is well formed but over one of the
	// session's caps (Config).
	ErrTooLarge = errors.New("antientropy: over a session limit")
	// ErrStale: one side has been out of contact longer than the other's
	// tombstone grace period. Use errors.As with *StaleError for details.
	ErrStale = errors.New("antientropy: node out of contact for longer than the tombstone grace period")
	// ErrRefused: this side (a responder) refused the session and its last
	// output tells the peer why; the driver closes the stream rather than
	// resetting it, so that the peer reads the reason.
	ErrRefused = errors.New("antientropy: refused the session")
	// ErrPeerRefused: the peer answered the hello with a refusal.
	ErrPeerRefused = errors.New("antientropy: peer refused the session")
	// ErrPeerGaveUp: the peer ended the session with an error.
	ErrPeerGaveUp = errors.New("antientropy: peer gave up")
	// ErrEnded: Step or Continue was called on a session that had ended.
	ErrEnded = errors.New("antientropy: the session has ended")
)

// StaleError says which side is stale and why.
type StaleError struct {
	Stale         string // "this node" or "peer " and the peer's name
	LastContact   crdt.Timestamp
	Purger        string
	PurgedThrough crdt.Timestamp
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("%s was last in sync at %s, but %s has since purged tombstones up to %s: "+
		"syncing could bring deleted keys back. Reset %s: stop it, remove the db folder in its data folder "+
		"(keep identity.key) and start it again; it then catches up from its peers",
		e.Stale, e.LastContact.Time().Format(time.RFC3339), e.Purger, e.PurgedThrough.Time().Format(time.RFC3339), e.Stale)
}

// Is makes errors.Is(err, ErrStale) true.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// CheckStale refuses a session between a node (self) and a peer when either
// may hold keys whose deletion the other has already forgotten: its last
// sync is older than a tombstone the other purged.
func CheckStale(self, peer *replicationv1.SyncHello, peerName string) error {
	if crdt.Timestamp(self.GetLastContact()) < crdt.Timestamp(peer.GetPurgedThrough()) {
		return &StaleError{Stale: "this node", LastContact: crdt.Timestamp(self.GetLastContact()),
			Purger: "peer " + peerName, PurgedThrough: crdt.Timestamp(peer.GetPurgedThrough())}
	}
	if crdt.Timestamp(peer.GetLastContact()) < crdt.Timestamp(self.GetPurgedThrough()) {
		return &StaleError{Stale: "peer " + peerName, LastContact: crdt.Timestamp(peer.GetLastContact()),
			Purger: "this node", PurgedThrough: crdt.Timestamp(self.GetPurgedThrough())}
	}
	return nil
}
