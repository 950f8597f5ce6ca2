package grpcstop

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestGraceful stops a real gRPC server (the standard health service) with
// and without a stream that never ends on its own (a health Watch).
func TestGraceful(t *testing.T) {
	tests := []struct {
		name    string
		watch   bool // a client holds a Watch stream open
		timeout time.Duration
	}{
		{name: "idle", timeout: time.Minute},
		{name: "open stream is cut at the timeout", watch: true, timeout: 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			healthpb.RegisterHealthServer(srv, health.NewServer())
			served := make(chan error, 1)
			go func() { served <- srv.Serve(lis) }()

			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			client := healthpb.NewHealthClient(conn)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("health check before the stop: %v", err)
			}
			var watch healthpb.Health_WatchClient
			if tt.watch {
				if watch, err = client.Watch(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					t.Fatal(err)
				}
				if _, err := watch.Recv(); err != nil { // the stream is open on the server
					t.Fatal(err)
				}
			}

			done := make(chan struct{})
			go func() {
				defer close(done)
				Graceful(srv, tt.timeout)
			}()
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatal("Graceful did not return")
			}
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("Serve returned %v, want nil after a stop", err)
				}
			case <-ctx.Done():
				t.Fatal("Serve did not return after Graceful")
			}
			if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(false)); err == nil {
				t.Error("a health check succeeded after the stop")
			}
			if tt.watch {
				// Stop ends the stream; the health server sends no more.
				for {
					if _, err = watch.Recv(); err != nil {
						break
					}
				}
				if c := status.Code(err); c != codes.Unavailable && c != codes.Canceled {
					t.Errorf("the open stream ended with %v, want Unavailable or Canceled", err)
				}
			}
		})
	}
}
