package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chorus-kv/chorus/client"
	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/p2p"
)

// memberJSON is one member in `members -o json` and `members --watch -o
// json`.
type memberJSON struct {
	PeerID      string   `json:"peer_id"`
	Name        string   `json:"name"`
	State       string   `json:"state"`
	Role        string   `json:"role,omitempty"`
	Self        bool     `json:"self"`
	Gossip      bool     `json:"gossip"`
	Admitted    bool     `json:"admitted"`
	Incarnation uint64   `json:"incarnation"`
	LastHeard   string   `json:"last_heard,omitempty"`
	MerkleRoot  string   `json:"merkle_root,omitempty"`
	Converged   bool     `json:"converged"`
	Revision    int64    `json:"revision"`
	Keys        int64    `json:"keys"`
	Lag         string   `json:"lag"` // "?" when unknown
	StatusError string   `json:"status_error,omitempty"`
	Addrs       []string `json:"addrs"`
}

func toMemberJSON(m client.Member, withRoot bool) memberJSON {
	j := memberJSON{
		PeerID: m.PeerID, Name: m.Name, State: m.State, Role: role(m), Self: m.Self, Gossip: m.Gossip, Admitted: m.Admitted,
		Incarnation: m.Incarnation, Converged: m.Converged, Revision: m.Revision, Keys: m.Keys, Lag: lagColumn(m), StatusError: m.StatusError, Addrs: m.Addrs,
	}
	if j.Addrs == nil {
		j.Addrs = []string{}
	}
	if !m.LastHeard.IsZero() {
		j.LastHeard = m.LastHeard.UTC().Format(time.RFC3339Nano)
	}
	if withRoot {
		j.MerkleRoot = hexRoot(m.MerkleRoot)
	}
	return j
}

func role(m client.Member) string {
	r := "peer"
	switch {
	case m.Self:
		r = "self"
	case m.Gossip:
		r = "peer+gossip"
	}
	if !m.Admitted {
		r += ",not-admitted"
	}
	return r
}

func newMembersCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "this node, the admitted members and the connected peers, with their states and Merkle roots",
		Args:  noArgs,
	}
	cf := addClientFlags(cmd)
	watchFlag := cmd.Flags().Bool("watch", false, "follow the member list: one line per change (PEER_ID state=STATE incarnation=N name=NAME), until interrupted")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		if *watchFlag {
			return watchMembers(ctx, cio, cf)
		}
		return cf.call(ctx, func(ctx context.Context, c *client.Client) error {
			l, err := c.MemberList(ctx)
			if err != nil {
				return err
			}
			if cf.json() {
				out := struct {
					Cluster    string `json:"cluster"`
					JoinState  string `json:"join_state"`
					JoinDetail string `json:"join_detail"`
					catchUpJSON
					Members []memberJSON `json:"members"`
				}{Cluster: l.Cluster, JoinState: l.JoinState, JoinDetail: l.JoinDetail, catchUpJSON: toCatchUpJSON(l.CatchUp), Members: []memberJSON{}}
				for _, m := range l.Members {
					out.Members = append(out.Members, toMemberJSON(m, m.StatusError == ""))
				}
				return json.NewEncoder(cio.stdout).Encode(out)
			}
			members := l.Members
			fmt.Fprintf(cio.stdout, "cluster %s\njoin state: %s\ncatch-up:   %s\n", l.Cluster, joinLine(l.JoinState, l.JoinDetail), catchUpLine(l.CatchUp))
			tw := tabwriter.NewWriter(cio.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER ID\tNAME\tSTATE\tROLE\tMERKLE ROOT\tCONVERGED\tREVISION\tKEYS\tLAG\tADDRS")
			for _, m := range members {
				root, converged, rev, keys := hexRoot(m.MerkleRoot), "no", fmt.Sprint(m.Revision), fmt.Sprint(m.Keys)
				if m.Converged {
					converged = "yes"
				}
				if m.StatusError != "" {
					root, converged, rev, keys = "?", "unknown", "?", "?"
				}
				name := m.Name
				if name == "" {
					name = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.PeerID, name, m.State, role(m), root, converged, rev, keys, lagColumn(m), strings.Join(m.Addrs, ","))
			}
			return tw.Flush()
		})
	}
	return cmd
}

