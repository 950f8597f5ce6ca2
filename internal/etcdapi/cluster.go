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

// memberInfoTimeout bounds how long MemberList waits for a member's answer.
const memberInfoTimeout = 2 * time.Second

// memberProtocol is the libp2p protocol on which a node tells the others of
// its cluster its etcd client URL.
func memberProtocol(cluster string) protocol.ID {
	return protocol.ID("/chorus/" + cluster + "/etcd-member/1")
}

// memberInfo is what a node answers on memberProtocol.
type memberInfo struct {
	Name       string   `json:"name"`
	ClientURLs []string `json:"client_urls"`
}

func (s *Server) serveMemberInfo(str network.Stream) {
	defer str.Close()
	_ = str.SetDeadline(time.Now().Add(memberInfoTimeout))
	_ = json.NewEncoder(str).Encode(memberInfo{Name: s.cfg.NodeID.String(), ClientURLs: []string{s.ClientURL()}})
}

// askMember asks p for its etcd client URL; a member without the etcd API
// (or unreachable) is listed without one.
func (s *Server) askMember(ctx context.Context, p peer.ID) *pb.Member {
	m := &pb.Member{ID: hashID([]byte(p)), Name: p.String()}
	if s.cfg.Host == nil {
		return m
	}
	ctx, cancel := context.WithTimeout(ctx, memberInfoTimeout)
	defer cancel()
	str, err := s.cfg.Host.NewStream(ctx, p, memberProtocol(s.cfg.Cluster))
	if err != nil {
		return m
	}
	defer str.Close()
	_ = str.SetDeadline(time.Now().Add(memberInfoTimeout))
	var info memberInfo
	if err := json.NewDecoder(io.LimitReader(str, 64<<10)).Decode(&info); err != nil {
		return m
	}
	m.ClientURLs = info.ClientURLs
	return m
}

// clusterServer serves etcd's Cluster service: MemberList only.
type clusterServer struct {
	pb.UnimplementedClusterServer
	s *Server
}

// MemberList lists this node and the cluster's other nodes (the gossip
// topic's peers), each named by its peer id, with its etcd client URL.
func (cs *clusterServer) MemberList(ctx context.Context, _ *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	s := cs.s
	peers := s.cfg.Peers()
	members := make([]*pb.Member, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() { members[i] = s.askMember(ctx, p) })
	}
	wg.Wait()
	members = append(members, &pb.Member{ID: s.memberID, Name: s.cfg.NodeID.String(), ClientURLs: []string{s.ClientURL()}})
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
		RaftIndex:        uint64(rev),
		RaftTerm:         1,
		RaftAppliedIndex: uint64(rev),
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
