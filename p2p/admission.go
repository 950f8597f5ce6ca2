package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt/store"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// MembersPrefix is the reserved key prefix of the member list: the key
// MembersPrefix + <peer id> holds a MemberRecord. Clients cannot write under
// ReservedPrefix.
// RemovedPrefix + <peer id> marks a removed member (the value is a
// MemberRecord of the removal): a removed peer is refused whatever else the
// list says, and cannot admit itself again with the join secret, until an
// operator's `member add` deletes the mark. A mark is a live key, so it is
// not purged with tombstones.
const (
	ReservedPrefix = "/chorus/"
	MembersPrefix  = "/chorus/members/"
	RemovedPrefix  = "/chorus/removed/"
)

// MemberKey is the store key of a member's record.
func MemberKey(id peer.ID) []byte { return []byte(MembersPrefix + id.String()) }

// RemovedKey is the store key of a removed member's mark.
func RemovedKey(id peer.ID) []byte { return []byte(RemovedPrefix + id.String()) }

// ErrReserved is returned for a client write under ReservedPrefix.
var ErrReserved = errors.New("p2p: key is reserved")

// CheckWritable refuses a client write under ReservedPrefix: the member
// list lives there and changes only through member add and remove.
func CheckWritable(key []byte) error {
	if strings.HasPrefix(string(key), ReservedPrefix) {
		return fmt.Errorf("%w: key %q is under %s, which is reserved for the cluster's own state (the member list); use `chorus member add` and `chorus member remove`", ErrReserved, key, ReservedPrefix)
	}
	return nil
}

// ErrNotMember is returned for a peer that is not on the member list.
var ErrNotMember = errors.New("p2p: peer is not a member of the cluster")

// ErrRemoved is returned for a peer that was removed from the member list.
var ErrRemoved = errors.New("p2p: peer was removed from the cluster")

// Admission decides which peers may connect, gossip and sync: the members
// on the list replicated under MembersPrefix. Until this node finds itself
// on the list and has completed a sync (a new node that has not fetched the
// whole list yet), it also lets in the bootstrap peers it was given, so it
// can fetch the list. With Open set it
// lets everyone in (labs and tests). With a join secret (UseJoinSecret) it
// lets in every peer that was not removed: the host's private-network key
// is derived from the secret, so a peer that completed a handshake holds
// it. It implements connmgr.ConnectionGater and is safe for concurrent use.
type Admission struct {
	self   peer.ID
	open   bool
	logger *slog.Logger
	secret atomic.Bool

	// synced is set once a sync session completed: the member list is then
	// as complete as the peer's, and bootstrap peers need to be members.
	synced atomic.Bool
	// refusals counts bootstrap peers' connections closed right after the
	// handshake since the last completed sync (BootstrapRefused).
	refusals atomic.Int64

	// logMu guards refusedLogged: when an inbound peer's refusal was last
	// logged at info, so that a peer redialling with backoff is named once
	// per refusalLogEvery, not at every attempt.
	logMu         sync.Mutex
	refusedLogged map[peer.ID]time.Time
	now           func() time.Time // time.Now; tests may replace it

	// refusedNotMember and refusedRemoved count connections the gater
	// refused, by reason.
	refusedNotMember, refusedRemoved atomic.Int64

	mu        sync.RWMutex
	members   map[peer.ID]*replicationv1.MemberRecord
	removed   map[peer.ID]bool
	bootstrap map[peer.ID]bool // given, learned from an address, or a probe under way
}

// UseJoinSecret makes every peer that is not removed admissible: call it
// before the host starts, and only when the host's private-network key is
// the join secret's (JoinSecretKey).
func (a *Admission) UseJoinSecret() { a.secret.Store(true) }

// JoinSecret reports whether UseJoinSecret was called.
func (a *Admission) JoinSecret() bool { return a.secret.Load() }

// AllowBootstrap lets p in as a bootstrap peer (one whose id was learned
// from its address, or the throwaway id of the dial that learns it).
func (a *Admission) AllowBootstrap(p peer.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bootstrap[p] = true
}

// ForgetBootstrap undoes AllowBootstrap.
func (a *Admission) ForgetBootstrap(p peer.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.bootstrap, p)
}

// IsRemoved reports whether id carries a removal mark.
func (a *Admission) IsRemoved(id peer.ID) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.removed[id]
}

