package etcdapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/watch"
)

// progressRetry bounds how long a watch waits in Next while a progress
// request is pending and it could not yet answer (it had events to send or
// log to replay first).
const progressRetry = 20 * time.Millisecond

// watchServer serves etcd's Watch service.
type watchServer struct {
	pb.UnimplementedWatchServer
	s *Server
}

// watchStream is one Watch call: the receive loop (a goroutine the server
// owns) creates and cancels watches; each watch has a goroutine, owned by
// the stream, that sends its events. All sends are serialized by sendMu.
type watchStream struct {
	s      *Server
	stream pb.Watch_WatchServer
	ctx    context.Context // ends with the stream: every watch goroutine stops
	wg     sync.WaitGroup  // the watch goroutines

	sendMu sync.Mutex

	mu struct {
		sync.Mutex
		closed  bool
		nextID  int64
		watches map[int64]*watchCtl
		round   *progressRound // a progress request being answered
		again   bool           // another request came meanwhile
	}
}

// progressRound collects, from every watch of the stream, a revision up to
// which it has sent everything; the stream-wide progress response carries
// the smallest.
type progressRound struct {
	pending map[*watchCtl]struct{}
	min     int64
}

// watchCtl is one watch of a stream.
type watchCtl struct {
	id             int64
	span           keySpan
	opts           watch.Options
	noPut, noDel   bool
	progressNotify bool

	// Touched only by the watch's goroutine (and create, before it starts).
	w        *watch.Watcher
	lastSent int64 // every event up to it has been sent

	mu struct {
		sync.Mutex
		stopNext     context.CancelFunc // interrupts the current Next
		canceled     bool               // by the client: send nothing more
		wantProgress bool               // a progress round waits for it
	}
}

func (ws *watchServer) Watch(stream pb.Watch_WatchServer) error {
	st := &watchStream{s: ws.s, stream: stream}
	st.mu.watches = make(map[int64]*watchCtl)
	ctx, cancel := context.WithCancel(stream.Context())
	st.ctx = ctx
	defer func() {
		st.mu.Lock()
		st.mu.closed = true
		st.mu.Unlock()
		cancel()
		st.wg.Wait()
	}()
	return ws.s.serveStream(ctx, func() error {
		defer cancel() // a send that failed ends the stream too
		for {
			req, err := stream.Recv()
			if err == io.EOF {
				// As in etcd, a client that closed its side keeps its
				// watches until it goes: the JSON gateway closes it after
				// the request body's one create request.
				<-ctx.Done()
				return nil
			}
			if err != nil {
				return err
			}
			switch r := req.RequestUnion.(type) {
			case *pb.WatchRequest_CreateRequest:
				err = st.create(r.CreateRequest)
			case *pb.WatchRequest_CancelRequest:
				err = st.cancelWatch(r.CancelRequest.WatchId)
			case *pb.WatchRequest_ProgressRequest:
				err = st.requestProgress()
			}
			if err != nil {
				return err
			}
		}
	})
}

func (st *watchStream) send(resp *pb.WatchResponse) error {
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	return st.stream.Send(resp)
}

// sendFor sends a response of ctl's unless the client canceled it.
func (st *watchStream) sendFor(ctl *watchCtl, resp *pb.WatchResponse) error {
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	ctl.mu.Lock()
	canceled := ctl.mu.canceled
	ctl.mu.Unlock()
	if canceled {
		return nil
	}
	return st.stream.Send(resp)
}

