package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/chorus-kv/chorus/internal/connlimit"
)

// Paths served on the HTTP listener (Config.ListenHTTP); MetricsPath too.
const (
	HealthzPath = "/healthz"
	ReadyzPath  = "/readyz"
)

// Readiness says whether the node is ready for traffic, and why not.
type Readiness struct {
	Ready bool `json:"ready"`
	// Reason is empty when ready.
	Reason string `json:"reason,omitempty"`
	// StoreOpen: the store is open and takes writes.
	StoreOpen bool `json:"store_open"`
	// Synced: an anti-entropy session with a peer has completed.
	Synced bool `json:"synced"`
	// Alone: the node has no bootstrap peers and no mDNS, so it does not
	// wait for a peer.
	Alone bool `json:"alone"`
}

// Readiness reports whether the node is ready: its store is open and it has
// completed its first anti-entropy session with a peer, or it is alone by
// configuration (no bootstrap peers, no mDNS).
func (n *Node) Readiness() Readiness {
	r := Readiness{
		Synced: n.firstSync.Load(),
		Alone:  len(n.cfg.Bootstrap) == 0 && !n.cfg.MDNS,
	}
	select {
	case <-n.store.Failed():
	default:
		r.StoreOpen = true
	}
	switch {
	case !r.StoreOpen:
		r.Reason = "the store can no longer take writes"
	case !r.Synced && !r.Alone:
		r.Reason = "waiting for the first anti-entropy session with a peer"
	default:
		r.Ready = true
	}
	return r
}

// HTTPMux returns the mux of the HTTP listener (nil when it is off), so
// that more handlers (metrics, say) can be added next to /healthz and
// /readyz; a pattern registered twice panics, as with http.ServeMux.
func (n *Node) HTTPMux() *http.ServeMux { return n.httpMux }

// HTTPAddr returns the address the HTTP listener listens on, or nil when it
// is off.
func (n *Node) HTTPAddr() net.Addr {
	if n.httpLis == nil {
		return nil
	}
	return n.httpLis.Addr()
}

// startHTTP listens on cfg.ListenHTTP and serves /healthz (200 while the
// process serves) and /readyz (200 when Readiness is ready, else 503), each
// with a JSON body, and the JSON API (gateway.go). It runs after the gRPC
// server has started.
func (n *Node) startHTTP() error {
	if n.cfg.ListenHTTP == ListenHTTPOff {
		return nil
	}
	lis, err := net.Listen("tcp", n.cfg.ListenHTTP)
	if err != nil {
		return fmt.Errorf("node: listen for HTTP (/healthz, /readyz) on %s: %w (by default the client port + 2: set --listen-http to a free host:port, or off)", n.cfg.ListenHTTP, err)
	}
	n.httpLis = connlimit.New(lis, n.caps.HTTP, "http", n.cfg.Logger)
	n.httpMux = http.NewServeMux()
	n.httpMux.HandleFunc("GET "+HealthzPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "node_id": n.ID()})
	})
	n.httpMux.HandleFunc("GET "+ReadyzPath, func(w http.ResponseWriter, _ *http.Request) {
		r := n.Readiness()
		code := http.StatusOK
		if !r.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, r)
	})
	n.serveMetrics()
	gw, err := n.newJSONGateway()
	if err != nil {
		_ = lis.Close()
		return err
	}
	n.jsonAPI = gw
	// The JSON API's paths go to it before the mux, which would clean (and
	// redirect) the keys in them.
	var handler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gw.owns(r.URL.Path) {
			gw.ServeHTTP(w, r)
			return
		}
		n.httpMux.ServeHTTP(w, r)
	})
	baseCtx, cancel := context.WithCancel(context.Background())
	n.httpCancel = cancel // ends JSON watch streams at shutdown
	n.httpSrv = &http.Server{
		Handler:           handler,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       min(30*time.Second, n.cfg.ClientIdleTimeout),
		MaxHeaderBytes:    16 << 10,
	}
	n.httpDone = make(chan struct{})
	go func() {
		defer close(n.httpDone)
		if err := n.httpSrv.Serve(n.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.cfg.Logger.Error("the HTTP listener stopped", "err", err)
		}
	}()
	return nil
}

// stopHTTP shuts the HTTP listener down within timeout and waits for it.
func (n *Node) stopHTTP(timeout time.Duration) {
	if n.httpSrv == nil {
		return
	}
	n.httpCancel()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := n.httpSrv.Shutdown(ctx); err != nil {
		_ = n.httpSrv.Close()
	}
	<-n.httpDone
	n.jsonAPI.close()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
