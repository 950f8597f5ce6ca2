// Command chorus runs a Chorus node (chorus agent) and talks to one (put,
// get, del, ls, watch, status).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"agent":       {"run a node", runAgent},
	"put":         {"put KEY [VALUE]: write a key (the value from stdin if omitted)", runPut},
	"get":         {"get KEY: read a key (--prefix for every key under it)", runGet},
	"del":         {"del KEY: delete a key", runDel},
	"ls":          {"ls [PREFIX]: list keys in key order", runLs},
	"watch":       {"watch PREFIX: print every change under PREFIX, one line each", runWatch},
	"status":      {"status: describe the node", runStatus},
	"members":     {"members: this node and its connected peers, with their Merkle roots", runMembers},
	"sync":        {"sync --peer ID: run an anti-entropy session with a connected peer now", runSync},
	"member":      {"member add PEER_ID [--name N] | member remove PEER_ID: change the cluster's member list", runMember},
	"id":          {"id [--data-dir DIR]: print a data folder's peer id (created if missing), to admit the node before it starts", runID},
	"swarm-key":   {"swarm-key: print a new swarm key for --swarm-key", runSwarmKey},
	"join-secret": {"join-secret: print a new random join secret for --join-secret", runJoinSecret},
	"snapshot":    {"snapshot save FILE | restore FILE --data-dir DIR | status FILE: back a node up, build a new node from a backup", runSnapshot},
	"health":      {"health [--endpoint URL]: exit 0 if the node's /readyz (or URL) answers 200, else 1", runHealth},
}

// errUsage marks a usage error: the command prints its flags and exits 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		return 2
	}
	if args[0] == "version" || args[0] == "--version" {
		fmt.Fprintln(stdout, "chorus", version)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "chorus: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd.run(ctx, args[1:], stdin, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "chorus %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "chorus %s: %v\n", args[0], err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "chorus: a leaderless, eventually consistent key-value store for cluster metadata")
	fmt.Fprintln(w, "\nUsage: chorus COMMAND [flags] [args]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-8s %s\n", name, commands[name].summary)
	}
	fmt.Fprintf(w, "  %-8s %s\n", "version", "print the version")
	fmt.Fprintln(w, "\nRun 'chorus COMMAND -h' for a command's flags.")
}

// parseInterspersed parses flags that may come before, between or after the
// positional arguments (as etcdctl allows), and returns the positional ones.
// "--" ends flag parsing.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// fs.Parse stops at the first non-flag, or after "--".
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}
