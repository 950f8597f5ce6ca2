package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/chorus-kv/chorus/client"
)

// clientFlags are the flags every client command takes.
type clientFlags struct {
	endpoint string
	timeout  time.Duration
	output   string
}

func newClientFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *clientFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := &clientFlags{}
	endpoint := os.Getenv("CHORUS_ENDPOINT")
	if endpoint == "" {
		endpoint = "127.0.0.1:7379"
	}
	fs.StringVar(&cf.endpoint, "endpoint", endpoint, "host:port of a node's client API (default from $CHORUS_ENDPOINT)")
	fs.DurationVar(&cf.timeout, "timeout", 10*time.Second, "how long one request may take")
	fs.StringVar(&cf.output, "o", "text", "output format: text or json")
	return fs, cf
}

// call dials the endpoint and runs fn with a client and a context bounded
// by --timeout.
func (cf *clientFlags) call(ctx context.Context, fn func(context.Context, *client.Client) error) error {
	c, err := cf.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	return fn(ctx, c)
}

func (cf *clientFlags) dial() (*client.Client, error) {
	if cf.output != "text" && cf.output != "json" {
		return nil, fmt.Errorf("%w: -o %q: want text or json", errUsage, cf.output)
	}
	return client.Dial(cf.endpoint)
}

func runPut(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("put", stderr)
	prev := fs.Bool("prev-kv", false, "print the previous value")
	minReplicas := fs.Uint("min-replicas", 0, "also wait until this many connected peers have the write durably")
	wait := waitFlag(fs)
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	waitOpts, err := waitOptions(*wait)
	if err != nil {
		return err
	}
	var value []byte
	switch len(rest) {
	case 1:
		// Like etcdctl: the value comes from standard input, so binary and
		// large values work.
		if value, err = io.ReadAll(stdin); err != nil {
			return fmt.Errorf("read value from stdin: %w", err)
		}
	case 2:
		value = []byte(rest[1])
	default:
		return fmt.Errorf("%w: put KEY [VALUE] (the value is read from stdin when omitted)", errUsage)
	}
	return cf.call(ctx, func(ctx context.Context, c *client.Client) error {
		opts := append([]client.OpOption{client.WithMinReplicas(uint32(*minReplicas))}, waitOpts...)
		if *prev {
			opts = append(opts, client.WithPrevKV())
		}
		res, err := c.Put(ctx, rest[0], value, opts...)
		if err != nil {
			return err
		}
		if cf.output == "json" {
			return json.NewEncoder(stdout).Encode(map[string]any{"revision": res.Revision, "kv": jsonKV(res.KV), "prev_kv": jsonKV(res.Prev)})
		}
		fmt.Fprintln(stdout, "OK")
		if res.Prev != nil {
			fmt.Fprintf(stdout, "%s\n%s\n", res.Prev.Key, res.Prev.Value)
		}
		return nil
	})
}

func runGet(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("get", stderr)
	prefix := fs.Bool("prefix", false, "get every key with KEY as prefix")
	valueOnly := fs.Bool("print-value-only", false, "print only the value")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: get KEY [--prefix]", errUsage)
	}
	return cf.call(ctx, func(ctx context.Context, c *client.Client) error {
		if *prefix {
			return list(ctx, c, cf, rest[0], true, *valueOnly, stdout)
		}
		kv, err := c.Get(ctx, rest[0])
		if errors.Is(err, client.ErrNotFound) {
			return nil // like etcdctl: nothing printed, exit 0
		}
		if err != nil {
			return err
		}
		return printKV(stdout, cf.output, kv, true, *valueOnly)
	})
}

func runLs(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("ls", stderr)
	values := fs.Bool("values", false, "print values too (key line, then value line)")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 1 {
		return fmt.Errorf("%w: ls [PREFIX]", errUsage)
	}
	prefix := ""
	if len(rest) == 1 {
		prefix = rest[0]
	}
	return cf.call(ctx, func(ctx context.Context, c *client.Client) error {
		return list(ctx, c, cf, prefix, *values, false, stdout)
	})
}

func list(ctx context.Context, c *client.Client, cf *clientFlags, prefix string, values, valueOnly bool, stdout io.Writer) error {
	for kv, err := range c.List(ctx, prefix) {
		if err != nil {
			return err
		}
		if err := printKV(stdout, cf.output, kv, values, valueOnly); err != nil {
			return err
		}
	}
	return nil
}

