package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chorus-kv/chorus/crdt"
	"github.com/chorus-kv/chorus/crdt/store"
	"github.com/chorus-kv/chorus/internal/etcdapi"
	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/p2p"
	"github.com/chorus-kv/chorus/watch"
)

const version = node.Version

func newAgentCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "run a node; stops cleanly on SIGINT/SIGTERM",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	var cfg node.Config
	fs.StringVar(&cfg.DataDir, "data-dir", node.DefaultDataDir, "folder for the node's identity key and LevelDB store")
	fs.StringVar(&cfg.ListenClient, "listen-client", node.DefaultListenClient, "host:port of the gRPC client API (port 0 picks a free one)")
	fs.IntVar(&cfg.Limits.MaxKeyBytes, "max-key-bytes", crdt.DefaultMaxKeyBytes, "largest key accepted, in bytes")
	fs.IntVar(&cfg.Limits.MaxValueBytes, "max-value-bytes", crdt.DefaultMaxValueBytes, "largest value accepted, in bytes")
	fs.DurationVar(&cfg.MaxClockOffset, "max-clock-offset", crdt.DefaultMaxOffset, "how far ahead of this node's clock another node's timestamp may be")
	fs.Int64Var(&cfg.RetainRevisions, "retain-revisions", 100_000, "change-log records kept for watches resuming from a revision")
	fs.IntVar(&cfg.WatchBuffer, "watch-buffer", 4096, "events that may wait for a watcher before it is cancelled as too slow")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", node.DefaultShutdownTimeout, "how long shutdown waits for in-flight calls")
	fs.StringVar(&cfg.Cluster, "cluster", p2p.DefaultCluster, "cluster name: scopes gossip topics and protocols so that clusters on one network stay apart")
	var listenP2P, bootstrap listFlag
	fs.Var(&listenP2P, "listen-p2p", "libp2p multiaddrs to listen on, comma-separated or repeated (default "+strings.Join(p2p.DefaultListenAddrs, ",")+")")
	fs.Var(&bootstrap, "bootstrap", "peer multiaddrs (/ip4/.../tcp/PORT or /dns4/HOST/tcp/PORT, with /p2p/<peer id> or without: the id is then learned at each dial), comma-separated or repeated; dialled with backoff until connected")
	fs.BoolVar(&cfg.MDNS, "mdns", false, "find peers of the same cluster on the local network")
	fs.StringVar(&cfg.Name, "name", "", "this node's name in the member list (default: host name and the end of the peer id)")
	admission := fs.String("admission", "members", "members: only peers on the replicated member list may connect (chorus member add); open: any peer that reaches the node (labs and tests)")
	fs.BoolVar(&cfg.Repair, "repair", false, "start even though the store's files are damaged (a journal or table that fails its checksum): keep what is readable and refuse client reads until a complete anti-entropy session with another member")
	fs.BoolVar(&cfg.NewIdentity, "new-identity", false, "start with a new identity key when the data folder holds data but its identity.key is missing (the other members must then admit the new peer id)")
	fs.StringVar(&cfg.JoinSecretFile, "join-secret", "", "file holding the cluster's join secret (chorus join-secret makes one): only hosts holding it can connect, and each joins the member list by itself; TCP only")
	fs.StringVar(&cfg.ListenHTTP, "listen-http", "", "host:port serving /healthz, /readyz and /metrics, or off (default: --listen-client's host, its port + 2: "+node.DefaultListenHTTP+")")
	fs.StringVar(&cfg.SwarmKeyFile, "swarm-key", "", "libp2p private-network key file (chorus swarm-key makes one): peers without it cannot connect; TCP only")
	fs.DurationVar(&cfg.SyncInterval, "sync-interval", p2p.DefaultSyncInterval, "how often to run anti-entropy with a random connected peer (±20% jitter; negative: only on connect and on demand)")
	fs.DurationVar(&cfg.SyncTimeout, "sync-timeout", p2p.DefaultSyncTimeout, "deadline of one anti-entropy session")
	fs.DurationVar(&cfg.TombstoneGrace, "tombstone-grace", store.DefaultTombstoneGrace, "how long deletes are remembered before their tombstones are purged; a node out of contact for longer must be reset")
	fs.StringVar(&cfg.ListenEtcd, "listen-etcd", "", "host:port of the etcd v3 API, e.g. 127.0.0.1:2379 (off when empty; port 0 picks a free one)")
	fs.DurationVar(&cfg.WatchProgressNotifyInterval, "watch-progress-notify-interval", etcdapi.DefaultProgressNotifyInterval, "etcd API: how often a watch created with progress_notify that had no events gets a progress notification (etcd's flag of the same name)")
	// Resource bounds: connection caps and idle timeouts (see README,
	// "Resource bounds").
	fs.IntVar(&cfg.MaxClientConns, "max-client-conns", node.DefaultMaxClientConns, "client connections each gRPC listener (client API, etcd API) holds at once; more are closed at once (lowered with a warning when the descriptor limit cannot hold it)")
	fs.IntVar(&cfg.MaxHTTPConns, "max-http-conns", node.DefaultMaxHTTPConns, "connections the HTTP listener (/healthz, /readyz) holds at once")
	fs.DurationVar(&cfg.ClientIdleTimeout, "client-idle-timeout", node.DefaultClientIdleTimeout, "close a client connection with no call or stream in flight for this long (clients reconnect at their next call)")
	fs.IntVar(&cfg.MaxWatches, "max-watches", watch.DefaultMaxWatchers, "watches open on the node at once, through either API; one more fails with ResourceExhausted")
	fs.IntVar(&cfg.MaxWatchesPerStream, "max-watches-per-stream", etcdapi.DefaultMaxWatchesPerStream, "etcd API: watches open on one Watch stream; one more is canceled at creation")
	fs.IntVar(&cfg.MaxRangeResponseBytes, "max-range-response-bytes", etcdapi.DefaultMaxRangeResponseBytes, "etcd API: key and value bytes one Range (or the Ranges of one Txn) may hold; past it the call fails with ResourceExhausted, saying to read in pages")
	fs.IntVar(&cfg.MaxConcurrentRangeReads, "max-concurrent-range-reads", etcdapi.DefaultMaxConcurrentRangeReads, "etcd API: expensive reads (ranges without a limit or above 1,000 keys, at a past revision, sorted or filtered) run at once; the others wait")

	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	faultPartitionFile := fs.String("fault-partition", "", "tests only: a file of peer ids, one per line, re-read every 100 ms, that this node is cut off from as by a network partition")
	listenDebug := fs.String("listen-debug", "", "host:port serving Go's profiles at /debug/pprof/ (off when empty; port 0 picks a free one); keep it on loopback or a trusted network: profiles reveal the process's internals")
	_ = cmd.MarkFlagDirname("data-dir")
	_ = cmd.MarkFlagFilename("join-secret")
	_ = cmd.MarkFlagFilename("swarm-key")
	_ = cmd.RegisterFlagCompletionFunc("admission", cobra.FixedCompletions([]string{"members", "open"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg.ListenP2P, cfg.Bootstrap = listenP2P, bootstrap
		return runAgent(cmd.Context(), cfg, *admission, *logLevel, *listenDebug, *faultPartitionFile, cio.stderr)
	}
	return cmd
}

func runAgent(ctx context.Context, cfg node.Config, admission, logLevel, listenDebug, faultPartitionFile string, stderr io.Writer) error {
	switch admission {
	case "members":
	case "open":
		cfg.OpenAdmission = true
	default:
		return fmt.Errorf("%w: --admission is %q; want members or open", errUsage, admission)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level %q: %v", errUsage, logLevel, err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if v := os.Getenv(testClockOffsetEnv); v != "" {
		offset, err := parseTestClockOffset(v)
		if err != nil {
			return err
		}
		cfg.WallClock = crdt.OffsetWallClock(crdt.SystemWallClock, offset)
		cfg.Logger.Warn("test-only clock offset in effect: this node's HLC reads a skewed wall clock", "env", testClockOffsetEnv, "offset", offset)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(agentProcs(runtime.GOMAXPROCS(0)))
	}
	if listenDebug != "" {
		d, err := startDebug(listenDebug, cfg.Logger)
		if err != nil {
			return err
		}
		defer d.stop()
	}
	var fault *faultPartition
	if faultPartitionFile != "" {
		fault = newFaultPartition(faultPartitionFile)
		cfg.Gater = fault
	}
	n, err := node.Start(cfg)
	if err != nil {
		return err
	}
	if fault != nil {
		fault.run(n)
		defer fault.close()
	}
	select {
	case <-ctx.Done():
		cfg.Logger.Info("shutting down")
		return n.Close()
	case <-n.Refused():
		_ = n.Close()
		return n.RefusedErr()
	case <-n.Failed():
		cfg.Logger.Error("the store can no longer take writes; stopping", "err", n.Err())
		_ = n.Close()
		return n.Err()
	}
}

// testClockOffsetEnv names the test-only environment variable that offsets
// the wall clock the node's HLC reads (a Go duration: "2s", "-750ms"). The
// fault-injection suite (e2e/nemesis) uses it to run nodes with skewed
// clocks; it is not a flag and not for production. Unset, the node reads the
// system clock directly.
const testClockOffsetEnv = "CHORUS_TEST_CLOCK_OFFSET"

// parseTestClockOffset parses testClockOffsetEnv's value. The bound keeps a
// typo (a minute for a millisecond) from stamping writes far into the future.
func parseTestClockOffset(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %v (want a duration such as 2s or -750ms)", testClockOffsetEnv, v, err)
	}
	if d < -time.Hour || d > time.Hour {
		return 0, fmt.Errorf("%s=%v: the offset must be within ±1h", testClockOffsetEnv, d)
	}
	return d, nil
}

// listFlag is a flag that takes a comma-separated list and may be repeated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Type names the flag's value in help.
func (l *listFlag) Type() string { return "addrs" }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// agentProcs is the GOMAXPROCS an agent runs with, given Go's default (the
// CPUs it may use): twice as many, at least 4. A goroutine in fsync holds
// its P until the runtime's monitor takes it back, and the store fsyncs
// hundreds to thousands of times a second; with GOMAXPROCS at the CPU
// count, gRPC handlers and gossip then wait for a P while a CPU is idle.
// Measured with 3 nodes and 64 clients on 2 CPUs (BenchmarkReplicatedPut,
// 20,000 puts): 2,900 to 3,200 puts/s at 2, 5,400 to 5,800 at 4; a lone
// agent's single-client put takes about 0.2 ms longer at 4 than at 1. The
// GOMAXPROCS environment variable overrides it.
func agentProcs(cpus int) int { return max(2*cpus, 4) }
