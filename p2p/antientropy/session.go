package antientropy

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/crdtpb"
	"github.com/chorus-kv/chorus/crdt/merkle"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// state is where a session is in the protocol.
type state uint8

const (
	stateNew     state = iota // before Start
	stateHello                // waiting for the peer's hello
	stateDescend              // comparing tree levels, in turns
	stateDigests              // digest receiver: more digest frames to come
	stateAnswer               // digest sender: receiving the peer's entries and wants
	stateWanted               // digest receiver: receiving the entries it asked for
	stateConfirm              // digest sender: waiting for the peer's done
	stateSending              // frames left to send: the driver calls Continue
	stateEnded
)

var stateNames = [...]string{"new", "hello", "descend", "digests", "answer", "wanted", "confirm", "sending", "ended"}

func (s state) String() string { return stateNames[s] }

// Session is one anti-entropy session, from one side. It is not safe for
// concurrent use: one driver owns it for the session's life.
type Session struct {
	cfg       Config
	cfgErr    error
	replica   Replica
	initiator bool
	refuse    error
	hello     *replicationv1.SyncHello // this side's
	state     state
	err       error
	maxDiff   int // the per-level cap: the smaller of both sides'
	stats     Stats
	peerFront []*replicationv1.OriginFrontier
	// sentLevel and sentParents are the last level message this side
	// sent (sentLevel -1: none yet): a level received must be the next one
	// down and below those parents.
	sentLevel   int
	sentParents []uint32
	// buckets are the leaf step's buckets: digests and entries received
	// must fall in them.
	buckets    map[uint32]bool
	bucketList []uint32
	// theirs accumulates the peer's digests (digest receiver).
	theirs []merkle.Digest
	// peerWants are the key hashes the peer asked for in its first answer
	// (digest sender); wanted those this side asked for (digest receiver).
	peerWants []uint64
	wanted    map[uint64]bool
	answered  bool // the first frame of the answer was received
	pending   sending
}

// sending is an entries reply being framed: the key hashes whose entries
// are still to be read, the frame being filled, and the state after it.
type sending struct {
	hashes []uint64
	msg    *replicationv1.SyncEntries
	size   int
	then   state
}

// NewInitiator returns the session of the side that opens it; call Start.
func NewInitiator(cfg Config, r Replica, local Local) *Session {
	return newSession(cfg, r, local, true, nil)
}

// NewResponder returns the session of the side that serves it; call
// Start, then Step with the peer's first message. A non-nil refuse refuses
// the session (the peer is not admitted): the reply to the peer's hello
// says why.
func NewResponder(cfg Config, r Replica, local Local, refuse error) *Session {
	return newSession(cfg, r, local, false, refuse)
}

func newSession(cfg Config, r Replica, local Local, initiator bool, refuse error) *Session {
	cfg = cfg.WithDefaults()
	s := &Session{cfg: cfg, cfgErr: cfg.Validate(), replica: r, initiator: initiator, refuse: refuse,
		maxDiff: cfg.MaxDiffNodes, sentLevel: -1}
	s.hello = &replicationv1.SyncHello{
		Fanout: merkle.Fanout, Depth: merkle.Depth,
		Root:          local.Root,
		LastContact:   uint64(local.LastContact),
		PurgedThrough: uint64(local.PurgedThrough),
		MaxDiffNodes:  uint32(min(cfg.MaxDiffNodes, 1<<31-1)),
		Frontier:      local.Frontier,
	}
	return s
}

// Stats returns what the session exchanged so far.
func (s *Session) Stats() Stats { return s.stats }

// PeerFrontier returns the frontiers the peer sent in its hello (nil
// before it); they hold only once the session completed.
func (s *Session) PeerFrontier() []*replicationv1.OriginFrontier { return s.peerFront }

// Ended reports whether the session has ended, and with what error (nil:
// it completed).
func (s *Session) Ended() (bool, error) { return s.state == stateEnded, s.err }

// Start begins the session: the initiator's output sends its hello; the
// responder's is empty (it reads the peer's hello first).
func (s *Session) Start() Output {
	if s.state != stateNew {
		return s.misuse("Start")
	}
	if s.cfgErr != nil {
		return s.fail(s.cfgErr)
	}
	s.state = stateHello
	if s.initiator {
		return Output{Send: []*replicationv1.SyncMessage{wrapHello(s.hello)}}
	}
	return Output{}
}