// Synced records that a sync session completed (SyncConfig.OnComplete).
func (a *Admission) Synced() {
	a.synced.Store(true)
	a.refusals.Store(0)
}

// BootstrapRefused records that bootstrap peer p closed a connection right
// after the handshake (BootstrapConfig.OnRefused): it does not admit this
// node, or it was restarting.
func (a *Admission) BootstrapRefused(peer.ID) { a.refusals.Add(1) }

// JoinFacts returns what the admission knows of this node's join state;
// the caller adds Name and Bootstrap and calls DecideJoinState.
func (a *Admission) JoinFacts() JoinFacts {
	a.mu.RLock()
	defer a.mu.RUnlock()
	_, member := a.members[a.self]
	return JoinFacts{
		Self:       a.self.String(),
		Open:       a.open,
		JoinSecret: a.secret.Load(),
		Removed:    a.removed[a.self],
		Member:     member,
		ListSize:   len(a.members),
		Refusals:   int(a.refusals.Load()),
	}
}

// NewAdmission returns the admission of self, with the member list read
// from st.
func NewAdmission(self peer.ID, bootstrap []peer.AddrInfo, open bool, st AdmissionStore, logger *slog.Logger) (*Admission, error) {
	a := &Admission{self: self, bootstrap: map[peer.ID]bool{}, open: open, logger: logger,
		members: map[peer.ID]*replicationv1.MemberRecord{}, removed: map[peer.ID]bool{},
		refusedLogged: map[peer.ID]time.Time{}, now: time.Now}
	for _, b := range bootstrap {
		if b.ID != "" {
			a.bootstrap[b.ID] = true
		}
	}
	opts := store.RangeOptions{Start: []byte(ReservedPrefix), End: store.PrefixEnd([]byte(ReservedPrefix)), Limit: store.MaxPageLimit}
	for {
		page, err := st.Range(opts)
		if err != nil {
			return nil, fmt.Errorf("p2p: read the member list: %w", err)
		}
		for i := range page.Records {
			a.apply(page.Records[i].Key, page.Records[i].Value, false)
		}
		if !page.More {
			break
		}
		opts.After = page.NextKey
	}
	return a, nil
}

// Observe updates the list from committed changes (the store's commit
// hook); it returns the members that were removed.
func (a *Admission) Observe(changes []store.Change) (removed []peer.ID) {
	for i := range changes {
		r := &changes[i].Record
		if !strings.HasPrefix(string(r.Key), ReservedPrefix) {
			continue
		}
		if id, ok := a.apply(r.Key, r.Value, r.Tombstone); !ok && id != "" {
			removed = append(removed, id)
		}
	}
	return removed
}

// apply sets or deletes one member or removal mark; it returns the peer
// and whether it is admissible now (a member and not removed). Other keys
// under ReservedPrefix are ignored.
func (a *Admission) apply(key, value []byte, deleted bool) (peer.ID, bool) {
	k := string(key)
	if rest, ok := strings.CutPrefix(k, RemovedPrefix); ok {
		id, err := peer.Decode(rest)
		if err != nil {
			a.logger.Warn("ignoring a removal mark whose key is not a peer id", "key", k)
			return "", false
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if deleted {
			delete(a.removed, id)
		} else {
			a.removed[id] = true
		}
		_, member := a.members[id]
		return id, member && deleted
	}
	if !strings.HasPrefix(k, MembersPrefix) {
		return "", false
	}
	id, err := peer.Decode(strings.TrimPrefix(k, MembersPrefix))
	if err != nil {
		a.logger.Warn("ignoring a member record whose key is not a peer id", "key", string(key))
		return "", false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if deleted {
		delete(a.members, id)
		return id, false
	}
	rec := &replicationv1.MemberRecord{}
	if err := proto.Unmarshal(value, rec); err != nil {
		a.logger.Warn("member record does not decode; admitting the peer without a name", "peer", id, "err", err)
	}
	a.members[id] = rec
	return id, !a.removed[id]
}

// Joined reports whether this node is on its own member list.
func (a *Admission) Joined() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	_, ok := a.members[a.self]
	return ok
}

// Members returns the admitted members and their records, sorted by id.
func (a *Admission) Members() map[peer.ID]*replicationv1.MemberRecord {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make(map[peer.ID]*replicationv1.MemberRecord, len(a.members))
	for id, r := range a.members {
		out[id] = r
	}
	return out
}

// IsMember reports whether id is on the list.
func (a *Admission) IsMember(id peer.ID) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	_, ok := a.members[id]
	return ok
}

