package client

import (
	"context"
	"fmt"
	"iter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	clusterv1 "github.com/chorus-kv/chorus/proto/chorus/cluster/v1"
	kvv1 "github.com/chorus-kv/chorus/proto/chorus/kv/v1"
)

// MaxMessageBytes is the largest response the client accepts. Range pages and
// watch batches are capped by the node well below it.
const MaxMessageBytes = 64 << 20

// Client talks to one Chorus node. It is safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	kv      kvv1.KVServiceClient
	cluster clusterv1.ClusterServiceClient
}

// reconnectBackoff is how the client dials again after a connection to the
// node failed: 250 ms, then 1.6 times longer each time (±20 %), at most 5 s
// apart. gRPC's default waits up to 120 s, so a client of a node that was
// restarted could stay unavailable for two minutes after the node was back.
var reconnectBackoff = grpc.ConnectParams{
	Backoff: backoff.Config{
		BaseDelay:  250 * time.Millisecond,
		Multiplier: 1.6,
		Jitter:     0.2,
		MaxDelay:   5 * time.Second,
	},
	MinConnectTimeout: 5 * time.Second,
}

// Dial connects to a node's client API at endpoint (host:port). The
// connection is made lazily, and made again after a failure 250 ms later,
// then 1.6 times longer each time, at most 5 s apart (gRPC's default waits
// up to 120 s). Extra gRPC dial options may be appended (a
// grpc.WithConnectParams among them replaces this backoff).
func Dial(endpoint string, opts ...grpc.DialOption) (*Client, error) {
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(reconnectBackoff),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageBytes),
			grpc.MaxCallSendMsgSize(MaxMessageBytes),
		),
	}
	conn, err := grpc.NewClient(endpoint, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("chorus: dial %s: %w", endpoint, err)
	}
	return &Client{conn: conn, kv: kvv1.NewKVServiceClient(conn), cluster: clusterv1.NewClusterServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// KeyValue is a key with its value and metadata.
type KeyValue struct {
	Key            string
	Value          []byte
	CreateRevision int64
	ModRevision    int64
	Version        int64
	// HLC is the hybrid logical clock timestamp of the winning write.
	HLC uint64
	// Origin is the peer id of the node that made the winning write.
	Origin string
}

// Time returns the wall-clock part of the write's timestamp.
func (kv *KeyValue) Time() time.Time { return time.UnixMilli(int64(kv.HLC >> 16)).UTC() }

func fromKV(kv *kvv1.KeyValue) *KeyValue {
	if kv == nil {
		return nil
	}
	return &KeyValue{
		Key:            string(kv.GetKey()),
		Value:          kv.GetValue(),
		CreateRevision: kv.GetCreateRevision(),
		ModRevision:    kv.GetModRevision(),
		Version:        kv.GetVersion(),
		HLC:            kv.GetHlc(),
		Origin:         kv.GetOrigin(),
	}
}

// PutResult is what a Put returns.
type PutResult struct {
	Revision int64     // the node's revision after the write
	KV       *KeyValue // the key as written
	Prev     *KeyValue // the previous value, with WithPrevKV, if there was one
}

// OpOption modifies a Put or Delete.
type OpOption func(*opOptions)

type opOptions struct {
	prevKV        bool
	minReplicas   uint32
	waitConverged bool
}

// WithPrevKV asks for the previous value of the key.
func WithPrevKV() OpOption { return func(o *opOptions) { o.prevKV = true } }

// WithMinReplicas also pushes the write directly to k connected peers and
// returns only once they have it durably. On a shortfall the error is
// ErrReplicasNotReached (the write is durable on the node and still spreads).
func WithMinReplicas(k uint32) OpOption { return func(o *opOptions) { o.minReplicas = k } }

// WithWaitConverged returns only once every live member of the cluster
// (alive or suspect in the node's failure detector) holds the write, or a
// newer one for the key. ctx's deadline bounds the wait: past it the error
// is ErrNotConverged and Error.Missing names the members that did not
// confirm (the write is durable on the node and still spreads).
func WithWaitConverged() OpOption { return func(o *opOptions) { o.waitConverged = true } }

func collect(opts []OpOption) opOptions {
	var o opOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Put writes value under key. It returns once the write is durable on the node.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...OpOption) (*PutResult, error) {
	o := collect(opts)
	resp, err := c.kv.Put(ctx, &kvv1.PutRequest{Key: []byte(key), Value: value, PrevKv: o.prevKV, MinReplicas: o.minReplicas, WaitConverged: o.waitConverged})
	if err != nil {
		return nil, fromStatus("put", err)
	}
	return &PutResult{Revision: resp.GetHeader().GetRevision(), KV: fromKV(resp.GetKv()), Prev: fromKV(resp.GetPrevKv())}, nil
}

// Get reads key; it fails with ErrNotFound if the key does not exist.
func (c *Client) Get(ctx context.Context, key string) (*KeyValue, error) {
	resp, err := c.kv.Get(ctx, &kvv1.GetRequest{Key: []byte(key)})
	if err != nil {
		return nil, fromStatus("get", err)
	}
	if resp.GetKv() == nil {
		return nil, fmt.Errorf("chorus get %q: %w", key, ErrNotFound)
	}
	return fromKV(resp.GetKv()), nil
}

// DeleteResult is what a Delete returns.
type DeleteResult struct {
	Revision int64
	Deleted  bool      // the key existed
	Prev     *KeyValue // with WithPrevKV, the deleted value
}

// Delete deletes key. Deleting a missing key is not an error (Deleted is false).
func (c *Client) Delete(ctx context.Context, key string, opts ...OpOption) (*DeleteResult, error) {
	o := collect(opts)
	resp, err := c.kv.Delete(ctx, &kvv1.DeleteRequest{Key: []byte(key), PrevKv: o.prevKV, MinReplicas: o.minReplicas, WaitConverged: o.waitConverged})
	if err != nil {
		return nil, fromStatus("delete", err)
	}
	return &DeleteResult{Revision: resp.GetHeader().GetRevision(), Deleted: resp.GetDeleted(), Prev: fromKV(resp.GetPrevKv())}, nil
}

// RangeRequest selects one page of keys: Prefix, or [Start, End).
type RangeRequest struct {
	Prefix     string
	Start, End string
	Limit      int64  // 0: the node's default page size
	After      string // continue after this key (a previous page's NextKey)
	KeysOnly   bool
}

// RangePage is one page of a Range.
type RangePage struct {
	Revision int64
	KVs      []*KeyValue
	More     bool
	NextKey  string
}

// Range reads one page of keys in key order.
func (c *Client) Range(ctx context.Context, r RangeRequest) (*RangePage, error) {
	req := &kvv1.RangeRequest{Limit: r.Limit, KeysOnly: r.KeysOnly}
	if r.Prefix != "" {
		req.Prefix = []byte(r.Prefix)
	}
	if r.Start != "" {
		req.Start = []byte(r.Start)
	}
	if r.End != "" {
		req.End = []byte(r.End)
	}
	if r.After != "" {
		req.After = []byte(r.After)
	}
	resp, err := c.kv.Range(ctx, req)
	if err != nil {
		return nil, fromStatus("range", err)
	}
	page := &RangePage{Revision: resp.GetHeader().GetRevision(), More: resp.GetMore(), NextKey: string(resp.GetNextKey())}
	for _, kv := range resp.GetKvs() {
		page.KVs = append(page.KVs, fromKV(kv))
	}
	return page, nil
}

// List iterates over every key with the prefix, in key order, fetching pages
// as it goes. An error ends the iteration.
func (c *Client) List(ctx context.Context, prefix string) iter.Seq2[*KeyValue, error] {
	return func(yield func(*KeyValue, error) bool) {
		req := RangeRequest{Prefix: prefix}
		for {
			page, err := c.Range(ctx, req)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, kv := range page.KVs {
				if !yield(kv, nil) {
					return
				}
			}
			if !page.More {
				return
			}
			req.After = page.NextKey
		}
	}
}

// Status describes a node.
type Status struct {
	NodeID         string
	Version        string
	Revision       int64
	OldestRevision int64
	MaxKeyBytes    int64
	MaxValueBytes  int64
	// MerkleRoot is the root of the tree over the node's entries: nodes with
	// equal roots hold the same state.
	MerkleRoot uint64
	// Keys counts the keys held, tombstones included; Tombstones counts
	// those that are deleted keys remembered until the grace period ends.
	Keys, Tombstones int64
	// JoinState is where the node stands with its cluster: JoinStandalone,
	// JoinJoining, JoinNotAdmitted, JoinMember or JoinRemoved. JoinDetail
	// explains it and says what to do (the command that admits the node).
	JoinState, JoinDetail string
	// CatchUp is the node's catch-up from its peers.
	CatchUp CatchUp
}

// CatchUp says whether a node still receives, by anti-entropy, what its
// peers held when it started (or when a difference too large for one
// session appeared), and how far it got.
type CatchUp struct {
	// State is CatchingUp or CaughtUp ("" from a node of an older
	// version); Detail explains it.
	State, Detail string
	// Received counts the entries received since the catch-up began (of
	// the last catch-up, once caught up). Total estimates the entries it
	// receives in all: Received plus the keys the fullest connected member
	// holds beyond the node's (0 while no member reported its key count);
	// never below Received. It counts keys, so it is low when the missed
	// writes overwrote or deleted keys the node already held.
	Received, Total int64
}

// Catch-up states (CatchUp.State).
const (
	// CatchingUp: no anti-entropy session with a peer has completed since
	// the node started, or since a session found a difference too large
	// for one session.
	CatchingUp = "catching-up"
	// CaughtUp: a session with a peer completed since; or the node had no
	// one to catch up from.
	CaughtUp = "caught-up"
)

// Percent is Received of Total in percent, 0 while Total is unknown.
func (c CatchUp) Percent() float64 {
	if c.Total <= 0 {
		return 0
	}
	return 100 * float64(min(c.Received, c.Total)) / float64(c.Total)
}

// Join states (Status.JoinState, MemberList.JoinState).
const (
	// JoinStandalone: no member list and no bootstrap peers, a cluster of
	// one; its first member add founds a cluster.
	JoinStandalone = "standalone"
	// JoinJoining: not on the member list yet; waiting to reach a bootstrap
	// peer, be admitted and sync the list.
	JoinJoining = "joining"
	// JoinNotAdmitted: its peers refuse it; a member must admit it.
	JoinNotAdmitted = "not-admitted"
	// JoinMember: on its own member list (or admission is open).
	JoinMember = "member"
	// JoinRemoved: removed from the cluster; peers refuse it.
	JoinRemoved = "removed"
)

// Status asks the node about itself.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	resp, err := c.kv.Status(ctx, &kvv1.StatusRequest{})
	if err != nil {
		return nil, fromStatus("status", err)
	}
	return &Status{
		NodeID:         resp.GetHeader().GetNodeId(),
		Version:        resp.GetVersion(),
		Revision:       resp.GetHeader().GetRevision(),
		OldestRevision: resp.GetOldestRevision(),
		MaxKeyBytes:    resp.GetMaxKeyBytes(),
		MaxValueBytes:  resp.GetMaxValueBytes(),
		MerkleRoot:     resp.GetMerkleRoot(),
		Keys:           resp.GetKeys(),
		Tombstones:     resp.GetTombstones(),
		JoinState:      resp.GetJoinState(),
		JoinDetail:     resp.GetJoinDetail(),
		CatchUp: CatchUp{State: resp.GetCatchUpState(), Detail: resp.GetCatchUpDetail(),
			Received: resp.GetCatchUpReceived(), Total: resp.GetCatchUpTotal()},
	}, nil
}

