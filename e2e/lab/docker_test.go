package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/client"
)

const dockerTimeout = 2 * time.Minute

// docker runs the docker CLI and returns its trimmed stdout.
func docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func mustDocker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := docker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// requireDocker skips the test, saying why, where no Docker engine answers.
func requireDocker(t *testing.T) {
	t.Helper()
	if os.Getenv("CHORUS_LAB") == "0" {
		t.Skip("CHORUS_LAB=0: the container lab is skipped")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker CLI on PATH: the container lab needs a Docker engine; skipped")
	}
	if _, err := docker("info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("the Docker engine does not answer (%v): the container lab is skipped", err)
	}
}

// lab is five containers of one run, on one network.
type lab struct {
	t       *testing.T
	prefix  string // unique to the run: every name starts with it
	image   string
	network string
	secret  string // the join secret file on the host
	nodes   []*node
}

// node is one container.
type node struct {
	lab    *lab
	alias  string // its DNS name on the network: n1..n5
	name   string // the container's name
	volume string

	mu     sync.Mutex
	addr   string // the client API's published address on the host's loopback
	client *client.Client
}

// newLab builds the image, makes the network, the secret and the volumes,
// and registers their removal.
func newLab(t *testing.T, n int) *lab {
	t.Helper()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	l := &lab{t: t, prefix: "chorus-lab-" + hex.EncodeToString(suffix)}
	l.image = "chorus-lab:" + l.prefix
	l.network = l.prefix
	t.Cleanup(l.cleanup)

	start := time.Now()
	build := exec.Command(filepath.Join("..", "..", "deploy", "build-image.sh"), l.image)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the image: %v\n%s", err, out)
	}
	t.Logf("built image %s in %v", l.image, time.Since(start).Round(time.Millisecond))

	secret, err := exec.Command("docker", "run", "--rm", l.image, "join-secret").Output()
	if err != nil {
		t.Fatalf("chorus join-secret in the image: %v", err)
	}
	l.secret = filepath.Join(t.TempDir(), "join-secret")
	// Readable by the container's user (65532): the file is bind-mounted.
	if err := os.WriteFile(l.secret, secret, 0o644); err != nil {
		t.Fatal(err)
	}
	mustDocker(t, "network", "create", "--label", "chorus-lab="+l.prefix, l.network)
	for i := range n {
		nd := &node{lab: l, alias: fmt.Sprintf("n%d", i+1)}
		nd.name = l.prefix + "-" + nd.alias
		nd.volume = nd.name
		mustDocker(t, "volume", "create", "--label", "chorus-lab="+l.prefix, nd.volume)
		l.nodes = append(l.nodes, nd)
	}
	return l
}

// cleanup removes what the run made, failed or not; on failure it logs the
// end of every container's log first.
func (l *lab) cleanup() {
	for _, n := range l.nodes {
		n.closeClient()
		if l.t.Failed() {
			out, _ := exec.Command("docker", "logs", "--tail", "60", n.name).CombinedOutput()
			l.t.Logf("--- %s log (last 60 lines):\n%s", n.name, out)
		}
	}
	for _, n := range l.nodes {
		_, _ = docker("rm", "-f", "-v", n.name)
	}
	_, _ = docker("network", "rm", l.network)
	for _, n := range l.nodes {
		_, _ = docker("volume", "rm", "-f", n.volume)
	}
	_, _ = docker("rmi", "-f", l.image)
}

// start runs the node's container: the agent on all interfaces, the join
// secret, bootstrap from n1 and n2 by name.
func (n *node) start(t *testing.T) {
	t.Helper()
	l := n.lab
	mustDocker(t, "run", "-d", "--name", n.name, "--hostname", n.alias,
		"--label", "chorus-lab="+l.prefix,
		"--network", l.network, "--network-alias", n.alias,
		"-v", n.volume+":/data",
		"-v", l.secret+":/run/secrets/join-secret:ro",
		"-p", "127.0.0.1::7379",
		l.image, "agent",
		"--data-dir=/data", "--name="+n.alias,
		"--listen-client=0.0.0.0:7379", "--listen-p2p=/ip4/0.0.0.0/tcp/7380", "--listen-http=0.0.0.0:7381",
		"--join-secret=/run/secrets/join-secret",
		"--bootstrap=/dns4/n1/tcp/7380,/dns4/n2/tcp/7380",
		"--sync-interval=1s")
}

