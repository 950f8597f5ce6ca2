package etcdapi

import (
	"context"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MemberState is what the node's failure detector holds of a member.
type MemberState int

// The member states. MemberUnknown is a member the detector has not heard
// from (admitted, not yet seen).
const (
	MemberUnknown MemberState = iota
	MemberAlive
	MemberSuspect
	MemberDead
	MemberLeft
)

// Member is one member of the cluster as the node knows it.
type Member struct {
	// ID is the member's peer id (text): the etcd member name, and the
	// source of its etcd member id.
	ID string
	// ClientURLs are the URLs of the member's etcd API as the member itself
	// announced them; none when it serves none, or has not been heard from.
	ClientURLs []string
	// State is what the node's failure detector holds of it.
	State MemberState
}

// Membership is the cluster's membership as the node knows it (the node
// implements it over its member list and failure detector, which carry the
// client URLs). It is safe for concurrent use.
type Membership interface {
	// Members returns the cluster's members, in any order. This node may be
	// among them: MemberList lists it from Config either way.
	Members() []Member
}

// noMembers is the default Membership: no other member.
type noMembers struct{}

func (noMembers) Members() []Member { return nil }

// clusterServer serves etcd's Cluster service: MemberList only.
type clusterServer struct {
	pb.UnimplementedClusterServer
	s *Server
}

// MemberList lists this node and every member of Config.Members (see
// memberList).
func (cs *clusterServer) MemberList(context.Context, *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	s := cs.s
	self := Member{ID: s.cfg.NodeID, ClientURLs: []string{s.ClientURL()}, State: MemberAlive}
	return &pb.MemberListResponse{Header: s.header(s.store.Revision()), Members: memberList(self, s.cfg.Members.Members())}, nil
}

// memberList is etcd's member list: self, then every other member once
// (the first entry of an id wins), each named by its peer id, with the
// member id derived from it (hashID) and the client URLs it announced; a
// member held dead or left is listed without URLs (its process is gone or
// out of reach: a client that syncs its endpoints from the list should
// not dial it). Sorted by name.
func memberList(self Member, others []Member) []*pb.Member {
	out := []*pb.Member{{ID: hashID([]byte(self.ID)), Name: self.ID, ClientURLs: slices.Clone(self.ClientURLs)}}
	listed := map[string]bool{self.ID: true}
	for _, m := range others {
		if m.ID == "" || listed[m.ID] {
			continue
		}
		listed[m.ID] = true
		pm := &pb.Member{ID: hashID([]byte(m.ID)), Name: m.ID}
		if m.State != MemberDead && m.State != MemberLeft && len(m.ClientURLs) > 0 {
			pm.ClientURLs = slices.Clone(m.ClientURLs)
		}
		out = append(out, pm)
	}
	slices.SortFunc(out, func(a, b *pb.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// maintenanceServer serves etcd's Maintenance service: Status and Alarm.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}

func (ms *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	s := ms.s
	rev := s.store.Revision()
	size := dirSize(s.cfg.StorePath)
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
// by it; an empty dir, or one that cannot be read, gives 1).
func dirSize(dir string) int64 {
	var n int64
	if dir == "" {
		return 1
	}
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
