package etcdapi

import (
	"bytes"
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
)

// txnExec runs the operations of a Put, a DeleteRange or a Txn, under the
// caller's locks: reads before the first write are served at once, writes
// are collected and committed together (one store batch, so all or none
// after a crash), and reads after a write are served after the commit, so
// they see it.
type txnExec struct {
	s       *Server
	writes  []crdt.Entry
	onWrite []func(*store.Change) // one per write: fills its response
	late    []func() error        // reads that follow a write
	headers []**pb.ResponseHeader // of nested responses, set after the commit
	leases  []leaseChange         // attachments to record once durable
	budget  *respBudget           // bounds the key-values its Ranges hold
	readRev int64                 // the revision reads were served at
	lastRev int64                 // the revision of the last write, once committed
}

type leaseChange struct {
	key    []byte
	lease  int64 // 0: detach
	change int   // index in writes
}

// header is the response header: at the last write's revision, or at the
// revision reads were served at.
func (x *txnExec) header() *pb.ResponseHeader {
	rev := x.lastRev
	if rev == 0 {
		rev = x.readRev
		if rev == 0 {
			rev = x.s.store.Revision()
		}
	}
	return x.s.header(rev)
}

func (x *txnExec) wrote() bool { return len(x.writes) > 0 }

func (x *txnExec) read(fn func() error) error {
	if x.wrote() {
		x.late = append(x.late, fn)
		return nil
	}
	if x.readRev == 0 {
		x.readRev = x.s.store.Revision()
	}
	return fn()
}

func (x *txnExec) write(e crdt.Entry, fill func(*store.Change)) {
	x.writes = append(x.writes, e)
	x.onWrite = append(x.onWrite, fill)
}

// commit writes the collected writes in one batch, fills their responses,
// records lease attachments and serves the late reads.
func (x *txnExec) commit(ctx context.Context) error {
	if x.wrote() {
		if check := x.s.cfg.CheckWrite; check != nil {
			for i := range x.writes {
				if err := check(x.writes[i].Key); err != nil {
					return status.Error(codes.InvalidArgument, err.Error())
				}
			}
		}
		changes, err := x.s.store.WriteBatch(ctx, x.writes)
		if err != nil {
			return err
		}
		for i, c := range changes {
			x.onWrite[i](c)
		}
		for _, lc := range x.leases {
			x.s.leases.attach(lc.key, lc.lease, changes[lc.change].Record.ModRevision)
		}
		x.lastRev = changes[len(changes)-1].Record.ModRevision
	}
	for _, fn := range x.late {
		if err := fn(); err != nil {
			return err
		}
	}
	h := x.header()
	for _, p := range x.headers {
		*p = h
	}
	return nil
}

func (x *txnExec) put(req *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkPut(req); err != nil {
		return nil, err
	}
	if req.Lease != 0 && !x.s.leases.exists(req.Lease) {
		return nil, rpctypes.ErrGRPCLeaseNotFound
	}
	value, lease := req.Value, req.Lease
	if req.IgnoreValue || req.IgnoreLease {
		cur, err := x.s.store.Get(req.Key)
		if err != nil {
			return nil, err
		}
		if cur == nil {
			return nil, rpctypes.ErrGRPCKeyNotFound
		}
		if req.IgnoreValue {
			value = cur.Value
		}
		if req.IgnoreLease {
			lease = x.s.leases.leaseOf(cur)
		}
	}
	resp := &pb.PutResponse{}
	x.leases = append(x.leases, leaseChange{key: req.Key, lease: lease, change: len(x.writes)})
	prevKV := req.PrevKv
	x.write(crdt.Entry{Key: req.Key, Value: value}, func(c *store.Change) {
		if prevKV && c.Prev.Live() {
			resp.PrevKv = x.s.keyValue(c.Prev)
		}
	})
	return resp, nil
}

