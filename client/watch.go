package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	kvv1 "github.com/chorus-kv/chorus/proto/chorus/kv/v1"
)

// EventType says whether an event put or deleted its key.
type EventType int

// Event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

func (t EventType) String() string {
	if t == EventDelete {
		return "DELETE"
	}
	return "PUT"
}

// Event is one change of a watched key.
type Event struct {
	Type EventType
	// KV is the key after the change. For a delete, Value is empty and
	// ModRevision is the delete's revision.
	KV *KeyValue
	// Prev is the key before the change, with WithWatchPrevKV, when known.
	Prev *KeyValue
	// ConvergedHLC is, with WithConverged, the node's HLC when it saw every
	// live member hold the change; 0 otherwise.
	ConvergedHLC uint64
}

// WatchOption modifies a Watch.
type WatchOption func(*kvv1.WatchRequest)

// WithPrefix watches every key with the given key as prefix.
func WithPrefix() WatchOption { return func(r *kvv1.WatchRequest) { r.Prefix = true } }

// WithStartRevision replays changes from rev on before following live ones.
func WithStartRevision(rev int64) WatchOption {
	return func(r *kvv1.WatchRequest) { r.StartRevision = rev }
}

// WithWatchPrevKV asks for each event's previous value.
func WithWatchPrevKV() WatchOption { return func(r *kvv1.WatchRequest) { r.PrevKv = true } }

// WithConverged emits a change only once every live member of the cluster
// holds it (or a newer write for the key). Events then come in the order
// they converge (a key's events in revision order) and carry ConvergedHLC;
// resume a broken watch from ConvergedRevision()+1 (some events may come
// again: compare ModRevision).
func WithConverged() WatchOption { return func(r *kvv1.WatchRequest) { r.Converged = true } }

// Watcher is an open watch. Next may be called from one goroutine at a time.
type Watcher struct {
	stream       kvv1.KVService_WatchClient
	cancel       context.CancelFunc
	startedAfter int64
	converged    int64
	err          error
}

// Watch starts watching key (or, WithPrefix, every key under it). It returns
// once the node has accepted the watch; a compacted start revision fails
// here with ErrCompacted.
func (c *Client) Watch(ctx context.Context, key string, opts ...WatchOption) (*Watcher, error) {
	req := &kvv1.WatchRequest{Key: []byte(key)}
	for _, o := range opts {
		o(req)
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.kv.Watch(ctx, req)
	if err != nil {
		cancel()
		return nil, fromStatus("watch", err)
	}
	w := &Watcher{stream: stream, cancel: cancel}
	first, err := w.recv()
	if err != nil {
		cancel()
		return nil, err
	}
	if !first.GetCreated() {
		cancel()
		return nil, fmt.Errorf("chorus watch: the node's first response was not a creation")
	}
	w.startedAfter = first.GetHeader().GetRevision()
	w.converged = first.GetConvergedRevision()
	return w, nil
}

// StartedAfter is the revision the watch starts after: every event has a
// greater revision. Resume a broken watch from the last event's revision + 1.
func (w *Watcher) StartedAfter() int64 { return w.startedAfter }

// ConvergedRevision is, for a watch WithConverged, a revision at or below
// which every matching change has been received.
func (w *Watcher) ConvergedRevision() int64 { return w.converged }

func (w *Watcher) recv() (*kvv1.WatchResponse, error) {
	resp, err := w.stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("chorus watch: the node ended the stream: %w", ErrUnavailable)
		}
		return nil, fromStatus("watch", err)
	}
	if resp.GetCanceled() {
		// The status that follows says why, as a typed error.
		if _, err := w.stream.Recv(); err != nil && !errors.Is(err, io.EOF) {
			return nil, fromStatus("watch", err)
		}
		return nil, fmt.Errorf("chorus watch: canceled: %s", resp.GetCancelReason())
	}
	return resp, nil
}

// Next blocks for the next batch of events, in revision order. After an
// error the watcher is over; Close it.
func (w *Watcher) Next() ([]Event, error) {
	if w.err != nil {
		return nil, w.err
	}
	resp, err := w.recv()
	if err != nil {
		w.err = err
		return nil, err
	}
	if r := resp.GetConvergedRevision(); r > 0 {
		w.converged = r
	}
	events := make([]Event, len(resp.GetEvents()))
	for i, ev := range resp.GetEvents() {
		events[i] = Event{Type: EventPut, KV: fromKV(ev.GetKv()), Prev: fromKV(ev.GetPrevKv()), ConvergedHLC: ev.GetConvergedHlc()}
		if ev.GetType() == kvv1.Event_TYPE_DELETE {
			events[i].Type = EventDelete
		}
	}
	return events, nil
}

// Events iterates over events until an error, which it yields last, or until
// the loop breaks.
func (w *Watcher) Events() iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for {
			events, err := w.Next()
			if err != nil {
				yield(Event{}, err)
				return
			}
			for _, ev := range events {
				if !yield(ev, nil) {
					return
				}
			}
		}
	}
}

// Close ends the watch.
func (w *Watcher) Close() { w.cancel() }
