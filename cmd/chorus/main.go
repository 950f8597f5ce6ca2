package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes: 0 success, 1 a failure (including a key that get did not
// find), 2 a usage error (unknown command or flag, wrong arguments).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// errUsage marks a usage error: exit code 2.
var errUsage = errors.New("usage")

// errSilent marks an error whose message the command already printed (or
// that needs none): run only sets the exit code.
var errSilent = errors.New("silent failure")

// cmdIO holds the standard streams, so that tests can run commands in
// process.
type cmdIO struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runContext(ctx, args, stdin, stdout, stderr)
}

func runContext(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(&cmdIO{stdin: stdin, stdout: stdout, stderr: stderr})
	root.SetArgs(normalizeArgs(root, args))
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errSilent) {
		return exitFailure
	}
	name := "chorus"
	if cmd != nil && cmd != root {
		name = cmd.CommandPath()
	}
	// Every error of the root command itself is a usage error: an unknown
	// command, or none.
	if errors.Is(err, errUsage) || cmd == nil || cmd == root {
		fmt.Fprintf(stderr, "%s: %s\n", name, strings.TrimPrefix(err.Error(), "usage: "))
		if cmd == nil || cmd == root {
			fmt.Fprintln(stderr)
			root.SetOut(stderr) // the usage goes where the error went
			_ = root.Usage()
		} else {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", name)
		}
		return exitUsage
	}
	fmt.Fprintf(stderr, "%s: %s\n", name, err)
	return exitFailure
}

func newRootCmd(cio *cmdIO) *cobra.Command {
	root := &cobra.Command{
		Use:   "chorus",
		Short: "a leaderless, eventually consistent key-value store for cluster metadata",
		Long: "chorus: a leaderless, eventually consistent key-value store for cluster metadata.\n\n" +
			"Exit codes: 0 success, 1 failure (a key that get does not find included), 2 usage error.",
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Args stays nil: cobra then reports an unknown command by name.
		// A command line without a command is a usage error, with the list
		// of commands on stderr; --help prints the same on stdout, exit 0.
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("%w: no command given", errUsage)
		},
	}
	root.SetVersionTemplate("chorus {{.Version}}\n")
	// Two spaces between a command's name and its summary, so that the
	// longest name (join-secret) does not run into its text.
	root.SetUsageTemplate(strings.ReplaceAll(root.UsageTemplate(), "{{rpad .Name .NamePadding }} {{.Short}}", "{{rpad .Name .NamePadding }}  {{.Short}}"))
	root.SetFlagErrorFunc(flagError)
	root.AddGroup(&cobra.Group{ID: "kv", Title: "Keys:"}, &cobra.Group{ID: "cluster", Title: "Cluster:"}, &cobra.Group{ID: "node", Title: "Running a node:"})
	for _, c := range []*cobra.Command{newPutCmd(cio), newGetCmd(cio), newDelCmd(cio), newLsCmd(cio), newWatchCmd(cio)} {
		c.GroupID = "kv"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newStatusCmd(cio), newMembersCmd(cio), newMemberCmd(cio), newSyncCmd(cio)} {
		c.GroupID = "cluster"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newAgentCmd(cio), newIDCmd(cio), newSwarmKeyCmd(cio), newJoinSecretCmd(cio), newHealthCmd(cio), newSnapshotCmd(cio)} {
		c.GroupID = "node"
		root.AddCommand(c)
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cio.stdout, "chorus", version)
			return err
		},
	})
	return root
}

// flagError makes a flag parsing error a usage error (exit 2). Subcommands
// inherit it from the root.
func flagError(_ *cobra.Command, err error) error {
	return fmt.Errorf("%w: %w", errUsage, err)
}

// noArgs refuses positional arguments, as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: %s takes no arguments, got %q", errUsage, cmd.Name(), args)
	}
	return nil
}

// argsBetween accepts from min to max positional arguments; usage says what
// they are.
func argsBetween(min, max int, usage string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			return fmt.Errorf("%w: %s", errUsage, usage)
		}
		return nil
	}
}

// normalizeArgs keeps the single-dash long flags of Go's flag package
// working (-endpoint X, -data-dir=D), which earlier versions accepted:
// pflag reads "-endpoint" as the shorthands -e -n -d .... An argument
// becomes "--NAME" only when NAME is a long flag of the command it belongs
// to. Arguments after "--" are left alone.
func normalizeArgs(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		return args
	}
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && lookupFlag(cmd, name) != nil {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}

func lookupFlag(cmd *cobra.Command, name string) *pflag.Flag {
	if f := cmd.Flags().Lookup(name); f != nil {
		return f
	}
	return cmd.InheritedFlags().Lookup(name)
}