// Step takes the peer's next message.
func (s *Session) Step(m *replicationv1.SyncMessage) Output {
	switch s.state {
	case stateEnded:
		return Output{Done: true, Err: ErrEnded}
	case stateNew, stateSending:
		return s.misuse("Step")
	}
	if d := m.GetDone(); d != nil && d.GetError() != "" {
		return s.fail(fmt.Errorf("%w: %s", ErrPeerGaveUp, d.GetError()))
	}
	switch s.state {
	case stateHello:
		return s.onHello(m)
	case stateDescend:
		return s.onDescend(m)
	case stateDigests:
		msg := m.GetDigests()
		if msg == nil || len(msg.GetBuckets()) > 0 {
			return s.fail(fmt.Errorf("%w: expected more digests, got %s", ErrMalformed, describe(m)))
		}
		return s.onDigestFrame(msg)
	case stateAnswer, stateWanted:
		return s.onEntries(m)
	case stateConfirm:
		if m.GetDone() == nil {
			return s.fail(fmt.Errorf("%w: expected the end of the session, got %s", ErrMalformed, describe(m)))
		}
		return s.end(Output{})
	}
	panic(fmt.Sprintf("antientropy: session in unknown state %d", s.state))
}

// Continue returns the next frames of a reply too large for one output
// (Output.More).
func (s *Session) Continue() Output {
	switch s.state {
	case stateEnded:
		return Output{Done: true, Err: ErrEnded}
	case stateSending:
		return s.continueSending()
	}
	return s.misuse("Continue")
}

func (s *Session) misuse(call string) Output {
	return s.fail(fmt.Errorf("antientropy: %s called in state %s (a driver bug)", call, s.state))
}

func (s *Session) fail(err error) Output {
	s.state, s.err = stateEnded, err
	return Output{Done: true, Err: err}
}

func (s *Session) end(out Output) Output {
	s.state = stateEnded
	out.Done = true
	return out
}

func (s *Session) onHello(m *replicationv1.SyncMessage) Output {
	theirs := m.GetHello()
	if theirs == nil {
		return s.fail(fmt.Errorf("%w: expected a hello, got %s", ErrMalformed, describe(m)))
	}
	if s.initiator {
		if theirs.GetError() != "" {
			if theirs.GetLastContact() != 0 || theirs.GetPurgedThrough() != 0 {
				if err := CheckStale(s.hello, theirs, s.cfg.Peer); err != nil {
					return s.fail(err)
				}
			}
			return s.fail(fmt.Errorf("%w: %s", ErrPeerRefused, theirs.GetError()))
		}
		if err := checkShape(theirs); err != nil {
			return s.fail(err)
		}
		if err := CheckStale(s.hello, theirs, s.cfg.Peer); err != nil {
			return s.fail(err)
		}
		s.adopt(theirs)
		if theirs.GetRoot() == s.hello.GetRoot() {
			return s.end(Output{})
		}
		s.state = stateDescend
		return Output{}
	}
	refuse := func(err error) Output {
		h := proto.CloneOf(s.hello)
		h.Error = err.Error()
		s.state, s.err = stateEnded, fmt.Errorf("%w: %w", ErrRefused, err)
		return Output{Send: []*replicationv1.SyncMessage{wrapHello(h)}, Done: true, Err: s.err}
	}
	if s.refuse != nil {
		return refuse(s.refuse)
	}
	if err := checkShape(theirs); err != nil {
		return refuse(err)
	}
	if err := CheckStale(s.hello, theirs, s.cfg.Peer); err != nil {
		return refuse(err)
	}
	s.adopt(theirs)
	out := Output{Send: []*replicationv1.SyncMessage{wrapHello(s.hello)}}
	if theirs.GetRoot() == s.hello.GetRoot() {
		return s.end(out)
	}
	s.state = stateDescend
	out.Send = append(out.Send, s.level(0, []uint32{0}))
	return out
}

// checkShape checks that the peer's tree has this node's shape.
func checkShape(h *replicationv1.SyncHello) error {
	if h.GetFanout() != merkle.Fanout || h.GetDepth() != merkle.Depth {
		return fmt.Errorf("%w: peer's Merkle tree has fanout %d and depth %d; this node's has %d and %d",
			ErrMalformed, h.GetFanout(), h.GetDepth(), merkle.Fanout, merkle.Depth)
	}
	return nil
}

// adopt takes the peer's hello: its root, its frontier, and its per-level
// cap if smaller than this side's.
func (s *Session) adopt(h *replicationv1.SyncHello) {
	if c := int(h.GetMaxDiffNodes()); c > 0 && c < s.maxDiff {
		s.maxDiff = c
	}
	s.stats.PeerRoot = h.GetRoot()
	s.peerFront = h.GetFrontier()
}

