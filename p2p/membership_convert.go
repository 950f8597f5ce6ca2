package p2p

// Conversions between swim's updates and their wire form.

import (
	"github.com/chorus-kv/chorus/p2p/swim"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

func toProtoUpdate(u swim.Update) *replicationv1.MemberUpdate {
	return &replicationv1.MemberUpdate{Id: u.ID, State: replicationv1.MemberUpdate_State(u.State + 1), Incarnation: u.Incarnation, From: u.From}
}

func fromProtoUpdate(u *replicationv1.MemberUpdate) (swim.Update, bool) {
	s := int(u.GetState()) - 1
	if s < int(swim.Alive) || s > int(swim.Left) || u.GetId() == "" {
		return swim.Update{}, false
	}
	return swim.Update{ID: u.GetId(), State: swim.State(s), Incarnation: u.GetIncarnation(), From: u.GetFrom()}, true
}
