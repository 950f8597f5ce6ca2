package etcdapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/atomicfile"
)

// Lease limits, etcd's.
const (
	// MaxLeaseTTL is the longest TTL a lease may be granted, in seconds.
	MaxLeaseTTL = 9_000_000_000
	// minLeaseTTL is the shortest TTL granted: a shorter request gets it.
	minLeaseTTL = 1
)

// lessor keeps this node's leases: a lease lives on the node that granted
// it. They are saved to Config.LeaseFile at most a second after a
// change and when the server closes, and loaded at start, each with its full
// TTL again (as etcd does when a new leader takes over): a restart keeps
// them, a crash may lose the last second of grants and attachments.
//
// A key is attached to a lease at the revision of the put that named it; a
// later write of the key from anywhere else (another node, the Chorus API)
// detaches it, because its revision no longer matches. When a lease expires
// or is revoked, its keys that are still attached are deleted through the
// store's normal write path, so the deletions replicate like any other.
type lessor struct {
	s    *Server
	path string // the lease file; empty: not saved
	mu   struct {
		sync.Mutex
		leases map[int64]*lease
		keys   map[string]attachment
		dirty  bool // changed since saved
	}
}

type lease struct {
	id      int64
	ttl     int64 // granted, in seconds
	expires time.Time
	keys    map[string]struct{}
}

type attachment struct {
	lease  int64
	modRev int64 // the revision of the put that attached it
}

func newLessor(s *Server) (*lessor, error) {
	l := &lessor{s: s}
	l.mu.leases = make(map[int64]*lease)
	l.mu.keys = make(map[string]attachment)
	if s.cfg.LeaseFile != "" {
		l.path = s.cfg.LeaseFile
		if err := l.load(); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *lessor) exists(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.mu.leases[id]
	return ok
}

// leaseOf returns the live lease r is attached to here, 0 if none.
func (l *lessor) leaseOf(r *store.Record) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.mu.keys[string(r.Key)]
	if !ok || a.modRev != r.ModRevision || l.mu.leases[a.lease] == nil {
		return 0
	}
	return a.lease
}

// attachedTo returns the lease r is attached to here, live or being revoked.
func (l *lessor) attachedTo(r *store.Record) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.mu.keys[string(r.Key)]
	if !ok || a.modRev != r.ModRevision {
		return 0
	}
	return a.lease
}

// attach records that key, written at modRev, is attached to lease (0:
// detached). A lease revoked meanwhile leaves the key detached.
func (l *lessor) attach(key []byte, id, modRev int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := string(key)
	old, attached := l.mu.keys[k]
	if !attached && id == 0 {
		return // a plain write of a key without a lease: nothing changes
	}
	if attached {
		if le := l.mu.leases[old.lease]; le != nil {
			delete(le.keys, k)
		}
		delete(l.mu.keys, k)
	}
	l.mu.dirty = true
	le := l.mu.leases[id]
	if id == 0 || le == nil {
		return
	}
	le.keys[k] = struct{}{}
	l.mu.keys[k] = attachment{lease: id, modRev: modRev}
}

func (l *lessor) grant(id, ttl int64) (*lease, error) {
	if ttl > MaxLeaseTTL {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	ttl = max(ttl, minLeaseTTL)
	l.mu.Lock()
	defer l.mu.Unlock()
	if id == 0 {
		for id == 0 || l.mu.leases[id] != nil {
			id = rand.Int64() // positive, as etcd's
		}
	} else if l.mu.leases[id] != nil {
		return nil, rpctypes.ErrGRPCLeaseExist
	}
	le := &lease{id: id, ttl: ttl, expires: time.Now().Add(time.Duration(ttl) * time.Second), keys: map[string]struct{}{}}
	l.mu.leases[id] = le
	l.mu.dirty = true
	return le, nil
}

func (l *lessor) renew(id int64) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	le := l.mu.leases[id]
	if le == nil {
		return 0, false
	}
	le.expires = time.Now().Add(time.Duration(le.ttl) * time.Second)
	return le.ttl, true
}