// level returns the level message for parents (nodes of level) and
// remembers it.
func (s *Session) level(level int, parents []uint32) *replicationv1.SyncMessage {
	hashes := s.replica.MerkleChildren(make([]uint64, 0, len(parents)*merkle.Fanout), level, parents)
	s.sentLevel, s.sentParents = level, parents
	return &replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Level{Level: &replicationv1.SyncLevel{
		Level: uint32(level), Parents: parents, Hashes: hashes, Partial: s.stats.Partial,
	}}}
}

func (s *Session) onDescend(m *replicationv1.SyncMessage) Output {
	switch body := m.GetBody().(type) {
	case *replicationv1.SyncMessage_Done:
		return s.end(Output{}) // the trees matched after all (they change as we go)
	case *replicationv1.SyncMessage_Level:
		lv := body.Level
		level, parents, hashes := int(lv.GetLevel()), lv.GetParents(), lv.GetHashes()
		if err := merkle.CheckLevelMessage(level, parents, hashes); err != nil {
			return s.fail(fmt.Errorf("%w: %w", ErrMalformed, err))
		}
		if err := s.checkFollows(level, parents); err != nil {
			return s.fail(err)
		}
		// A session the peer capped is partial for this side too.
		s.stats.Partial = s.stats.Partial || lv.GetPartial()
		if len(parents) > s.maxDiff {
			return s.fail(fmt.Errorf("%w: %d parents in one level; the session's limit is %d", ErrTooLarge, len(parents), s.maxDiff))
		}
		diff := s.replica.MerkleDiff(level, parents, hashes, s.maxDiff+1)
		if len(diff) > s.maxDiff {
			diff = diff[:s.maxDiff]
			s.stats.Partial = true
		}
		if len(diff) == 0 {
			return s.end(Output{Send: []*replicationv1.SyncMessage{wrapDone()}})
		}
		if level+1 < merkle.Depth {
			return Output{Send: []*replicationv1.SyncMessage{s.level(level+1, diff)}}
		}
		return s.sendDigests(diff)
	case *replicationv1.SyncMessage_Digests:
		return s.onFirstDigests(body.Digests)
	default:
		return s.fail(fmt.Errorf("%w: unexpected %s while comparing trees", ErrMalformed, describe(m)))
	}
}

// checkFollows checks that a level message from the peer answers the last
// one this side sent: the next level down, below the nodes it sent (or the
// root, when this side sent none).
func (s *Session) checkFollows(level int, nodes []uint32) error {
	if s.sentLevel < 0 {
		if level != 0 {
			return fmt.Errorf("%w: level %d before the root's", ErrMalformed, level)
		}
		return nil
	}
	if level != s.sentLevel+1 {
		return fmt.Errorf("%w: level %d in answer to level %d", ErrMalformed, level, s.sentLevel)
	}
	return below(nodes, s.sentParents, fmt.Sprintf("node of level %d", level))
}

// below checks that every one of nodes (ascending) is a child of one of
// parents (ascending).
func below(nodes, parents []uint32, what string) error {
	j := 0
	for _, n := range nodes {
		p := n / merkle.Fanout
		for j < len(parents) && parents[j] < p {
			j++
		}
		if j == len(parents) || parents[j] != p {
			return fmt.Errorf("%w: %s %d is not below a node this side sent", ErrMalformed, what, n)
		}
	}
	return nil
}

// sendDigests starts the leaf step as the digest sender: digests of this
// side's keys in the differing buckets.
func (s *Session) sendDigests(buckets []uint32) Output {
	s.stats.DifferingBuckets = len(buckets)
	s.setBuckets(buckets)
	digests, err := s.replica.BucketDigests(buckets)
	if err != nil {
		return s.fail(fmt.Errorf("antientropy: read the digests of %d buckets: %w", len(buckets), err))
	}
	s.stats.DigestsSent = len(digests)
	var out Output
	first := true
	for first || len(digests) > 0 {
		n := min(len(digests), s.cfg.DigestsPerFrame)
		msg := &replicationv1.SyncDigests{Last: n == len(digests)}
		if first {
			msg.Buckets = buckets
			msg.Partial = s.stats.Partial
			first = false
		}
		msg.KeyHashes = make([]uint64, n)
		msg.Hlcs = make([]uint64, n)
		msg.EntryHashes = make([]uint64, n)
		for i, d := range digests[:n] {
			msg.KeyHashes[i], msg.Hlcs[i], msg.EntryHashes[i] = d.KeyHash, uint64(d.HLC), d.Hash
		}
		digests = digests[n:]
		out.Send = append(out.Send, &replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Digests{Digests: msg}})
	}
	s.state = stateAnswer
	return out
}