// Member is a node of the cluster as the answering node sees it.
type Member struct {
	PeerID string
	Addrs  []string
	Self   bool // the node that answered
	Gossip bool // exchanges gossip with the answering node
	// MerkleRoot is the member's root as it reported it; Converged is true
	// when it equals the answering node's. StatusError is set when the
	// member's status could not be read (the fields around it are then 0).
	MerkleRoot     uint64
	Converged      bool
	Revision, Keys int64
	StatusError    string
	// Name is the name it was admitted with; Admitted is true when it is on
	// the member list.
	Name     string
	Admitted bool
	// State is alive, suspect, dead or left as the answering node's failure
	// detector sees it ("unknown" for a connected peer that is no member,
	// "unseen" for a member not heard from since the node started);
	// Incarnation is the member's SWIM incarnation; LastHeard when the
	// answering node last heard from it; HLC its clock as it reported it.
	State       string
	Incarnation uint64
	LastHeard   time.Time
	HLC         uint64
	// Lag is how far behind the member is, as the answering node knows it:
	// the age of the oldest write it is not known to hold (0: none).
	// LagKnown is false when the member announced no frontier yet.
	Lag      time.Duration
	LagKnown bool
}

// Members lists the answering node and the peers it is connected to.
func (c *Client) Members(ctx context.Context) (cluster string, members []Member, err error) {
	l, err := c.MemberList(ctx)
	if err != nil {
		return "", nil, err
	}
	return l.Cluster, l.Members, nil
}

