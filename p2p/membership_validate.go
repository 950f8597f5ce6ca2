package p2p

// The validator of the members topic and the decoding it checks.

import (
	ma "github.com/multiformats/go-multiaddr"

	"context"
	"fmt"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// validate accepts a membership message only from an admitted signer.
// Members relay each other's updates (dissemination); the incarnation rules
// decide which update wins.
func (m *Membership) validate(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if msg.Local {
		return pubsub.ValidationAccept
	}
	from := msg.GetFrom()
	if m.cfg.Admit != nil && m.cfg.Admit(from) != nil {
		return pubsub.ValidationReject
	}
	us, err := decodeMemberUpdates(msg.GetData())
	if err != nil {
		return pubsub.ValidationReject
	}
	msg.ValidatorData = us
	return pubsub.ValidationAccept
}

// decodeMemberUpdates decodes and checks a membership message: within
// maxProbeBytes, at least one update, every update with an id, a known
// state, at most maxAnnouncedAddrs addresses that parse and client URLs
// within their bounds (checkClientURLs).
func decodeMemberUpdates(data []byte) (*replicationv1.MemberUpdates, error) {
	if len(data) > maxProbeBytes {
		return nil, fmt.Errorf("%w: membership message of %d bytes; the limit is %d", ErrTooLarge, len(data), maxProbeBytes)
	}
	var us replicationv1.MemberUpdates
	if err := proto.Unmarshal(data, &us); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	if len(us.GetUpdates()) == 0 {
		return nil, fmt.Errorf("%w: a membership message with no update", ErrUndecodable)
	}
	for i, u := range us.GetUpdates() {
		if _, ok := fromProtoUpdate(u); !ok {
			return nil, fmt.Errorf("%w: update %d has no id or an unknown state", ErrUndecodable, i)
		}
		if len(u.GetAddrs()) > maxAnnouncedAddrs {
			return nil, fmt.Errorf("%w: update %d has %d addresses; the limit is %d", ErrTooLarge, i, len(u.GetAddrs()), maxAnnouncedAddrs)
		}
		for _, a := range u.GetAddrs() {
			if _, err := ma.NewMultiaddrBytes(a); err != nil {
				return nil, fmt.Errorf("%w: update %d: address: %w", ErrUndecodable, i, err)
			}
		}
		if err := checkClientURLs(u.GetClientUrls()); err != nil {
			return nil, fmt.Errorf("%w: update %d: %w", ErrTooLarge, i, err)
		}
	}
	return &us, nil
}