// create starts a watch: the created response first, then its goroutine.
func (st *watchStream) create(cr *pb.WatchCreateRequest) error {
	s := st.s
	if cr.StartRevision < 0 {
		return st.send(&pb.WatchResponse{Header: s.header(s.hub.Revision()), WatchId: -1, Created: true, Canceled: true,
			CancelReason: "chorus: watch start_revision is negative; it must be 0 (from now) or a revision"})
	}
	if err := checkKeyRange(s.store.Limits(), "watch", cr.Key, cr.RangeEnd); err != nil {
		return st.send(&pb.WatchResponse{Header: s.header(s.hub.Revision()), WatchId: -1, Created: true, Canceled: true,
			CancelReason: toGRPC(err).Error()})
	}
	ctl := &watchCtl{span: spanOf(cr.Key, cr.RangeEnd), progressNotify: cr.ProgressNotify}
	for _, f := range cr.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			ctl.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			ctl.noDel = true
		}
	}
	ctl.opts = watch.Options{Key: cr.Key, PrevKV: cr.PrevKv}
	if cr.StartRevision > 0 {
		// etcd revision R is store revision R-1; the empty store's revision
		// 0 holds no change, so a watch from etcd's 1 starts at the store's 1.
		ctl.opts.StartRevision = max(storeRev(cr.StartRevision), 1)
	}
	if !ctl.span.single {
		ctl.opts.Key, ctl.opts.Prefix = commonPrefix(ctl.span.start, ctl.span.end), true
	}

	st.mu.Lock()
	if st.mu.closed {
		st.mu.Unlock()
		return nil
	}
	id := cr.WatchId
	if id == 0 { // clientv3's AutoWatchID: the server picks
		for st.mu.watches[st.mu.nextID] != nil {
			st.mu.nextID++
		}
		id = st.mu.nextID
		st.mu.nextID++
	} else if st.mu.watches[id] != nil {
		st.mu.Unlock()
		return st.send(&pb.WatchResponse{Header: s.header(s.hub.Revision()), WatchId: -1, Created: true, Canceled: true,
			CancelReason: "etcdserver: mvcc: duplicate watch ID provided on the WatchStream"})
	}
	if n := len(st.mu.watches); n >= s.cfg.MaxWatchesPerStream {
		st.mu.Unlock()
		return st.send(&pb.WatchResponse{Header: s.header(s.hub.Revision()), WatchId: -1, Created: true, Canceled: true,
			CancelReason: fmt.Sprintf("chorus: this stream has %d watches; the limit is %d (--max-watches-per-stream): cancel some, or watch a common prefix", n, s.cfg.MaxWatchesPerStream)})
	}
	ctl.id = id
	w, err := s.hub.Watch(ctl.opts)
	var compacted *store.CompactedError
	switch {
	case errors.As(err, &compacted):
		st.mu.Unlock()
		// etcd creates the watch, then cancels it with compact_revision.
		if err := st.send(&pb.WatchResponse{Header: s.header(s.hub.Revision()), WatchId: id, Created: true}); err != nil {
			return err
		}
		return st.send(&pb.WatchResponse{Header: s.header(s.hub.Revision()), WatchId: id, Canceled: true,
			CompactRevision: etcdRev(compacted.Oldest), CancelReason: "etcdserver: mvcc: required revision has been compacted"})
	case err != nil:
		st.mu.Unlock()
		return st.send(&pb.WatchResponse{Header: s.header(s.hub.Revision()), WatchId: -1, Created: true, Canceled: true,
			CancelReason: toGRPC(err).Error()})
	}
	ctl.w = w
	ctl.lastSent = w.StartedAfter()
	st.mu.watches[id] = ctl
	rev := w.StartedAfter() // clientv3 resumes a watch "from now" at it
	if cr.StartRevision > 0 {
		rev = s.hub.Revision()
	}
	// The created response goes out before the goroutine can send events.
	st.sendMu.Lock()
	err = st.stream.Send(&pb.WatchResponse{Header: s.header(rev), WatchId: id, Created: true})
	st.sendMu.Unlock()
	if err != nil {
		delete(st.mu.watches, id)
		st.mu.Unlock()
		w.Close()
		return err
	}
	st.wg.Add(1)
	st.mu.Unlock()
	go st.run(ctl)
	return nil
}

// commonPrefix is the longest prefix of start shared by every key of
// [start, end) (end nil: no upper bound).
func commonPrefix(start, end []byte) []byte {
	if end == nil {
		return nil
	}
	n := 0
	for n < len(start) && n < len(end) && start[n] == end[n] {
		n++
	}
	return bytes.Clone(start[:n])
}