// MemberList is what MemberList returns.
type MemberList struct {
	Cluster string
	// JoinState, JoinDetail and CatchUp are the answering node's, as in
	// Status.
	JoinState, JoinDetail string
	CatchUp               CatchUp
	Members               []Member
}

// MemberList lists the answering node, the admitted members and the
// connected peers, with the answering node's join state.
func (c *Client) MemberList(ctx context.Context) (*MemberList, error) {
	resp, err := c.cluster.Members(ctx, &clusterv1.MembersRequest{})
	if err != nil {
		return nil, fromStatus("members", err)
	}
	l := &MemberList{Cluster: resp.GetCluster(), JoinState: resp.GetJoinState(), JoinDetail: resp.GetJoinDetail(),
		CatchUp: CatchUp{State: resp.GetCatchUpState(), Detail: resp.GetCatchUpDetail(),
			Received: resp.GetCatchUpReceived(), Total: resp.GetCatchUpTotal()}}
	for _, m := range resp.GetMembers() {
		l.Members = append(l.Members, memberFromProto(m))
	}
	return l, nil
}

// SyncResult is what one anti-entropy session exchanged.
type SyncResult struct {
	PeerID                                       string
	EntriesSent, EntriesReceived, EntriesApplied int64
	BytesSent, BytesReceived                     int64
	RoundTrips                                   int64
	// Partial is true when the difference was larger than one session
	// repairs; the node's next sessions continue it.
	Partial   bool
	Duration  time.Duration
	LocalRoot uint64 // the answering node's root after the session
	PeerRoot  uint64 // the peer's root at the session's start
}

