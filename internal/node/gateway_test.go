package node_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chorus-kv/chorus/internal/node"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// do sends a request to the node's HTTP listener and decodes the JSON answer.
func do(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON: %v", method, url, resp.StatusCode, b, err)
	}
	return resp.StatusCode, out
}

// The JSON API on the HTTP listener: put, get, list, delete, status and a
// watch streamed as newline-delimited JSON, with keys as text in URLs, and
// the gRPC API's limits and error reasons.
func TestJSONAPI(t *testing.T) {
	n := start(t, node.Config{})
	base := "http://" + n.HTTPAddr().String()

	code, put := do(t, http.MethodPut, base+"/v1/kv/%2Fconfig%2Fa", `{"value": "`+b64("one")+`"}`)
	kv, _ := put["kv"].(map[string]any)
	if code != http.StatusOK || kv["key"] != b64("/config/a") || kv["value"] != b64("one") || kv["origin"] != n.ID() {
		t.Fatalf("PUT: %d %v", code, put)
	}
	if code, _ := do(t, http.MethodPut, base+"/v1/kv/config/b", `{"value": "`+b64("two")+`"}`); code != http.StatusOK {
		t.Fatalf("PUT a key with a slash in the path: %d", code)
	}
	code, get := do(t, http.MethodGet, base+"/v1/kv/%2Fconfig%2Fa", "")
	if kv, _ := get["kv"].(map[string]any); code != http.StatusOK || kv["value"] != b64("one") || kv["version"] != "1" {
		t.Fatalf("GET: %d %v", code, get)
	}
	if code, get := do(t, http.MethodGet, base+"/v1/kv/config/b", ""); code != http.StatusOK || get["kv"].(map[string]any)["key"] != b64("config/b") {
		t.Fatalf("GET config/b: %d %v", code, get)
	}
	if code, get := do(t, http.MethodGet, base+"/v1/kv/missing", ""); code != http.StatusOK || get["kv"] != nil || get["header"] == nil {
		t.Fatalf("GET a missing key: %d %v; want 200 with a header and no kv, as gRPC", code, get)
	}

	code, list := do(t, http.MethodGet, base+"/v1/kv?prefix=/config/", "")
	kvs, _ := list["kvs"].([]any)
	if code != http.StatusOK || len(kvs) != 1 || kvs[0].(map[string]any)["key"] != b64("/config/a") {
		t.Fatalf("GET ?prefix=/config/: %d %v; want /config/a alone", code, list)
	}
	if code, list := do(t, http.MethodGet, base+"/v1/kv?prefix=&keys_only=true", ""); code != http.StatusOK || len(list["kvs"].([]any)) != 2 {
		t.Fatalf("GET ?prefix=: %d %v; want both keys", code, list)
	}

	code, del := do(t, http.MethodDelete, base+"/v1/kv/%2Fconfig%2Fa", "")
	if code != http.StatusOK || del["deleted"] != true {
		t.Fatalf("DELETE: %d %v", code, del)
	}
	if code, st := do(t, http.MethodGet, base+"/v1/status", ""); code != http.StatusOK || st["version"] != node.Version {
		t.Fatalf("status: %d %v", code, st)
	}

	// The gRPC API's errors: status code, message with the limit, reason.
	code, e := do(t, http.MethodPut, base+"/v1/kv/"+strings.Repeat("k", 5000), `{"value": ""}`)
	details, _ := e["details"].([]any)
	if code != http.StatusBadRequest || len(details) != 1 || details[0].(map[string]any)["reason"] != "KEY_TOO_LARGE" ||
		!strings.Contains(e["message"].(string), "4096") {
		t.Fatalf("an oversized key: %d %v; want 400, reason KEY_TOO_LARGE and the limit", code, e)
	}
	code, e = do(t, http.MethodPut, base+"/v1/kv/big", `{"value": "`+b64(strings.Repeat("v", 1<<20+1))+`"}`)
	if details, _ := e["details"].([]any); code != http.StatusBadRequest || len(details) != 1 || details[0].(map[string]any)["reason"] != "VALUE_TOO_LARGE" {
		t.Fatalf("an oversized value: %d %v; want 400, reason VALUE_TOO_LARGE", code, e)
	}

	// A watch: one JSON object per line.
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/watch?key=/w/&prefix=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	next := func() map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("watch: the stream ended: %v", lines.Err())
		}
		var m struct {
			Result map[string]any `json:"result"`
		}
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("watch: line %q: %v", lines.Bytes(), err)
		}
		return m.Result
	}
	if first := next(); first["created"] != true {
		t.Fatalf("watch: first line %q; want created", lines.Bytes())
	}
	if code, _ := do(t, http.MethodPut, base+"/v1/kv/%2Fw%2Fx", `{"value": "`+b64("1")+`"}`); code != http.StatusOK {
		t.Fatal(code)
	}
	ev := next()
	events, _ := ev["events"].([]any)
	if len(events) != 1 || events[0].(map[string]any)["type"] != "TYPE_PUT" || events[0].(map[string]any)["kv"].(map[string]any)["key"] != b64("/w/x") {
		t.Fatalf("watch: %v; want the put of /w/x", ev)
	}
}
