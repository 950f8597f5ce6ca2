// Package watch streams the changes a node's store actually made to the
// clients watching them, by exact key or key prefix, live or resumed from a
// revision.
//
// The store calls Hub.Publish with every written batch of changes (fsynced,
// or buffered gossip: see store.ApplyBuffered), in revision order, from its
// writer. Publish never blocks: each watcher has
// a bounded buffer, and a watcher whose buffer is full is cancelled with
// ErrWatcherTooSlow, so one slow client never stalls writers.
//
// A watcher started from a past revision first replays the store's change
// log, a page at a time, from the goroutine that calls Next; once it has
// caught up with what the hub has published it registers for live events.
// The hand-over is done under the hub's lock, so no revision is skipped or
// delivered twice.
//
// Invariants:
//
//   - A watcher sees each matching, visible change exactly once, in
//     revision order. A change that only replaced a missing or deleted key
//     with a tombstone is not visible and emits nothing; stale or duplicate
//     entries never reach the hub, since the store does not change for them.
//   - A start revision older than the store's change log fails with an error
//     that wraps *store.CompactedError, which carries the oldest revision
//     still available.
//   - The hub starts no goroutine. Next is driven by its caller; Close on a
//     watcher or on the hub wakes a blocked Next.
//
// A ConvergedWatcher (Hub.WatchConverged) wraps a watcher and holds each
// event back until a Stability (package p2p's Convergence) says every live
// member holds it; see its doc for its order and how to resume it.
//
// What a caller does, in order: NewHub with the store as Source; pass
// Hub.Publish as the store's OnCommit; Watch; call Next until it fails;
// Close the watcher; Close the hub before the store.
package watch
