package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/p2p"
)

// runID prints a data folder's peer id, creating its identity key if it has
// none, so that an operator can admit a node before its first start.
func runID(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("id", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", node.DefaultDataDir, "the node's data folder")
	newIdentity := fs.Bool("new-identity", false, "make a new identity key for a data folder that holds data but lost its key")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: id takes no arguments", errUsage)
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	id, err := node.LoadIdentity(*dataDir, *newIdentity)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id.ID)
	return nil
}

// runSwarmKey prints a new swarm key, for --swarm-key.
func runSwarmKey(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: swarm-key takes no arguments", errUsage)
	}
	key, err := p2p.GenerateSwarmKey()
	if err != nil {
		return err
	}
	_, err = stdout.Write(key)
	return err
}

// runMember is `chorus member add PEER_ID [--name N]` and `chorus member
// remove PEER_ID`.
func runMember(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "remove") {
		return fmt.Errorf("%w: member add PEER_ID [--name NAME] | member remove PEER_ID", errUsage)
	}
	sub := args[0]
	fs, cf := newClientFlagSet("member "+sub, stderr)
	var name *string
	if sub == "add" {
		name = fs.String("name", "", "the member's name (default its peer id)")
	}
	rest, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: member %s takes one PEER_ID (`chorus id --data-dir DIR` prints a node's)", errUsage, sub)
	}
	return cf.call(ctx, func(ctx context.Context, c *client.Client) error {
		if sub == "add" {
			rev, err := c.AddMember(ctx, rest[0], *name)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "added %s (revision %d)\n", rest[0], rev)
			return nil
		}
		rev, err := c.RemoveMember(ctx, rest[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s (revision %d)\n", rest[0], rev)
		return nil
	})
}
