// Command chorus runs a Chorus node (chorus agent) and talks to one (put,
// get, del, ls, watch, status, members, snapshot, ...).
//
// Files by topic: main.go builds the command tree (newRootCmd) and maps
// errors to exit codes; agent.go is `chorus agent` (flags to node.Config,
// signals, shutdown); kv.go the key commands and the client flags shared by
// every command that talks to a node; bulk.go del --prefix and the progress
// bar; converged.go put/del --wait converged and watch --converged;
// members.go and status.go the cluster commands; snapshot.go backup and
// restore; health.go the /readyz probe; debug.go and fault.go options for
// tests and profiling; errors.go what a failed call says (one "chorus CMD:"
// prefix, the endpoint, a hint for the usual mistakes).
//
// The command tree is built with cobra (newRootCmd). To add a command, write
// a constructor `func newFooCmd(io *cmdIO) *cobra.Command` in the file of its
// topic and list it in newRootCmd; flags are pflag flags declared on the
// command (client commands call addClientFlags). Errors are returned from
// RunE, never printed there: run prints them once, prefixed "chorus CMD:",
// and maps them to the exit code (0 success, 1 failure, 2 usage).
//
// Conventions every command keeps: help on stdout with exit 0; data on
// stdout, messages on stderr; `-o json` prints snake_case fields and hex
// Merkle roots; a progress bar only when stderr is a terminal.
// Environment: CHORUS_ENDPOINT (default --endpoint) and CHORUS_HTTP_ENDPOINT
// (default for health); CHORUS_TEST_CLOCK_OFFSET shifts the agent's clock in
// tests only.
package main
