package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/chorus-kv/chorus/client"
)

// clientFlags are the flags every client command takes.
type clientFlags struct {
	endpoint string
	timeout  time.Duration
	output   string
}

// addClientFlags declares --endpoint, --timeout and -o/--output on cmd.
func addClientFlags(cmd *cobra.Command) *clientFlags {
	cf := &clientFlags{}
	endpoint := os.Getenv("CHORUS_ENDPOINT")
	if endpoint == "" {
		endpoint = defaultEndpoint
	}
	fs := cmd.Flags()
	fs.StringVar(&cf.endpoint, "endpoint", endpoint, "host:port of a node's client API ($CHORUS_ENDPOINT sets the default)")
	fs.DurationVar(&cf.timeout, "timeout", 10*time.Second, "how long one request may take")
	fs.StringVarP(&cf.output, "output", "o", "text", "output format: text or json")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cf
}

// call dials the endpoint and runs fn with a client and a context bounded
// by --timeout. Errors come back described for a person (describeErr).
func (cf *clientFlags) call(ctx context.Context, fn func(context.Context, *client.Client) error) error {
	c, err := cf.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	return describeErr(fn(ctx, c), cf.endpoint)
}

func (cf *clientFlags) dial() (*client.Client, error) {
	if cf.output != "text" && cf.output != "json" {
		return nil, fmt.Errorf("%w: -o %q: want text or json", errUsage, cf.output)
	}
	if err := checkEndpoint(cf.endpoint); err != nil {
		return nil, err
	}
	c, err := client.Dial(cf.endpoint)
	if err != nil {
		return nil, describeErr(err, cf.endpoint)
	}
	return c, nil
}

func (cf *clientFlags) json() bool { return cf.output == "json" }

func newPutCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "put KEY [VALUE]",
		Short: "write a key (the value from stdin if omitted)",
		Long: "Write a key. Without VALUE the value is read from standard input, so binary and large values work;\n" +
			"standard input must then be a pipe or a file (not a terminal), and an empty value needs --allow-empty.",
		Example: "  chorus put /config/region eu-west-1\n  chorus put /config/app < app.json",
		Args:    argsBetween(1, 2, "put KEY [VALUE] (the value is read from stdin when omitted)"),
	}
	cf := addClientFlags(cmd)
	prev := cmd.Flags().Bool("prev-kv", false, "print the previous value")
	minReplicas := cmd.Flags().Uint("min-replicas", 0, "also wait until this many connected peers have the write durably")
	wait := waitFlag(cmd.Flags())
	allowEmpty := cmd.Flags().Bool("allow-empty", false, "accept an empty value from stdin (otherwise refused, so that a forgotten value does not blank a key)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		waitOpts, err := waitOptions(*wait)
		if err != nil {
			return err
		}
		var value []byte
		if len(args) == 2 {
			value = []byte(args[1])
		} else {
			if value, err = readValue(cmd.Context(), cio.stdin, *allowEmpty); err != nil {
				return err
			}
		}
		return cf.call(cmd.Context(), func(ctx context.Context, c *client.Client) error {
			opts := append([]client.OpOption{client.WithMinReplicas(uint32(*minReplicas))}, waitOpts...)
			if *prev {
				opts = append(opts, client.WithPrevKV())
			}
			res, err := c.Put(ctx, args[0], value, opts...)
			if err != nil {
				return err
			}
			if cf.json() {
				return json.NewEncoder(cio.stdout).Encode(map[string]any{"revision": res.Revision, "kv": jsonKV(res.KV), "prev_kv": jsonKV(res.Prev)})
			}
			fmt.Fprintln(cio.stdout, "OK")
			if res.Prev != nil {
				fmt.Fprintf(cio.stdout, "%s\n%s\n", res.Prev.Key, res.Prev.Value)
			}
			return nil
		})
	}
	return cmd
}

func newGetCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "read a key (--prefix for every key under it)",
		Long: "Read a key: its key line, then its value line. A key that does not exist is an error (exit code 1,\n" +
			"unlike etcdctl, which prints nothing and exits 0), so that scripts can tell an absent key from an empty value.\n" +
			"With --prefix, no key under the prefix is not an error. --print-value-only prints the value's bytes exactly,\n" +
			"without a newline after it (with --prefix, each value is followed by one).",
		Args: argsBetween(1, 1, "get KEY [--prefix]"),
	}
	cf := addClientFlags(cmd)
	prefix := cmd.Flags().Bool("prefix", false, "get every key with KEY as prefix")
	valueOnly := cmd.Flags().Bool("print-value-only", false, "print only the value, exactly as stored")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return cf.call(cmd.Context(), func(ctx context.Context, c *client.Client) error {
			if *prefix {
				return list(ctx, c, cf, args[0], true, *valueOnly, cio.stdout)
			}
			kv, err := c.Get(ctx, args[0])
			if errors.Is(err, client.ErrNotFound) {
				return fmt.Errorf("key %s not found", quote([]byte(args[0])))
			}
			if err != nil {
				return err
			}
			if *valueOnly && !cf.json() {
				_, err := cio.stdout.Write(kv.Value)
				return err
			}
			return printKV(cio.stdout, cf.output, kv, true, *valueOnly)
		})
	}
	return cmd
}

// reservedPrefix holds the cluster's own keys (the member list); ls hides
// them unless asked.
const reservedPrefix = "/chorus/"

func newLsCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls [PREFIX]",
		Short: "list keys in key order",
		Long:  "List keys in key order. Keys under the reserved " + reservedPrefix + " prefix (the member list) are left out unless\n--all is given or PREFIX is under it.",
		Args:  argsBetween(0, 1, "ls [PREFIX]"),
	}
	cf := addClientFlags(cmd)
	values := cmd.Flags().Bool("values", false, "print values too (key line, then value line)")
	all := cmd.Flags().BoolP("all", "a", false, "include the reserved "+reservedPrefix+" keys")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		prefix := ""
		if len(args) == 1 {
			prefix = args[0]
		}
		hide := !*all && !strings.HasPrefix(prefix, reservedPrefix)
		return cf.call(cmd.Context(), func(ctx context.Context, c *client.Client) error {
			for kv, err := range c.List(ctx, prefix) {
				if err != nil {
					return err
				}
				if hide && strings.HasPrefix(kv.Key, reservedPrefix) {
					continue
				}
				if err := printKV(cio.stdout, cf.output, kv, *values, false); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return cmd
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

func newDelCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "del KEY",
		Short: "delete a key (--prefix: every key under it); prints how many were deleted",
		Long: "Delete a key and print how many keys were deleted (1 or 0), as etcdctl does. With --prefix, every key\n" +
			"under KEY is deleted, one delete per key, " + fmt.Sprint(delConcurrency) + " in flight (not atomically: a key written under the prefix\n" +
			"meanwhile may stay); --timeout then bounds each request, and a progress bar shows on standard error\n" +
			"when it is a terminal.",
		Args: argsBetween(1, 1, "del KEY [--prefix]"),
	}
	cf := addClientFlags(cmd)
	prev := cmd.Flags().Bool("prev-kv", false, "print the deleted values")
	prefix := cmd.Flags().Bool("prefix", false, "delete every key with KEY as prefix")
	minReplicas := cmd.Flags().Uint("min-replicas", 0, "also wait until this many connected peers have the delete durably")
	wait := waitFlag(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		waitOpts, err := waitOptions(*wait)
		if err != nil {
			return err
		}
		opts := append([]client.OpOption{client.WithMinReplicas(uint32(*minReplicas))}, waitOpts...)
		if *prev {
			opts = append(opts, client.WithPrevKV())
		}
		var results []*client.DeleteResult
		if *prefix {
			if args[0] == "" {
				return fmt.Errorf("%w: del --prefix needs a non-empty prefix", errUsage)
			}
			if results, err = deletePrefix(cmd.Context(), cio, cf, args[0], opts); err != nil {
				return err
			}
		} else {
			err := cf.call(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				res, err := c.Delete(ctx, args[0], opts...)
				results = []*client.DeleteResult{res}
				return err
			})
			if err != nil {
				return err
			}
		}
		var (
			deleted  int
			revision int64
			prevs    []map[string]any
			prevText bytes.Buffer
		)
		for _, res := range results {
			revision = max(revision, res.Revision)
			if res.Deleted {
				deleted++
			}
			if res.Prev != nil {
				prevs = append(prevs, jsonKV(res.Prev))
				fmt.Fprintf(&prevText, "%s\n%s\n", res.Prev.Key, res.Prev.Value)
			}
		}
		if cf.json() {
			out := map[string]any{"revision": revision, "deleted": deleted, "prev_kvs": prevs}
			if !*prefix {
				out["prev_kv"] = nil
				if len(prevs) == 1 {
					out["prev_kv"] = prevs[0]
				}
			}
			return json.NewEncoder(cio.stdout).Encode(out)
		}
		fmt.Fprintln(cio.stdout, deleted) // like etcdctl: the number of keys deleted
		_, err = cio.stdout.Write(prevText.Bytes())
		return err
	}
	return cmd
}

// deletePrefix is `del --prefix`: it lists the keys under prefix, then
// deletes them, with a progress bar on a terminal.
func deletePrefix(ctx context.Context, cio *cmdIO, cf *clientFlags, prefix string, opts []client.OpOption) ([]*client.DeleteResult, error) {
	c, err := cf.dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	bar := newProgressBar(cio.stderr, "listing", "keys")
	keys, err := listKeys(ctx, c, prefix, cf.timeout, func(n int) { bar.update(int64(n), 0, 0) })
	bar.done()
	if err != nil {
		return nil, describeErr(err, cf.endpoint)
	}
	bar = newProgressBar(cio.stderr, "deleting", "keys")
	results, err := deleteKeys(ctx, c, cf.endpoint, keys, cf.timeout, opts, func(n int) { bar.update(int64(n), int64(len(keys)), 0) })
	bar.done()
	return results, err
}

func newWatchCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch [PREFIX]",
		Short: "print every change under PREFIX, one line each, until interrupted",
		Long: "Print every change under PREFIX, one line each: REVISION PUT KEY VALUE or REVISION DELETE KEY (quoted when\n" +
			"they hold spaces or unprintable bytes). The watch lives until interrupted: --timeout does not apply.",
		Args: argsBetween(0, 1, "watch [PREFIX] [--rev N] [-o json]"),
	}
	cf := addClientFlags(cmd)
	rev := cmd.Flags().Int64("rev", 0, "replay changes from this revision on (0: from now)")
	exact := cmd.Flags().Bool("exact", false, "watch only the key PREFIX itself, not the keys under it")
	prevKV := cmd.Flags().Bool("prev-kv", false, "print each event's previous value")
	converged := convergedFlag(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		key := ""
		if len(args) == 1 {
			key = args[0]
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
		w, err := c.Watch(ctx, key, opts...)
		if err != nil {
			return describeErr(err, cf.endpoint)
		}
		defer w.Close()
		enc := json.NewEncoder(cio.stdout)
		for ev, err := range w.Events() {
			if err != nil {
				if ctx.Err() != nil {
					return nil // interrupted: a clean end
				}
				return describeErr(err, cf.endpoint)
			}
			if cf.json() {
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
			if _, err := fmt.Fprintln(cio.stdout, line); err != nil {
				return err
			}
		}
		return nil
	}
	return cmd
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
