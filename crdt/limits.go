package crdt

import (
	"errors"
	"fmt"
)

// Default limits on what one entry may hold.
const (
	DefaultMaxKeyBytes   = 4 << 10 // 4 KiB
	DefaultMaxValueBytes = 1 << 20 // 1 MiB
)

// Errors for entries outside the limits. They are wrapped with the sizes
// involved; test for them with errors.Is.
var (
	ErrKeyEmpty      = errors.New("crdt: key is empty")
	ErrKeyTooLarge   = errors.New("crdt: key too large")
	ErrValueTooLarge = errors.New("crdt: value too large")
	ErrNoOrigin      = errors.New("crdt: entry has no origin")
	ErrTombstoneData = errors.New("crdt: tombstone carries a value")
)

// LimitError is the error for a key or value over its limit. It wraps
// ErrKeyTooLarge or ErrValueTooLarge, so errors.Is works, and carries the
// sizes for callers that report them (errors.As).
type LimitError struct {
	Err   error // ErrKeyTooLarge or ErrValueTooLarge
	What  string
	Size  int
	Limit int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%v: %s is %d bytes; the limit is %d", e.Err, e.What, e.Size, e.Limit)
}

func (e *LimitError) Unwrap() error { return e.Err }

// Limits bounds the size of keys and values. The zero value means the defaults.
type Limits struct {
	// MaxKeyBytes is the largest key accepted, in bytes. Default 4 KiB.
	MaxKeyBytes int
	// MaxValueBytes is the largest value accepted, in bytes. Default 1 MiB.
	MaxValueBytes int
}

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	if l.MaxKeyBytes == 0 {
		l.MaxKeyBytes = DefaultMaxKeyBytes
	}
	if l.MaxValueBytes == 0 {
		l.MaxValueBytes = DefaultMaxValueBytes
	}
	return l
}

// Validate reports limits that cannot be used.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxKeyBytes < 0 {
		errs = append(errs, fmt.Errorf("crdt: MaxKeyBytes is %d; it must not be negative (0 means the default)", l.MaxKeyBytes))
	}
	if l.MaxValueBytes < 0 {
		errs = append(errs, fmt.Errorf("crdt: MaxValueBytes is %d; it must not be negative (0 means the default)", l.MaxValueBytes))
	}
	return errors.Join(errs...)
}

// CheckKey reports whether key is within the limits. l must have its defaults set.
func (l Limits) CheckKey(key []byte) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("%w: keys are 1 to %d bytes", ErrKeyEmpty, l.MaxKeyBytes)
	case len(key) > l.MaxKeyBytes:
		return &LimitError{Err: ErrKeyTooLarge, What: "key", Size: len(key), Limit: l.MaxKeyBytes}
	}
	return nil
}

// CheckValue reports whether value is within the limits. l must have its defaults set.
func (l Limits) CheckValue(value []byte) error {
	if len(value) > l.MaxValueBytes {
		return &LimitError{Err: ErrValueTooLarge, What: "value", Size: len(value), Limit: l.MaxValueBytes}
	}
	return nil
}

// CheckEntry reports whether an entry from any source is well formed and within
// the limits. It does not check the clock: see Clock.Check.
func (l Limits) CheckEntry(e *Entry) error {
	if err := l.CheckKey(e.Key); err != nil {
		return err
	}
	if err := l.CheckValue(e.Value); err != nil {
		return fmt.Errorf("key %q: %w", truncate(e.Key), err)
	}
	if len(e.Origin) == 0 {
		return fmt.Errorf("key %q: %w", truncate(e.Key), ErrNoOrigin)
	}
	if e.Tombstone && len(e.Value) > 0 {
		return fmt.Errorf("key %q: %w", truncate(e.Key), ErrTombstoneData)
	}
	return nil
}

func truncate(key []byte) []byte {
	if len(key) > 64 {
		return key[:64]
	}
	return key
}
