//go:build unix

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chorus-kv/chorus/internal/testutil"
)

// statusJSON is `chorus status -o json`.
type statusJSON struct {
	NodeID     string `json:"node_id"`
	JoinState  string `json:"join_state"`
	JoinDetail string `json:"join_detail"`
	Keys       int64  `json:"keys"`
	LiveKeys   int64  `json:"live_keys"`
	Tombstones int64  `json:"tombstones"`
	MerkleRoot string `json:"merkle_root"`
}

func (a *agent) status(t *testing.T) statusJSON {
	t.Helper()
	var st statusJSON
	r := a.mustCLI(t, nil, "status", "-o", "json")
	if err := json.Unmarshal(r.stdout, &st); err != nil {
		t.Fatalf("status -o json: %v: %q", err, r.stdout)
	}
	return st
}

// waitJoinState polls the agent's status until its join state is want.
func waitJoinState(t *testing.T, a *agent, want string, within time.Duration) statusJSON {
	t.Helper()
	var st statusJSON
	testutil.EventuallyWhy(t, within, pollInterval, "the join state is "+want, func() (bool, string) {
		st = a.status(t)
		return st.JoinState == want, fmt.Sprintf("join state %s (%s)", st.JoinState, st.JoinDetail)
	})
	return st
}

// TestNewcomerJoin is the newcomer's session: start two nodes, forget
// `member add`, see the state and the hint on both sides, admit, see the
// node join.
func TestNewcomerJoin(t *testing.T) {
	n1 := startAgent(t, t.TempDir(), "--name", "n1")
	n1.mustCLI(t, nil, "put", "/hello", "world")
	if st := n1.status(t); st.JoinState != "standalone" {
		t.Errorf("a lone node: join state %s (%s), want standalone", st.JoinState, st.JoinDetail)
	}
	n2 := startAgent(t, t.TempDir(), "--name", "n2", "--bootstrap", n1.p2pAddr(t))
	admit := "chorus member add " + n2.nodeID + " --name n2"

	// Not admitted: the state and the command that admits it, in status,
	// members, and once in each node's log.
	st := waitJoinState(t, n2, "not-admitted", 30*time.Second)
	if !strings.Contains(st.JoinDetail, admit) {
		t.Errorf("not-admitted detail %q lacks %q", st.JoinDetail, admit)
	}
	if r := n2.mustCLI(t, nil, "status"); !strings.Contains(string(r.stdout), "join state:      not-admitted: ") {
		t.Errorf("status: %s", r.stdout)
	}
	if r := n2.mustCLI(t, nil, "members"); !strings.Contains(string(r.stdout), "join state: not-admitted: ") || !strings.Contains(string(r.stdout), admit) {
		t.Errorf("members: %s", r.stdout)
	}
	if r := n2.cli(t, nil, "get", "/hello"); r.code != 1 {
		t.Errorf("get on a node that was not admitted: %v", r)
	}
	// The node logs its join state when its admission loop next looks
	// (every second), so the line may come a moment after status says it.
	if lines := waitLogLines(n1, "refused a peer that is not on the member list", 10*time.Second); len(lines) != 1 || !strings.Contains(lines[0], "chorus member add "+n2.nodeID) {
		t.Errorf("n1's log: %q; want one line naming n2 and the command that admits it", lines)
	}
	if lines := waitLogLines(n2, "not admitted: ", 10*time.Second); len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], admit) {
		t.Errorf("n2's log: %q; want one warning with the command that admits it", lines)
	}

	// Admit it: it joins at its next dial (within the 30 s backoff) and
	// catches up.
	if r := n1.mustCLI(t, nil, "member", "add", n2.nodeID, "--name", "n2"); string(r.stdout) == "" || !strings.HasPrefix(string(r.stdout), "added "+n2.nodeID) {
		t.Errorf("member add: %q", r.stdout)
	}
	waitJoinState(t, n2, "member", 60*time.Second)
	if lines := linesWith(n2.stderr.String(), "joined the cluster"); len(lines) != 1 {
		t.Errorf("n2's log: %q; want one \"joined the cluster\" line", lines)
	}
	testutil.EventuallyWhy(t, 30*time.Second, pollInterval, "/hello reaches n2 after its admission", func() (bool, string) {
		r := n2.cli(t, nil, "get", "/hello", "--print-value-only")
		return r.code == 0 && string(r.stdout) == "world", fmt.Sprintf("get printed %q (exit %d)", r.stdout, r.code)
	})

	// member add of a member renames it, and says so.
	if r := n1.mustCLI(t, nil, "member", "add", n2.nodeID, "--name", "n9"); !strings.HasPrefix(string(r.stdout), "renamed n2 to n9 ") {
		t.Errorf("member add of a member under a new name: %q", r.stdout)
	}
	// A member admitted but never started is unseen, not alive then dead.
	// members --watch prints a labelled line per change.
	watch := startProcess(t, "", "members", "--watch", "--endpoint", n1.addr)
	lines := &lineReader{log: watch.stdout}
	if line, err := lines.Next(lineTimeout); err != nil || !strings.HasPrefix(line, n1.nodeID+" state=alive incarnation=") || !strings.HasSuffix(line, " name=n1") {
		t.Fatalf("members --watch, first line: %q, %v; want n1's, labelled", line, err)
	}
	n3 := strings.TrimSpace(string(runCLIOK(t, "id", "--data-dir", t.TempDir()).stdout))
	n1.mustCLI(t, nil, "member", "add", n3, "--name", "n3")
	for {
		line, err := lines.Next(lineTimeout)
		if err != nil {
			t.Fatalf("members --watch never showed n3: %v", err)
		}
		if strings.HasPrefix(line, n3) {
			if line != n3+" state=unseen incarnation=0 name=n3" {
				t.Errorf("members --watch: %q; want n3 unseen, labelled", line)
			}
			break
		}
	}
	watch.stopGraceful(t)
	// n9 (n2, just joined) is alive once n1's failure detector holds it:
	// it takes the member list in at its next probe round.
	testutil.EventuallyWhy(t, 30*time.Second, pollInterval, "n1 lists itself a member, n3 unseen and n9 alive", func() (bool, string) {
		var members struct {
			JoinState string `json:"join_state"`
			Members   []struct {
				PeerID string `json:"peer_id"`
				Name   string `json:"name"`
				State  string `json:"state"`
			} `json:"members"`
		}
		r := n1.mustCLI(t, nil, "members", "-o", "json")
		if err := json.Unmarshal(r.stdout, &members); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, m := range members.Members {
			got[m.Name] = m.State
		}
		return members.JoinState == "member" && got["n3"] == "unseen" && got["n9"] == "alive",
			fmt.Sprintf("members -o json: join state %s, states %v", members.JoinState, got)
	})

	// status: live keys and tombstones apart.
	n1.mustCLI(t, nil, "put", "/gone", "x")
	n1.mustCLI(t, nil, "del", "/gone")
	if st := n1.status(t); st.Tombstones != 1 || st.LiveKeys != st.Keys-1 || st.LiveKeys < 4 {
		t.Errorf("status after a delete: %+v; want 1 tombstone and the rest live (/hello and 3 members)", st)
	}
}

// waitLogLines waits until the agent's log has a line with substr, or
// within passes, and returns the lines that have it.
func waitLogLines(a *agent, substr string, within time.Duration) []string {
	deadline := time.Now().Add(within)
	r := &lineReader{log: a.stderr}
	for {
		line, err := r.Next(time.Until(deadline))
		if err != nil || strings.Contains(line, substr) {
			return linesWith(a.stderr.String(), substr)
		}
	}
}

func linesWith(log, substr string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}