// cli runs the chorus CLI inside the container (it reaches the agent on
// the container's loopback, whatever the networks do).
func (n *node) cli(args ...string) (string, error) {
	return docker(append([]string{"exec", n.name, "/chorus"}, args...)...)
}

// ready reports whether `chorus health` in the container exits 0.
func (n *node) ready() bool {
	_, err := n.cli("health", "--endpoint", "127.0.0.1:7381")
	return err == nil
}

// sdk returns a client of the node's API through its published port; the
// port changes when the container restarts, so it is looked up again after
// closeClient.
func (n *node) sdk() (*client.Client, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.client != nil {
		return n.client, nil
	}
	addr, err := docker("port", n.name, "7379/tcp")
	if err != nil {
		return nil, err
	}
	addr = strings.Split(addr, "\n")[0]
	c, err := client.Dial(addr)
	if err != nil {
		return nil, err
	}
	n.addr, n.client = addr, c
	return c, nil
}

func (n *node) closeClient() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.client != nil {
		_ = n.client.Close()
		n.client = nil
	}
}

// put writes through the SDK; an error drops the cached client.
func (n *node) put(key, value string) error {
	c, err := n.sdk()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, key, []byte(value)); err != nil {
		n.closeClient()
		return err
	}
	return nil
}

// dump returns every key under prefix with its value.
func (n *node) dump(prefix string) (map[string]string, error) {
	kvs, err := n.list(prefix)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.Key] = string(kv.Value)
	}
	return out, nil
}

// list returns every key under prefix, with its revisions on this node.
func (n *node) list(prefix string) ([]*client.KeyValue, error) {
	c, err := n.sdk()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*client.KeyValue
	for kv, err := range c.List(ctx, prefix) {
		if err != nil {
			n.closeClient()
			return nil, err
		}
		out = append(out, kv)
	}
	return out, nil
}

// members is `chorus members` as this node sees it.
func (n *node) members() ([]client.Member, error) {
	c, err := n.sdk()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, ms, err := c.Members(ctx)
	if err != nil {
		n.closeClient()
	}
	return ms, err
}

func (n *node) status() (*client.Status, error) {
	c, err := n.sdk()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		n.closeClient()
	}
	return st, err
}

// labPoll is how often the lab checks a condition it waits for: each check
// runs docker and the CLI, so it is not polled faster.
const labPoll = 100 * time.Millisecond

// each runs f on every node at once and returns the first error.
func each(nodes []*node, f func(i int, n *node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i, n)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// allHave reports whether every node holds want (key → value) under prefix.
func allHave(nodes []*node, prefix string, want map[string]string) (bool, string) {
	err := each(nodes, func(_ int, n *node) error {
		got, err := n.dump(prefix)
		if err != nil {
			return fmt.Errorf("%s: %w", n.alias, err)
		}
		missing, wrong := 0, ""
		for k, v := range want {
			g, ok := got[k]
			switch {
			case !ok:
				missing++
			case g != v && wrong == "":
				wrong = fmt.Sprintf("%s=%q (want %q)", k, g, v)
			}
		}
		if missing > 0 || wrong != "" {
			return fmt.Errorf("%s: %d of %d keys missing, first wrong value: %s", n.alias, missing, len(want), wrong)
		}
		return nil
	})
	if err != nil {
		return false, err.Error()
	}
	return true, ""
}

// stateOf returns how observer's failure detector sees target ("" if not listed).
func stateOf(observer *node, target string) (string, error) {
	ms, err := observer.members()
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.Name == target {
			return m.State, nil
		}
	}
	return "", nil
}

// allAliveConverged reports whether every node lists every other node as
// an alive, admitted member with the same Merkle root.
func allAliveConverged(nodes []*node) (bool, string) {
	err := each(nodes, func(_ int, n *node) error {
		ms, err := n.members()
		if err != nil {
			return fmt.Errorf("%s: %w", n.alias, err)
		}
		seen := map[string]bool{}
		for _, m := range ms {
			if m.State == "alive" && m.Admitted && m.Converged {
				seen[m.Name] = true
			}
		}
		for _, o := range nodes {
			if !seen[o.alias] {
				b, _ := json.Marshal(ms)
				return fmt.Errorf("%s does not see %s alive, admitted and converged: %s", n.alias, o.alias, b)
			}
		}
		return nil
	})
	if err != nil {
		return false, err.Error()
	}
	return true, ""
}
