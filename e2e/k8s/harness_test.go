package k8s

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// kubeVersion is the pinned k8s.io/kubernetes (go.mod): the name of the
// cached kube-apiserver binary.
const kubeVersion = "v1.37.2"

// Timeouts for things that must happen; a healthy run is far below them on
// a busy 2-core machine.
const (
	startTimeout = 5 * time.Minute // kube-apiserver until /readyz passes
	waitTimeout  = 60 * time.Second
)

// optIn skips the test unless CHORUS_K8S_E2E=1.
func optIn(t *testing.T) {
	t.Helper()
	if os.Getenv("CHORUS_K8S_E2E") != "1" {
		t.Skip("Kubernetes e2e: set CHORUS_K8S_E2E=1 to run it (it builds kube-apiserver, about 9 minutes the first time; CHORUS_KUBE_APISERVER=path uses a prebuilt one)")
	}
}

var bins struct {
	sync.Mutex
	paths map[string]string
}

// binDir is where the test builds binaries: bin/ beside this file, ignored
// by git and kept between runs (kube-apiserver takes minutes to build).
func binDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("bin")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// build runs `go build -o bin/name pkg` in folder dir once per test run
// (always when reuse is false; when true, an existing binary is kept).
func build(t *testing.T, name, dir, pkg string, reuse bool) string {
	t.Helper()
	bins.Lock()
	defer bins.Unlock()
	if p, ok := bins.paths[name]; ok {
		return p
	}
	out := filepath.Join(binDir(t), name)
	if _, err := os.Stat(out); err != nil || !reuse {
		start := time.Now()
		cmd := exec.Command("go", "build", "-buildvcs=false", "-o", out, pkg)
		cmd.Dir = dir
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s (in %s): %v\n%s", pkg, dir, err, b)
		}
		t.Logf("built %s in %v", name, time.Since(start).Round(time.Second))
	}
	if bins.paths == nil {
		bins.paths = map[string]string{}
	}
	bins.paths[name] = out
	return out
}

func chorusBin(t *testing.T) string {
	return build(t, "chorus", "../..", "./cmd/chorus", false)
}

func etcdBin(t *testing.T) string {
	return build(t, "etcd", "../etcdtools", "go.etcd.io/etcd/server/v3", true)
}

// apiserverBin is $CHORUS_KUBE_APISERVER, or kube-apiserver built from the
// pinned module (once: the binary is named by its version and kept).
func apiserverBin(t *testing.T) string {
	if p := os.Getenv("CHORUS_KUBE_APISERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CHORUS_KUBE_APISERVER: %v", err)
		}
		return p
	}
	return build(t, "kube-apiserver-"+kubeVersion, ".", "k8s.io/kubernetes/cmd/kube-apiserver", true)
}

// logBuf collects a process's output and lets a test wait for a line.
type logBuf struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLogBuf() *logBuf { return &logBuf{changed: make(chan struct{})} }

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor returns re's first submatch in the output, waiting up to timeout.
func (l *logBuf) waitFor(re *regexp.Regexp, timeout time.Duration, exited <-chan struct{}) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		m := re.FindStringSubmatch(l.buf.String())
		ch := l.changed
		l.mu.Unlock()
		if m != nil {
			return m[len(m)-1], nil
		}
		select {
		case <-ch:
		case <-exited:
			return "", fmt.Errorf("the process exited before printing %v", re)
		case <-deadline.C:
			return "", fmt.Errorf("no %v within %v", re, timeout)
		}
	}
}

// proc is a process of the test, stopped (SIGTERM, then SIGKILL) and
// reaped when the test ends; its output is logged if the test failed (or
// with CHORUS_K8S_LOGS=1).
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *logBuf
	exited chan struct{}
}

func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: newLogBuf(), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) stop(t *testing.T) {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if t.Failed() || os.Getenv("CHORUS_K8S_LOGS") == "1" {
		out := p.out.String()
		if len(out) > 200000 {
			out = "…" + out[len(out)-200000:]
		}
		t.Logf("%s output:\n%s", p.name, out)
	}
}

var (
	etcdAPIRE   = regexp.MustCompile(`msg="etcd API started" addr=(\S+)`)
	clientAPIRE = regexp.MustCompile(`msg="chorus node started" .*\bclient_api=(\S+)`)
	bootstrapRE = regexp.MustCompile(`msg="bootstrap from" addr=(\S+/tcp/\S+)`)
)

// chorusNode is an agent process with the etcd API.
type chorusNode struct {
	*proc
	dataDir    string
	etcdURL    string
	clientAddr string
	p2pAddr    string
}

// startChorus starts a Chorus agent on dataDir serving the etcd API;
// bootstrap, if set, is the p2p address of a member that admitted it.
func startChorus(t *testing.T, name, dataDir, bootstrap string) *chorusNode {
	t.Helper()
	args := []string{"agent", "--data-dir", dataDir, "--name", name, "--listen-client", "127.0.0.1:0",
		"--listen-etcd", "127.0.0.1:0", "--listen-p2p", "/ip4/127.0.0.1/tcp/0"}
	if bootstrap != "" {
		args = append(args, "--bootstrap", bootstrap)
	}
	n := &chorusNode{proc: startProc(t, "chorus "+name, chorusBin(t), args...), dataDir: dataDir}
	var err error
	if n.clientAddr, err = n.out.waitFor(clientAPIRE, waitTimeout, n.exited); err != nil {
		t.Fatalf("chorus %s: %v", name, err)
	}
	addr, err := n.out.waitFor(etcdAPIRE, waitTimeout, n.exited)
	if err != nil {
		t.Fatalf("chorus %s: %v", name, err)
	}
	n.etcdURL = "http://" + addr
	if n.p2pAddr, err = n.out.waitFor(bootstrapRE, waitTimeout, n.exited); err != nil {
		t.Fatalf("chorus %s: %v", name, err)
	}
	return n
}

