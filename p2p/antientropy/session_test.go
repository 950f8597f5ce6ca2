package antientropy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/p2p/antientropy"
	replicationv1 "github.com/chorus-kv/chorus/proto/chorus/replication/v1"
)

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	if err := (antientropy.Config{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	err := antientropy.Config{MaxDiffNodes: -1, MaxEntries: -2, ReadBatch: -3}.Validate()
	for _, field := range []string{"MaxDiffNodes", "MaxEntries", "ReadBatch"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate() = %v; want it to name %s", err, field)
		}
	}
	// A session with an invalid config fails at Start, before sending.
	r := newMemReplica(nil)
	out := antientropy.NewInitiator(antientropy.Config{MaxDigests: -1}, r, r.local()).Start()
	if !out.Done || out.Err == nil || len(out.Send) > 0 {
		t.Errorf("Start with an invalid config: %+v", out)
	}
}

func TestBatchLen(t *testing.T) {
	e := func(n int) crdt.Entry { return crdt.Entry{Key: []byte("k"), Value: make([]byte, n-1)} }
	many := func(count, size int) []crdt.Entry {
		out := make([]crdt.Entry, count)
		for i := range out {
			out[i] = e(size)
		}
		return out
	}
	tests := []struct {
		name                 string
		entries              []crdt.Entry
		maxEntries, maxBytes int
		want                 int
	}{
		{"empty", nil, 4, 100, 0},
		{"all fit", many(3, 10), 4, 100, 3},
		{"entry cap", many(10, 10), 4, 1000, 4},
		{"byte cap", many(10, 10), 100, 35, 3},
		{"exactly the byte cap", many(10, 10), 100, 30, 3},
		{"one entry over the byte cap goes alone", []crdt.Entry{e(500), e(1)}, 4, 100, 1},
	}
	for _, tc := range tests {
		if got := antientropy.BatchLen(tc.entries, tc.maxEntries, tc.maxBytes); got != tc.want {
			t.Errorf("%s: BatchLen = %d; want %d", tc.name, got, tc.want)
		}
	}
}

func TestMisuseEndsTheSession(t *testing.T) {
	r := newMemReplica(nil)
	hello := &replicationv1.SyncMessage{Body: &replicationv1.SyncMessage_Hello{Hello: &replicationv1.SyncHello{}}}
	m := antientropy.NewResponder(antientropy.Config{}, r, r.local(), nil)
	if out := m.Step(hello); !out.Done || out.Err == nil {
		t.Fatalf("Step before Start: %+v", out)
	}
	if out := m.Continue(); !out.Done || !errors.Is(out.Err, antientropy.ErrEnded) {
		t.Fatalf("Continue after the end: %+v", out)
	}
	m = antientropy.NewInitiator(antientropy.Config{}, r, r.local())
	m.Start()
	if out := m.Continue(); !out.Done || out.Err == nil {
		t.Fatalf("Continue with nothing to send: %+v", out)
	}
}
