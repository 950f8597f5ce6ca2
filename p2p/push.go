package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

// ErrNotEnoughReplicas is returned by Push when fewer than the peers asked
// for confirmed the write in time. Use errors.As with *ReplicasError.
var ErrNotEnoughReplicas = errors.New("p2p: not enough replicas")

// ReplicasError says how many peers confirmed a push, of how many wanted.
type ReplicasError struct {
	Acked, Wanted, Connected int
	Cause                    error // why the last attempt ended, if any
}

func (e *ReplicasError) Error() string {
	msg := fmt.Sprintf("write is durable on this node but reached %d of %d replicas (%d peers connected); it will still spread",
		e.Acked, e.Wanted, e.Connected)
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Is makes errors.Is(err, ErrNotEnoughReplicas) true.
func (e *ReplicasError) Is(target error) bool { return target == ErrNotEnoughReplicas }

// Push sends this node's entries directly to k connected peers and returns
// once k have applied them durably. Peers are tried in random order; a peer
// that fails is replaced by another until none is left or ctx (or
// PushTimeout, when ctx has no deadline) ends.
func (r *Replicator) Push(ctx context.Context, entries []crdt.Entry, k int) (int, error) {
	if k <= 0 {
		return 0, nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.cfg.PushTimeout)
		defer cancel()
	}
	data, err := EncodeBatch(entries)
	if err != nil {
		return 0, fmt.Errorf("p2p: encode push: %w", err)
	}
	peers := r.cfg.Host.Network().Peers()
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	results := make(chan error)
	next, inFlight, acked := 0, 0, 0
	var lastErr error
	launch := func() {
		p := peers[next]
		next++
		inFlight++
		go func() { results <- r.pushTo(ctx, p, data) }()
	}
	for inFlight < k && next < len(peers) {
		launch()
	}
	for inFlight > 0 {
		err := <-results
		inFlight--
		if err == nil {
			acked++
			continue
		}
		lastErr = err
		if acked+inFlight < k && next < len(peers) && ctx.Err() == nil {
			launch()
		}
	}
	if acked >= k {
		return acked, nil
	}
	if ctx.Err() != nil {
		lastErr = ctx.Err()
	}
	return acked, &ReplicasError{Acked: acked, Wanted: k, Connected: len(peers), Cause: lastErr}
}

// pushTo sends one framed batch to p and waits for its ack.
func (r *Replicator) pushTo(ctx context.Context, p peer.ID, data []byte) error {
	s, err := r.cfg.Host.NewStream(ctx, p, PushProtocol(r.cfg.Cluster))
	if err != nil {
		return fmt.Errorf("p2p: push to %s: %w", p, err)
	}
	defer s.Close()
	deadline := time.Now().Add(r.cfg.PushTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = s.SetDeadline(deadline)
	if err := writeFrame(s, data); err != nil {
		s.Reset()
		return fmt.Errorf("p2p: push to %s: %w", p, err)
	}
	frame, err := readFrame(bufio.NewReader(s), 64<<10)
	if err != nil {
		s.Reset()
		return fmt.Errorf("p2p: push to %s: read ack: %w", p, err)
	}
	var ack replicationv1.PushAck
	if err := proto.Unmarshal(frame, &ack); err != nil {
		return fmt.Errorf("p2p: push to %s: ack does not decode: %w", p, err)
	}
	if ack.GetError() != "" {
		return fmt.Errorf("p2p: push to %s: refused: %s", p, ack.GetError())
	}
	return nil
}

// handlePush serves a push from a peer: the batch is checked as gossip is
// (every entry's origin must be the sending peer), applied durably, then
// acknowledged.
func (r *Replicator) handlePush(s network.Stream) {
	if !r.enterHandler() {
		s.Reset()
		return
	}
	defer r.leaveHandler()
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(r.cfg.PushTimeout))
	from := s.Conn().RemotePeer()
	data, err := readFrame(bufio.NewReader(s), r.validator.MaxMessageBytes)
	if err != nil {
		if !errors.Is(err, ErrTooLarge) {
			err = fmt.Errorf("%w: %w", ErrUndecodable, err)
		}
		r.rejected.count(err)
		s.Reset()
		return
	}
	ack := &replicationv1.PushAck{}
	var entries []crdt.Entry
	if r.cfg.Admit != nil {
		err = r.cfg.Admit(from)
	}
	if err == nil {
		entries, err = r.validator.DecodeBatch(data, from, true)
	}
	if err != nil {
		r.rejected.count(err)
		ack.Error = err.Error()
	} else if changes, err := r.applyPushed(entries); err != nil {
		r.applyErrors.Add(1)
		ack.Error = err.Error()
	} else {
		r.received.Add(1)
		r.receivedEntries.Add(int64(len(entries)))
		r.applied.Add(int64(len(changes)))
	}
	b, _ := proto.Marshal(ack)
	if err := writeFrame(s, b); err != nil {
		s.Reset()
	}
}

func (r *Replicator) applyPushed(entries []crdt.Entry) ([]store.Change, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.PushTimeout)
	defer cancel()
	return r.cfg.Store.Apply(ctx, entries)
}

// MaxPushHandlers bounds the pushes served at once; a push beyond it is
// refused (its stream reset), so peers cannot pile up handlers.
const MaxPushHandlers = 64

// enterHandler registers a running stream handler, unless the replicator is
// closing or MaxPushHandlers are running; Close waits for registered
// handlers.
func (r *Replicator) enterHandler() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed || r.mu.pushHandlers >= MaxPushHandlers {
		return false
	}
	r.mu.pushHandlers++
	r.handlers.Add(1)
	return true
}

func (r *Replicator) leaveHandler() {
	r.mu.Lock()
	r.mu.pushHandlers--
	r.mu.Unlock()
	r.handlers.Done()
}

// writeFrame writes a uvarint length and the bytes.
func writeFrame(w io.Writer, data []byte) error {
	buf := binary.AppendUvarint(make([]byte, 0, len(data)+binary.MaxVarintLen64), uint64(len(data)))
	_, err := w.Write(append(buf, data...))
	return err
}

// readFrame reads a uvarint-length-prefixed frame of at most maxBytes.
func readFrame(r *bufio.Reader, maxBytes int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(maxBytes) {
		return nil, fmt.Errorf("%w: frame of %d bytes; the limit is %d", ErrTooLarge, n, maxBytes)
	}
	// Grow the buffer as bytes arrive, not from the claimed length: a peer
	// that sends a length and stalls must not pin that much memory.
	buf, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, err
	}
	if uint64(len(buf)) != n {
		return nil, fmt.Errorf("frame of %d bytes ended after %d: %w", n, len(buf), io.ErrUnexpectedEOF)
	}
	return buf, nil
}
