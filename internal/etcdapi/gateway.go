package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// maxGatewayBodyBytes bounds a JSON request body: MaxRequestBytes of
// protobuf becomes about 4/3 of it in base64, plus the JSON around it.
const maxGatewayBodyBytes = 2*MaxRequestBytes + 64<<10

// gateway is etcd's JSON gateway (/v3/kv/range, /v3/kv/put, /v3/watch,
// /v3/lease/grant, ...), served on the etcd port next to gRPC: etcd's own
// generated handlers (etcdserverpb/gw) on grpc-gateway's runtime, calling
// this server's gRPC API over a loopback connection, as etcd does.
type gateway struct {
	conn *grpc.ClientConn
	srv  *http.Server
	done chan struct{}
}

// startGateway serves the JSON gateway on l, calling the gRPC API at addr.
func startGateway(l net.Listener, addr net.Addr, logf func(msg string, args ...any)) (*gateway, error) {
	conn, err := grpc.NewClient(loopback(addr), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(MaxRequestBytes+grpcOverheadBytes), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("etcdapi: JSON gateway: dial %s: %w", addr, err)
	}
	// etcd's JSON: proto field names (cluster_id, not clusterId), 64-bit
	// integers as strings, base64 bytes; unknown fields are ignored.
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
		Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		},
	}))
	ctx := context.Background()
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		gw.RegisterKVHandler, gw.RegisterWatchHandler, gw.RegisterLeaseHandler,
		gw.RegisterClusterHandler, gw.RegisterMaintenanceHandler, gw.RegisterAuthHandler,
	} {
		if err := register(ctx, mux, conn); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("etcdapi: JSON gateway: %w", err)
		}
	}
	g := &gateway{
		conn: conn,
		srv: &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.Body = http.MaxBytesReader(w, r.Body, maxGatewayBodyBytes)
				mux.ServeHTTP(w, r)
			}),
			ReadHeaderTimeout: 5 * time.Second,
			MaxHeaderBytes:    16 << 10,
			// No write timeout: /v3/watch and /v3/lease/keepalive stream.
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(g.done)
		if err := g.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("the etcd JSON gateway stopped", "err", err)
		}
	}()
	return g, nil
}

// close ends the gateway within timeout; streams (watch, keep-alive) end
// when the server's own do.
func (g *gateway) close(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := g.srv.Shutdown(ctx); err != nil {
		_ = g.srv.Close()
	}
	<-g.done
	_ = g.conn.Close()
}

// loopback is the address to dial for a listener's address: an unspecified
// IP (0.0.0.0, ::) becomes loopback.
func loopback(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		if ip.To4() != nil || ip == nil {
			ip = net.IPv4(127, 0, 0, 1)
		} else {
			ip = net.IPv6loopback
		}
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}