func (st *watchStream) cancelWatch(id int64) error {
	st.mu.Lock()
	ctl := st.mu.watches[id]
	if ctl == nil {
		st.mu.Unlock()
		return nil // etcd ignores an unknown id too
	}
	delete(st.mu.watches, id)
	st.dropFromRoundLocked(ctl)
	st.sendMu.Lock()
	ctl.mu.Lock()
	ctl.mu.canceled = true
	if ctl.mu.stopNext != nil {
		ctl.mu.stopNext()
	}
	ctl.mu.Unlock()
	err := st.stream.Send(&pb.WatchResponse{Header: st.s.header(st.s.hub.Revision()), WatchId: id, Canceled: true})
	st.sendMu.Unlock()
	st.mu.Unlock()
	return err
}

// requestProgress answers a progress request: once every watch of the
// stream has sent all its events up to a revision, one response with no
// events, watch id -1 and the smallest such revision.
func (st *watchStream) requestProgress() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.mu.round != nil {
		st.mu.again = true
		return nil
	}
	return st.startRoundLocked()
}

// REQUIRES: st.mu held.
func (st *watchStream) startRoundLocked() error {
	if len(st.mu.watches) == 0 {
		return st.send(&pb.WatchResponse{Header: st.s.header(st.s.hub.Revision()), WatchId: -1})
	}
	r := &progressRound{pending: make(map[*watchCtl]struct{}), min: math.MaxInt64}
	for _, ctl := range st.mu.watches {
		r.pending[ctl] = struct{}{}
		ctl.mu.Lock()
		ctl.mu.wantProgress = true
		if ctl.mu.stopNext != nil {
			ctl.mu.stopNext()
		}
		ctl.mu.Unlock()
	}
	st.mu.round = r
	return nil
}

// reportProgress is a watch's answer to the current round.
func (st *watchStream) reportProgress(ctl *watchCtl, rev int64) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.mu.round
	if r == nil {
		return nil
	}
	if _, ok := r.pending[ctl]; !ok {
		return nil
	}
	delete(r.pending, ctl)
	r.min = min(r.min, rev)
	return st.finishRoundLocked()
}

// dropFromRoundLocked stops waiting for a watch that ended.
// REQUIRES: st.mu held.
func (st *watchStream) dropFromRoundLocked(ctl *watchCtl) {
	if r := st.mu.round; r != nil {
		if _, ok := r.pending[ctl]; ok {
			delete(r.pending, ctl)
			_ = st.finishRoundLocked() // a failed send ends the stream anyway
		}
	}
}

// REQUIRES: st.mu held.
func (st *watchStream) finishRoundLocked() error {
	r := st.mu.round
	if len(r.pending) > 0 {
		return nil
	}
	st.mu.round = nil
	rev := r.min
	if rev == math.MaxInt64 { // every watch ended meanwhile
		rev = st.s.hub.Revision()
	}
	if err := st.send(&pb.WatchResponse{Header: st.s.header(rev), WatchId: -1}); err != nil {
		return err
	}
	if st.mu.again {
		st.mu.again = false
		return st.startRoundLocked()
	}
	return nil
}

// nextContext is the context of one Next: it ends with the stream, when
// interrupted (cancel, progress request), and at the next progress
// notification.
func (st *watchStream) nextContext(ctl *watchCtl, notifyAt time.Time) (context.Context, context.CancelFunc) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	var ctx context.Context
	var cancel context.CancelFunc
	switch {
	case ctl.mu.wantProgress:
		ctx, cancel = context.WithTimeout(st.ctx, progressRetry)
	case ctl.progressNotify:
		ctx, cancel = context.WithDeadline(st.ctx, notifyAt)
	default:
		ctx, cancel = context.WithCancel(st.ctx)
	}
	ctl.mu.stopNext = cancel
	return ctx, cancel
}