// onFirstDigests starts the leaf step as the digest receiver.
func (s *Session) onFirstDigests(first *replicationv1.SyncDigests) Output {
	if s.sentLevel != merkle.Depth-1 {
		return s.fail(fmt.Errorf("%w: digests before this side sent the last level", ErrMalformed))
	}
	s.stats.Partial = s.stats.Partial || first.GetPartial()
	buckets := first.GetBuckets()
	if len(buckets) == 0 || len(buckets) > s.maxDiff {
		return s.fail(fmt.Errorf("%w: digests for %d buckets; want 1 to %d", ErrMalformed, len(buckets), s.maxDiff))
	}
	for i, b := range buckets {
		if b >= merkle.Buckets || (i > 0 && b <= buckets[i-1]) {
			return s.fail(fmt.Errorf("%w: bucket list is not ascending buckets below %d", ErrMalformed, merkle.Buckets))
		}
	}
	if err := below(buckets, s.sentParents, "bucket"); err != nil {
		return s.fail(err)
	}
	s.stats.DifferingBuckets = len(buckets)
	s.setBuckets(buckets)
	return s.onDigestFrame(first)
}

func (s *Session) onDigestFrame(msg *replicationv1.SyncDigests) Output {
	n := len(msg.GetKeyHashes())
	if len(msg.GetHlcs()) != n || len(msg.GetEntryHashes()) != n {
		return s.fail(fmt.Errorf("%w: digest columns of different lengths", ErrMalformed))
	}
	if len(s.theirs)+n > s.cfg.MaxDigests {
		return s.fail(fmt.Errorf("%w: more than %d digests", ErrTooLarge, s.cfg.MaxDigests))
	}
	for i := range n {
		d := merkle.Digest{KeyHash: msg.GetKeyHashes()[i], HLC: crdt.Timestamp(msg.GetHlcs()[i]), Hash: msg.GetEntryHashes()[i]}
		if !s.buckets[merkle.BucketOf(d.KeyHash)] {
			return s.fail(fmt.Errorf("%w: digest outside the session's buckets", ErrMalformed))
		}
		s.theirs = append(s.theirs, d)
	}
	if !msg.GetLast() {
		s.state = stateDigests
		return Output{}
	}
	s.stats.DigestsReceived = len(s.theirs)
	mine, err := s.replica.BucketDigests(s.bucketList)
	if err != nil {
		return s.fail(fmt.Errorf("antientropy: read the digests of %d buckets: %w", len(s.buckets), err))
	}
	send, want := merkle.Reconcile(mine, s.theirs)
	s.theirs = nil
	s.wanted = make(map[uint64]bool, len(want))
	for _, h := range want {
		s.wanted[h] = true
	}
	return s.startSending(send, want, stateWanted)
}

func (s *Session) setBuckets(buckets []uint32) {
	s.bucketList = buckets
	s.buckets = make(map[uint32]bool, len(buckets))
	for _, b := range buckets {
		s.buckets[b] = true
	}
}

// onEntries takes a frame of entries: the peer's first answer (stateAnswer,
// this side sent the digests) or the entries this side asked for
// (stateWanted).
func (s *Session) onEntries(m *replicationv1.SyncMessage) Output {
	msg := m.GetEntries()
	if msg == nil {
		return s.fail(fmt.Errorf("%w: expected entries, got %s", ErrMalformed, describe(m)))
	}
	if want := msg.GetWant(); len(want) > 0 {
		if s.state != stateAnswer || s.answered {
			return s.fail(fmt.Errorf("%w: a want list outside the first answer", ErrMalformed))
		}
		if len(want) > s.stats.DigestsSent {
			return s.fail(fmt.Errorf("%w: %d wants for %d digests", ErrMalformed, len(want), s.stats.DigestsSent))
		}
		for i, h := range want {
			if i > 0 && h <= want[i-1] || !s.buckets[merkle.BucketOf(h)] {
				return s.fail(fmt.Errorf("%w: the wants are not ascending key hashes in the session's buckets", ErrMalformed))
			}
		}
		s.peerWants = want
	}
	s.answered = true
	if n := len(msg.GetEntries()); s.stats.EntriesReceived+n > s.cfg.MaxEntries {
		return s.fail(fmt.Errorf("%w: more than %d entries", ErrTooLarge, s.cfg.MaxEntries))
	}
	entries := make([]crdt.Entry, 0, len(msg.GetEntries()))
	for _, e := range msg.GetEntries() {
		kh := merkle.KeyHash(e.GetKey())
		if s.state == stateWanted && !s.wanted[kh] {
			return s.fail(fmt.Errorf("%w: entry %q was not asked for", ErrMalformed, e.GetKey()))
		}
		if s.state == stateAnswer && !s.buckets[merkle.BucketOf(kh)] {
			return s.fail(fmt.Errorf("%w: entry %q is outside the session's buckets", ErrMalformed, e.GetKey()))
		}
		entries = append(entries, crdtpb.ToEntry(e))
	}
	s.stats.EntriesReceived += len(entries)
	out := Output{Apply: s.batches(entries)}
	if !msg.GetLast() {
		return out
	}
	if s.state == stateWanted {
		// The done goes out once the driver applied these: a session that
		// ended has repaired both sides.
		out.Send = []*replicationv1.SyncMessage{wrapDone()}
		return s.end(out)
	}
	next := s.startSending(s.peerWants, nil, stateConfirm)
	next.Apply = out.Apply
	return next
}