// revoke ends the lease and deletes the keys still attached to it, in one
// batch. It fails with ErrGRPCLeaseNotFound for an unknown lease.
func (l *lessor) revoke(ctx context.Context, id int64) (int64, error) {
	l.mu.Lock()
	le := l.mu.leases[id]
	if le == nil {
		l.mu.Unlock()
		return 0, rpctypes.ErrGRPCLeaseNotFound
	}
	// Out of the map first, so that no put attaches a key to it meanwhile.
	delete(l.mu.leases, id)
	keys := make([][]byte, 0, len(le.keys))
	for k := range le.keys {
		keys = append(keys, []byte(k))
	}
	l.mu.Unlock()
	slices.SortFunc(keys, compareBytes)

	// The keys' stripes exclude etcd-API writers while the attachments are
	// checked against the store and the deletes are written.
	unlock := l.s.locks.lockKeys(keys...)
	defer unlock()
	var dels []crdt.Entry
	for _, k := range keys {
		r, err := l.s.store.Get(k)
		if err != nil {
			return 0, err
		}
		if r != nil && l.attachedTo(r) == id {
			dels = append(dels, crdt.Entry{Key: k, Tombstone: true})
		}
	}
	rev := l.s.store.Revision()
	if len(dels) > 0 {
		changes, err := l.s.store.WriteBatch(ctx, dels)
		if err != nil {
			l.mu.Lock()
			l.mu.leases[id] = le // the lease stays: the next check tries again
			l.mu.Unlock()
			return 0, err
		}
		rev = changes[len(changes)-1].Record.ModRevision
	}
	l.mu.Lock()
	for k := range le.keys {
		if l.mu.keys[k].lease == id {
			delete(l.mu.keys, k)
		}
	}
	l.mu.dirty = true
	l.mu.Unlock()
	return rev, nil
}

// run revokes expired leases every LeaseCheckInterval, and saves the
// leases at most every leaseSaveInterval when they changed, until the server
// closes; then it saves them a last time.
func (l *lessor) run() {
	t := time.NewTicker(l.s.cfg.LeaseCheckInterval)
	defer t.Stop()
	lastSave := time.Now()
	save := func() {
		if err := l.save(); err != nil {
			l.s.cfg.Logger.Warn("etcd API: saving leases failed; will retry", "file", l.path, "err", err)
		}
		lastSave = time.Now()
	}
	defer save()
	for {
		select {
		case <-l.s.done:
			return
		case now := <-t.C:
			if now.Sub(lastSave) >= leaseSaveInterval {
				save()
			}
			for _, id := range l.expired(now) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if _, err := l.revoke(ctx, id); err != nil && err != rpctypes.ErrGRPCLeaseNotFound {
					l.s.cfg.Logger.Warn("etcd API: deleting the keys of an expired lease failed; will retry", "lease", id, "err", err)
				}
				cancel()
			}
		}
	}
}

func (l *lessor) expired(now time.Time) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []int64
	for id, le := range l.mu.leases {
		if !now.Before(le.expires) {
			ids = append(ids, id)
		}
	}
	return ids
}

func compareBytes(a, b []byte) int {
	return slices.Compare(a, b)
}

// leaseServer serves etcd's Lease service.
type leaseServer struct {
	pb.UnimplementedLeaseServer
	s *Server
}

func (ls *leaseServer) LeaseGrant(ctx context.Context, req *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if req.ID < 0 {
		// etcd's own ids are positive, and clientv3 prints them as
		// unsigned hex: a negative one would not read back the same.
		return nil, status.Errorf(codes.InvalidArgument, "chorus: lease id is %d; it must be 0 (the server picks one) or positive", req.ID)
	}
	le, err := ls.s.leases.grant(req.ID, req.TTL)
	if err != nil {
		return nil, err
	}
	return &pb.LeaseGrantResponse{Header: ls.s.header(ls.s.store.Revision()), ID: le.id, TTL: le.ttl}, nil
}

