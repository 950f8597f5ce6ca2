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
}

func newStatusCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "describe the node: id, join state, revision, limits, keys, Merkle root",
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
				MerkleRoot: hexRoot(st.MerkleRoot),
			}
			if cf.json() {
				return json.NewEncoder(cio.stdout).Encode(j)
			}
			_, err = fmt.Fprintf(cio.stdout, "node:            %s\njoin state:      %s\nversion:         %s\nrevision:        %d\noldest revision: %d\nmax key bytes:   %d\nmax value bytes: %d\nkeys:            %d (%d live, %d tombstones)\nmerkle root:     %s\n",
				j.NodeID, joinLine(j.JoinState, j.JoinDetail), j.Version, j.Revision, j.OldestRevision, j.MaxKeyBytes, j.MaxValueBytes, j.Keys, j.LiveKeys, j.Tombstones, j.MerkleRoot)
			return err
		})
	}
	return cmd
}
