package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chorus-kv/chorus/client"
)

// delConcurrency is how many deletes `del --prefix` keeps in flight. The
// node writes the deletes that arrive during one fsync in one batch, so a
// few in flight share fsyncs: measured on 10,000 keys on one node, 6.6 s
// one at a time, 1.7 s with 16 in flight (100,000 keys: 23 s).
const delConcurrency = 16

// listKeys returns the keys under prefix, a page per request (each bounded
// by timeout), leaving out the reserved keys unless the prefix is under
// them. progress, when not nil, gets the count after each page.
func listKeys(ctx context.Context, c *client.Client, prefix string, timeout time.Duration, progress func(n int)) ([]string, error) {
	hide := !strings.HasPrefix(prefix, reservedPrefix)
	var keys []string
	req := client.RangeRequest{Prefix: prefix, KeysOnly: true}
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		page, err := c.Range(pctx, req)
		cancel()
		if err != nil {
			return nil, err
		}
		for _, kv := range page.KVs {
			if hide && strings.HasPrefix(kv.Key, reservedPrefix) {
				continue
			}
			keys = append(keys, kv.Key)
		}
		if progress != nil {
			progress(len(keys))
		}
		if !page.More {
			return keys, nil
		}
		req.After = page.NextKey
	}
}

// deleteKeys deletes keys, delConcurrency at a time, each delete bounded by
// timeout, and returns the results in the keys' order. progress, when not
// nil, gets the count of keys done so far, from the calling goroutine. The
// first failure stops it: the error, described for endpoint, says how many
// keys were deleted.
func deleteKeys(ctx context.Context, c *client.Client, endpoint string, keys []string, timeout time.Duration, opts []client.OpOption, progress func(done int)) ([]*client.DeleteResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	results := make([]*client.DeleteResult, len(keys))
	var done atomic.Int64
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(delConcurrency, len(keys)) {
		wg.Go(func() {
			for i := range next {
				rctx, rcancel := context.WithTimeout(ctx, timeout)
				res, err := c.Delete(rctx, keys[i], opts...)
				rcancel()
				if err != nil {
					cancel(err)
					continue // drain: the feeder stops at the cancel
				}
				results[i] = res
				done.Add(1)
			}
		})
	}
feed:
	for i := range keys {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
		if progress != nil {
			progress(int(done.Load()))
		}
	}
	close(next)
	wg.Wait()
	if progress != nil {
		progress(int(done.Load()))
	}
	if err := context.Cause(ctx); err != nil {
		described := describeErr(err, endpoint)
		return nil, &cliError{msg: fmt.Sprintf("%v (%d of the %d keys under the prefix were deleted before)", described, done.Load(), len(keys)), err: err}
	}
	return results, nil
}
