package p2p

import (
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/internal/testutil"
	"github.com/chorus-kv/chorus/p2p/swim"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// TestClientURLBookLearn: which announcements the book takes (pure).
func TestClientURLBookLearn(t *testing.T) {
	ids := testPeerIDs(t, 2)
	a, b := ids[0], ids[1]
	alive := func(id peer.ID, inc uint64, urls ...string) *replicationv1.MemberUpdate {
		return &replicationv1.MemberUpdate{Id: id.String(), From: id.String(), State: replicationv1.MemberUpdate_STATE_ALIVE, Incarnation: inc, ClientUrls: urls}
	}
	type heard struct {
		sender peer.ID
		u      *replicationv1.MemberUpdate
	}
	tooMany := make([]string, maxClientURLs+1)
	for i := range tooMany {
		tooMany[i] = "http://x"
	}
	cases := []struct {
		name  string
		heard []heard
		want  []string // a's URLs afterwards
	}{
		{"a's own update", []heard{{a, alive(a, 5, "http://a:1")}}, []string{"http://a:1"}},
		{"sent by another peer: not taken", []heard{{b, alive(a, 5, "http://evil")}}, nil},
		{"relayed (from is not the member): not taken", []heard{{a, &replicationv1.MemberUpdate{Id: a.String(), From: b.String(), State: replicationv1.MemberUpdate_STATE_ALIVE, Incarnation: 5, ClientUrls: []string{"http://a:1"}}}}, nil},
		{"not alive: not taken", []heard{{a, &replicationv1.MemberUpdate{Id: a.String(), From: a.String(), State: replicationv1.MemberUpdate_STATE_LEFT, Incarnation: 5, ClientUrls: []string{"http://a:1"}}}}, nil},
		{"too many URLs: not taken", []heard{{a, alive(a, 5, tooMany...)}}, nil},
		{"a URL too long: not taken", []heard{{a, alive(a, 5, "http://"+strings.Repeat("a", maxClientURLBytes))}}, nil},
		{"an older incarnation does not replace", []heard{{a, alive(a, 5, "http://a:1")}, {a, alive(a, 4, "http://a:0")}}, []string{"http://a:1"}},
		{"a newer incarnation replaces", []heard{{a, alive(a, 5, "http://a:1")}, {a, alive(a, 6, "http://a:2")}}, []string{"http://a:2"}},
		{"a newer incarnation without URLs clears (restarted without the etcd API)", []heard{{a, alive(a, 5, "http://a:1")}, {a, alive(a, 6)}}, nil},
		{"the same incarnation without URLs keeps them (sent before they were set)", []heard{{a, alive(a, 5, "http://a:1")}, {a, alive(a, 5)}}, []string{"http://a:1"}},
		{"the same incarnation with other URLs replaces", []heard{{a, alive(a, 5, "http://a:1")}, {a, alive(a, 5, "http://a:2")}}, []string{"http://a:2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var book clientURLBook
			for _, h := range c.heard {
				book.learn(h.sender, h.u)
			}
			got := book.known(map[string]bool{a.String(): true, b.String(): true})
			if !slices.Equal(got[a.String()], c.want) {
				t.Errorf("a's URLs %v; want %v", got[a.String()], c.want)
			}
			if len(got) > 1 {
				t.Errorf("URLs held for another member: %v", got)
			}
		})
	}
	// known forgets the members it is not asked to keep.
	var book clientURLBook
	book.learn(a, alive(a, 1, "http://a:1"))
	if got := book.known(map[string]bool{b.String(): true}); len(got) != 0 {
		t.Errorf("known kept a member outside keep: %v", got)
	}
	if got := book.known(map[string]bool{a.String(): true}); len(got) != 0 {
		t.Errorf("a forgotten member came back: %v", got)
	}
}

// TestDecodeMemberUpdatesBoundsClientURLs: a topic message whose update
// carries more client URLs than the bound, or a longer one, is rejected.
func TestDecodeMemberUpdatesBoundsClientURLs(t *testing.T) {
	id := testPeerIDs(t, 1)[0].String()
	cases := []struct {
		name string
		urls []string
		want error
	}{
		{"none", nil, nil},
		{"at the bounds", slices.Repeat([]string{"http://" + strings.Repeat("a", maxClientURLBytes-len("http://"))}, maxClientURLs), nil},
		{"one too many", slices.Repeat([]string{"http://a"}, maxClientURLs+1), ErrTooLarge},
		{"one too long", []string{"http://" + strings.Repeat("a", maxClientURLBytes)}, ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := proto.Marshal(&replicationv1.MemberUpdates{Updates: []*replicationv1.MemberUpdate{
				{Id: id, From: id, State: replicationv1.MemberUpdate_STATE_ALIVE, Incarnation: 1, ClientUrls: c.urls}}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decodeMemberUpdates(b); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Errorf("decodeMemberUpdates: %v; want %v", err, c.want)
			}
		})
	}
}

// TestClientURLsTravelInMembership: a member's client URLs reach the
// members it is not connected to (a-b-c in a line), a change reaches them
// too, a member that set none has none, and a member removed from the list
// is forgotten.
func TestClientURLsTravelInMembership(t *testing.T) {
	nodes := []*testNode{startTestNode(t, "test"), startTestNode(t, "test"), startTestNode(t, "test")}
	connect(t, nodes[0].host, nodes[1].host)
	connect(t, nodes[1].host, nodes[2].host)
	all := []peer.ID{nodes[0].host.ID(), nodes[1].host.ID(), nodes[2].host.ID()}
	a := all[0].String()
	var list atomic.Pointer[[]peer.ID]
	list.Store(&all)
	ms := make([]*Membership, len(nodes))
	for i, n := range nodes {
		m, err := StartMembership(MembershipConfig{Cluster: "test", Host: n.host, PubSub: n.repl.PubSub(), Logger: testutil.QuietLogger(),
			Detector: swim.LoopbackConfig(), Members: func() []peer.ID { return *list.Load() }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		ms[i] = m
	}
	if err := ms[0].SetClientURLs([]string{"not a URL"}); err == nil {
		t.Error("SetClientURLs took a URL that is not absolute")
	}
	if err := ms[0].SetClientURLs(slices.Repeat([]string{"http://a"}, maxClientURLs+1)); err == nil {
		t.Error("SetClientURLs took more URLs than the bound")
	}
	heldBy := func(m *Membership, want string) bool {
		got := m.ClientURLs()[a]
		return len(got) == 1 && got[0] == want
	}
	for _, url := range []string{"http://127.0.0.1:2379", "http://127.0.0.1:12379"} {
		if err := ms[0].SetClientURLs([]string{url}); err != nil {
			t.Fatal(err)
		}
		if !heldBy(ms[0], url) {
			t.Errorf("a holds %v for itself; want %s", ms[0].ClientURLs()[a], url)
		}
		testutil.Eventually(t, 20*time.Second, "b and c hold a's client URL "+url, func() bool {
			return heldBy(ms[1], url) && heldBy(ms[2], url)
		})
	}
	for i, m := range ms {
		if got := m.ClientURLs(); len(got) != 1 {
			t.Errorf("node %d holds URLs %v; want a's only (b and c set none)", i, got)
		}
	}
	// a is removed from the list: b and c forget its URLs.
	rest := all[1:]
	list.Store(&rest)
	testutil.Eventually(t, 20*time.Second, "b and c forget the removed a's URLs", func() bool {
		_, b := ms[1].ClientURLs()[a]
		_, c := ms[2].ClientURLs()[a]
		return !b && !c
	})
}