func (x *txnExec) deleteRange(req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if len(req.Key) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	if err := checkKeyRange(x.s.store.Limits(), "delete", req.Key, req.RangeEnd); err != nil {
		return nil, err
	}
	resp := &pb.DeleteRangeResponse{}
	fill := func(c *store.Change) {
		if c.PrevLive {
			resp.Deleted++
			if req.PrevKv && c.Prev.Live() {
				resp.PrevKvs = append(resp.PrevKvs, x.s.keyValue(c.Prev))
			}
		}
	}
	sp := spanOf(req.Key, req.RangeEnd)
	if sp.single {
		// The tombstone is written even when the key is unknown here, so that
		// it wins over older writes still on their way from other nodes.
		x.write(crdt.Entry{Key: req.Key, Tombstone: true}, fill)
		x.leases = append(x.leases, leaseChange{key: req.Key, change: len(x.writes) - 1})
		return resp, nil
	}
	_, err := x.s.forEach(sp, true, func(r *store.Record) (bool, error) {
		x.write(crdt.Entry{Key: r.Key, Tombstone: true}, fill)
		x.leases = append(x.leases, leaseChange{key: r.Key, change: len(x.writes) - 1})
		return true, nil
	})
	return resp, err
}

// rangeOp serves a Range of a Txn into the returned response (filled in
// after the commit when it follows a write).
func (x *txnExec) rangeOp(req *pb.RangeRequest) (*pb.ResponseOp, error) {
	out := &pb.ResponseOp{}
	err := x.read(func() error {
		r, err := x.s.rangeKeys(req, x.budget)
		if err != nil {
			return err
		}
		out.Response = &pb.ResponseOp_ResponseRange{ResponseRange: r}
		return nil
	})
	return out, err
}

// ops runs a branch of a Txn.
func (x *txnExec) ops(reqs []*pb.RequestOp) ([]*pb.ResponseOp, error) {
	out := make([]*pb.ResponseOp, 0, len(reqs))
	for _, op := range reqs {
		switch r := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			resp, err := x.rangeOp(r.RequestRange)
			if err != nil {
				return nil, err
			}
			out = append(out, resp)
		case *pb.RequestOp_RequestPut:
			resp, err := x.put(r.RequestPut)
			if err != nil {
				return nil, err
			}
			x.headers = append(x.headers, &resp.Header)
			out = append(out, &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: resp}})
		case *pb.RequestOp_RequestDeleteRange:
			resp, err := x.deleteRange(r.RequestDeleteRange)
			if err != nil {
				return nil, err
			}
			x.headers = append(x.headers, &resp.Header)
			out = append(out, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: resp}})
		case *pb.RequestOp_RequestTxn:
			resp, err := x.txn(r.RequestTxn)
			if err != nil {
				return nil, err
			}
			x.headers = append(x.headers, &resp.Header)
			out = append(out, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: resp}})
		default:
			return nil, rpctypes.ErrGRPCEmptyKey // an empty RequestOp: etcd fails it likewise
		}
	}
	return out, nil
}

// txn evaluates a (nested) Txn's compares against the state before this
// Txn's writes and runs the chosen branch.
func (x *txnExec) txn(req *pb.TxnRequest) (*pb.TxnResponse, error) {
	ok := true
	for _, c := range req.Compare {
		match, err := x.s.compare(c)
		if err != nil {
			return nil, err
		}
		if !match {
			ok = false
			break
		}
	}
	branch := req.Success
	if !ok {
		branch = req.Failure
	}
	resps, err := x.ops(branch)
	if err != nil {
		return nil, err
	}
	return &pb.TxnResponse{Succeeded: ok, Responses: resps}, nil
}

// txn serves a Txn, atomically against every other etcd-API writer of this
// node (see keyLocks).
func (s *Server) txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	if s.store.CatchingUp() { // its comparisons and reads would see what damage left
		return nil, store.ErrCatchingUp
	}
	if n := proto.Size(req); n > MaxRequestBytes {
		return nil, errTooLarge("txn request", n)
	}
	if err := checkTxnDepth(req, MaxTxnDepth); err != nil {
		return nil, err
	}
	if err := checkTxn(req); err != nil {
		return nil, err
	}
	keys, spans := txnKeys(req, nil)
	var unlock func()
	if spans {
		unlock = s.locks.lockAll()
	} else {
		unlock = s.locks.lockKeys(keys...)
	}
	defer unlock()
	x := &txnExec{s: s, budget: newBudget(s.cfg.MaxRangeResponseBytes)}
	if x.readRev == 0 {
		x.readRev = s.store.Revision()
	}
	resp, err := x.txn(req)
	if err != nil {
		return nil, err
	}
	if err := x.commit(ctx); err != nil {
		return nil, err
	}
	resp.Header = x.header()
	return resp, nil
}

