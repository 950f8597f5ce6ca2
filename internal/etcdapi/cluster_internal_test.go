package etcdapi

import (
	"slices"
	"testing"
)

// TestMemberList: etcd's member list from this node and the node's member
// view (memberList, pure).
func TestMemberList(t *testing.T) {
	self := Member{ID: "B-self", ClientURLs: []string{"http://127.0.0.1:2379"}, State: MemberAlive}
	type listed struct {
		name string
		urls []string
	}
	cases := []struct {
		name   string
		others []Member
		want   []listed // in order
	}{
		{"alone", nil, []listed{{"B-self", []string{"http://127.0.0.1:2379"}}}},
		{"members sorted by name, with their URLs; one without the etcd API listed without", []Member{
			{ID: "C", ClientURLs: []string{"http://c:2379"}, State: MemberAlive},
			{ID: "A", State: MemberAlive},
		}, []listed{{"A", nil}, {"B-self", []string{"http://127.0.0.1:2379"}}, {"C", []string{"http://c:2379"}}}},
		{"a suspect keeps its URLs, dead and left members lose theirs, an unseen one has none", []Member{
			{ID: "S", ClientURLs: []string{"http://s:2379"}, State: MemberSuspect},
			{ID: "D", ClientURLs: []string{"http://d:2379"}, State: MemberDead},
			{ID: "L", ClientURLs: []string{"http://l:2379"}, State: MemberLeft},
			{ID: "U", State: MemberUnknown},
		}, []listed{{"B-self", []string{"http://127.0.0.1:2379"}}, {"D", nil}, {"L", nil}, {"S", []string{"http://s:2379"}}, {"U", nil}}},
		{"self from the view is listed once, with this server's URL", []Member{
			{ID: "B-self", ClientURLs: []string{"http://stale:1"}, State: MemberSuspect},
		}, []listed{{"B-self", []string{"http://127.0.0.1:2379"}}}},
		{"an id twice: the first wins; an empty id is skipped", []Member{
			{ID: "A", ClientURLs: []string{"http://a:1"}, State: MemberAlive},
			{ID: "A", ClientURLs: []string{"http://a:2"}, State: MemberAlive},
			{ID: "", ClientURLs: []string{"http://nobody"}},
		}, []listed{{"A", []string{"http://a:1"}}, {"B-self", []string{"http://127.0.0.1:2379"}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := memberList(self, c.others)
			if len(got) != len(c.want) {
				t.Fatalf("%d members %v; want %d", len(got), got, len(c.want))
			}
			for i, w := range c.want {
				m := got[i]
				if m.Name != w.name || !slices.Equal(m.ClientURLs, w.urls) {
					t.Errorf("member %d: %q %v; want %q %v", i, m.Name, m.ClientURLs, w.name, w.urls)
				}
				// The same id for a member on every node: derived from its
				// peer id's text, self included (the header's member id).
				if m.ID != hashID([]byte(w.name)) {
					t.Errorf("member %q has id %x; want %x", m.Name, m.ID, hashID([]byte(w.name)))
				}
			}
		})
	}
	// The list does not share the view's slices.
	others := []Member{{ID: "A", ClientURLs: []string{"http://a:1"}, State: MemberAlive}}
	memberList(self, others)[0].ClientURLs[0] = "changed"
	if others[0].ClientURLs[0] != "http://a:1" {
		t.Errorf("memberList shares the view's URL slice")
	}
}