// Sync asks the node to run one anti-entropy session with a connected peer
// now. It fails with ErrStale when either node has been out of contact for
// longer than the tombstone grace period, and ErrPeerNotConnected when the
// node has no connection to the peer.
func (c *Client) Sync(ctx context.Context, peerID string) (*SyncResult, error) {
	resp, err := c.cluster.Sync(ctx, &clusterv1.SyncRequest{PeerId: peerID})
	if err != nil {
		return nil, fromStatus("sync", err)
	}
	return &SyncResult{
		PeerID:          resp.GetPeerId(),
		EntriesSent:     resp.GetEntriesSent(),
		EntriesReceived: resp.GetEntriesReceived(),
		EntriesApplied:  resp.GetEntriesApplied(),
		BytesSent:       resp.GetBytesSent(),
		BytesReceived:   resp.GetBytesReceived(),
		RoundTrips:      resp.GetRoundTrips(),
		Partial:         resp.GetPartial(),
		Duration:        time.Duration(resp.GetDurationSeconds() * float64(time.Second)),
		LocalRoot:       resp.GetLocalRoot(),
		PeerRoot:        resp.GetPeerRoot(),
	}, nil
}

// AddMember admits a node, by its peer id, to the cluster of the node this
// client talks to; the record replicates to every member. name is shown by
// Members. It returns the write's revision on the answering node.
func (c *Client) AddMember(ctx context.Context, peerID, name string) (int64, error) {
	res, err := c.AdmitMember(ctx, peerID, name)
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

// AddMemberResult is what AdmitMember returns.
type AddMemberResult struct {
	Revision int64 // the write's revision on the answering node
	// Existed is true when the peer was a member already; PreviousName is
	// then the name it had (a different name renamed it).
	Existed      bool
	PreviousName string
}

// AdmitMember is AddMember that also says whether the peer was a member
// already, and under which name.
func (c *Client) AdmitMember(ctx context.Context, peerID, name string) (*AddMemberResult, error) {
	resp, err := c.cluster.AddMember(ctx, &clusterv1.AddMemberRequest{PeerId: peerID, Name: name})
	if err != nil {
		return nil, fromStatus("member add", err)
	}
	return &AddMemberResult{Revision: resp.GetRevision(), Existed: resp.GetExisted(), PreviousName: resp.GetPreviousName()}, nil
}

// RemoveMember removes a member: every node closes its connections to it
// and rejects its data from then on.
func (c *Client) RemoveMember(ctx context.Context, peerID string) (int64, error) {
	resp, err := c.cluster.RemoveMember(ctx, &clusterv1.RemoveMemberRequest{PeerId: peerID})
	if err != nil {
		return 0, fromStatus("member remove", err)
	}
	return resp.GetRevision(), nil
}

// MembersUpdate is one response of WatchMembers: the members whose state
// changed (every member in the first), and the peer ids removed.
type MembersUpdate struct {
	Members []Member
	Removed []string
}

// MembersWatch follows the member list; Close ends it.
type MembersWatch struct {
	stream interface {
		Recv() (*clusterv1.WatchMembersResponse, error)
	}
	cancel context.CancelFunc
}

// WatchMembers follows the member list as the node sees it: members added,
// removed, suspected, dead, back alive or leaving. Member state fields are
// set (Name, State, Incarnation, LastHeard, Admitted); Merkle roots are not
// (use Members).
func (c *Client) WatchMembers(ctx context.Context) (*MembersWatch, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.cluster.WatchMembers(ctx, &clusterv1.WatchMembersRequest{})
	if err != nil {
		cancel()
		return nil, fromStatus("watch members", err)
	}
	return &MembersWatch{stream: stream, cancel: cancel}, nil
}

// Next returns the next update; ctx bounds the wait.
func (w *MembersWatch) Next(ctx context.Context) (*MembersUpdate, error) {
	type result struct {
		resp *clusterv1.WatchMembersResponse
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		r, err := w.stream.Recv()
		ch <- result{r, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fromStatus("watch members", r.err)
		}
		out := &MembersUpdate{Removed: r.resp.GetRemoved()}
		for _, m := range r.resp.GetMembers() {
			out.Members = append(out.Members, memberFromProto(m))
		}
		return out, nil
	case <-ctx.Done():
		w.cancel() // the pending Recv returns once the stream is cancelled
		return nil, ctx.Err()
	}
}

// Close ends the watch.
func (w *MembersWatch) Close() error {
	w.cancel()
	return nil
}

func memberFromProto(m *clusterv1.Member) Member {
	out := Member{
		PeerID: m.GetPeerId(), Addrs: m.GetAddrs(), Self: m.GetSelf(), Gossip: m.GetGossip(),
		MerkleRoot: m.GetMerkleRoot(), Converged: m.GetConverged(), Revision: m.GetRevision(), Keys: m.GetKeys(),
		StatusError: m.GetStatusError(), Name: m.GetName(), State: m.GetState(), Incarnation: m.GetIncarnation(),
		Admitted: m.GetAdmitted(), HLC: m.GetHlc(),
	}
	if ms := m.GetLastHeardUnixMs(); ms != 0 {
		out.LastHeard = time.UnixMilli(ms)
	}
	if m.LagMs != nil {
		out.Lag, out.LagKnown = time.Duration(m.GetLagMs())*time.Millisecond, true
	}
	return out
}