func (ls *leaseServer) LeaseRevoke(ctx context.Context, req *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	rev, err := ls.s.leases.revoke(ctx, req.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.LeaseRevokeResponse{Header: ls.s.header(rev)}, nil
}

func (ls *leaseServer) LeaseTimeToLive(ctx context.Context, req *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	l := ls.s.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	resp := &pb.LeaseTimeToLiveResponse{Header: ls.s.header(ls.s.store.Revision()), ID: req.ID, TTL: -1}
	le := l.mu.leases[req.ID]
	if le == nil {
		return resp, nil // etcd answers TTL -1 for an unknown lease
	}
	resp.GrantedTTL = le.ttl
	resp.TTL = max(0, int64(time.Until(le.expires).Round(time.Second)/time.Second))
	if req.Keys {
		for k := range le.keys {
			resp.Keys = append(resp.Keys, []byte(k))
		}
		slices.SortFunc(resp.Keys, compareBytes)
	}
	return resp, nil
}

func (ls *leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	l := ls.s.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	resp := &pb.LeaseLeasesResponse{Header: ls.s.header(ls.s.store.Revision())}
	for id := range l.mu.leases {
		resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: id})
	}
	slices.SortFunc(resp.Leases, func(a, b *pb.LeaseStatus) int { return compareInt(a.ID, b.ID) })
	return resp, nil
}

// LeaseKeepAlive renews each lease named on the stream and answers with its
// TTL (0 for an unknown lease, as etcd does).
func (ls *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	return ls.s.serveStream(stream.Context(), func() error {
		for {
			req, err := stream.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			ttl, _ := ls.s.leases.renew(req.ID)
			if err := stream.Send(&pb.LeaseKeepAliveResponse{Header: ls.s.header(ls.s.store.Revision()), ID: req.ID, TTL: ttl}); err != nil {
				return err
			}
		}
	})
}

// serveStream runs a stream's receive loop on a goroutine the server owns,
// and returns when the loop ends, the client goes away or the server closes
// (then the loop ends once gRPC cancels the stream).
func (s *Server) serveStream(ctx context.Context, loop func() error) error {
	done := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		done <- loop()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return toGRPC(ctx.Err())
	case <-s.done:
		return rpctypes.ErrGRPCStopped
	}
}

// leaseSaveInterval is the most often the lease file is rewritten.
const leaseSaveInterval = time.Second

type savedLeases struct {
	Leases []savedLease `json:"leases"`
}

type savedLease struct {
	ID   int64      `json:"id"`
	TTL  int64      `json:"ttl"`
	Keys []savedKey `json:"keys,omitempty"`
}

type savedKey struct {
	Key    []byte `json:"key"`
	ModRev int64  `json:"mod_revision"`
}

// load reads the lease file, if there is one; every lease gets its full TTL.
func (l *lessor) load() error {
	b, err := os.ReadFile(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("etcdapi: read leases: %w", err)
	}
	var saved savedLeases
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("etcdapi: leases file %s is corrupt (remove it to drop the leases): %w", l.path, err)
	}
	now := time.Now()
	for _, sl := range saved.Leases {
		le := &lease{id: sl.ID, ttl: sl.TTL, expires: now.Add(time.Duration(sl.TTL) * time.Second), keys: map[string]struct{}{}}
		for _, k := range sl.Keys {
			le.keys[string(k.Key)] = struct{}{}
			l.mu.keys[string(k.Key)] = attachment{lease: sl.ID, modRev: k.ModRev}
		}
		l.mu.leases[sl.ID] = le
	}
	return nil
}

// save rewrites the lease file if the leases changed: a new file, fsynced,
// renamed over the old one.
func (l *lessor) save() error {
	if l.path == "" {
		return nil
	}
	l.mu.Lock()
	if !l.mu.dirty {
		l.mu.Unlock()
		return nil
	}
	var saved savedLeases
	for id, le := range l.mu.leases {
		sl := savedLease{ID: id, TTL: le.ttl}
		for k := range le.keys {
			if a, ok := l.mu.keys[k]; ok && a.lease == id {
				sl.Keys = append(sl.Keys, savedKey{Key: []byte(k), ModRev: a.modRev})
			}
		}
		saved.Leases = append(saved.Leases, sl)
	}
	l.mu.dirty = false
	l.mu.Unlock()
	b, err := json.Marshal(saved)
	if err == nil {
		err = atomicfile.Write(l.path, b, 0o644)
	}
	if err != nil {
		l.mu.Lock()
		l.mu.dirty = true
		l.mu.Unlock()
	}
	return err
}
