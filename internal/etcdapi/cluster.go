package etcdapi

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Membership timing: how long MemberList and the refresh wait for one
// member's answer, how often each node asks its direct peers, and how long a
// member not heard of (directly or through a peer) stays listed.
const (
	memberInfoTimeout = 2 * time.Second
	memberRefresh     = 2 * time.Second
	memberTTL         = 30 * time.Second
)

// memberProtocol is the libp2p protocol on which a node tells the others of
// its cluster its etcd client URL, and the members it has heard of.
func memberProtocol(cluster string) protocol.ID {
	return protocol.ID("/chorus/" + cluster + "/etcd-member/1")
}

// memberInfo is one member as a node reports it.
type memberInfo struct {
	Name       string   `json:"name"`
	ClientURLs []string `json:"client_urls"`
	// AgeMillis is how long ago the reporter (or the node it heard from)
	// last heard from the member itself; 0 for the reporter.
	AgeMillis int64 `json:"age_ms"`
}

// memberView is what a node knows of the cluster's members: GossipSub does
// not connect every node to every other, so a node learns of members beyond
// its direct peers from what those peers report (their own view, aged).
type memberView struct {
	mu      sync.Mutex
	members map[string]viewEntry // by name (peer id)
}

type viewEntry struct {
	urls []string
	seen time.Time // when the member itself was last heard from
}

func (v *memberView) learn(infos []memberInfo, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, m := range infos {
		if m.Name == "" || m.AgeMillis < 0 {
			continue
		}
		seen := now.Add(-time.Duration(m.AgeMillis) * time.Millisecond)
		if cur, ok := v.members[m.Name]; !ok || seen.After(cur.seen) {
			v.members[m.Name] = viewEntry{urls: m.ClientURLs, seen: seen}
		}
	}
}

// fresh returns the members heard of within memberTTL, dropping the others.
func (v *memberView) fresh(now time.Time) []memberInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []memberInfo
	for name, e := range v.members {
		age := now.Sub(e.seen)
		if age > memberTTL {
			delete(v.members, name)
			continue
		}
		out = append(out, memberInfo{Name: name, ClientURLs: e.urls, AgeMillis: max(0, age.Milliseconds())})
	}
	return out
}

// report is what this node answers: itself, then its view.
func (s *Server) report() []memberInfo {
	self := memberInfo{Name: s.cfg.NodeID.String(), ClientURLs: []string{s.ClientURL()}}
	var out []memberInfo
	for _, m := range s.view.fresh(time.Now()) {
		if m.Name != self.Name {
			out = append(out, m)
		}
	}
	return append([]memberInfo{self}, out...)
}

func (s *Server) serveMemberInfo(str network.Stream) {
	defer str.Close()
	_ = str.SetDeadline(time.Now().Add(memberInfoTimeout))
	_ = json.NewEncoder(str).Encode(s.report())
}

// askMember asks p for its report and learns from it; it reports whether p
// answered (a member without the etcd API, or unreachable, does not).
func (s *Server) askMember(ctx context.Context, p peer.ID) bool {
	ctx, cancel := context.WithTimeout(ctx, memberInfoTimeout)
	defer cancel()
	str, err := s.cfg.Host.NewStream(ctx, p, memberProtocol(s.cfg.Cluster))
	if err != nil {
		return false
	}
	defer str.Close()
	_ = str.SetDeadline(time.Now().Add(memberInfoTimeout))
	var infos []memberInfo
	if err := json.NewDecoder(io.LimitReader(str, 1<<20)).Decode(&infos); err != nil || len(infos) == 0 {
		return false
	}
	infos[0].Name, infos[0].AgeMillis = p.String(), 0 // the first is the peer itself: trust only its id
	s.view.learn(infos, time.Now())
	return true
}

// askPeers asks every direct peer, in parallel.
func (s *Server) askPeers(ctx context.Context) {
	if s.cfg.Host == nil {
		return
	}
	var wg sync.WaitGroup
	for _, p := range s.cfg.Peers() {
		wg.Go(func() { s.askMember(ctx, p) })
	}
	wg.Wait()
}

// refreshMembers asks the direct peers every memberRefresh until the server
// closes.
func (s *Server) refreshMembers() {
	// ctx ends the asks in flight when the server closes.
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-s.done:
		case <-ctx.Done():
		}
		cancel()
	}()
	defer func() {
		cancel()
		<-stopped
	}()
	t := time.NewTicker(memberRefresh)
	defer t.Stop()
	for {
		s.askPeers(ctx)
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

// clusterServer serves etcd's Cluster service: MemberList only.
type clusterServer struct {
	pb.UnimplementedClusterServer
	s *Server
}

// MemberList lists this node and every member it has heard of within
// memberTTL (its direct peers are asked afresh), each named by its peer id,
// with the etcd client URL it reports; then the other members of the
// cluster (Config.Members), which serve no etcd API, without a URL.
func (cs *clusterServer) MemberList(ctx context.Context, _ *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	s := cs.s
	s.askPeers(ctx)
	var members []*pb.Member
	listed := map[string]bool{}
	for _, m := range s.report() {
		members = append(members, &pb.Member{ID: hashID([]byte(m.Name)), Name: m.Name, ClientURLs: m.ClientURLs})
		listed[m.Name] = true
	}
	members[0].ID = s.memberID
	for _, p := range s.cfg.Members() {
		if name := p.String(); !listed[name] {
			members = append(members, &pb.Member{ID: hashID([]byte(name)), Name: name})
			listed[name] = true
		}
	}
	slices.SortFunc(members, func(a, b *pb.Member) int { return compareBytes([]byte(a.Name), []byte(b.Name)) })
	return &pb.MemberListResponse{Header: s.header(s.store.Revision()), Members: members}, nil
}

// maintenanceServer serves etcd's Maintenance service: Status and Alarm.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}

func (ms *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	s := ms.s
	rev := s.store.Revision()
	size := dirSize(filepath.Join(s.cfg.DataDir, "db"))
	return &pb.StatusResponse{
		Header:  s.header(rev),
		Version: APIVersion,
		DbSize:  size,
		// Every node takes writes: each answers as its own leader.
		Leader:           s.memberID,
		RaftIndex:        uint64(etcdRev(rev)),
		RaftTerm:         1,
		RaftAppliedIndex: uint64(etcdRev(rev)),
		DbSizeInUse:      size,
		StorageVersion:   "3.6.0",
	}, nil
}

// dirSize is the bytes of the files under dir, at least 1 (etcdctl divides
// by it).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return max(n, 1)
}

// Alarm lists no alarms (Chorus raises none); activating or deactivating
// one is not supported.
func (ms *maintenanceServer) Alarm(ctx context.Context, req *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if req.Action != pb.AlarmRequest_GET {
		return nil, status.Errorf(codes.Unimplemented, "method Alarm with action %s not implemented: Chorus raises no alarms", req.Action)
	}
	return &pb.AlarmResponse{Header: ms.s.header(ms.s.store.Revision())}, nil
}