func runDel(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("del", stderr)
	prev := fs.Bool("prev-kv", false, "print the deleted value")
	minReplicas := fs.Uint("min-replicas", 0, "also wait until this many connected peers have the delete durably")
	wait := waitFlag(fs)
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	waitOpts, err := waitOptions(*wait)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: del KEY", errUsage)
	}
	return cf.call(ctx, func(ctx context.Context, c *client.Client) error {
		opts := append([]client.OpOption{client.WithMinReplicas(uint32(*minReplicas))}, waitOpts...)
		if *prev {
			opts = append(opts, client.WithPrevKV())
		}
		res, err := c.Delete(ctx, rest[0], opts...)
		if err != nil {
			return err
		}
		deleted := 0
		if res.Deleted {
			deleted = 1
		}
		if cf.output == "json" {
			return json.NewEncoder(stdout).Encode(map[string]any{"revision": res.Revision, "deleted": deleted, "prev_kv": jsonKV(res.Prev)})
		}
		fmt.Fprintln(stdout, deleted) // like etcdctl: the number of keys deleted
		if res.Prev != nil {
			fmt.Fprintf(stdout, "%s\n%s\n", res.Prev.Key, res.Prev.Value)
		}
		return nil
	})
}

func runWatch(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("watch", stderr)
	rev := fs.Int64("rev", 0, "replay changes from this revision on (0: from now)")
	exact := fs.Bool("exact", false, "watch only the key PREFIX itself, not the keys under it")
	prevKV := fs.Bool("prev-kv", false, "print each event's previous value")
	converged := convergedFlag(fs)
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 1 {
		return fmt.Errorf("%w: watch [PREFIX] [--rev N] [-o json]", errUsage)
	}
	key := ""
	if len(rest) == 1 {
		key = rest[0]
	}
	if *exact && key == "" {
		return fmt.Errorf("%w: --exact needs a key", errUsage)
	}
	c, err := cf.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	opts := []client.WatchOption{client.WithStartRevision(*rev)}
	if !*exact {
		opts = append(opts, client.WithPrefix())
	}
	if *prevKV {
		opts = append(opts, client.WithWatchPrevKV())
	}
	if *converged {
		opts = append(opts, client.WithConverged())
	}
	// The watch lives until SIGINT: --timeout does not apply to it.
	w, err := c.Watch(ctx, key, opts...)
	if err != nil {
		return err
	}
	defer w.Close()
	enc := json.NewEncoder(stdout)
	for ev, err := range w.Events() {
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: a clean end
			}
			return err
		}
		if cf.output == "json" {
			if err := enc.Encode(map[string]any{"type": ev.Type.String(), "revision": ev.KV.ModRevision, "kv": jsonKV(ev.KV), "prev_kv": jsonKV(ev.Prev), "converged_hlc": ev.ConvergedHLC}); err != nil {
				return err
			}
			continue
		}
		line := fmt.Sprintf("%d %s %s", ev.KV.ModRevision, ev.Type, quote([]byte(ev.KV.Key)))
		if ev.Type == client.EventPut {
			line += " " + quote(ev.KV.Value)
		}
		if ev.Prev != nil {
			line += " prev=" + quote(ev.Prev.Value)
		}
		line += convergedSuffix(ev)
		if _, err := fmt.Fprintln(stdout, line); err != nil {
			return err
		}
	}
	return nil
}

func runStatus(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("status", stderr)
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: status takes no arguments", errUsage)
	}
	return cf.call(ctx, func(ctx context.Context, c *client.Client) error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if cf.output == "json" {
			return json.NewEncoder(stdout).Encode(st)
		}
		fmt.Fprintf(stdout, "node:            %s\nversion:         %s\nrevision:        %d\noldest revision: %d\nmax key bytes:   %d\nmax value bytes: %d\nkeys:            %d\nmerkle root:     %016x\n",
			st.NodeID, st.Version, st.Revision, st.OldestRevision, st.MaxKeyBytes, st.MaxValueBytes, st.Keys, st.MerkleRoot)
		return nil
	})
}

