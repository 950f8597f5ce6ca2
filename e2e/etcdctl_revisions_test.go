package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// TestEtcdctlRevisionsCompactionStreamAndProgress runs, with the real
// etcdctl against a fresh agent, what kube-apiserver needs from the etcd
// API and etcd 3.7 shows on its CLI: a fresh node at revision 1 (the first
// put at 2), a get below the compaction refused, get --stream (RangeStream)
// answering as get does, and watch --progress-notify hearing at the agent's
// --watch-progress-notify-interval.
func TestEtcdctlRevisionsCompactionStreamAndProgress(t *testing.T) {
	etcdctlBin(t)
	a := startAgent(t, t.TempDir(), "--listen-etcd", "127.0.0.1:0", "--watch-progress-notify-interval", "200ms")
	ep := "--endpoints=" + a.etcdAddr(t)

	revRE := regexp.MustCompile(`"revision":(\d+)`)
	revOf := func(out string) string {
		m := revRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no revision in %q", out)
		}
		return m[1]
	}
	if got := revOf(runEtcdctl(t, ep, "get", "nothing", "-w", "json")); got != "1" {
		t.Fatalf("a fresh node's revision is %s; want 1, as etcd's", got)
	}

	// A quiet watch with progress notifications, from the start.
	watch := startEtcdctl(t, ep, "watch", "--progress-notify", "/quiet/")
	line, err := watch.stdout.line(0, lineTimeout)
	if err != nil || !strings.HasPrefix(line, "progress notify: ") {
		t.Errorf("watch --progress-notify printed %q, %v; want a \"progress notify: REV\" line within %v at a 200ms interval", line, err, lineTimeout)
	}

	// etcd: put ×4 gets revisions 2 to 5; compact 4; get --rev 3 is refused.
	for i, v := range []string{"1", "2", "3", "4"} {
		out := runEtcdctl(t, ep, "put", "a", v, "-w", "json")
		if got, want := revOf(out), string(rune('2'+i)); got != want {
			t.Fatalf("put %d got revision %s; want %s", i+1, got, want)
		}
	}
	if got := runEtcdctl(t, ep, "compact", "4"); !strings.Contains(got, "compacted revision 4") {
		t.Errorf("compact 4 printed %q", got)
	}
	p := startEtcdctl(t, ep, "get", "a", "--rev", "3")
	if code := p.wait(t, cliTimeout); code == 0 || !strings.Contains(p.stderr.String(), "required revision has been compacted") {
		t.Errorf("get a --rev 3 after compact 4: exit %d, stdout %q, stderr %q; want etcd's \"required revision has been compacted\"", code, p.stdout.String(), p.stderr.String())
	}
	if got := runEtcdctl(t, ep, "get", "a", "--rev", "4"); got != "a\n3\n" {
		t.Errorf("get a --rev 4 printed %q; want a, 3", got)
	}

	// get --stream (RangeStream) prints what get prints.
	for _, k := range []string{"/s/1", "/s/2", "/s/3"} {
		runEtcdctl(t, ep, "put", k, "v"+k)
	}
	want := runEtcdctl(t, ep, "get", "--prefix", "/s/")
	if got := runEtcdctl(t, ep, "get", "--prefix", "--stream", "/s/"); got != want || !strings.Contains(got, "/s/3\nv/s/3\n") {
		t.Errorf("get --prefix --stream printed %q; want what get printed, %q", got, want)
	}
	if got := runEtcdctl(t, ep, "get", "--prefix", "--stream", "--limit", "2", "/s/"); got != "/s/1\nv/s/1\n/s/2\nv/s/2\n" {
		t.Errorf("get --stream --limit 2 printed %q", got)
	}
}
