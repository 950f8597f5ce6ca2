package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"
)

// Sampling of the block and mutex profiles while the debug listener is on:
// one blocking event in blockProfileRate nanoseconds of blocking, and one
// contended mutex in mutexProfileFraction. Both are off otherwise, because
// they cost time on every blocking channel operation and lock.
const (
	blockProfileRate     = 100_000 // 100 µs
	mutexProfileFraction = 100
)

// debugServer serves Go's profiles (net/http/pprof) on an opt-in listener,
// so that anyone can profile a running agent:
//
//	go tool pprof http://HOST:PORT/debug/pprof/profile?seconds=10
type debugServer struct {
	srv  *http.Server
	lis  net.Listener
	done chan struct{} // closed when Serve returns
}

// startDebug listens on addr and serves the profiles until stop.
func startDebug(addr string, logger *slog.Logger) (*debugServer, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	runtime.SetBlockProfileRate(blockProfileRate)
	runtime.SetMutexProfileFraction(mutexProfileFraction)
	d := &debugServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		lis:  lis,
		done: make(chan struct{}),
	}
	go func() {
		defer close(d.done)
		if err := d.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("debug listener stopped", "err", err)
		}
	}()
	logger.Info("debug listener started", "addr", lis.Addr().String(), "profiles", "/debug/pprof/")
	return d, nil
}

// stop closes the listener and every connection (a profile being taken is
// cut short) and waits for the server's goroutine.
func (d *debugServer) stop() {
	_ = d.srv.Close()
	<-d.done
	runtime.SetBlockProfileRate(0)
	runtime.SetMutexProfileFraction(0)
}
