package p2p

import (
	"strings"
	"testing"
)

func TestDecideJoinState(t *testing.T) {
	base := JoinFacts{Self: "12D3KooWSelf", Name: "n2"}
	with := func(f func(*JoinFacts)) JoinFacts { c := base; f(&c); return c }
	for _, tc := range []struct {
		name   string
		facts  JoinFacts
		want   JoinState
		detail string // a part of the explanation
	}{
		{"alone", base, JoinStandalone, "a cluster of one"},
		{"open", with(func(f *JoinFacts) { f.Open, f.Removed = true, true }), JoinMember, "admission is open"},
		{"removed wins over member", with(func(f *JoinFacts) { f.Removed, f.Member, f.ListSize = true, true, 3 }), JoinRemoved, "chorus member add 12D3KooWSelf --name n2"},
		{"member", with(func(f *JoinFacts) { f.Member, f.ListSize, f.Bootstrap = true, 3, true }), JoinMember, "3 members"},
		{"join secret, bootstrap", with(func(f *JoinFacts) { f.JoinSecret, f.Bootstrap, f.Refusals = true, true, 5 }), JoinJoining, "after its first sync"},
		{"join secret alone", with(func(f *JoinFacts) { f.JoinSecret = true }), JoinJoining, "adds itself"},
		{"bootstrap, no refusal yet", with(func(f *JoinFacts) { f.Bootstrap = true }), JoinJoining, "chorus member add 12D3KooWSelf --name n2"},
		{"bootstrap, one refusal", with(func(f *JoinFacts) { f.Bootstrap, f.Refusals = true, 1 }), JoinJoining, "waiting"},
		{"bootstrap, refused", with(func(f *JoinFacts) { f.Bootstrap, f.Refusals = true, RefusalsToConclude }), JoinNotAdmitted, "run on a member: chorus member add 12D3KooWSelf --name n2"},
		{"synced a list without self", with(func(f *JoinFacts) { f.Bootstrap, f.ListSize = true, 2 }), JoinNotAdmitted, "(2 members) does not name this node"},
		{"a list without self, no bootstrap", with(func(f *JoinFacts) { f.ListSize = 2 }), JoinNotAdmitted, "does not name this node"},
	} {
		state, detail := DecideJoinState(tc.facts)
		if state != tc.want || !strings.Contains(detail, tc.detail) {
			t.Errorf("%s: %s (%q); want %s with %q", tc.name, state, detail, tc.want, tc.detail)
		}
	}
	if got := (JoinFacts{Self: "X"}).AdmitCommand(); got != "chorus member add X" {
		t.Errorf("AdmitCommand without a name: %q", got)
	}
}