// watchMembers is `members --watch`: a labelled line per change.
func watchMembers(ctx context.Context, cio *cmdIO, cf *clientFlags) error {
	c, err := cf.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	w, err := c.WatchMembers(ctx)
	if err != nil {
		return describeErr(err, cf.endpoint)
	}
	defer w.Close()
	enc := json.NewEncoder(cio.stdout)
	for {
		up, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return describeErr(err, cf.endpoint)
		}
		for _, m := range up.Members {
			if cf.json() {
				if err := enc.Encode(toMemberJSON(m, false)); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(cio.stdout, "%s state=%s incarnation=%d name=%s\n", m.PeerID, m.State, m.Incarnation, quote([]byte(m.Name)))
		}
		for _, id := range up.Removed {
			if cf.json() {
				if err := enc.Encode(map[string]any{"peer_id": id, "state": "removed"}); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(cio.stdout, "%s state=removed\n", id)
		}
	}
}

func newSyncCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sync --peer ID",
		Short: "run an anti-entropy session with a connected peer now",
		Args:  noArgs,
	}
	cf := addClientFlags(cmd)
	peerID := cmd.Flags().String("peer", "", "the peer id to sync with (required; chorus members lists them)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *peerID == "" {
			return fmt.Errorf("%w: sync needs --peer ID (chorus members lists the peers)", errUsage)
		}
		return cf.call(cmd.Context(), func(ctx context.Context, c *client.Client) error {
			res, err := c.Sync(ctx, *peerID)
			if err != nil {
				return err
			}
			if cf.json() {
				return json.NewEncoder(cio.stdout).Encode(map[string]any{
					"peer_id": res.PeerID, "entries_sent": res.EntriesSent, "entries_received": res.EntriesReceived,
					"entries_applied": res.EntriesApplied, "bytes_sent": res.BytesSent, "bytes_received": res.BytesReceived,
					"round_trips": res.RoundTrips, "partial": res.Partial, "duration_seconds": res.Duration.Seconds(),
					"local_root": hexRoot(res.LocalRoot), "peer_root": hexRoot(res.PeerRoot),
				})
			}
			fmt.Fprintf(cio.stdout, "synced with %s in %v, %d round trips: sent %d entries (%d bytes), received %d (%d bytes), %d changed this node\n",
				res.PeerID, res.Duration.Round(time.Microsecond), res.RoundTrips, res.EntriesSent, res.BytesSent, res.EntriesReceived, res.BytesReceived, res.EntriesApplied)
			if res.Partial {
				fmt.Fprintln(cio.stdout, "the difference was larger than one session repairs: the node continues it in the next sessions")
			}
			fmt.Fprintf(cio.stdout, "merkle root %s (peer's at the start %s)\n", hexRoot(res.LocalRoot), hexRoot(res.PeerRoot))
			return nil
		})
	}
	return cmd
}

// newIDCmd prints a data folder's peer id, creating its identity key if it
// has none, so that an operator can admit a node before its first start.
func newIDCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "id [--data-dir DIR]",
		Short: "print a data folder's peer id (created if missing), to admit the node before it starts",
		Args:  noArgs,
	}
	dataDir := cmd.Flags().String("data-dir", node.DefaultDataDir, "the node's data folder")
	newIdentity := cmd.Flags().Bool("new-identity", false, "make a new identity key for a data folder that holds data but lost its key")
	_ = cmd.MarkFlagDirname("data-dir")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := os.MkdirAll(*dataDir, 0o700); err != nil {
			return err
		}
		id, err := node.LoadIdentity(*dataDir, *newIdentity)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(cio.stdout, id.ID)
		return err
	}
	return cmd
}

// newSwarmKeyCmd prints a new swarm key, for --swarm-key.
func newSwarmKeyCmd(cio *cmdIO) *cobra.Command {
	return &cobra.Command{
		Use:   "swarm-key",
		Short: "print a new swarm key for --swarm-key",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := p2p.GenerateSwarmKey()
			if err != nil {
				return err
			}
			_, err = cio.stdout.Write(key)
			return err
		},
	}
}

// newMemberCmd is `chorus member add PEER_ID [--name N]` and `chorus member
// remove PEER_ID`.
func newMemberCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member add|remove PEER_ID",
		Short: "change the cluster's member list: member add PEER_ID [--name N] | member remove PEER_ID",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%w: member add PEER_ID [--name NAME] | member remove PEER_ID", errUsage)
			}
			return fmt.Errorf("%w: unknown subcommand %q: want add or remove", errUsage, args[0])
		},
	}
	idUsage := "takes one PEER_ID (`chorus id --data-dir DIR` prints a node's)"
	add := &cobra.Command{
		Use:   "add PEER_ID",
		Short: "admit a node by its peer id (or rename a member)",
		Args:  argsBetween(1, 1, "member add "+idUsage),
	}
	cfAdd := addClientFlags(add)
	name := add.Flags().String("name", "", "the member's name (default its peer id)")
	add.RunE = func(cmd *cobra.Command, args []string) error {
		return cfAdd.call(cmd.Context(), func(ctx context.Context, c *client.Client) error {
			res, err := c.AdmitMember(ctx, args[0], *name)
			if err != nil {
				return err
			}
			newName := *name
			if newName == "" {
				newName = args[0]
			}
			switch {
			case !res.Existed:
				_, err = fmt.Fprintf(cio.stdout, "added %s (revision %d)\n", args[0], res.Revision)
			case res.PreviousName != newName:
				_, err = fmt.Fprintf(cio.stdout, "renamed %s to %s (%s was a member already; revision %d)\n", res.PreviousName, newName, args[0], res.Revision)
			default:
				_, err = fmt.Fprintf(cio.stdout, "%s is a member already, named %s (revision %d)\n", args[0], newName, res.Revision)
			}
			return err
		})
	}
	remove := &cobra.Command{
		Use:   "remove PEER_ID",
		Short: "remove a member: every node cuts it off",
		Args:  argsBetween(1, 1, "member remove "+idUsage),
	}
	cfRemove := addClientFlags(remove)
	remove.RunE = func(cmd *cobra.Command, args []string) error {
		return cfRemove.call(cmd.Context(), func(ctx context.Context, c *client.Client) error {
			rev, err := c.RemoveMember(ctx, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cio.stdout, "removed %s (revision %d)\n", args[0], rev)
			return err
		})
	}
	cmd.AddCommand(add, remove)
	return cmd
}
