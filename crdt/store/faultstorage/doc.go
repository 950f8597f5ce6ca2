// Package faultstorage is a goleveldb storage.Storage held in memory that
// fails on demand and crashes: a fake for the disk faults a test cannot
// cause otherwise (a write that fails, an fsync that fails, a power loss
// that drops what was not fsynced). LevelDB itself runs unchanged on it, so
// a test exercises the real engine's reaction to each fault.
//
// It is its own in-memory storage rather than a wrapper of goleveldb's
// storage.NewMemStorage, because a crash must know how much of each file was
// synced and must drop every handle the crashed LevelDB still holds; the
// memory storage keeps neither.
//
// The model of durability, file by file:
//
//   - Write appends to the file's contents, readable at once (the OS page
//     cache). Sync makes every byte written so far durable.
//   - A file's name becomes durable with its first successful Sync (ext4
//     commits a new file's directory entry with its first fsync; POSIX asks
//     for an fsync of the directory, which goleveldb does only for the
//     manifest). Remove, Rename and SetMeta are durable at once: goleveldb's
//     file storage syncs the directory after writing CURRENT.
//   - Crash returns the storage a reboot would find: every file cut to the
//     length it had at its last successful Sync, files never synced gone,
//     no faults. The crashed storage fails every later call with ErrCrashed,
//     so the LevelDB still open on it can be closed but writes nothing more.
//
// Invariants: a failed Write writes nothing, a failed ShortWrite the first
// half of its bytes (a write that fills the disk); a failed Sync makes
// nothing durable (the bytes stay readable until a crash, as in the page
// cache); Injected counts every failure injected.
//
// What a test does, in order:
//
//  1. New, and open LevelDB (or a store) on it.
//  2. Fail(Write, ShortWrite or Sync, file types) to make those calls fail with
//     ErrInjected until Heal; Injected says whether any did.
//  3. Crash, close what ran on the old storage, and reopen on the one Crash
//     returned: its BootID differs, as a reboot's would.
package faultstorage
