package p2p

import (
	"fmt"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/chorus-kv/chorus/p2p/swim"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// Client URLs are what the etcd API's MemberList shows of each member:
// where its etcd API listens. They belong to a running process (a restart
// may listen on another port), like the listen addresses, so they travel
// the same way: in a member's own alive updates (MemberUpdate.client_urls),
// which it publishes on the membership topic and sends with every probe.
// A node keeps, for each member the failure detector knows, the URLs of
// the latest such update (the highest incarnation; within one, the latest
// non-empty list, so that a late update sent before the URLs were set does
// not erase them). URLs are taken only from the member itself, as
// authenticated by the transport (the signer of a topic message, the peer
// at the other end of a probe); a relayed update carries none.
//
// Why here and not in the replicated member record (MemberKey): that
// record is the operator's (member add writes it, member remove deletes it
// and leaves a removal mark); a node rewriting its own at every start
// would race an operator's rename (last writer wins on the whole record)
// and could write itself back after a removal; every start would add a
// store revision and a change under /chorus/ that etcd clients see; open
// admission has no records at all; and a dead node's URL would stay
// listed for good. An alive update lives as long as the process, is sent
// anyway (probes and announcements), and the failure detector's state says
// whether its URLs are still worth listing.
//
// Mixed versions: a node of an earlier version does not set client_urls
// (it served them on its own protocol, /chorus/<cluster>/etcd-member/1,
// which this version neither serves nor asks) and ignores the field when
// it receives it (an unknown protobuf field; it relays no one's addresses
// either). Each side lists the other's members without URLs until all are
// upgraded.

// Bounds of the client URLs one update carries: more, or a longer one, and
// a topic message is rejected (decodeMemberUpdates); a probe's are ignored.
const (
	maxClientURLs     = 8
	maxClientURLBytes = 256
)

// checkClientURLs enforces the bounds on urls.
func checkClientURLs(urls []string) error {
	if len(urls) > maxClientURLs {
		return fmt.Errorf("%d client URLs; the limit is %d", len(urls), maxClientURLs)
	}
	for _, u := range urls {
		if len(u) > maxClientURLBytes {
			return fmt.Errorf("a client URL of %d bytes; the limit is %d", len(u), maxClientURLBytes)
		}
	}
	return nil
}

// clientURLBook holds this node's own client URLs and those its members
// announced. The zero value is ready to use; it has its own lock, never
// held with Membership.mu (own is atomic, as withAddrs runs under that
// lock).
type clientURLBook struct {
	self atomic.Pointer[[]string]
	mu   sync.Mutex
	byID map[string]announcedURLs
}

// announcedURLs are the client URLs of a member's update at incarnation.
type announcedURLs struct {
	incarnation uint64
	urls        []string
}

// own returns this node's client URLs.
func (b *clientURLBook) own() []string {
	if p := b.self.Load(); p != nil {
		return *p
	}
	return nil
}

// learn records the client URLs of u if it is the alive update of sender
// itself, within the bounds, and newer than what is held.
func (b *clientURLBook) learn(sender peer.ID, u *replicationv1.MemberUpdate) {
	id := sender.String()
	if u.GetId() != id || u.GetFrom() != id || u.GetState() != replicationv1.MemberUpdate_STATE_ALIVE || checkClientURLs(u.GetClientUrls()) != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, ok := b.byID[id]
	if ok && (u.GetIncarnation() < cur.incarnation || u.GetIncarnation() == cur.incarnation && len(u.GetClientUrls()) == 0) {
		return
	}
	if b.byID == nil {
		b.byID = map[string]announcedURLs{}
	}
	b.byID[id] = announcedURLs{incarnation: u.GetIncarnation(), urls: slices.Clone(u.GetClientUrls())}
}

// known returns the URLs held of the members in keep, and forgets the
// others (removed from the cluster, or reaped).
func (b *clientURLBook) known(keep map[string]bool) map[string][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string][]string, len(b.byID))
	for id, a := range b.byID {
		if !keep[id] {
			delete(b.byID, id)
			continue
		}
		if len(a.urls) > 0 {
			out[id] = slices.Clone(a.urls)
		}
	}
	return out
}

// SetClientURLs sets the client URLs of this node's etcd API, which its
// own alive updates carry from now on, and announces them on the
// membership topic at once. Each must be an absolute URL, within the
// bounds (at most 8, each at most 256 bytes).
func (m *Membership) SetClientURLs(urls []string) error {
	if err := checkClientURLs(urls); err != nil {
		return fmt.Errorf("p2p: client URLs: %w", err)
	}
	for _, u := range urls {
		if p, err := url.Parse(u); err != nil || p.Scheme == "" || p.Host == "" {
			return fmt.Errorf("p2p: client URL %q is not an absolute URL", u)
		}
	}
	urls = slices.Clone(urls)
	m.urls.self.Store(&urls)
	m.mu.Lock()
	me, ok := m.det.Member(m.self.String())
	m.mu.Unlock()
	if ok && me.State == swim.Alive {
		ctx, cancel := m.untilClose()
		defer cancel()
		m.publish(ctx, []swim.Update{{ID: me.ID, State: swim.Alive, Incarnation: me.Incarnation, From: me.ID}})
	}
	return nil
}

// ClientURLs returns the client URLs each member announced for itself, by
// peer id (text), this node's own included: only the members the failure
// detector knows (in any state), only those with URLs.
func (m *Membership) ClientURLs() map[string][]string {
	m.mu.Lock()
	members := m.det.Members()
	m.mu.Unlock()
	keep := make(map[string]bool, len(members))
	for _, mem := range members {
		keep[mem.ID] = true
	}
	out := m.urls.known(keep)
	if own := m.urls.own(); len(own) > 0 {
		out[m.self.String()] = slices.Clone(own)
	}
	return out
}
