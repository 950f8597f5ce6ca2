// Package e2e holds Chorus's end-to-end tests. It has no code of its own:
// everything is in its _test.go files.
//
// TestMain builds the chorus binary once (go build ./cmd/chorus from the
// module root, into a temporary folder removed afterwards), and the tests run
// it as real processes on the loopback interface: `chorus agent` with a
// temporary --data-dir and --listen-client 127.0.0.1:0 (the chosen address
// is read from the agent's "chorus node started" log line; when the agent
// has a --listen-p2p flag, its libp2p ports are picked by the system too, so
// that test agents stay apart), and the client
// commands (put, get, del, ls, watch, status) against it, or the Go SDK in
// package client.
//
// They cover:
//   - a CLI session: put (value argument, binary and large values from
//     stdin), get, get --print-value-only, ls (text and -o json), del,
//     status, $CHORUS_ENDPOINT, and the error cases (empty and oversized
//     keys, oversized values, usage errors and their exit codes);
//   - chorus watch as a long-running process: live events in order, the
//     text line format and its quoting, -o json, --rev replay, --exact,
//     --prev-kv, and a clean exit 0 on SIGINT;
//   - the Go SDK against a separate node process, typed errors included;
//   - durability: every write acknowledged before a SIGKILL (taken under
//     load from 16 concurrent writers) is there after a restart on the same
//     data folder, with the same node id and no revision going back; and the
//     same after a graceful SIGTERM, which must exit 0; and a node of three
//     killed under load keeps every write it acknowledged, and every change
//     gossip brought it that its watcher saw, at the revision seen (gossip
//     is applied without an fsync of its own), with no revision skipped;
//   - the agent's flags: -h, bad flags, flag values taking effect, the
//     default data folder, and a clear failure when the client port or the
//     data folder is already in use;
//   - the CLI's conventions: help on stdout with exit 0 and an aligned
//     command list, completion scripts, one error prefix with the endpoint
//     and a hint (no node, no port, the etcd port), single-dash long
//     flags, put's value source (a pseudo-terminal refused, empty stdin
//     refused unless --allow-empty, SIGINT while reading), del --prefix
//     (its progress bar on a pseudo-terminal, nothing on a pipe), ls
//     leaving /chorus/ out;
//   - a newcomer's join: a node started before `member add` reports
//     not-admitted with the command that admits it (status, members, one
//     log line on each side), joins once admitted, and catches up; member
//     add renaming a member; a member never started shown as unseen;
//   - catch-up progress: a new node joining one that holds 20,000 keys
//     shows catching-up in status -o json, with entries received that only
//     grow, then caught-up with every key;
//   - the etcd v3 API with the real etcdctl (built once per run from the
//     pinned module in etcdtools/, into TestMain's folder) against a 3-node
//     cluster: put on one node, get --prefix and watch --prefix on another,
//     del, member list, endpoint status and endpoint health.
//
// No test waits with a fixed sleep: each waits for a condition (a log line,
// a watch line, a process exit) with a generous deadline, so that they stay
// reliable on a loaded machine. Every process a test starts is killed and
// reaped when the test ends, and a failing test logs the processes' output.
//
// They run as part of `go test ./...` (about 10 s, 30 s under -race; they
// need the go command on $PATH, which `go test` provides, and a Unix system
// for the signals). Under -race the agents run a binary built with the race
// detector too, and a data race it reports (or its exit code 66 on a
// graceful stop) fails the test:
//
//	go test -race ./e2e/
//
// regression_test.go pins down bugs found here and since fixed: watch
// replay losing deletes, and flag errors exiting 1 instead of 2.
package e2e
