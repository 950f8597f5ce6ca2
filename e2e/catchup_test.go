//go:build unix

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
)

// catchUpJSON is the catch-up in `status -o json` and `members -o json`.
type catchUpJSON struct {
	State    *string `json:"catch_up_state"` // a pointer: the field must be there
	Detail   string  `json:"catch_up_detail"`
	Received int64   `json:"catch_up_received"`
	Total    int64   `json:"catch_up_total"`
	Keys     int64   `json:"keys"`
}

func (a *agent) catchUp(t *testing.T, cmd string) catchUpJSON {
	t.Helper()
	var c catchUpJSON
	r := a.mustCLI(t, nil, cmd, "-o", "json")
	if err := json.Unmarshal(r.stdout, &c); err != nil {
		t.Fatalf("%s -o json: %v: %q", cmd, err, r.stdout)
	}
	if c.State == nil {
		t.Fatalf("%s -o json has no catch_up_state: %s", cmd, r.stdout)
	}
	return c
}

// fill writes n keys under prefix through the SDK, 32 at a time.
func fill(t *testing.T, c *client.Client, prefix string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < n; i += 32 {
				if _, err := c.Put(ctx, fmt.Sprintf("%s%06d", prefix, i), []byte("a value of some thirty bytes..")); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestCatchUpProgress: a new node joins a node that holds 20,000 keys;
// its status shows it catching up, with entries received that only grow
// and an estimated total never below them, then caught up with every key.
// The catch-up may be too quick to be seen under way: the final state and
// the fields are what must hold.
func TestCatchUpProgress(t *testing.T) {
	const keys = 20000
	n1 := startAgent(t, t.TempDir(), "--name", "n1")
	fill(t, n1.dial(t), "/bulk/", keys)
	if c := n1.catchUp(t, "status"); *c.State != "caught-up" || !strings.Contains(c.Detail, "no peers") {
		t.Errorf("a lone node: catch-up %s (%s); want caught-up, no peers", *c.State, c.Detail)
	}

	dir2 := t.TempDir()
	id2 := strings.TrimSpace(string(runCLIOK(t, "id", "--data-dir", dir2).stdout))
	n1.mustCLI(t, nil, "member", "add", id2, "--name", "n2")
	want := n1.status(t).Keys // the 20,000 and the member list's keys
	n2 := startAgent(t, dir2, "--name", "n2", "--bootstrap", n1.p2pAddr(t))

	deadline := time.Now().Add(2 * time.Minute)
	var last catchUpJSON
	var seen []string // the progress observed while catching up
	for {
		c := n2.catchUp(t, "status")
		if c.Total != 0 && c.Total < c.Received {
			t.Errorf("estimated total %d below the %d entries received", c.Total, c.Received)
		}
		if *c.State == "catching-up" {
			seen = append(seen, fmt.Sprintf("%d/%d", c.Received, c.Total))
			if c.Received < last.Received {
				t.Errorf("entries received went back from %d to %d", last.Received, c.Received)
			}
			last = c
		}
		if *c.State == "caught-up" {
			last = c
			break
		}
		if *c.State != "catching-up" {
			t.Fatalf("catch-up state %q; want catching-up or caught-up", *c.State)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still catching up after 2 min: %+v", c)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	t.Logf("observed while catching up (received/estimated): %v; then %s", seen, last.Detail)
	if last.Received < keys || last.Total != last.Received {
		t.Errorf("caught up after %d entries received of %d; want at least %d, and the total equal to them", last.Received, last.Total, keys)
	}
	// Caught up means a complete session: n2 holds what n1 held when it
	// began, which is everything (no writes since).
	if last.Keys != want {
		t.Errorf("caught up with %d keys; n1 holds %d", last.Keys, want)
	}
	// members shows the same; n1, which sent the entries, never caught up.
	if c := n2.catchUp(t, "members"); *c.State != "caught-up" || c.Received != last.Received {
		t.Errorf("members on n2: catch-up %s, %d received; want caught-up, %d", *c.State, c.Received, last.Received)
	}
	if c := n1.catchUp(t, "status"); *c.State != "caught-up" || c.Received != 0 {
		t.Errorf("n1, the source: catch-up %s, %d received (%s); want caught-up, 0", *c.State, c.Received, c.Detail)
	}
	if r := n2.mustCLI(t, nil, "status"); !strings.Contains(string(r.stdout), "\ncatch-up:        caught-up: ") {
		t.Errorf("status text has no catch-up line: %s", r.stdout)
	}
}
