package k8s

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// manifests are the decoded objects of every *.yaml file here.
type manifests struct {
	services []corev1.Service
	sts      []appsv1.StatefulSet
	pdbs     []policyv1.PodDisruptionBudget
}

// load decodes every document of every *.yaml file strictly (an unknown or
// duplicated field is an error) into its k8s.io/api type.
func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var m manifests
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			// As the API server decodes: YAML to JSON (duplicate keys are
			// errors), then field names matched case-sensitively, unknown
			// fields errors (encoding/json alone ignores case).
			strict := func(into any) {
				j, err := yaml.YAMLToJSONStrict([]byte(doc))
				if err != nil {
					t.Fatalf("%s document %d (%s): %v", f, i, tm.Kind, err)
				}
				strictErrs, err := kjson.UnmarshalStrict(j, into)
				if err = errors.Join(append(strictErrs, err)...); err != nil {
					t.Fatalf("%s document %d (%s): %v", f, i, tm.Kind, err)
				}
			}
			switch tm.APIVersion + "/" + tm.Kind {
			case "v1/Service":
				var s corev1.Service
				strict(&s)
				m.services = append(m.services, s)
			case "apps/v1/StatefulSet":
				var s appsv1.StatefulSet
				strict(&s)
				m.sts = append(m.sts, s)
			case "policy/v1/PodDisruptionBudget":
				var p policyv1.PodDisruptionBudget
				strict(&p)
				m.pdbs = append(m.pdbs, p)
			default:
				t.Fatalf("%s document %d: unexpected kind %s/%s", f, i, tm.APIVersion, tm.Kind)
			}
		}
	}
	return m
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// chorusBin builds the chorus binary of the main module.
func chorusBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "chorus")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/chorus")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build chorus: %v\n%s", err, out)
	}
	return bin
}

// agentFlags returns the flags `chorus agent -h` lists.
func agentFlags(t *testing.T, bin string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(bin, "agent", "-h").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-[a-z], )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 10 {
		t.Fatalf("chorus agent -h lists %d flags:\n%s", len(flags), out)
	}
	return flags
}

// parseArgs turns ["agent", "--a=b", ...] into a map, checking each flag
// against the binary's.
func parseArgs(t *testing.T, args []string, known map[string]bool) map[string]string {
	t.Helper()
	if len(args) == 0 || args[0] != "agent" {
		t.Fatalf("args %q: want the agent command first", args)
	}
	out := map[string]string{}
	for _, a := range args[1:] {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Fatalf("arg %q: want --flag=value", a)
		}
		if !known[name] {
			t.Errorf("arg %q: chorus agent has no flag %q", a, name)
		}
		out[name] = value
	}
	return out
}

