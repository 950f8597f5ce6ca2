// Package testutil holds the helpers that several packages' tests share: a
// wait on a condition with a deadline, loggers for tests, and a settable
// wall clock. Before it, each package's tests carried its own copy of each.
//
// Rules:
//   - It is for tests only: import it from _test.go files, never from
//     production code.
//   - It imports no package of this module, so that the tests of any package
//     (crdt's own included) can import it without a cycle.
//   - Its waits poll with time.Sleep, so they also work inside a
//     testing/synctest bubble, where each sleep advances the virtual clock.
//     A poll is a wait on a condition with a deadline, never a sleep used as
//     synchronization.
package testutil