// Check returns nil when p may talk to this node, else an error saying why.
func (a *Admission) Check(p peer.ID) error {
	if a.open || p == a.self {
		return nil
	}
	a.mu.RLock()
	_, member := a.members[p]
	_, joined := a.members[a.self]
	removed, boot := a.removed[p], a.bootstrap[p]
	a.mu.RUnlock()
	switch {
	case removed:
		return fmt.Errorf("%w: %s (an operator re-admits it with `chorus member add %s`)", ErrRemoved, p, p)
	case member, a.secret.Load():
		return nil
	case (!joined || !a.synced.Load()) && boot:
		return nil
	}
	return fmt.Errorf("%w: %s (an operator admits it with `chorus member add %s`)", ErrNotMember, p, p)
}

// SortedIDs returns the member ids in order.
func (a *Admission) SortedIDs() []peer.ID {
	a.mu.RLock()
	defer a.mu.RUnlock()
	ids := make([]peer.ID, 0, len(a.members))
	for id := range a.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// refusalLogEvery is how often an inbound peer that keeps being refused is
// named at info level; the attempts in between are logged at debug.
const refusalLogEvery = 5 * time.Minute

func (a *Admission) gate(p peer.ID, what string, addr ma.Multiaddr) bool {
	err := a.Check(p)
	if err == nil {
		return true
	}
	if errors.Is(err, ErrRemoved) {
		a.refusedRemoved.Add(1)
	} else {
		a.refusedNotMember.Add(1)
	}
	if what == network.DirInbound.String() && a.shouldLogRefusal(p) {
		// The one line an operator sees on this side when a newcomer was
		// not admitted: who, why, and the command that admits it.
		if errors.Is(err, ErrRemoved) {
			a.logger.Warn("refused a removed member", "peer", p, "addr", addr, "readmit_with", "chorus member add "+p.String())
		} else {
			a.logger.Info("refused a peer that is not on the member list", "peer", p, "addr", addr, "admit_with", "chorus member add "+p.String()+" --name NAME")
		}
		return false
	}
	a.logger.Debug("refused a connection", "peer", p, "direction", what, "err", err)
	return false
}

// shouldLogRefusal reports whether p's refusal is to be logged at info: the
// first time, and then once per refusalLogEvery.
func (a *Admission) shouldLogRefusal(p peer.ID) bool {
	a.logMu.Lock()
	defer a.logMu.Unlock()
	now := a.now()
	if last, ok := a.refusedLogged[p]; ok && now.Sub(last) < refusalLogEvery {
		return false
	}
	if len(a.refusedLogged) >= 1024 { // bounded: forget the expired entries, and others down to 512
		for id, t := range a.refusedLogged {
			if now.Sub(t) >= refusalLogEvery || len(a.refusedLogged) >= 512 {
				delete(a.refusedLogged, id)
			}
		}
	}
	a.refusedLogged[p] = now
	return true
}

// AdmissionStats count the connections admission refused, by reason.
type AdmissionStats struct {
	RefusedNotMember int64 // the peer is not on the member list
	RefusedRemoved   int64 // the peer was removed from it
}

// Stats returns the refusal counters. A dial refused before it starts and
// a connection refused after its handshake count once each.
func (a *Admission) Stats() AdmissionStats {
	return AdmissionStats{RefusedNotMember: a.refusedNotMember.Load(), RefusedRemoved: a.refusedRemoved.Load()}
}

// InterceptPeerDial refuses to dial non-members.
func (a *Admission) InterceptPeerDial(p peer.ID) bool { return a.gate(p, "outbound", nil) }

// InterceptAddrDial refuses to dial non-members.
func (a *Admission) InterceptAddrDial(p peer.ID, m ma.Multiaddr) bool {
	return a.gate(p, "outbound", m)
}

// InterceptAccept lets the handshake start: the peer id is known only after it.
func (a *Admission) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured refuses a connection, either way, once the handshake
// proved the peer's id, unless the peer is admitted.
func (a *Admission) InterceptSecured(dir network.Direction, p peer.ID, c network.ConnMultiaddrs) bool {
	var addr ma.Multiaddr
	if c != nil {
		addr = c.RemoteMultiaddr()
	}
	return a.gate(p, dir.String(), addr)
}

// InterceptUpgraded lets every secured connection through.
func (a *Admission) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}