// checkTxn applies etcd's limits: at most MaxTxnOps compares and operations
// per branch, no key written twice in a branch.
func checkTxn(req *pb.TxnRequest) error {
	if len(req.Compare) > MaxTxnOps || len(req.Success) > MaxTxnOps || len(req.Failure) > MaxTxnOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, c := range req.Compare {
		if len(c.Key) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
	}
	for _, branch := range [][]*pb.RequestOp{req.Success, req.Failure} {
		var puts [][]byte
		var dels []keySpan
		for _, op := range branch {
			switch r := op.Request.(type) {
			case *pb.RequestOp_RequestPut:
				for _, p := range puts {
					if bytes.Equal(p, r.RequestPut.Key) {
						return rpctypes.ErrGRPCDuplicateKey
					}
				}
				puts = append(puts, r.RequestPut.Key)
			case *pb.RequestOp_RequestDeleteRange:
				dels = append(dels, spanOf(r.RequestDeleteRange.Key, r.RequestDeleteRange.RangeEnd))
			case *pb.RequestOp_RequestTxn:
				if err := checkTxn(r.RequestTxn); err != nil {
					return err
				}
			}
		}
		for _, p := range puts {
			for _, d := range dels {
				if d.contains(p) {
					return rpctypes.ErrGRPCDuplicateKey
				}
			}
		}
	}
	return nil
}

// txnKeys lists the single keys a Txn compares, reads or writes, and reports
// whether it touches a key range (then it locks everything).
func txnKeys(req *pb.TxnRequest, keys [][]byte) ([][]byte, bool) {
	spans := false
	for _, c := range req.Compare {
		keys = append(keys, c.Key)
		spans = spans || len(c.RangeEnd) > 0
	}
	for _, branch := range [][]*pb.RequestOp{req.Success, req.Failure} {
		for _, op := range branch {
			switch r := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				keys = append(keys, r.RequestRange.Key)
				spans = spans || len(r.RequestRange.RangeEnd) > 0
			case *pb.RequestOp_RequestPut:
				keys = append(keys, r.RequestPut.Key)
			case *pb.RequestOp_RequestDeleteRange:
				keys = append(keys, r.RequestDeleteRange.Key)
				spans = spans || len(r.RequestDeleteRange.RangeEnd) > 0
			case *pb.RequestOp_RequestTxn:
				var sub bool
				keys, sub = txnKeys(r.RequestTxn, keys)
				spans = spans || sub
			}
		}
	}
	return keys, spans
}

// compare evaluates one compare with etcd's rules: over a range, every key
// must match; a missing key has zero versions and revisions, and fails every
// compare on its value.
func (s *Server) compare(c *pb.Compare) (bool, error) {
	if err := checkKeyRange(s.store.Limits(), "compare", c.Key, c.RangeEnd); err != nil {
		return false, err
	}
	match, seen := true, false
	_, err := s.forEach(spanOf(c.Key, c.RangeEnd), false, func(r *store.Record) (bool, error) {
		seen = true
		if !compareKV(c, s.keyValue(r)) {
			match = false
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return false, err
	}
	if !seen {
		if c.Target == pb.Compare_VALUE {
			return false, nil
		}
		return compareKV(c, &mvccpb.KeyValue{}), nil
	}
	return match, nil
}

func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var r int
	switch c.Target {
	case pb.Compare_VALUE:
		r = bytes.Compare(kv.Value, c.GetValue())
	case pb.Compare_VERSION:
		r = compareInt(kv.Version, c.GetVersion())
	case pb.Compare_CREATE:
		r = compareInt(kv.CreateRevision, c.GetCreateRevision())
	case pb.Compare_MOD:
		r = compareInt(kv.ModRevision, c.GetModRevision())
	case pb.Compare_LEASE:
		r = compareInt(kv.Lease, c.GetLease())
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return r == 0
	case pb.Compare_GREATER:
		return r > 0
	case pb.Compare_LESS:
		return r < 0
	case pb.Compare_NOT_EQUAL:
		return r != 0
	}
	return false
}