// printKV prints one key: text is the key line, then (with values) the value
// line, as etcdctl does; json is one object per line.
func printKV(w io.Writer, output string, kv *client.KeyValue, values, valueOnly bool) error {
	if output == "json" {
		return json.NewEncoder(w).Encode(jsonKV(kv))
	}
	var b bytes.Buffer
	if !valueOnly {
		b.WriteString(kv.Key)
		b.WriteByte('\n')
	}
	if values || valueOnly {
		b.Write(kv.Value)
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

// jsonKV is a key as JSON: the value as a string when it is UTF-8, else in
// value_base64.
func jsonKV(kv *client.KeyValue) map[string]any {
	if kv == nil {
		return nil
	}
	m := map[string]any{
		"key":             kv.Key,
		"create_revision": kv.CreateRevision,
		"mod_revision":    kv.ModRevision,
		"version":         kv.Version,
		"hlc":             kv.HLC,
		"origin":          kv.Origin,
	}
	if utf8.Valid(kv.Value) {
		m["value"] = string(kv.Value)
	} else {
		m["value_base64"] = base64.StdEncoding.EncodeToString(kv.Value)
	}
	return m
}

// quote leaves plain words as they are and quotes anything with spaces,
// quotes or unprintable bytes, so that a line always splits into its fields.
func quote(b []byte) string {
	s := string(b)
	if s == "" || !utf8.ValidString(s) || strconv.Quote(s) != `"`+s+`"` || bytes.ContainsAny(b, " \t") {
		return strconv.Quote(s)
	}
	return s
}

func runMembers(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("members", stderr)
	watchFlag := fs.Bool("watch", false, "follow the member list: one line per change (PEER_ID STATE INCARNATION NAME), until interrupted")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: members takes no arguments", errUsage)
	}
	if *watchFlag {
		c, err := cf.dial()
		if err != nil {
			return err
		}
		defer c.Close()
		w, err := c.WatchMembers(ctx)
		if err != nil {
			return err
		}
		defer w.Close()
		for {
			up, err := w.Next(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil // interrupted
				}
				return err
			}
			for _, m := range up.Members {
				if cf.output == "json" {
					if err := json.NewEncoder(stdout).Encode(m); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(stdout, "%s %s %d %s\n", m.PeerID, m.State, m.Incarnation, quote([]byte(m.Name)))
			}
			for _, id := range up.Removed {
				fmt.Fprintf(stdout, "%s removed\n", id)
			}
		}
	}
	return cf.call(ctx, func(ctx context.Context, c *client.Client) error {
		cluster, members, err := c.Members(ctx)
		if err != nil {
			return err
		}
		if cf.output == "json" {
			return json.NewEncoder(stdout).Encode(map[string]any{"cluster": cluster, "members": members})
		}
		fmt.Fprintf(stdout, "cluster %s\n", cluster)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PEER ID\tNAME\tSTATE\tROLE\tMERKLE ROOT\tCONVERGED\tREVISION\tKEYS\tLAG\tADDRS")
		for _, m := range members {
			role := "peer"
			switch {
			case m.Self:
				role = "self"
			case m.Gossip:
				role = "peer+gossip"
			}
			if !m.Admitted {
				role += ",not-admitted"
			}
			root, converged, rev, keys := fmt.Sprintf("%016x", m.MerkleRoot), "no", fmt.Sprint(m.Revision), fmt.Sprint(m.Keys)
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.PeerID, name, m.State, role, root, converged, rev, keys, lagColumn(m), strings.Join(m.Addrs, ","))
		}
		return tw.Flush()
	})
}

func runSync(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("sync", stderr)
	peerID := fs.String("peer", "", "the peer id to sync with (required; chorus members lists them)")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 || *peerID == "" {
		return fmt.Errorf("%w: sync takes --peer ID and no arguments", errUsage)
	}
	return cf.call(ctx, func(ctx context.Context, c *client.Client) error {
		res, err := c.Sync(ctx, *peerID)
		if err != nil {
			return err
		}
		if cf.output == "json" {
			return json.NewEncoder(stdout).Encode(res)
		}
		fmt.Fprintf(stdout, "synced with %s in %v, %d round trips: sent %d entries (%d bytes), received %d (%d bytes), %d changed this node\n",
			res.PeerID, res.Duration.Round(time.Microsecond), res.RoundTrips, res.EntriesSent, res.BytesSent, res.EntriesReceived, res.BytesReceived, res.EntriesApplied)
		if res.Partial {
			fmt.Fprintln(stdout, "the difference was larger than one session repairs: the node continues it in the next sessions")
		}
		fmt.Fprintf(stdout, "merkle root %016x (peer's at the start %016x)\n", res.LocalRoot, res.PeerRoot)
		return nil
	})
}
