package k8s

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func cm(name, value string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": value}}
}

func mustNamespace(t *testing.T, cs *kubernetes.Clientset, name string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(ctxT(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// TestKubeAPIServerOnAFreshChorusNode: kube-apiserver starts on a fresh
// node and serves namespaces and ConfigMaps as on etcd: create, update, a
// 409 on a stale resourceVersion, delete, list with limit and continue, a
// watch resuming from a resourceVersion, and 410 "too old" for a list, a
// continue token and a watch below a compaction. ConfigMaps bypass the
// apiserver's watch cache (--watch-cache-sizes=configmaps#0), so each of
// these reaches the node's etcd API; namespaces go through the cache.
func TestKubeAPIServerOnAFreshChorusNode(t *testing.T) {
	optIn(t)
	node := startChorus(t, "n1", t.TempDir(), "")
	a := startAPIServer(t, "kube-apiserver", node.etcdURL, newPKI(t), "127.0.0.1", "--watch-cache-sizes=configmaps#0")
	cs := a.cs
	ctx := ctxT(t)

	const ns = "chorus-e2e"
	mustNamespace(t, cs, ns)
	nsl, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil || !slices.ContainsFunc(nsl.Items, func(n corev1.Namespace) bool { return n.Name == ns }) {
		t.Fatalf("list namespaces: %v; want %s among them", err, ns)
	}
	cms := cs.CoreV1().ConfigMaps(ns)

	// Create, update, a stale update (409), get.
	created, err := cms.Create(ctx, cm("a", "1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	rvA := created.ResourceVersion
	if n, err := strconv.ParseInt(rvA, 10, 64); err != nil || n < 2 {
		t.Fatalf("resourceVersion %q; want a revision ≥ 2", rvA)
	}
	created.Data["v"] = "2"
	updated, err := cms.Update(ctx, created, metav1.UpdateOptions{})
	if err != nil || updated.ResourceVersion == rvA {
		t.Fatalf("update: %v, resourceVersion %s (was %s)", err, updated.ResourceVersion, rvA)
	}
	stale := created.DeepCopy()
	stale.ResourceVersion, stale.Data["v"] = rvA, "stale"
	if _, err := cms.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("update at a stale resourceVersion: %v; want 409 Conflict", err)
	}
	if got, err := cms.Get(ctx, "a", metav1.GetOptions{}); err != nil || got.Data["v"] != "2" || got.ResourceVersion != updated.ResourceVersion {
		t.Fatalf("get after the conflict: %v, %v; want v=2 at %s", err, got, updated.ResourceVersion)
	}

	// List with limit and continue.
	for _, n := range []string{"b", "c", "d", "e"} {
		if _, err := cms.Create(ctx, cm(n, n), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", n, err)
		}
	}
	var names []string
	opts := metav1.ListOptions{Limit: 2}
	pages := 0
	var firstContinue string
	for {
		l, err := cms.List(ctx, opts)
		if err != nil {
			t.Fatalf("list page %d: %v", pages, err)
		}
		pages++
		if len(l.Items) > 2 {
			t.Fatalf("page %d has %d items; limit 2", pages, len(l.Items))
		}
		for _, it := range l.Items {
			names = append(names, it.Name)
		}
		if pages == 1 {
			firstContinue = l.Continue
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	if strings.Join(names, ",") != "a,b,c,d,e" || pages != 3 {
		t.Fatalf("paged list: %v in %d pages; want a..e in 3", names, pages)
	}

	// A watch resuming from a resourceVersion: every change since, in order.
	f, err := cms.Create(ctx, cm("f", "1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.Data["v"] = "2"
	if _, err := cms.Update(ctx, f, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "f", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, "f", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: %v; want 404", err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: rvA})
	if err != nil {
		t.Fatalf("watch from %s: %v", rvA, err)
	}
	want := []string{"MODIFIED a", "ADDED b", "ADDED c", "ADDED d", "ADDED e", "ADDED f", "MODIFIED f", "DELETED f"}
	var got []string
	for len(got) < len(want) {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed after %v", got)
			}
			o, ok := ev.Object.(*corev1.ConfigMap)
			if !ok {
				t.Fatalf("watch event %s of %T: %v", ev.Type, ev.Object, ev.Object)
			}
			got = append(got, string(ev.Type)+" "+o.Name)
		case <-ctx.Done():
			t.Fatalf("watch from %s: %v so far; want %v", rvA, got, want)
		}
	}
	w.Stop()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("watch from %s delivered %v; want %v", rvA, got, want)
	}

	// Before a compaction, a list at an old resourceVersion is served...
	exact := metav1.ListOptions{ResourceVersion: rvA, ResourceVersionMatch: metav1.ResourceVersionMatchExact}
	if l, err := cms.List(ctx, exact); err != nil || len(l.Items) != 1 || l.Items[0].Data["v"] != "1" {
		t.Fatalf("list at resourceVersion %s: %v, %v; want a=1 alone", rvA, err, l)
	}
	// ...after one above it, a list, a continue token and a watch from
	// before it are "too old" (410), as on etcd.
	ec, err := clientv3.New(clientv3.Config{Endpoints: []string{node.etcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	cur, err := ec.Get(ctx, "/registry/configmaps/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ec.Compact(ctx, cur.Header.Revision); err != nil {
		t.Fatalf("compact at %d: %v", cur.Header.Revision, err)
	}
	if _, err := cms.List(ctx, exact); !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Errorf("list at compacted resourceVersion %s: %v; want 410 too old", rvA, err)
	}
	if _, err := cms.List(ctx, metav1.ListOptions{Limit: 2, Continue: firstContinue}); !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Errorf("list with a continue token from before the compaction: %v; want 410", err)
	}
	w, err = cms.Watch(ctx, metav1.ListOptions{ResourceVersion: rvA})
	if err != nil {
		if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.Errorf("watch from compacted %s: %v; want 410", rvA, err)
		}
	} else {
		select {
		case ev := <-w.ResultChan():
			st, ok := ev.Object.(*metav1.Status)
			if ev.Type != watch.Error || !ok || st.Code != 410 {
				t.Errorf("watch from compacted %s: first event %s %v; want an Error event with code 410", rvA, ev.Type, ev.Object)
			}
		case <-ctx.Done():
			t.Errorf("watch from compacted %s: no event", rvA)
		}
		w.Stop()
	}
	// And the current state is still served, through the cache too.
	if l, err := cms.List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 5 {
		t.Errorf("list after the compaction: %v, %v; want 5 items", err, l)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Errorf("get namespace after the compaction: %v", err)
	}
}

// TestKubeAPIServersOnTwoChorusNodes: two apiservers, each on its own node
// of a two-node cluster: what is created through one is visible through
// the other, and an update through the second reaches the first.
func TestKubeAPIServersOnTwoChorusNodes(t *testing.T) {
	optIn(t)
	n1 := startChorus(t, "n1", t.TempDir(), "")
	n2 := startChorus(t, "n2", admit(t, n1, "n2"), n1.p2pAddr)
	p := newPKI(t)
	// Started one after the other: two cold starts at once on 2 cores
	// only take longer.
	a1 := startAPIServer(t, "kube-apiserver-1", n1.etcdURL, p, "127.0.0.1")
	a2 := startAPIServer(t, "kube-apiserver-2", n2.etcdURL, p, "127.0.0.2")
	ctx := ctxT(t)

	mustNamespace(t, a1.cs, "two")
	if _, err := a1.cs.CoreV1().ConfigMaps("two").Create(ctx, cm("x", "from-1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitConfigMap(t, a2.cs, "two", "x", "from-1")
	got, err := a2.cs.CoreV1().ConfigMaps("two").Get(ctx, "x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Data["v"] = "from-2"
	if _, err := a2.cs.CoreV1().ConfigMaps("two").Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update through the second apiserver: %v", err)
	}
	waitConfigMap(t, a1.cs, "two", "x", "from-2")
	if l, err := a2.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil ||
		!slices.ContainsFunc(l.Items, func(n corev1.Namespace) bool { return n.Name == "two" }) {
		t.Errorf("namespaces through the second apiserver: %v; want \"two\" among them", err)
	}
}

// waitConfigMap waits until cs serves ns/name with v=value.
func waitConfigMap(t *testing.T, cs *kubernetes.Clientset, ns, name, value string) {
	t.Helper()
	ctx := ctxT(t)
	var last string
	for {
		c, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && c.Data["v"] == value {
			return
		}
		last = fmt.Sprint(err)
		if err == nil {
			last = "v=" + c.Data["v"]
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s/%s with v=%s not served within %v (last: %s)", ns, name, value, waitTimeout, last)
		case <-time.After(50 * time.Millisecond): // polling interval, not synchronization
		}
	}
}

// figures are one backend's measurements through kube-apiserver.
type figures struct {
	backend                  string
	startup                  time.Duration
	create, get, list, watch []time.Duration
}

// TestKubernetesFigures runs one workload through kube-apiserver (its
// default flags: the watch cache on) on a lone etcd and on a fresh Chorus
// node, in one run, and reports start-up time and the p50/p99 of create,
// get, list (every ConfigMap of a namespace) and watch delivery (from the
// start of a create to its ADDED event). It is a measurement, not a timed
// pass/fail: it fails only when something does not work. Set
// CHORUS_K8S_REPORT=FILE to have the table written there too.
func TestKubernetesFigures(t *testing.T) {
	optIn(t)
	n := 300
	if s := os.Getenv("CHORUS_K8S_OBJECTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("CHORUS_K8S_OBJECTS=%q: want a positive count", s)
		}
	}
	p := newPKI(t)
	var all []figures
	for _, backend := range []string{"etcd", "chorus"} {
		t.Run(backend, func(t *testing.T) {
			var url string
			if backend == "etcd" {
				url = startEtcd(t)
			} else {
				url = startChorus(t, "bench", t.TempDir(), "").etcdURL
			}
			a := startAPIServer(t, "kube-apiserver on "+backend, url, p, "127.0.0.1")
			all = append(all, measure(t, backend, a, n))
		})
	}
	if len(all) != 2 {
		t.Fatal("a backend failed: no figures")
	}
	report := formatFigures(all, n)
	t.Log("\n" + report)
	if path := os.Getenv("CHORUS_K8S_REPORT"); path != "" {
		if err := os.WriteFile(filepath.Clean(path), []byte(report), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func measure(t *testing.T, backend string, a *apiserver, n int) figures {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f := figures{backend: backend, startup: a.startup}
	mustNamespace(t, a.cs, "bench")
	cms := a.cs.CoreV1().ConfigMaps("bench")
	w, err := cms.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	arrived := make(chan map[string]time.Time, 1)
	go func() {
		got := map[string]time.Time{}
		for ev := range w.ResultChan() {
			if c, ok := ev.Object.(*corev1.ConfigMap); ok && ev.Type == watch.Added {
				got[c.Name] = time.Now()
				if len(got) == n {
					break
				}
			}
		}
		arrived <- got
	}()
	started := make(map[string]time.Time, n)
	for i := range n {
		name := fmt.Sprintf("cm-%04d", i)
		t0 := time.Now()
		started[name] = t0
		if _, err := cms.Create(ctx, cm(name, strings.Repeat("x", 256)), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		f.create = append(f.create, time.Since(t0))
	}
	for i := range n {
		t0 := time.Now()
		if _, err := cms.Get(ctx, fmt.Sprintf("cm-%04d", i), metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
		f.get = append(f.get, time.Since(t0))
	}
	for range max(n/3, 10) {
		t0 := time.Now()
		l, err := cms.List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) != n {
			t.Fatalf("list: %v, %d items; want %d", err, len(l.Items), n)
		}
		f.list = append(f.list, time.Since(t0))
	}
	select {
	case got := <-arrived:
		for name, t0 := range started {
			at, ok := got[name]
			if !ok {
				t.Fatalf("no ADDED event for %s", name)
			}
			f.watch = append(f.watch, at.Sub(t0))
		}
	case <-ctx.Done():
		t.Fatal("the watch did not deliver every ADDED event")
	}
	return f
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func formatFigures(all []figures, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kube-apiserver %s, default flags, %d ConfigMaps of 256 B, one client, %s\n\n", kubeVersion, n, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "| | %s | %s | Chorus / etcd |\n| --- | --- | --- | --- |\n", all[0].backend, all[1].backend)
	ratio := func(a, c time.Duration) string { return fmt.Sprintf("%.2f×", float64(c)/float64(a)) }
	e, c := all[0], all[1]
	fmt.Fprintf(&b, "| start-up to /readyz | %v | %v | %s |\n", e.startup.Round(10*time.Millisecond), c.startup.Round(10*time.Millisecond), ratio(e.startup, c.startup))
	for _, row := range []struct {
		name string
		e, c []time.Duration
	}{{"create", e.create, c.create}, {"get", e.get, c.get}, {fmt.Sprintf("list (%d items)", n), e.list, c.list}, {"watch delivery", e.watch, c.watch}} {
		for _, q := range []struct {
			label string
			p     float64
		}{{"p50", 0.50}, {"p99", 0.99}} {
			fmt.Fprintf(&b, "| %s %s | %s | %s | %s |\n", row.name, q.label, ms(pct(row.e, q.p)), ms(pct(row.c, q.p)), ratio(pct(row.e, q.p), pct(row.c, q.p)))
		}
	}
	return b.String()
}