func portOf(t *testing.T, hostPort string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatalf("%q: %v", hostPort, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

func TestManifests(t *testing.T) {
	m := load(t)
	if len(m.sts) != 1 || len(m.pdbs) != 1 || len(m.services) != 2 {
		t.Fatalf("want 1 StatefulSet, 1 PodDisruptionBudget, 2 Services; have %d, %d, %d", len(m.sts), len(m.pdbs), len(m.services))
	}
	bin := chorusBin(t)
	sts := m.sts[0]
	spec := sts.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	args := parseArgs(t, c.Args, agentFlags(t, bin))

	ports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		ports[p.Name] = p
	}
	// Ports: the flags, the container's named ports and the Services agree.
	if got := portOf(t, args["listen-client"]); ports["client"].ContainerPort != got {
		t.Errorf("--listen-client port %d, container port client %d", got, ports["client"].ContainerPort)
	}
	if got := portOf(t, args["listen-http"]); ports["http"].ContainerPort != got {
		t.Errorf("--listen-http port %d, container port http %d", got, ports["http"].ContainerPort)
	}
	p2p := regexp.MustCompile(`^/ip4/0\.0\.0\.0/tcp/(\d+)$`).FindStringSubmatch(args["listen-p2p"])
	if p2p == nil || p2p[1] != strconv.Itoa(int(ports["p2p"].ContainerPort)) {
		t.Errorf("--listen-p2p %q: want TCP on all interfaces at the p2p port %d (QUIC is off with a join secret)", args["listen-p2p"], ports["p2p"].ContainerPort)
	}

	// The headless Service names the pods the bootstrap list dials.
	var headless *corev1.Service
	for i := range m.services {
		s := &m.services[i]
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)) {
			t.Errorf("Service %s does not select the pods", s.Name)
		}
		for _, sp := range s.Spec.Ports {
			if _, ok := ports[sp.TargetPort.String()]; !ok {
				t.Errorf("Service %s port %s targets %q, which the container does not name", s.Name, sp.Name, sp.TargetPort.String())
			}
			if sp.Port != ports[sp.TargetPort.String()].ContainerPort {
				t.Errorf("Service %s port %s is %d; the container's is %d", s.Name, sp.Name, sp.Port, ports[sp.TargetPort.String()].ContainerPort)
			}
		}
		if s.Name == sts.Spec.ServiceName {
			headless = s
		}
	}
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Fatalf("the StatefulSet's service %q must be headless and publish pods not ready yet", sts.Spec.ServiceName)
	}
	var wantBoot []string
	for i := range 2 {
		wantBoot = append(wantBoot, fmt.Sprintf("/dns4/%s-%d.%s/tcp/%d", sts.Name, i, headless.Name, ports["p2p"].ContainerPort))
	}
	if got := strings.Split(args["bootstrap"], ","); !slices.Equal(got, wantBoot) {
		t.Errorf("--bootstrap %q; want %q", got, wantBoot)
	}
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("want 3 replicas started in parallel")
	}

	// Volumes: the data PVC at --data-dir, the join secret's file at --join-secret.
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || mounts[sts.Spec.VolumeClaimTemplates[0].Name].MountPath != args["data-dir"] {
		t.Errorf("--data-dir %q is not the volume claim template's mount", args["data-dir"])
	}
	var secretVol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].Secret != nil {
			secretVol = &spec.Volumes[i]
		}
	}
	if secretVol == nil {
		t.Fatal("no Secret volume")
	}
	if dir, key := filepath.Split(args["join-secret"]); filepath.Clean(dir) != mounts[secretVol.Name].MountPath || key != "join-secret" || !mounts[secretVol.Name].ReadOnly {
		t.Errorf("--join-secret %q: want key join-secret of the read-only Secret mount at %s", args["join-secret"], mounts[secretVol.Name].MountPath)
	}

	// Probes, resources, security.
	for name, probe := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != name || probe.HTTPGet.Port.String() != "http" {
			t.Errorf("want a probe on %s at the http port: %+v", name, probe)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Error("want cpu and memory requests")
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("want a read-only root filesystem and no privilege escalation")
	}
	if psc := spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("want runAsNonRoot with a non-zero user")
	}
	pdb := m.pdbs[0]
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("the PodDisruptionBudget does not select the pods: %v", err)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Error("want maxUnavailable 1")
	}

	// The binary serves the probe paths on the flag's listener, as configured.
	serveProbes(t, bin, args, c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
}

// serveProbes starts the agent with the manifest's flags (on loopback ports
// and a temporary data folder, no bootstrap peers) and GETs each path.
func serveProbes(t *testing.T, bin string, args map[string]string, paths ...string) {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "join-secret")
	if err := os.WriteFile(secret, []byte("manifest-test-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "agent", "--data-dir="+filepath.Join(dir, "data"), "--listen-client=127.0.0.1:0",
		"--listen-p2p=/ip4/127.0.0.1/tcp/0", "--listen-http=127.0.0.1:0", "--join-secret="+secret, "--name="+args["name"])
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`msg="chorus node started" .*\bhttp=(\S+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	var a string
	select {
	case a = <-addr:
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not start")
	}
	for _, p := range paths {
		resp, err := http.Get("http://" + a + p)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !json.Valid(body.Bytes()) {
			t.Errorf("GET %s: %s %s", p, resp.Status, body.String())
		}
	}
}
