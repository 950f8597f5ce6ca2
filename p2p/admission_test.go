package p2p

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/testutil"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

func memberRecord(t testing.TB, name string) []byte {
	b, err := proto.Marshal(&replicationv1.MemberRecord{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testPeerIDs(t testing.TB, n int) []peer.ID {
	var out []peer.ID
	for range n {
		id, err := LoadOrCreateIdentity(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, id.ID)
	}
	return out
}

func TestAdmissionCheck(t *testing.T) {
	ids := testPeerIDs(t, 4)
	self, member, boot, stranger := ids[0], ids[1], ids[2], ids[3]
	st, err := store.Open(store.Config{NodeID: []byte(self)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	a, err := NewAdmission(self, []peer.AddrInfo{{ID: boot}}, false, st, testutil.QuietLogger())
	if err != nil {
		t.Fatal(err)
	}
	allowed := func(p peer.ID) bool { return a.Check(p) == nil }
	// Joining: only bootstrap peers (and itself).
	if !allowed(boot) || allowed(member) || allowed(stranger) || !allowed(self) {
		t.Fatal("joining: want only the bootstrap peer and itself let in")
	}
	put := func(p peer.ID) {
		c, err := st.Put(ctx, MemberKey(p), memberRecord(t, "n"))
		if err != nil {
			t.Fatal(err)
		}
		a.Observe([]store.Change{*c})
	}
	put(self)
	put(member)
	if !a.Joined() || !allowed(member) || !allowed(boot) || allowed(stranger) {
		t.Fatal("joined, not yet synced: want members and the bootstrap peer")
	}
	a.Synced()
	if allowed(boot) {
		t.Fatal("joined and synced: a bootstrap peer that is not a member is still let in")
	}
	if err := a.Check(stranger); !errors.Is(err, ErrNotMember) || !strings.Contains(err.Error(), "chorus member add "+stranger.String()) {
		t.Fatalf("stranger: %v; want ErrNotMember saying how to admit it", err)
	}
	// The gater refuses it both ways and counts each refusal; Check alone
	// counts nothing.
	if a.InterceptPeerDial(stranger) || a.InterceptSecured(network.DirInbound, stranger, nil) || !a.InterceptSecured(network.DirInbound, member, nil) {
		t.Fatal("gater: want the stranger refused and the member let in")
	}
	if got, want := a.Stats(), (AdmissionStats{RefusedNotMember: 2}); got != want {
		t.Fatalf("stats %+v; want %+v", got, want)
	}
	c, err := st.Delete(ctx, MemberKey(member))
	if err != nil {
		t.Fatal(err)
	}
	if removed := a.Observe([]store.Change{*c}); len(removed) != 1 || removed[0] != member || allowed(member) {
		t.Fatalf("removal: removed %v, member allowed %v", removed, allowed(member))
	}
	// A fresh Admission reads the list back from the store.
	b, err := NewAdmission(self, nil, false, st, testutil.QuietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if !b.Joined() || b.IsMember(member) || len(b.Members()) != 1 {
		t.Fatalf("reloaded list: %v", b.SortedIDs())
	}
	open, err := NewAdmission(self, nil, true, st, testutil.QuietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if open.Check(stranger) != nil {
		t.Fatal("open admission refused a peer")
	}
}

// TestAdmissionJoinSecretAndRemovalMarks: with a join secret any peer is let
// in but one marked removed, whatever the list says and in whatever order
// the mark and the record arrive; lifting the mark lets it in again.
func TestAdmissionJoinSecretAndRemovalMarks(t *testing.T) {
	ids := testPeerIDs(t, 3)
	self, member, stranger := ids[0], ids[1], ids[2]
	st, err := store.Open(store.Config{NodeID: []byte(self)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	a, err := NewAdmission(self, nil, false, st, testutil.QuietLogger())
	if err != nil {
		t.Fatal(err)
	}
	a.UseJoinSecret()
	apply := func(c *store.Change, err error) []peer.ID {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a.Observe([]store.Change{*c})
	}
	if a.Check(stranger) != nil || a.Check(member) != nil {
		t.Fatal("join secret: a peer that is not removed was refused")
	}
	apply(st.Put(ctx, MemberKey(member), memberRecord(t, "m")))
	if removed := apply(st.Put(ctx, RemovedKey(member), memberRecord(t, "m"))); len(removed) != 1 || removed[0] != member {
		t.Fatalf("a removal mark: removed %v; want the member", removed)
	}
	if err := a.Check(member); !errors.Is(err, ErrRemoved) {
		t.Fatalf("a marked member: %v; want ErrRemoved", err)
	}
	if a.InterceptSecured(network.DirOutbound, member, nil) || a.Stats() != (AdmissionStats{RefusedRemoved: 1}) {
		t.Fatalf("gater: want the removed member refused and counted as removed; stats %+v", a.Stats())
	}
	// The member's record written again (by itself, say) does not let it in.
	apply(st.Put(ctx, MemberKey(member), memberRecord(t, "m")))
	if err := a.Check(member); !errors.Is(err, ErrRemoved) {
		t.Fatalf("a marked member whose record came back: %v; want ErrRemoved", err)
	}
	// The mark is read back at start, and other reserved keys are ignored.
	apply(st.Put(ctx, []byte(ReservedPrefix+"other/x"), []byte("v")))
	b, err := NewAdmission(self, nil, false, st, testutil.QuietLogger())
	if err != nil {
		t.Fatal(err)
	}
	b.UseJoinSecret()
	if !b.IsRemoved(member) || !errors.Is(b.Check(member), ErrRemoved) || b.Check(stranger) != nil {
		t.Fatal("reloaded: want the mark kept and strangers let in")
	}
	apply(st.Delete(ctx, RemovedKey(member)))
	if a.Check(member) != nil || a.IsRemoved(member) {
		t.Fatal("the mark lifted: the member is still refused")
	}
}

// TestGossipFromNonMemberRejected: a peer that is connected (here, hosts
// without a gater) but not a member cannot get its gossip applied.
func TestGossipFromNonMemberRejected(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	// b now admits nobody but itself.
	onlySelf := func(p peer.ID) error {
		if p == b.host.ID() {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrNotMember, p)
	}
	b.admit.Store(&onlySelf)
	before := b.repl.Stats().Rejected.NotMember
	if _, err := a.store.Put(context.Background(), []byte("from-non-member"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "b rejected a's gossip as from a non-member", func() bool {
		return b.repl.Stats().Rejected.NotMember > before
	})
	if e, _ := b.store.GetEntry([]byte("from-non-member")); e != nil {
		t.Fatal("b applied gossip from a non-member")
	}
}