// admit makes a data folder for a new node and admits its peer id on
// member, as an operator does (README, "A cluster").
func admit(t *testing.T, member *chorusNode, name string) string {
	t.Helper()
	dir := t.TempDir()
	id, err := exec.Command(chorusBin(t), "id", "--data-dir", dir).Output()
	if err != nil {
		t.Fatalf("chorus id: %v", err)
	}
	out, err := exec.Command(chorusBin(t), "member", "add", strings.TrimSpace(string(id)), "--name", name,
		"--endpoint", member.clientAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("chorus member add: %v\n%s", err, out)
	}
	return dir
}

// startEtcd starts a lone etcd member with its defaults.
func startEtcd(t *testing.T) string {
	t.Helper()
	client, peer := "http://127.0.0.1:"+freePort(t), "http://127.0.0.1:"+freePort(t)
	p := startProc(t, "etcd", etcdBin(t), "--name", "e0", "--data-dir", t.TempDir(),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "e0="+peer, "--log-level", "info")
	if _, err := p.out.waitFor(regexp.MustCompile(`ready to serve client requests`), waitTimeout, p.exited); err != nil {
		t.Fatalf("etcd: %v", err)
	}
	return client
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// pki is what kube-apiserver needs, made here with crypto/x509: a CA, a
// serving certificate for 127.0.0.1, an admin client certificate (group
// system:masters) and a service-account key pair.
type pki struct {
	dir                  string
	caPEM                []byte
	adminCert, adminKey  []byte
	serverCert, serverKy string // file paths
	caFile, saKey, saPub string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	caKey := mustECKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chorus-e2e-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p.caPEM = pemBlock("CERTIFICATE", caDER)
	p.caFile = p.write(t, "ca.crt", p.caPEM)

	issue := func(serial int64, subject pkix.Name, usage x509.ExtKeyUsage, ips []net.IP, dns []string) (certPEM, keyPEM []byte) {
		key := mustECKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: subject,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: ips, DNSNames: dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kb)
	}
	sc, sk := issue(2, pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth,
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2"), net.ParseIP("10.96.0.1")}, []string{"localhost", "kubernetes.default.svc"})
	p.serverCert, p.serverKy = p.write(t, "server.crt", sc), p.write(t, "server.key", sk)
	p.adminCert, p.adminKey = issue(3, pkix.Name{CommonName: "chorus-e2e-admin", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth, nil, nil)

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p.saKey = p.write(t, "sa.key", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)))
	p.saPub = p.write(t, "sa.pub", pemBlock("PUBLIC KEY", pub))
	return p
}

func mustECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func (p *pki) write(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// apiserver is a kube-apiserver process and a client-go client of it.
type apiserver struct {
	*proc
	cs      *kubernetes.Clientset
	cfg     *rest.Config
	startup time.Duration // from exec to /readyz passing
}

// startAPIServer starts kube-apiserver on the etcd endpoint etcdURL, with
// extra flags, and waits until /readyz passes.
func startAPIServer(t *testing.T, name, etcdURL string, p *pki, advertise string, extra ...string) *apiserver {
	t.Helper()
	bin := apiserverBin(t)
	port := freePort(t)
	args := append([]string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--secure-port=" + port, "--advertise-address=" + advertise,
		"--tls-cert-file=" + p.serverCert, "--tls-private-key-file=" + p.serverKy,
		"--client-ca-file=" + p.caFile, "--cert-dir=" + t.TempDir(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.saPub, "--service-account-signing-key-file=" + p.saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--authorization-mode=RBAC",
		// The lease reconciler refuses a loopback advertise address; the
		// "kubernetes" Service's endpoints are not needed here.
		"--endpoint-reconciler-type=none",
	}, extra...)
	start := time.Now()
	a := &apiserver{proc: startProc(t, name, bin, args...)}
	a.cfg = &rest.Config{
		Host:            "https://127.0.0.1:" + port,
		TLSClientConfig: rest.TLSClientConfig{CAData: p.caPEM, CertData: p.adminCert, KeyData: p.adminKey},
		QPS:             -1, // no client-side rate limit: the figures are the server's
		Timeout:         30 * time.Second,
	}
	var err error
	if a.cs, err = kubernetes.NewForConfig(a.cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last string
	for {
		body, err := a.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			break
		}
		last = fmt.Sprint(err, string(body))
		select {
		case <-a.exited:
			t.Fatalf("%s exited before /readyz passed (last answer: %s)", name, last)
		case <-ctx.Done():
			verbose, _ := a.cs.Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "1").DoRaw(context.Background())
			t.Fatalf("%s: /readyz did not pass within %v: %s\n%s", name, startTimeout, last, verbose)
		case <-time.After(100 * time.Millisecond): // polling interval, not synchronization
		}
	}
	a.startup = time.Since(start)
	t.Logf("%s ready after %v", name, a.startup.Round(time.Millisecond))
	return a
}
