package p2p

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrDuplicateIdentity is the error of a process refused because its peer id
// is live in another process started before it.
var ErrDuplicateIdentity = errors.New("p2p: this node's identity is live in another process")

// DuplicateIdentityError says which identity is shared, and with whom.
type DuplicateIdentityError struct {
	ID           string
	OtherStarted time.Time
	OtherAddrs   []string
	ReportedBy   string
}

func (e *DuplicateIdentityError) Error() string {
	where := "unknown addresses"
	if len(e.OtherAddrs) > 0 {
		where = strings.Join(e.OtherAddrs, ", ")
	}
	return fmt.Sprintf("p2p: peer id %s is live in another process (started %s, at %s), as member %s reports: "+
		"this data folder (identity.key) was copied from a running node. Two processes with one identity give "+
		"different values the same version. To run this copy as a member of its own, give it a new identity: "+
		"remove its identity.key, run chorus id --new-identity on its data folder (or start it with --new-identity) "+
		"and admit the new peer id",
		e.ID, e.OtherStarted.UTC().Format(time.RFC3339Nano), where, e.ReportedBy)
}

// Is makes errors.Is(err, ErrDuplicateIdentity) true.
func (e *DuplicateIdentityError) Is(target error) bool { return target == ErrDuplicateIdentity }

// boot is one process of a peer id: its random boot number and start time.
type boot struct {
	nonce   uint64
	started int64 // Unix nanoseconds
}

// newer reports whether b started after o (ties broken by the nonce).
func (b boot) newer(o boot) bool {
	if b.started != o.started {
		return b.started > o.started
	}
	return b.nonce > o.nonce
}

// twins tells two live processes of one peer id from a restart, from the
// boots a member hears in the peer's own alive updates. A restarted process
// is never heard from again; so when an older boot is heard from after a
// newer one was first heard (by more than a grace, for reordered messages),
// both are live, and the newer one is refused. It is pure logic (time is
// passed in); not safe for concurrent use.
type twins struct {
	grace time.Duration
	peers map[string]map[boot]bootSeen
}

type bootSeen struct {
	first, last time.Time
	addrs       []string
}

// maxBootsPerPeer bounds what a member remembers of one peer id, and
// maxTwinPeers of how many (open admission lets any peer id probe).
const (
	maxBootsPerPeer = 8
	maxTwinPeers    = 4096
)

func newTwins(grace time.Duration) *twins {
	return &twins{grace: grace, peers: map[string]map[boot]bootSeen{}}
}

// heard records that id's process b announced itself (with addrs) at now.
// It reports whether b is now known to be live alongside a newer boot, or a
// newer boot alongside it: whether some boot of id is refused.
func (t *twins) heard(id string, b boot, addrs []string, now time.Time) bool {
	if b.nonce == 0 {
		return false // a member that does not announce its boot
	}
	boots := t.peers[id]
	if boots == nil {
		if len(t.peers) >= maxTwinPeers {
			for other := range t.peers { // any one: a bound, not a policy
				delete(t.peers, other)
				break
			}
		}
		boots = map[boot]bootSeen{}
		t.peers[id] = boots
	}
	s, ok := boots[b]
	if !ok {
		s.first = now
	}
	s.last = now
	s.addrs = addrs
	boots[b] = s
	// Forget the boot heard least recently beyond the bound.
	for len(boots) > maxBootsPerPeer {
		var oldest boot
		var at time.Time
		for o, os := range boots {
			if at.IsZero() || os.last.Before(at) {
				oldest, at = o, os.last
			}
		}
		delete(boots, oldest)
	}
	for o := range boots {
		if _, _, ok := t.refused(id, o); ok {
			return true
		}
	}
	return false
}

// refused reports whether id's process b is refused: an older boot of id was
// heard after b was first heard, by more than the grace. It returns the
// oldest such boot, and the addresses it announced.
func (t *twins) refused(id string, b boot) (winner boot, addrs []string, ok bool) {
	boots := t.peers[id]
	s, known := boots[b]
	if !known {
		return boot{}, nil, false
	}
	for o, os := range boots {
		if o == b || !b.newer(o) || os.last.Sub(s.first) <= t.grace {
			continue
		}
		if !ok || winner.newer(o) {
			winner, addrs, ok = o, os.addrs, true
		}
	}
	return winner, addrs, ok
}
