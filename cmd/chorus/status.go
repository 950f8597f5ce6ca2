package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/chorus-kv/chorus/client"
)

// JSON convention of every command's -o json: one object per line, field
// names in snake_case, Merkle roots as 16 hex digits (as the text output
// shows them), times as RFC 3339, durations in seconds (float).

// joinLine is a join state as text shows it: the state, then what it means.
func joinLine(state, detail string) string {
	if state == "" {
		return "unknown (the node is of an older version)"
	}
	return state + ": " + detail
}

// catchUpLine is a catch-up as text shows it: the state, then how far.
func catchUpLine(c client.CatchUp) string {
	switch {
	case c.State == "":
		return "unknown (the node is of an older version)"
	case c.State == client.CatchingUp && c.Total > 0:
		return fmt.Sprintf("%s: %d of about %d entries received (%.0f%%)", c.State, c.Received, c.Total, c.Percent())
	case c.State == client.CatchingUp:
		return fmt.Sprintf("%s: %d entries received; the total is not known yet (no member reported its key count)", c.State, c.Received)
	}
	return c.State + ": " + c.Detail
}

// hexRoot is a Merkle root as text and JSON show it.
func hexRoot(root uint64) string { return fmt.Sprintf("%016x", root) }

// statusJSON is `status -o json`.
type statusJSON struct {
	NodeID         string `json:"node_id"`
	JoinState      string `json:"join_state"`
	JoinDetail     string `json:"join_detail"`
	Version        string `json:"version"`
	Revision       int64  `json:"revision"`
	OldestRevision int64  `json:"oldest_revision"`
	MaxKeyBytes    int64  `json:"max_key_bytes"`
	MaxValueBytes  int64  `json:"max_value_bytes"`
	Keys           int64  `json:"keys"`
	LiveKeys       int64  `json:"live_keys"`
	Tombstones     int64  `json:"tombstones"`
	MerkleRoot     string `json:"merkle_root"`
	catchUpJSON
}

// catchUpJSON is a node's catch-up in `status -o json` and `members -o
// json`: catch_up_total is an estimate, 0 while unknown.
type catchUpJSON struct {
	CatchUpState    string `json:"catch_up_state"`
	CatchUpDetail   string `json:"catch_up_detail"`
	CatchUpReceived int64  `json:"catch_up_received"`
	CatchUpTotal    int64  `json:"catch_up_total"`
}

func toCatchUpJSON(c client.CatchUp) catchUpJSON {
	return catchUpJSON{CatchUpState: c.State, CatchUpDetail: c.Detail, CatchUpReceived: c.Received, CatchUpTotal: c.Total}
}

func newStatusCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "describe the node: id, join state, catch-up, revision, limits, keys, Merkle root",
		Args:  noArgs,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return cf.call(cmd.Context(), func(ctx context.Context, c *client.Client) error {
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			j := statusJSON{
				NodeID: st.NodeID, JoinState: st.JoinState, JoinDetail: st.JoinDetail, Version: st.Version, Revision: st.Revision, OldestRevision: st.OldestRevision,
				MaxKeyBytes: st.MaxKeyBytes, MaxValueBytes: st.MaxValueBytes, Keys: st.Keys, LiveKeys: st.Keys - st.Tombstones, Tombstones: st.Tombstones,
				MerkleRoot: hexRoot(st.MerkleRoot), catchUpJSON: toCatchUpJSON(st.CatchUp),
			}
			if cf.json() {
				return json.NewEncoder(cio.stdout).Encode(j)
			}
			_, err = fmt.Fprintf(cio.stdout, "node:            %s\njoin state:      %s\ncatch-up:        %s\nversion:         %s\nrevision:        %d\noldest revision: %d\nmax key bytes:   %d\nmax value bytes: %d\nkeys:            %d (%d live, %d tombstones)\nmerkle root:     %s\n",
				j.NodeID, joinLine(j.JoinState, j.JoinDetail), catchUpLine(st.CatchUp), j.Version, j.Revision, j.OldestRevision, j.MaxKeyBytes, j.MaxValueBytes, j.Keys, j.LiveKeys, j.Tombstones, j.MerkleRoot)
			return err
		})
	}
	return cmd
}
