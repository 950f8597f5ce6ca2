package antientropy

import (
	"errors"
	"fmt"
)

// Defaults for Config.
const (
	DefaultMaxDiffNodes      = 16384
	DefaultMaxDigests        = 1 << 22
	DefaultMaxEntries        = 1 << 22
	DefaultDigestsPerFrame   = 1 << 16
	DefaultEntryFrameBytes   = 1 << 20
	DefaultApplyBatchEntries = 256
	DefaultApplyBatchBytes   = 256 << 10
	DefaultReadBatch         = 1024
)

// Config bounds one session. The zero value of every field means its
// default.
type Config struct {
	// Peer names the other side in errors (its peer id). Default "peer".
	Peer string
	// MaxDiffNodes caps the differing tree nodes this side descends into at
	// each level; it is sent in the hello and both sides use the smaller
	// of their two caps. A larger difference makes the session partial: it
	// repairs part of it, and the next session the rest. Default 16384.
	MaxDiffNodes int
	// MaxDigests caps the digests this side accepts from the peer in one
	// session (about 24 bytes each). Default 4,194,304.
	MaxDigests int
	// MaxEntries caps the entries this side accepts from the peer in one
	// session. Default 4,194,304.
	MaxEntries int
	// DigestsPerFrame is the most digests this side puts in one frame.
	// Default 65,536 (about 1.5 MiB).
	DigestsPerFrame int
	// EntryFrameBytes is the size an entries frame is filled to, counting
	// key, value and origin bytes plus 32 per entry; one entry larger than
	// it gets a frame of its own. Default 1 MiB.
	EntryFrameBytes int
	// ApplyBatchEntries and ApplyBatchBytes bound each batch of received
	// entries in Output.Apply (key and value bytes; a larger single entry
	// is a batch of its own), so that a driver that makes each batch
	// durable before the next lets local writes in between. Defaults 256
	// and 256 KiB.
	ApplyBatchEntries int
	ApplyBatchBytes   int
	// ReadBatch is the most key hashes whose entries one step reads from
	// the Replica, so no read holds a snapshot for a whole repair.
	// Default 1024.
	ReadBatch int
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Peer == "" {
		c.Peer = "peer"
	}
	def(&c.MaxDiffNodes, DefaultMaxDiffNodes)
	def(&c.MaxDigests, DefaultMaxDigests)
	def(&c.MaxEntries, DefaultMaxEntries)
	def(&c.DigestsPerFrame, DefaultDigestsPerFrame)
	def(&c.EntryFrameBytes, DefaultEntryFrameBytes)
	def(&c.ApplyBatchEntries, DefaultApplyBatchEntries)
	def(&c.ApplyBatchBytes, DefaultApplyBatchBytes)
	def(&c.ReadBatch, DefaultReadBatch)
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxDiffNodes", c.MaxDiffNodes}, {"MaxDigests", c.MaxDigests}, {"MaxEntries", c.MaxEntries},
		{"DigestsPerFrame", c.DigestsPerFrame}, {"EntryFrameBytes", c.EntryFrameBytes},
		{"ApplyBatchEntries", c.ApplyBatchEntries}, {"ApplyBatchBytes", c.ApplyBatchBytes}, {"ReadBatch", c.ReadBatch},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("antientropy: %s is %d; it must not be negative (0 means the default)", f.name, f.v))
		}
	}
	if c.MaxDiffNodes > 1<<31-1 {
		errs = append(errs, fmt.Errorf("antientropy: MaxDiffNodes is %d; at most %d", c.MaxDiffNodes, 1<<31-1))
	}
	return errors.Join(errs...)
}
