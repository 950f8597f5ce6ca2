package store

import (
	"context"

	"github.com/chorus-kv/chorus/crdt"
)

// op is one write in a request: a local put or delete (stamped by the
// committer) or an entry from elsewhere (already stamped).
type op struct {
	local bool
	// purge removes the entry if it is still this tombstone (garbage
	// collection); it is not a change and gets no revision.
	purge bool
	entry crdt.Entry
}

// request is what a writer hands the committer. The committer fills changes
// (one slot per op, nil where the op changed nothing) and err, then closes done.
type request struct {
	ops     []op
	size    int // key and value bytes, for the batch cap
	changes []*Change
	err     error
	done    chan struct{}
	// compactTo, if set, asks for the change log below this revision to be
	// deleted (Compact); such a request has no ops.
	compactTo int64
	// buffered: the request may be acknowledged once its batch is written,
	// before it is fsynced (ApplyBuffered).
	buffered bool
}

// submit queues req for the committer and waits until its batch is written:
// fsynced, unless every request in it is buffered.
func (s *Store) submit(ctx context.Context, req *request) error {
	req.done = make(chan struct{})
	s.mu.RLock()
	if s.mu.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.queue <- req:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case <-req.done:
		return req.err
	case <-ctx.Done():
		// The write is queued and may still become durable.
		return ctx.Err()
	}
}