// run sends ctl's events until the stream ends or the watch is canceled.
func (st *watchStream) run(ctl *watchCtl) {
	defer st.wg.Done()
	defer func() {
		ctl.w.Close()
		st.mu.Lock()
		if st.mu.watches[ctl.id] == ctl {
			delete(st.mu.watches, ctl.id)
		}
		st.dropFromRoundLocked(ctl)
		st.mu.Unlock()
	}()
	s := st.s
	interval := s.cfg.ProgressNotifyInterval
	notifyAt := time.Now().Add(interval)
	sentSince := false // events sent since the last progress notification
	for {
		ctx, cancel := st.nextContext(ctl, notifyAt)
		events, err := ctl.w.Next(ctx)
		cancel()
		if st.ctx.Err() != nil || ctl.isCanceled() {
			return
		}
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			if errors.Is(err, watch.ErrWatcherTooSlow) {
				// etcd lets a slow watcher catch up from its history: so do we,
				// from the change log.
				opts := ctl.opts
				opts.StartRevision = ctl.lastSent + 1
				// The old watcher first: its slot (watch.Config.MaxWatchers)
				// goes to the new one.
				ctl.w.Close()
				w, werr := s.hub.Watch(opts)
				if werr == nil {
					ctl.w = w
					continue
				}
				err = werr
			}
			st.end(ctl, err)
			return
		}
		if len(events) > 0 {
			resp := &pb.WatchResponse{WatchId: ctl.id}
			for i := range events {
				if ev := s.event(ctl, &events[i]); ev != nil {
					resp.Events = append(resp.Events, ev)
				}
			}
			last := events[len(events)-1].Record.ModRevision
			if len(resp.Events) > 0 {
				resp.Header = s.header(max(last, s.hub.Revision()))
				if err := st.sendFor(ctl, resp); err != nil {
					return
				}
				sentSince = true
			}
			ctl.lastSent = last
		}
		ctl.mu.Lock()
		wantProgress := ctl.mu.wantProgress
		ctl.mu.Unlock()
		notifyDue := ctl.progressNotify && !time.Now().Before(notifyAt)
		if !wantProgress && !notifyDue {
			continue
		}
		rev, ok := ctl.w.Progress()
		if !ok {
			continue // events or log first; Next returns them at once
		}
		ctl.lastSent = max(ctl.lastSent, rev)
		if wantProgress {
			ctl.mu.Lock()
			ctl.mu.wantProgress = false
			ctl.mu.Unlock()
			if err := st.reportProgress(ctl, rev); err != nil {
				return
			}
		}
		if notifyDue {
			if !sentSince {
				if err := st.sendFor(ctl, &pb.WatchResponse{Header: s.header(rev), WatchId: ctl.id}); err != nil {
					return
				}
			}
			sentSince = false
			notifyAt = time.Now().Add(interval)
		}
	}
}

func (c *watchCtl) isCanceled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.canceled
}

// end tells the client why the watch ended: compaction with
// compact_revision, as etcd does, anything else with a cancel reason.
func (st *watchStream) end(ctl *watchCtl, err error) {
	resp := &pb.WatchResponse{Header: st.s.header(st.s.hub.Revision()), WatchId: ctl.id, Canceled: true}
	var compacted *store.CompactedError
	if errors.As(err, &compacted) {
		resp.CompactRevision = etcdRev(compacted.Oldest)
		resp.CancelReason = "etcdserver: mvcc: required revision has been compacted"
	} else {
		resp.CancelReason = toGRPC(err).Error()
	}
	_ = st.sendFor(ctl, resp)
}

// event converts a hub event for ctl, or returns nil when ctl's range or
// filters leave it out.
func (s *Server) event(ctl *watchCtl, ev *watch.Event) *mvccpb.Event {
	if !ctl.span.contains(ev.Record.Key) {
		return nil
	}
	out := &mvccpb.Event{}
	if ev.Type == watch.Delete {
		if ctl.noDel {
			return nil
		}
		out.Type, out.Kv = mvccpb.DELETE, tombstoneKV(&ev.Record)
	} else {
		if ctl.noPut {
			return nil
		}
		out.Type, out.Kv = mvccpb.PUT, s.keyValue(&ev.Record)
	}
	if ev.Prev != nil {
		out.PrevKv = s.keyValue(ev.Prev)
	}
	return out
}