// batches splits received entries into the batches of Output.Apply.
func (s *Session) batches(entries []crdt.Entry) [][]crdt.Entry {
	var out [][]crdt.Entry
	for len(entries) > 0 {
		n := BatchLen(entries, s.cfg.ApplyBatchEntries, s.cfg.ApplyBatchBytes)
		out = append(out, entries[:n:n])
		entries = entries[n:]
	}
	return out
}

// BatchLen returns how many of entries (at least one, if any) the next
// batch takes: at most maxEntries, and at most maxBytes of keys and values
// unless the first entry alone is larger.
func BatchLen(entries []crdt.Entry, maxEntries, maxBytes int) int {
	size := 0
	for i := range entries {
		size += len(entries[i].Key) + len(entries[i].Value)
		if i == maxEntries || i > 0 && size > maxBytes {
			return i
		}
	}
	return len(entries)
}

// startSending begins an entries reply: this side's entries for hashes,
// with want in the first frame, then the state then.
func (s *Session) startSending(hashes, want []uint64, then state) Output {
	s.pending = sending{hashes: hashes, msg: &replicationv1.SyncEntries{Want: want}, then: then}
	s.state = stateSending
	return s.continueSending()
}

// continueSending reads the entries of the next ReadBatch key hashes and
// frames them; the last output ends the reply with a frame marked last.
func (s *Session) continueSending() Output {
	p := &s.pending
	n := min(len(p.hashes), s.cfg.ReadBatch)
	var batch []*replicationv1.Entry
	var sizes []int // crdtpb.WireBytes of batch's entries
	if n > 0 {
		err := s.replica.EntriesByKeyHash(p.hashes[:n], func(e *crdt.Entry) error {
			batch = append(batch, crdtpb.FromEntry(e))
			sizes = append(sizes, crdtpb.WireBytes(e))
			return nil
		})
		if err != nil {
			return s.fail(fmt.Errorf("antientropy: read %d entries to send: %w", n, err))
		}
	}
	p.hashes = p.hashes[n:]
	var out Output
	for i, e := range batch {
		sz := sizes[i]
		if p.size > 0 && p.size+sz > s.cfg.EntryFrameBytes {
			out.Send = append(out.Send, wrapEntries(p.msg))
			p.msg, p.size = &replicationv1.SyncEntries{}, 0
		}
		p.msg.Entries = append(p.msg.Entries, e)
		p.size += sz
		s.stats.EntriesSent++
	}
	if len(p.hashes) > 0 {
		out.More = true
		return out
	}
	p.msg.Last = true
	out.Send = append(out.Send, wrapEntries(p.msg))
	s.state = p.then
	s.pending = sending{}
	return out
}

func wrapHello(h *replicationv1.SyncHello) *replicationv1.SyncMessage {
	return &replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Hello{Hello: h}}
}

func wrapEntries(e *replicationv1.SyncEntries) *replicationv1.SyncMessage {
	return &replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Entries{Entries: e}}
}

func wrapDone() *replicationv1.SyncMessage {
	return &replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Done{Done: &replicationv1.SyncDone{}}}
}

// describe names a message's kind for errors.
func describe(m *replicationv1.SyncMessage) string {
	switch m.GetBody().(type) {
	case *replicationv1.SyncMessage_Hello:
		return "a hello"
	case *replicationv1.SyncMessage_Level:
		return "a level"
	case *replicationv1.SyncMessage_Digests:
		return "digests"
	case *replicationv1.SyncMessage_Entries:
		return "entries"
	case *replicationv1.SyncMessage_Done:
		return "a done"
	default:
		return "an empty message"
	}
}
