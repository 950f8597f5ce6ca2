package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/internal/testutil"
)

// startBulkNode starts a real node on loopback with keys under /bulk/ and
// a reserved key, and dials it.
func startBulkNode(t *testing.T, keys int) (*node.Node, *client.Client) {
	t.Helper()
	n, err := node.Start(node.Config{DataDir: t.TempDir(), ListenClient: "127.0.0.1:0", ListenHTTP: node.ListenHTTPOff,
		Logger: testutil.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	c, err := client.Dial(n.ClientAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	for i := range keys {
		if _, err := c.Put(ctx, fmt.Sprintf("/bulk/%04d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	return n, c
}

// TestListAndDeleteKeys: listKeys pages through every key (the reserved
// ones left out), and deleteKeys deletes them, several at a time, with the
// results in the keys' order and the progress reaching the count.
func TestListAndDeleteKeys(t *testing.T) {
	const keys = 300
	_, c := startBulkNode(t, keys)
	ctx := context.Background()
	pages := 0
	listed, err := listKeys(ctx, c, "/bulk/", 10*time.Second, func(int) { pages++ })
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != keys || !slices.IsSorted(listed) || pages < 1 {
		t.Fatalf("listKeys: %d keys (sorted %v) in %d pages; want %d in key order", len(listed), slices.IsSorted(listed), pages, keys)
	}
	last := 0
	results, err := deleteKeys(ctx, c, "endpoint", listed, 10*time.Second, []client.OpOption{client.WithPrevKV()}, func(done int) {
		if done < last {
			t.Errorf("progress went back from %d to %d", last, done)
		}
		last = done
	})
	if err != nil {
		t.Fatal(err)
	}
	if last != keys {
		t.Errorf("progress ended at %d; want %d", last, keys)
	}
	for i, r := range results {
		if !r.Deleted || r.Prev == nil || r.Prev.Key != listed[i] {
			t.Fatalf("result %d: %+v; want key %s deleted", i, r, listed[i])
		}
	}
	if rest, err := listKeys(ctx, c, "/bulk/", 10*time.Second, nil); err != nil || len(rest) != 0 {
		t.Errorf("after deleteKeys: %d keys left, %v", len(rest), err)
	}
}

// TestDeleteKeysStopsAtFirstFailure: a node that goes away mid-way stops
// the deletes, and the error says how many were deleted.
func TestDeleteKeysStopsAtFirstFailure(t *testing.T) {
	const keys = 300
	n, c := startBulkNode(t, keys)
	ctx := context.Background()
	listed, err := listKeys(ctx, c, "/bulk/", 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	_, err = deleteKeys(ctx, c, "127.0.0.1:1", listed, 2*time.Second, nil, func(done int) {
		if done >= 50 && !closed {
			closed = true
			_ = n.Close()
		}
	})
	var ce *cliError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), fmt.Sprintf("of the %d keys under the prefix were deleted before", keys)) {
		t.Fatalf("deleteKeys on a node that closed: %v; want an error that says how many were deleted", err)
	}
	t.Log(err)
	if got := describeErr(err, "127.0.0.1:1"); got.Error() != err.Error() {
		t.Errorf("describeErr changed an error described already: %q to %q", err, got)
	}
}
