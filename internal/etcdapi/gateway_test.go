package etcdapi_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chorus-kv/chorus/internal/etcdapi"
)

// post sends a JSON body to the etcd port, as etcd's curl examples do, and
// decodes the JSON answer.
func post(t *testing.T, base, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("POST %s: %d %q is not JSON: %v", path, resp.StatusCode, b, err)
	}
	return resp.StatusCode, out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// etcd's JSON gateway on the etcd port, next to gRPC: etcd's own curl
// examples (put, range, prefix range, delete, lease grant and revoke, watch)
// work, and the gRPC API keeps working on the same port.
func TestJSONGateway(t *testing.T) {
	n := startNode(t, nil)
	base := "http://" + n.EtcdAddr().String()

	code, put := post(t, base, "/v3/kv/put", `{"key": "`+b64("foo")+`", "value": "`+b64("bar")+`"}`)
	hdr, _ := put["header"].(map[string]any)
	if code != http.StatusOK || hdr["revision"] == nil || hdr["cluster_id"] == nil || hdr["member_id"] == nil {
		t.Fatalf("put: %d %v; want 200 and a header with etcd's field names", code, put)
	}

	code, rng := post(t, base, "/v3/kv/range", `{"key": "`+b64("foo")+`"}`)
	kvs, _ := rng["kvs"].([]any)
	if code != http.StatusOK || len(kvs) != 1 || rng["count"] != "1" {
		t.Fatalf("range: %d %v; want one key", code, rng)
	}
	kv := kvs[0].(map[string]any)
	if kv["key"] != b64("foo") || kv["value"] != b64("bar") || kv["version"] != "1" {
		t.Fatalf("range: kv %v; want foo=bar (base64), version 1", kv)
	}

	// The gRPC API on the same port sees the JSON write.
	c := dial(t, n)
	if r, err := c.Get(ctxT(t), "foo"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "bar" {
		t.Fatalf("gRPC get on the same port: %v, %v", r, err)
	}

	mustPut(t, c, "foo2", "x")
	code, rng = post(t, base, "/v3/kv/range", `{"key": "`+b64("foo")+`", "range_end": "`+b64("fop")+`"}`)
	if code != http.StatusOK || rng["count"] != "2" {
		t.Fatalf("prefix range: %d %v; want 2 keys", code, rng)
	}

	code, lease := post(t, base, "/v3/lease/grant", `{"TTL": 60}`)
	if code != http.StatusOK || lease["ID"] == nil || lease["TTL"] != "60" {
		t.Fatalf("lease grant: %d %v", code, lease)
	}
	code, _ = post(t, base, "/v3/lease/revoke", `{"ID": "`+lease["ID"].(string)+`"}`)
	if code != http.StatusOK {
		t.Fatalf("lease revoke: %d", code)
	}

	// A watch streams one JSON object per response.
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v3/watch", strings.NewReader(`{"create_request": {"key": "`+b64("foo")+`"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	var created struct {
		Result struct {
			Created bool `json:"created"`
		} `json:"result"`
	}
	if err := dec.Decode(&created); err != nil || !created.Result.Created {
		t.Fatalf("watch: first response %+v, %v; want created", created, err)
	}
	code, _ = post(t, base, "/v3/kv/deleterange", `{"key": "`+b64("foo")+`"}`)
	if code != http.StatusOK {
		t.Fatalf("deleterange: %d", code)
	}
	var ev struct {
		Result struct {
			Events []struct {
				Type string `json:"type"`
				KV   struct {
					Key string `json:"key"`
				} `json:"kv"`
			} `json:"events"`
		} `json:"result"`
	}
	var raw json.RawMessage
	err = dec.Decode(&raw)
	if err == nil {
		err = json.Unmarshal(raw, &ev)
	}
	if err != nil || len(ev.Result.Events) != 1 || ev.Result.Events[0].Type != "DELETE" || ev.Result.Events[0].KV.Key != b64("foo") {
		t.Fatalf("watch: event %+v, %v; want the delete of foo", ev, err)
	}

	// etcd's limits and errors, in JSON.
	big := strings.Repeat("x", etcdapi.MaxRequestBytes+1024)
	code, e := post(t, base, "/v3/kv/put", `{"key": "`+b64("big")+`", "value": "`+b64(big)+`"}`)
	if code == http.StatusOK || !strings.Contains(e["message"].(string), "too large") {
		t.Fatalf("an oversized put: %d %v; want an error saying it is too large", code, e)
	}
}
