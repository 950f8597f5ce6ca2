package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/chorus-kv/chorus/client"
)

// Converged watches, puts that wait for every live member, and member lag:
// the CLI's pieces, kept apart so that they move with the flag parsing.

// waitFlag registers --wait on fs (put and del).
func waitFlag(fs *pflag.FlagSet) *string {
	return fs.String("wait", "", `"converged": also wait until every live member holds the write (bounded by --timeout; on the deadline, fail naming the members that did not confirm)`)
}

// waitOptions turns --wait's value into request options.
func waitOptions(wait string) ([]client.OpOption, error) {
	switch wait {
	case "":
		return nil, nil
	case "converged":
		return []client.OpOption{client.WithWaitConverged()}, nil
	}
	return nil, fmt.Errorf("%w: --wait %q: the only value is converged", errUsage, wait)
}

// convergedFlag registers --converged on fs (watch).
func convergedFlag(fs *pflag.FlagSet) *bool {
	return fs.Bool("converged", false, "emit a change only once every live member holds it (events then come in the order they converge, each key's in revision order)")
}

// convergedSuffix is what a converged event's text line ends with: when it
// converged, as this node's HLC wall time.
func convergedSuffix(ev client.Event) string {
	if ev.ConvergedHLC == 0 {
		return ""
	}
	ms := int64(ev.ConvergedHLC >> 16) // crdt.Timestamp: physical milliseconds above 16 logical bits
	return " converged=" + time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

// lagColumn is a member's LAG cell in `chorus members`.
func lagColumn(m client.Member) string {
	if !m.LagKnown {
		return "?"
	}
	return m.Lag.Round(time.Millisecond).String()
}
