//go:build race && unix

package e2e

// Under `go test -race`, the chorus binary is built with the race detector
// too, and a data race it reports fails the test that ran it.
func init() { raceEnabled = true }
