package swim

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

func lan(seed uint64) Config {
	c := LANConfig()
	c.Rand = seeded(seed)
	return c
}

// cluster returns a Detector for "self" with n-1 other members m01, m02...
func cluster(t *testing.T, cfg Config, n int) *Detector {
	t.Helper()
	d, err := New("self", cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		d.Add(fmt.Sprintf("m%02d", i), t0)
	}
	return d
}

func mustState(t *testing.T, d *Detector, id string, want State) Member {
	t.Helper()
	m, ok := d.Member(id)
	if !ok {
		t.Fatalf("member %s unknown", id)
	}
	if m.State != want {
		t.Fatalf("member %s is %v, want %v", id, m.State, want)
	}
	return m
}
