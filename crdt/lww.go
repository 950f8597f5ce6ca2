package crdt

import "bytes"

// Entry is one key's last-writer-wins register: the replicated part of what a
// node stores for a key. Two nodes holding equal Entries for every key hold
// the same state.
type Entry struct {
	Key       []byte
	Value     []byte    // empty for a tombstone
	HLC       Timestamp // when the write was made, by its origin's clock
	Origin    []byte    // the writing node's id; breaks HLC ties
	Tombstone bool      // the write was a delete
}

// Compare orders two writes to the same key: -1 if a loses to b, +1 if a wins,
// 0 if they are the same write. The higher HLC wins; then the higher origin;
// an exact tie (which honest nodes never produce) is broken by the tombstone
// flag (a delete wins) and then by the value bytes, so that the order is total
// and merging converges whatever the input.
func Compare(a, b *Entry) int {
	switch {
	case a.HLC > b.HLC:
		return 1
	case a.HLC < b.HLC:
		return -1
	}
	if c := bytes.Compare(a.Origin, b.Origin); c != 0 {
		return c
	}
	switch {
	case a.Tombstone && !b.Tombstone:
		return 1
	case !a.Tombstone && b.Tombstone:
		return -1
	}
	return bytes.Compare(a.Value, b.Value)
}

// Wins reports whether incoming replaces current. A nil current (the key is
// unknown) always loses. A duplicate of current does not win, so applying the
// same entry twice changes nothing.
func Wins(current, incoming *Entry) bool {
	return current == nil || Compare(incoming, current) > 0
}

// Merge returns the winner of two writes to the same key. It is commutative,
// associative and idempotent.
func Merge(a, b *Entry) *Entry {
	if Compare(a, b) >= 0 {
		return a
	}
	return b
}

// State is an in-memory map of registers, keyed by string(key). It is the
// reference model of the store: tests compare the store against it.
type State map[string]Entry

// Apply merges e into the state and reports whether it changed anything.
func (s State) Apply(e Entry) bool {
	cur, ok := s[string(e.Key)]
	if ok && !Wins(&cur, &e) {
		return false
	}
	s[string(e.Key)] = e
	return true
}
