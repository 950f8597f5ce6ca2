// Package client is the Go SDK for Chorus's gRPC API. It lives in a
// top-level folder of its own because it is what users import: it must not
// pull in the server, and none of the other top-level folders (crdt, p2p,
// watch, proto, cmd, e2e) is a client.
//
// Use:
//
//	c, err := client.Dial("127.0.0.1:7379")
//	defer c.Close()
//	_, err = c.Put(ctx, "/config/a", []byte("1"))
//	kv, err := c.Get(ctx, "/config/a")           // client.ErrNotFound if absent
//	for kv, err := range c.List(ctx, "/config/") { ... }
//	w, err := c.Watch(ctx, "/config/", client.WithPrefix(), client.WithStartRevision(rev))
//	for ev, err := range w.Events() { ... }
//
// Errors for a known cause are typed: test them with errors.Is against
// ErrKeyEmpty, ErrKeyTooLarge, ErrValueTooLarge, ErrBadRange, ErrCompacted,
// ErrWatcherTooSlow, ErrUnavailable; errors.As with *Error gives the limit,
// the size or the oldest revision. Every call takes a context and honours its
// deadline and cancellation.
package client
