// Package atomicfile replaces a file's content all at once, durably.
//
// Invariants: after Write returns nil, path holds exactly data with mode
// perm, and both the file and its directory entry have been fsynced, so a
// crash then leaves the new content. Until then, and after an error, path
// holds its old content (or does not exist): a reader never sees a partial
// file. No temporary file is left behind, except one a crash interrupts
// (named ".tmp-<name>-<random>" in the same folder).
package atomicfile
